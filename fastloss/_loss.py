"""The ``Loss`` object: argument checks, the Keras and PyTorch conventions, reductions."""

import math
from dataclasses import dataclass

import numpy as np

from ._arrays import (Placement, broadcasts_to, compute_dtype, real_array,
                      squeeze_or_expand_to_same_rank)
from ._run import KernelCall, run

KERAS_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None)
TORCH_REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Option:
    """A loss's scalar option: its name (as the source library spells it), default, and
    the rule it must obey: "nonnegative", "positive", "any" (finite), "probability"
    (in [0, 1]), "open_unit" (in (0, 1)), "bool" or "int" (an axis, a class index; one of
    ``choices`` when given)."""
    name: str
    default: float
    rule: str = "nonnegative"
    allow_none: bool = False  # None is a valid value (e.g. Optax's alpha=None)
    choices: tuple = ()

    def check(self, value, loss_name):
        if value is None and self.allow_none:
            return None
        if self.rule == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{loss_name}: {self.name} must be True or False, got {value!r}")
            return bool(value)
        if self.rule == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{loss_name}: {self.name} must be an integer"
                                + (" or None" if self.allow_none else "") + f", got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"{loss_name}: {self.name} must be one of {self.choices}, "
                                 f"got {value}")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{loss_name}: {self.name} must be a real number, got {value!r}")
        value = float(value)
        bad = (not math.isfinite(value)
               or (self.rule in ("nonnegative", "positive", "probability") and value < 0)
               or (self.rule == "positive" and value == 0)
               or (self.rule == "probability" and value > 1)
               or (self.rule == "open_unit" and not 0 < value < 1))
        if bad:
            rule = {"probability": "in [0, 1] and ", "open_unit": "in (0, 1) and ",
                    "any": ""}.get(self.rule, f"{self.rule} and ")
            raise ValueError(f"{loss_name}: {self.name} must be {rule}finite, got {value}")
        return value


class Loss:
    """A loss: ``loss(y_true, y_pred)``, ``loss.grad(...)``, ``loss.value_and_grad(...)``.

    ``grad`` is a vector-Jacobian product with respect to ``y_pred``: ``grad_output`` is
    the cotangent of the value (a scalar for reduced values, an array of the value's shape
    for ``reduction="none"``; default ones).  ``out=`` receives the gradient (it may be
    ``y_pred`` itself: the kernel then writes a temporary, copied into it).
    """

    def __init__(self, name, element, convention, options=(), summary="", row_reduction="mean",
                 kernel_values=None, prepare_labels=None, pred_range=None, takes_weight=False):
        """element: the element function's name in kernels/elements.py, or a function of
        the checked options returning it (e.g. one element per ``from_logits``).
        row_reduction: how Keras reduces the last axis, "mean" or "sum".
        kernel_values: a function of the checked options returning the numbers the element
        receives as its option tuple (default: every option, in declaration order).
        prepare_labels: a function ``(y_true, xp) -> y_true`` applied to the labels (in the
        compute dtype, broadcast to y_pred's shape, possibly the caller's own array: it must
        return a new array, not write in place) before the kernel runs.
        pred_range: (lo, hi) that every y_pred must lie in (checked for NumPy inputs; a check
        of CuPy inputs would synchronise with the device).
        takes_weight: accepts PyTorch's ``weight=`` (an array broadcastable to y_pred that
        rescales each element's loss).
        An option named "axis" (Keras) is the axis reduced first, moved last for the kernel."""
        self.name = name
        self.element = element
        self.convention = convention
        self.options = (options,) if isinstance(options, Option) else tuple(options)
        self.summary = summary
        self.row_reduction = row_reduction
        self.kernel_values = kernel_values
        self.prepare_labels = prepare_labels
        self.pred_range = pred_range
        self.takes_weight = takes_weight
        self.__doc__ = f"{name}: {summary}"

    def __repr__(self):
        return f"<fastloss.{self.name} ({self.convention})>"

    @property
    def default_reduction(self):
        return "sum_over_batch_size" if self.convention == "keras" else "mean"

    def __call__(self, y_true, y_pred, *, sample_weight=None, reduction="default", **options):
        return self._compute(y_true, y_pred, sample_weight, reduction, options,
                             want_value=True, want_grad=False)[0]

    def grad(self, y_true, y_pred, *, sample_weight=None, reduction="default",
             grad_output=None, out=None, **options):
        return self._compute(y_true, y_pred, sample_weight, reduction, options,
                             want_value=False, want_grad=True, grad_output=grad_output, out=out)[1]

    def value_and_grad(self, y_true, y_pred, *, sample_weight=None, reduction="default",
                       grad_output=None, out=None, **options):
        return self._compute(y_true, y_pred, sample_weight, reduction, options,
                             want_value=True, want_grad=True, grad_output=grad_output, out=out)

    # -- argument checks -------------------------------------------------------------

    def check_options(self, options):
        """The checked options as a dict, defaults filled in."""
        given = dict(options)
        if self.takes_weight:
            given.pop("weight", None)  # an array, checked against the inputs' shapes
        values = {opt.name: opt.check(given.pop(opt.name, opt.default), self.name)
                  for opt in self.options}
        if given:
            known = ", ".join(repr(opt.name) for opt in self.options)
            raise TypeError(f"{self.name} got an unexpected option {sorted(given)[0]!r}; "
                            + (f"its options are {known}" if known else "it takes no options"))
        return values

    def kernel_options(self, values, dtype, names=None):
        """The element function's option tuple, in the compute dtype: kernel_values of the
        options, or the options ``names`` (default: all) in declaration order."""
        from fastloss.kernels.elements import OPTION_SLOTS
        if self.kernel_values is not None:  # (kernel_values leaves out non-numeric options)
            numbers = [float(v) for v in self.kernel_values(values)]
        else:
            names = [opt.name for opt in self.options] if names is None else names
            numbers = [float(values[name]) for name in names]
        return tuple(dtype.type(v) for v in numbers + [0.0] * (OPTION_SLOTS - len(numbers)))

    def element_for(self, values):
        return self.element(values) if callable(self.element) else self.element

    def check_reduction(self, reduction):
        if isinstance(reduction, str) and reduction == "default":
            return self.default_reduction
        allowed = KERAS_REDUCTIONS if self.convention == "keras" else TORCH_REDUCTIONS
        # (only strings and None compare: an array would compare elementwise)
        if not isinstance(reduction, (str, type(None))) or reduction not in allowed:
            raise ValueError(f"{self.name}: reduction must be one of {allowed}, got {reduction!r}")
        return "none" if reduction is None else reduction

    # -- the computation -------------------------------------------------------------

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, *,
                 want_value, want_grad, grad_output=None, out=None):
        option_values = self.check_options(options)
        weight = options.get("weight") if self.takes_weight else None
        reduction = self.check_reduction(reduction)
        if self.convention == "torch" and sample_weight is not None:
            raise TypeError(f"{self.name} follows torch.nn.functional and takes no sample_weight")
        placement = Placement({"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight,
                               "weight": weight, "grad_output": grad_output, "out": out})
        xp = placement.xp
        p = placement.asarray(y_pred, "y_pred")
        t = placement.asarray(y_true, "y_true")
        dtype = compute_dtype(p)
        pred_shape = p.shape
        if p.ndim == 0:
            p = p.reshape(1)
        if self.convention == "keras":
            t_shape, p_shape = squeeze_or_expand_to_same_rank(t.shape, p.shape)
        else:
            t_shape, p_shape = t.shape, p.shape
        if not broadcasts_to(t_shape, p_shape):
            raise ValueError(f"{self.name}: y_true of shape {t.shape} does not broadcast to "
                             f"y_pred of shape {pred_shape}")
        if not p_shape:  # (Keras's mean over the last axis of a scalar fails too)
            raise ValueError(f"{self.name}: y_pred of shape {pred_shape} with y_true of shape "
                             f"{t.shape} has no last axis to reduce (Keras fails on it too); "
                             "pass arrays of at least one dimension")
        p = xp.ascontiguousarray(p.reshape(p_shape), dtype=dtype)
        t = t.reshape(t_shape)
        if t_shape != p_shape:
            t = xp.broadcast_to(t, p_shape)
        if self.pred_range is not None and xp is np:
            self._check_pred_range(p)
        # Keras's axis: moved last (a contiguous copy), the gradient moved back at the end.
        axis = option_values.get("axis", -1)
        if not -len(p_shape) <= axis < len(p_shape):
            raise ValueError(f"{self.name}: axis {axis} is out of range for y_pred of "
                             f"{len(p_shape)} dimensions (shape {tuple(pred_shape)})")
        axis %= len(p_shape)
        moved = axis != len(p_shape) - 1
        if moved:
            unmoved_shape = p_shape
            p = xp.ascontiguousarray(xp.moveaxis(p, axis, -1))
            t = xp.moveaxis(t, axis, -1)
            p_shape = p.shape
        # (a copy, when needed, is writable: kernels then see one array type, one compile)
        t = xp.ascontiguousarray(t, dtype=dtype)
        if self.prepare_labels is not None:
            t = self.prepare_labels(t, xp)
        grad = None
        if want_grad:
            grad = self._grad_buffer(out, placement, pred_shape, dtype)
            if moved:  # out (possibly y_pred itself) receives the gradient moved back
                final_grad, grad = grad, xp.empty(p.size, dtype)

        if self.convention == "keras":
            row_div = p_shape[-1] if self.row_reduction == "mean" else 1
            layout = keras_layout(self.name, placement, p_shape, sample_weight, reduction,
                                  grad_output, row_div)
        else:
            # (a 0-d y_pred ran as shape (1,); PyTorch's unreduced value is 0-d)
            layout = torch_layout(self.name, placement, pred_shape if pred_shape == () else p_shape,
                                  reduction, grad_output, weight)
        n = p.size
        if n == 0:
            rows, value = layout.empty_values(dtype)
        else:
            call = KernelCall(self.element_for(option_values), t.reshape(-1), p.reshape(-1),
                              self.kernel_options(option_values, dtype),
                              layout.C, layout.weight, layout.coef, layout.gscale, layout.vscale,
                              want_rows=layout.rows_shape is not None, value=want_value, grad=grad)
            value, rows, _ = run(call, placement)
        if layout.rows_shape is not None and want_value:
            value = rows.reshape(layout.rows_shape)
            if layout.row_factor != 1 and n:
                value *= dtype.type(layout.row_factor)
        if layout.finish is not None and want_value:
            value = layout.finish(value, dtype)
        if grad is not None and moved:
            final_grad.reshape(unmoved_shape)[...] = xp.moveaxis(grad.reshape(p_shape), -1, axis)
            grad = final_grad
        result_grad = None if grad is None else placement.result(grad.reshape(pred_shape))
        return (placement.result(value) if want_value else None), result_grad

    def _check_pred_range(self, p):
        """y_pred within pred_range, else ValueError (NaN is let through: it propagates)."""
        if p.size == 0:
            return
        lo, hi = self.pred_range
        pmin, pmax = p.min(), p.max()
        if np.isnan(pmin):  # min/max are NaN: compare elementwise, NaN never fails
            outside = (p < lo) | (p > hi)
            if not outside.any():
                return
            pmin, pmax = np.nanmin(p), np.nanmax(p)
        elif lo <= pmin and pmax <= hi:
            return
        raise ValueError(f"{self.name}: y_pred must lie in [{lo:g}, {hi:g}] (probabilities), "
                         f"got values from {pmin} to {pmax}")

    def _grad_buffer(self, out, placement, pred_shape, dtype, pred_name="y_pred"):
        xp = placement.xp
        if out is None:
            return xp.empty(math.prod(pred_shape), dtype)
        if not isinstance(out, xp.ndarray):
            raise TypeError(f"{self.name}: out must be a {xp.__name__} array, got {type(out).__name__}")
        if out.shape != tuple(pred_shape) or out.dtype != dtype:
            raise ValueError(f"{self.name}: out must have {pred_name}'s shape {tuple(pred_shape)} "
                             f"and dtype {dtype}, got shape {out.shape} and dtype {out.dtype}")
        if not out.flags.c_contiguous or (xp is np and not out.flags.writeable):
            raise ValueError(f"{self.name}: out must be a writeable C-contiguous array")
        return out.reshape(-1)


@dataclass
class Layout:
    """How a call maps onto the pointwise kernel: row length C, per-row weight and gradient
    factors, the global factors, the shape of per-row values when the caller wants them and
    the factor turning the kernel's row sums into them."""
    C: int
    weight: object
    coef: object
    gscale: object
    vscale: object
    rows_shape: tuple = None
    empty_values: object = None
    row_factor: float = 1.0
    finish: object = None  # (value, dtype) -> the value returned, when the kernel's is not


def _cotangent_array(grad_output, xp):
    """grad_output as a float64 array of xp (TypeError naming it when it holds no numbers)."""
    return xp.asarray(real_array(xp, grad_output, "grad_output"), dtype=np.float64)


def _scalar_cotangent(name, grad_output, xp):
    if grad_output is None:
        return 1.0
    go = _cotangent_array(grad_output, xp)
    if go.size != 1:
        raise ValueError(f"{name}: grad_output of a reduced loss must be a scalar, got shape {go.shape}")
    return go.reshape(())


def _row_cotangent(name, grad_output, xp, shape):
    """grad_output for reduction='none': ones, a scalar, or an array of the value's shape."""
    if grad_output is None:
        return None
    go = _cotangent_array(grad_output, xp)
    if go.size == 1:
        return go.reshape(())
    if not broadcasts_to(go.shape, shape):
        raise ValueError(f"{name}: grad_output of shape {go.shape} does not match the "
                         f"unreduced loss of shape {tuple(shape)}")
    return xp.ascontiguousarray(xp.broadcast_to(go, shape)).reshape(-1)


def _ones(xp):
    return xp.ones(1, np.float64)


def _as_rows(x, xp):
    """A per-row factor for the kernel: a flat float64 array (size 1 for a scalar)."""
    return xp.asarray(x, dtype=np.float64).reshape(-1)


def keras_layout(name, placement, p_shape, sample_weight, reduction, grad_output, row_div):
    """Keras 3: mean (row_div = C) or sum (row_div = 1) over the last axis, then
    sample_weight, then the reduction."""
    xp = placement.xp
    C = p_shape[-1]
    values_shape = p_shape[:-1]
    weight = None
    if sample_weight is not None:
        w = placement.asarray(sample_weight, "sample_weight")
        values_shape, w_shape = squeeze_or_expand_to_same_rank(values_shape, w.shape)
        if values_shape == () and w_shape != ():
            return _scalar_loss_times_weights(name, xp, C, w.reshape(w_shape), reduction,
                                              grad_output, row_div)
        if not broadcasts_to(w_shape, values_shape):
            raise ValueError(f"{name}: sample_weight of shape {w.shape} does not broadcast to the "
                             f"per-sample loss of shape {tuple(p_shape[:-1])}")
        weight = w.reshape(w_shape).astype(np.float64)
    R = math.prod(values_shape)
    per_row_weight = weight is not None and weight.size != 1  # (an empty batch: size 0)
    w_rows = (xp.ascontiguousarray(xp.broadcast_to(weight, values_shape)).reshape(-1)
              if per_row_weight else None)
    w_scalar = 1.0 if weight is None or per_row_weight else weight.reshape(())

    if reduction == "none":
        go = _row_cotangent(name, grad_output, xp, values_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)
        weight_rows = w_rows if per_row_weight else _as_rows(w_scalar, xp)
        coef = coef * weight_rows

        def empty_values(dtype):
            rows = xp.full(values_shape, np.nan if row_div == 0 else 0.0, dtype)  # mean of nothing
            return rows * xp.asarray(w_scalar if w_rows is None else w_rows.reshape(values_shape),
                                     dtype=dtype), None
        return Layout(C, weight_rows, coef, 1.0 / max(row_div, 1), 1.0, values_shape, empty_values,
                      1.0 / max(row_div, 1))

    if reduction == "sum" or values_shape == ():
        divisor = 1.0  # Keras returns a scalar per-sample loss unreduced
    elif reduction == "mean_with_sample_weight" and weight is not None:
        divisor = xp.sum(weight)
    else:
        divisor = float(R)
    go = _scalar_cotangent(name, grad_output, xp)
    if isinstance(divisor, float):
        inv = 0.0 if divisor == 0 else 1.0 / (max(row_div, 1) * divisor)
    else:  # sum of sample weights, left on the device: divide_no_nan as Keras does
        inv = xp.where(divisor == 0, 0.0, 1.0 / (max(row_div, 1) * xp.where(divisor == 0, 1.0, divisor)))
    keras_empty = values_shape == (0,) or (R == 0)

    def empty_values(dtype):
        if keras_empty or row_div != 0:
            return None, dtype.type(0.0) if xp is np else xp.zeros((), dtype)
        # empty last axis: every sample's mean is NaN, and so is any reduction of them
        return None, dtype.type(np.nan) if xp is np else xp.full((), np.nan, dtype)

    if per_row_weight:
        return Layout(C, w_rows, w_rows, go * inv, inv, None, empty_values)
    # No per-row factors: the whole array is one row, so tasks span rows freely.
    n = R * C
    return Layout(max(n, 1), _ones(xp), _ones(xp), go * w_scalar * inv, w_scalar * inv, None,
                  empty_values)


def _scalar_loss_times_weights(name, xp, C, w, reduction, grad_output, row_div):
    """Keras on a 1-D y_pred with a non-scalar sample_weight: the scalar loss L times the
    weights (Keras broadcasts them), then the reduction of that array: "none" L * w,
    "sum" L * sum(w), "sum_over_batch_size" L * sum(w) / w.size, "mean_with_sample_weight"
    L * sum(w) / sum(w) (0 where a divisor is 0); a result of shape (0,) is returned as it
    is, whatever the reduction (Keras's reduce_values)."""
    w = w.astype(np.float64)
    mean = 1.0 / max(row_div, 1)  # the kernel's row sum -> L
    if reduction == "none" or w.shape == (0,):
        go = (xp.ones((), np.float64) if grad_output is None
              else _row_cotangent(name, grad_output, xp, w.shape))
        go = go if go.ndim == 0 else go.reshape(w.shape)
        gscale = xp.sum(go * w) * mean if reduction == "none" else 0.0

        def finish(value, dtype):
            return value * w.astype(dtype)
    else:
        total = xp.sum(w)
        divisor = (total if reduction == "mean_with_sample_weight"
                   else float(w.size) if reduction != "sum" else 1.0)
        factor = _divide_no_nan(total, divisor, xp)
        gscale = _scalar_cotangent(name, grad_output, xp) * factor * mean

        def finish(value, dtype):
            # (value * total) / divisor, as Keras rounds it; 0 where the divisor is 0
            return _divide_no_nan(value * total.astype(dtype), xp.asarray(divisor, dtype), xp)

    def empty_values(dtype):  # an empty last axis: L is the mean of nothing
        return None, dtype.type(np.nan if row_div == 0 else 0.0) if xp is np else xp.full(
            (), np.nan if row_div == 0 else 0.0, dtype)
    return Layout(max(C, 1), _ones(xp), _ones(xp), gscale, mean, None, empty_values,
                  finish=finish)


def _divide_no_nan(a, b, xp):
    """a / b, and 0 where b is 0 (Keras's divide_no_nan); stays on the device for CuPy."""
    if xp is np:
        return a / b if b != 0 else np.zeros_like(a)[()]
    return xp.where(b == 0, 0, a / xp.where(b == 0, 1, b))


def torch_layout(name, placement, p_shape, reduction, grad_output, weight=None):
    """torch.nn.functional: elementwise values; "mean" over all elements (NaN when empty).
    weight (PyTorch's, broadcast to y_pred's shape) multiplies each element's loss: the
    kernel then runs with rows of one element, each with its weight as row weight."""
    xp = placement.xp
    n = math.prod(p_shape)
    w_rows = None
    if weight is not None:
        w = placement.asarray(weight, "weight")
        if not broadcasts_to(w.shape, p_shape):
            raise ValueError(f"{name}: weight of shape {tuple(w.shape)} does not broadcast to "
                             f"y_pred of shape {tuple(p_shape)}")
        w_rows = xp.ascontiguousarray(xp.broadcast_to(w.astype(np.float64), p_shape)).reshape(-1)
    if reduction == "none":
        go = _row_cotangent(name, grad_output, xp, p_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)
        if w_rows is not None:
            coef = coef * w_rows

        def empty_values(dtype):
            return xp.empty(p_shape, dtype), None
        return Layout(1, _ones(xp) if w_rows is None else w_rows, coef, 1.0, 1.0, p_shape,
                      empty_values)
    go = _scalar_cotangent(name, grad_output, xp)
    inv = (1.0 / n if n else math.nan) if reduction == "mean" else 1.0

    def empty_values(dtype):
        v = inv * 0.0 if reduction == "mean" else 0.0
        return None, dtype.type(v) if xp is np else xp.full((), v, dtype)
    if w_rows is not None:
        return Layout(1, w_rows, w_rows, go * inv, inv, None, empty_values)
    return Layout(max(n, 1), _ones(xp), _ones(xp), go * inv, inv, None, empty_values)


def torch_rows_layout(name, xp, values_shape, reduction, grad_output, mean_divisor=None):
    """torch.nn.functional's losses with one value per row (over classes, embeddings):
    "none" gives the rows' values, "sum" their sum, "mean" their sum / mean_divisor
    (default: the number of rows; NaN when it is 0, as PyTorch's mean of nothing)."""
    if reduction == "none":
        go = _row_cotangent(name, grad_output, xp, values_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)

        def empty_values(dtype):
            return xp.zeros(values_shape, dtype), None
        return Layout(0, _ones(xp), coef, 1.0, 1.0, values_shape, empty_values)
    go = _scalar_cotangent(name, grad_output, xp)
    if reduction == "sum":
        inv = 1.0
    else:
        divisor = math.prod(values_shape) if mean_divisor is None else mean_divisor
        inv = 1.0 / divisor if divisor else math.nan

    def empty_values(dtype):
        v = 0.0 if reduction == "sum" else math.nan
        return None, dtype.type(v) if xp is np else xp.full((), v, dtype)
    return Layout(0, _ones(xp), _ones(xp), go * inv, inv, None, empty_values)

"""The ``Loss`` object: argument checks, the Keras and PyTorch conventions, reductions."""

import math
from dataclasses import dataclass

import numpy as np

from ._arrays import Placement, broadcasts_to, compute_dtype, squeeze_or_expand_to_same_rank
from ._run import KernelCall, run

KERAS_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None)
TORCH_REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Option:
    """A loss's scalar option: its name (as the source library spells it), default, and
    the rule it must obey: "nonnegative", "positive", "any" (finite), "probability"
    (in [0, 1]) or "bool"."""
    name: str
    default: float
    rule: str = "nonnegative"

    def check(self, value, loss_name):
        if self.rule == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{loss_name}: {self.name} must be True or False, got {value!r}")
            return bool(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{loss_name}: {self.name} must be a real number, got {value!r}")
        value = float(value)
        bad = (not math.isfinite(value)
               or (self.rule in ("nonnegative", "positive", "probability") and value < 0)
               or (self.rule == "positive" and value == 0)
               or (self.rule == "probability" and value > 1))
        if bad:
            rule = "in [0, 1]" if self.rule == "probability" else self.rule
            raise ValueError(f"{loss_name}: {self.name} must be {rule} and finite, got {value}")
        return value


class Loss:
    """A loss: ``loss(y_true, y_pred)``, ``loss.grad(...)``, ``loss.value_and_grad(...)``.

    ``grad`` is a vector-Jacobian product with respect to ``y_pred``: ``grad_output`` is
    the cotangent of the value (a scalar for reduced values, an array of the value's shape
    for ``reduction="none"``; default ones).  ``out=`` receives the gradient (it may be
    ``y_pred`` itself).
    """

    def __init__(self, name, element, convention, options=(), summary="", row_reduction="mean"):
        """element: the element function's name in kernels/elements.py, or a function of
        the checked options returning it (e.g. one element per ``from_logits``).
        row_reduction: how Keras reduces the last axis, "mean" or "sum"."""
        self.name = name
        self.element = element
        self.convention = convention
        self.options = (options,) if isinstance(options, Option) else tuple(options)
        self.summary = summary
        self.row_reduction = row_reduction
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
        values = {opt.name: opt.check(given.pop(opt.name, opt.default), self.name)
                  for opt in self.options}
        if given:
            known = ", ".join(repr(opt.name) for opt in self.options)
            raise TypeError(f"{self.name} got an unexpected option {sorted(given)[0]!r}; "
                            + (f"its options are {known}" if known else "it takes no options"))
        return values

    def kernel_options(self, values, dtype):
        """The element function's option tuple, in the compute dtype."""
        from fastloss.kernels.elements import OPTION_SLOTS
        numbers = [float(values[opt.name]) for opt in self.options]
        return tuple(dtype.type(v) for v in numbers + [0.0] * (OPTION_SLOTS - len(numbers)))

    def element_for(self, values):
        return self.element(values) if callable(self.element) else self.element

    def check_reduction(self, reduction):
        if isinstance(reduction, str) and reduction == "default":
            return self.default_reduction
        allowed = KERAS_REDUCTIONS if self.convention == "keras" else TORCH_REDUCTIONS
        if reduction not in allowed:
            raise ValueError(f"{self.name}: reduction must be one of {allowed}, got {reduction!r}")
        return "none" if reduction is None else reduction

    # -- the computation -------------------------------------------------------------

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, *,
                 want_value, want_grad, grad_output=None, out=None):
        option_values = self.check_options(options)
        reduction = self.check_reduction(reduction)
        if self.convention == "torch" and sample_weight is not None:
            raise TypeError(f"{self.name} follows torch.nn.functional and takes no sample_weight")
        placement = Placement({"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight,
                               "grad_output": grad_output, "out": out})
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
        p = xp.ascontiguousarray(p.reshape(p_shape), dtype=dtype)
        t = t.reshape(t_shape)
        if t_shape != p_shape:
            t = xp.broadcast_to(t, p_shape)
        # (a copy, when needed, is writable: kernels then see one array type, one compile)
        t = xp.ascontiguousarray(t, dtype=dtype)
        grad = None
        if want_grad:
            grad = self._grad_buffer(out, placement, pred_shape, dtype)

        if self.convention == "keras":
            row_div = p_shape[-1] if self.row_reduction == "mean" else 1
            layout = keras_layout(self.name, placement, p_shape, sample_weight, reduction,
                                  grad_output, row_div)
        else:
            layout = torch_layout(self.name, placement, p_shape, reduction, grad_output)
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
        result_grad = None if grad is None else placement.result(grad.reshape(pred_shape))
        return (placement.result(value) if want_value else None), result_grad

    def _grad_buffer(self, out, placement, pred_shape, dtype):
        xp = placement.xp
        if out is None:
            return xp.empty(math.prod(pred_shape), dtype)
        if not isinstance(out, xp.ndarray):
            raise TypeError(f"{self.name}: out must be a {xp.__name__} array, got {type(out).__name__}")
        if out.shape != tuple(pred_shape) or out.dtype != dtype:
            raise ValueError(f"{self.name}: out must have y_pred's shape {tuple(pred_shape)} and "
                             f"dtype {dtype}, got shape {out.shape} and dtype {out.dtype}")
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


def _scalar_cotangent(name, grad_output, xp):
    if grad_output is None:
        return 1.0
    go = xp.asarray(grad_output, dtype=np.float64)
    if go.size != 1:
        raise ValueError(f"{name}: grad_output of a reduced loss must be a scalar, got shape {go.shape}")
    return go.reshape(())


def _row_cotangent(name, grad_output, xp, shape):
    """grad_output for reduction='none': ones, a scalar, or an array of the value's shape."""
    if grad_output is None:
        return None
    go = xp.asarray(grad_output, dtype=np.float64)
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
        if not broadcasts_to(w_shape, values_shape):
            raise ValueError(f"{name}: sample_weight of shape {w.shape} does not broadcast to the "
                             f"per-sample loss of shape {tuple(p_shape[:-1])}")
        weight = w.reshape(w_shape).astype(np.float64)
    R = math.prod(values_shape)
    per_row_weight = weight is not None and weight.size > 1
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


def torch_layout(name, placement, p_shape, reduction, grad_output):
    """torch.nn.functional: elementwise values; "mean" over all elements (NaN when empty)."""
    xp = placement.xp
    n = math.prod(p_shape)
    if reduction == "none":
        go = _row_cotangent(name, grad_output, xp, p_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)

        def empty_values(dtype):
            return xp.empty(p_shape, dtype), None
        return Layout(1, _ones(xp), coef, 1.0, 1.0, p_shape, empty_values)
    go = _scalar_cotangent(name, grad_output, xp)
    inv = (1.0 / n if n else math.nan) if reduction == "mean" else 1.0

    def empty_values(dtype):
        v = inv * 0.0 if reduction == "mean" else 0.0
        return None, dtype.type(v) if xp is np else xp.full((), v, dtype)
    return Layout(max(n, 1), _ones(xp), _ones(xp), go * inv, inv, None, empty_values)

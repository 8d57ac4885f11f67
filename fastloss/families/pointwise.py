"""The pointwise family: one element function per loss, over every element.

Keras's losses reduce the last axis first (mean or sum) to a per-sample loss, then
``sample_weight`` and the reduction; PyTorch's are elementwise, with ``weight`` scaling
each element.  The kernel sees R rows of C elements (conventions.Layout).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _batch
from .._arrays import broadcasts_to, compute_dtype, squeeze_or_expand_to_same_rank
from ..conventions import keras_layout, torch_layout
from ..launch import CpuPlan, KernelCall, run_kernel
from ..pipeline import grad_buffer
from . import Family


class Pointwise(Family):
    """row_reduction: how Keras reduces the last axis, "mean" or "sum".
    prepare_labels: ``(y_true, xp) -> (y_true, values)`` applied to the labels (in the
    compute dtype, broadcast to y_pred's shape, possibly the caller's own array: it
    returns a new array) before the kernel runs; ``values`` are element options that
    depend on the labels (hinge's ``binary_labels``).  pred_range: (lo, hi) that every y_pred must lie in
    (checked for NumPy inputs; a check of CuPy inputs would synchronise with the device).
    prepare: ``(request, options) -> (y_true, weight)``, a loss's own rewriting of its
    labels and PyTorch weight (e.g. ``pos_weight``).  weighted_mean: PyTorch's "mean" with
    ``weight`` divides by the weights' sum (mse_loss, l1_loss), not by the element count
    (binary_cross_entropy, huber_loss).  exact_weight: the weight must have y_pred's shape,
    as PyTorch 2.13's mse_loss, l1_loss and huber_loss want (its BCE broadcasts).
    An option named "axis" (Keras) is the axis reduced first, moved last for the kernel."""

    name = "pointwise"
    second_derivatives = True  # grad_hess, for the elements that have one

    def __init__(self, element, kernel_values=None, row_reduction="mean", prepare_labels=None,
                 pred_range=None, prepare=None, same_shape=False, weighted_mean=False,
                 exact_weight=False):
        super().__init__(element, kernel_values)
        self.weighted_mean = weighted_mean
        self.exact_weight = exact_weight or weighted_mean
        self.row_reduction = row_reduction
        self.prepare_labels = prepare_labels
        self.pred_range = pred_range
        self.prepare = prepare
        # y_true must have y_pred's shape (after Keras's squeeze/expand), not broadcast:
        # Keras's binary crossentropies refuse it, a likely mistake (class indices given
        # to a binary loss) that broadcasting would turn into a wrong number.
        self.same_shape = same_shape

    def value_shape(self, loss, shapes, options):
        p_shape = tuple(shapes["y_pred"])
        if loss.convention != "keras":
            return p_shape
        p_shape = p_shape or (1,)
        _, p_shape = squeeze_or_expand_to_same_rank(tuple(shapes["y_true"]), p_shape)
        axis = options.get("axis", -1) % len(p_shape)
        return p_shape[:axis] + p_shape[axis + 1:]

    def compute(self, request):
        if request.reduction == "batchmean":
            return self._batchmean(request)
        return self._compute(request, request.reduction, request.grad_output)

    def _batchmean(self, request):
        """PyTorch's "batchmean": the sum over the first axis's length."""
        shape = request.placement.asarray(request.arrays["y_pred"], "y_pred").shape
        batch = _batch.full_leading(shape) if shape else 1
        inv = 1.0 / batch if batch else math.nan
        go = inv if request.grad_output is None else (
            request.placement.asarray(request.grad_output, "grad_output") * inv)
        value, grads = self._compute(request, "sum", go)
        if value is not None:
            value = value * value.dtype.type(inv)
        return value, grads

    def _plan(self, request, call, layout, moved):
        """A plan for calls like this one, when its kernel call depends on the arrays' data
        alone (no label rewriting, range check, weight, moved axis or finishing step)."""
        t, p = request.arrays["y_true"], request.arrays["y_pred"]
        dtype = call.inputs[0].dtype
        if (self.prepare is not None or self.prepare_labels is not None or moved
                or self.pred_range is not None or layout.finish is not None
                or request.options.get("weight") is not None or p.ndim == 0
                or not plain_arrays((t, p), dtype, p.shape)):
            return None
        cpu = CpuPlan.of(call, layout)
        if cpu is None:
            return None
        mode, shapes = request.mode, (p.shape,)
        return lambda arrays, out: cpu.call(mode, arrays[0].reshape(-1),
                                            (arrays[1].reshape(-1),), out, shapes)

    def _compute(self, request, reduction, grad_output):
        name, placement, xp = request.name, request.placement, request.xp
        keras = request.loss.convention == "keras"
        options = request.options
        y_true, weight = request.arrays["y_true"], options.get("weight")
        if self.prepare is not None:
            y_true, weight = self.prepare(request, options)
        p = placement.asarray(request.arrays["y_pred"], "y_pred")
        t = placement.asarray(y_true, "y_true")
        dtype = compute_dtype(p)
        pred_shape = p.shape
        if p.ndim == 0:
            p = p.reshape(1)
        if keras:
            t_shape, p_shape = squeeze_or_expand_to_same_rank(t.shape, p.shape)
        else:
            t_shape, p_shape = t.shape, p.shape
        if self.same_shape and t_shape != p_shape:
            raise ValueError(f"{name}: y_true of shape {t.shape} and y_pred of shape "
                             f"{pred_shape} must have the same shape")
        if not broadcasts_to(t_shape, p_shape):
            raise ValueError(f"{name}: y_true of shape {t.shape} does not broadcast to "
                             f"y_pred of shape {pred_shape}")
        if not p_shape:  # (Keras's mean over the last axis of a scalar fails too)
            raise ValueError(f"{name}: y_pred of shape {pred_shape} with y_true of shape "
                             f"{t.shape} has no last axis to reduce (Keras fails on it too); "
                             "pass arrays of at least one dimension")
        p = xp.ascontiguousarray(p.reshape(p_shape), dtype=dtype)
        t = t.reshape(t_shape)
        if t_shape != p_shape:
            t = xp.broadcast_to(t, p_shape)
        # Keras's axis: moved last (a contiguous copy), the gradient moved back at the end.
        axis = options.get("axis", -1)
        if not -len(p_shape) <= axis < len(p_shape):
            raise ValueError(f"{name}: axis {axis} is out of range for y_pred of "
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
        label_values = {}
        if self.prepare_labels is not None:
            t, label_values = self.prepare_labels(t, xp)
        grad = hess = None
        if request.want_grad:
            grad = grad_buffer(request, pred_shape, dtype)
            if moved:  # out (possibly y_pred itself) receives the gradient moved back
                final_grad, grad = grad, xp.empty(p.size, dtype)
        if request.mode.hess:
            hess = grad_buffer(request, pred_shape, dtype, index=1)
            if moved:
                final_hess, hess = hess, xp.empty(p.size, dtype)

        if keras:
            # (a 1-D y_pred is one row: in a chunk's call, the whole batch's)
            row_len = _batch.full_leading(p_shape) if len(p_shape) == 1 else p_shape[-1]
            row_div = row_len if self.row_reduction == "mean" else 1
            layout = keras_layout(name, placement, p_shape, request.sample_weight, reduction,
                                  grad_output, row_div)
        else:
            # (a 0-d y_pred ran as shape (1,); PyTorch's unreduced value is 0-d)
            layout = torch_layout(name, placement, pred_shape if pred_shape == () else p_shape,
                                  reduction, grad_output, weight,
                                  weighted_mean=self.weighted_mean,
                                  exact_weight=pred_shape if self.exact_weight else None)
        n = p.size
        want_value = request.want_value
        # A y_pred out of range makes every element's loss NaN, so a call reduced to one
        # value reads it only when that value is NaN (a NaN y_pred, or out of range, and
        # then the gradient written is NaN too); other calls read it before the kernel.
        range_after = want_value and layout.rows_shape is None
        if self.pred_range is not None and xp is np and not range_after:
            _check_range(name, p, self.pred_range)
        if n == 0:
            rows, value = layout.empty_values(dtype)
        else:
            element, o = self.kernel_element(request.loss, {**options, **label_values}, dtype)
            if hess is not None and not self.has_grad_hess(element):
                raise TypeError(f"{name}: grad_hess is not available with these options "
                                f"(the {element} element has no second derivative)")
            flat = p.reshape(-1)
            # grad_hess: the pair body over (p, p), writing the gradient and the second
            # derivative with the same per-row factors.
            call = KernelCall("pointwise" if hess is None else "pair", element,
                              (flat,) if hess is None else (flat, flat), t.reshape(-1), o,
                              layout.C, layout.weight, layout.coef, layout.gscale, layout.vscale,
                              want_rows=layout.rows_shape is not None and want_value,
                              value=want_value,
                              grads=() if grad is None else (grad,) if hess is None
                              else (grad, hess), hess=hess is not None)
            value, rows = run_kernel(call, placement)
            if request.plannable and grad_output is None and reduction == request.reduction:
                request.plan = self._plan(request, call, layout, moved)
        if self.pred_range is not None and xp is np and range_after and np.isnan(value):
            _check_range(name, p, self.pred_range)
        if layout.rows_shape is not None and want_value:
            value = rows.reshape(layout.rows_shape)
            if layout.row_factor != 1 and n:
                value *= dtype.type(layout.row_factor)
        if layout.finish is not None and want_value:
            value = layout.finish(value, dtype)
        if grad is not None and moved:
            final_grad.reshape(unmoved_shape)[...] = xp.moveaxis(grad.reshape(p_shape), -1, axis)
            grad = final_grad
            if hess is not None:
                final_hess.reshape(unmoved_shape)[...] = xp.moveaxis(hess.reshape(p_shape), -1,
                                                                     axis)
                hess = final_hess
        if hess is not None:
            return None, (grad.reshape(pred_shape), hess.reshape(pred_shape))
        return (value if want_value else None), (None if grad is None
                                                 else (grad.reshape(pred_shape),))


def plain_arrays(arrays, dtype, shape):
    """The caller's arrays are what the kernels take as they are: C-contiguous, writable,
    aligned, of the compute dtype and of one shape (no copy, broadcast or conversion)."""
    return all(type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
               and a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
               for a in arrays)


def _check_range(name, p, bounds):
    """y_pred within bounds, else ValueError (NaN is let through: it propagates)."""
    if p.size == 0:
        return
    lo, hi = bounds
    pmin, pmax = p.min(), p.max()
    if np.isnan(pmin):  # min/max are NaN: compare elementwise, NaN never fails
        outside = (p < lo) | (p > hi)
        if not outside.any():
            return
        pmin, pmax = np.nanmin(p), np.nanmax(p)
    elif lo <= pmin and pmax <= hi:
        return
    raise ValueError(f"{name}: y_pred must lie in [{lo:g}, {hi:g}] (probabilities), "
                     f"got values from {pmin} to {pmax}")


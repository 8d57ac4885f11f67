"""The overlap family (Dice, Tversky, F-beta): functions of sums over whole groups of
elements.

Each loss reduces the axes named by ``axis`` (default None: every axis) and is written
once, as the coefficients of one form: with TP = sum t*p, FP = sum (1-t)*p = Sp - TP and
FN = sum t*(1-p) = St - TP over a group (St = sum t, Sp = sum p),

    loss = 1 - c TP / D,    D = a TP + b FP + d FN + 1e-7.

Since dD/dp_j = (a - b - d) t_j + b, the gradient is affine in t within a group:

    d loss / d p_j = A t_j + B,   A = -c (b Sp + d St + 1e-7) / D**2,   B = c b TP / D**2.

So a call is: one kernel computing (TP, St, Sp) per group (kernels/overlap.py), the loss
and (A, B) per group from them with the array module, Keras's sample weight and
reduction (``keras_layout``, the per-group loss being the per-sample loss), and one kernel
writing the gradient ``scale * (A t + B)``.

Keras's conventions otherwise hold, with two decisions: y_true must have y_pred's shape
(after Keras's squeeze/expand of a trailing axis of 1), since Keras would sum y_true
unbroadcast beside y_true * y_pred broadcast; and an empty batch reduces to 0, as every
Keras-convention loss here does (Keras returns the empty per-sample array).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _batch
from .._arrays import compute_dtype, squeeze_or_expand_to_same_rank
from ..conventions import keras_layout
from ..launch import Launcher
from ..pipeline import grad_buffer
from . import Family

EPSILON = 1e-7  # Keras's backend.epsilon()


class Overlap(Family):
    """A Keras-convention loss of the form ``1 - c TP / (a TP + b FP + d FN + 1e-7)`` per
    group; ``coefficients`` maps the checked options to ``(c, a, b, d)``."""

    name = "overlap"

    def __init__(self, coefficients):
        super().__init__("overlap")
        self.coefficients = coefficients

    def value_shape(self, loss, shapes, options):
        _, p_shape = squeeze_or_expand_to_same_rank(tuple(shapes["y_true"]),
                                                   tuple(shapes["y_pred"]))
        axes = _reduced_axes(loss.name, options["axis"], p_shape)
        return tuple(n for i, n in enumerate(p_shape) if i not in axes)

    def compute(self, request):
        name, placement, xp = request.name, request.placement, request.xp
        options = request.options
        p = placement.asarray(request.arrays["y_pred"], "y_pred")
        t = placement.asarray(request.arrays["y_true"], "y_true")
        dtype = compute_dtype(p)
        pred_shape = tuple(p.shape)
        t_shape, p_shape = squeeze_or_expand_to_same_rank(tuple(t.shape), pred_shape)
        if t_shape != p_shape:
            # (Keras would sum y_true unbroadcast and y_true * y_pred broadcast: no
            # consistent loss, so refuse rather than differ silently)
            raise ValueError(f"{name}: y_true of shape {tuple(t.shape)} must have y_pred's "
                             f"shape {pred_shape}")
        axes = _reduced_axes(name, options["axis"], p_shape)
        kept = [i for i in range(len(p_shape)) if i not in axes]
        group_shape = tuple(p_shape[i] for i in kept)
        R = math.prod(group_shape)
        C = math.prod(p_shape[i] for i in axes)
        n = R * C

        # The reduced axes last, flattened: R groups of C contiguous elements (a copy only
        # when that changes the order of axes longer than 1).
        order = kept + list(axes)
        moved = [i for i in order if p_shape[i] > 1] != [i for i in sorted(order) if p_shape[i] > 1]
        p, t = p.reshape(p_shape), t.reshape(p_shape)
        if moved:
            p, t = xp.transpose(p, order), xp.transpose(t, order)
        p = xp.ascontiguousarray(p, dtype=dtype).reshape(-1)
        t = xp.ascontiguousarray(t, dtype=dtype).reshape(-1)

        layout = keras_layout(name, placement, group_shape + (C,), request.sample_weight,
                              request.reduction, request.grad_output, 1)
        grad = result_grad = None
        if request.want_grad:
            result_grad = grad_buffer(request, pred_shape, dtype)
            grad = xp.empty(n, dtype) if moved else result_grad

        launcher = Launcher(placement, n, "overlap", "overlap_cuda")
        chunk = _batch.current()  # (a Dask chunk's call: statistics kept, or the batch's given)
        if chunk is not None and chunk.statistics is not None:
            stats = xp.asarray(chunk.statistics)
        else:
            stats = _statistics(launcher, t, p, R, C)
            if chunk is not None and chunk.probing:
                chunk.seen["statistics"] = stats
                raise _batch.Probed
        tp, st, sp = stats
        loss, slope, intercept = self._loss_and_gradient(tp, st, sp, options, xp,
                                                         request.want_grad)
        value = _reduce(loss, layout, dtype, xp) if request.want_value else None
        if request.want_grad:
            scale = xp.asarray(layout.coef, dtype=np.float64) * layout.gscale
            if n:  # (new, writable (R,) arrays: the kernels see one array type)
                blocks = launcher.kernels.plan(R, C)[0] if launcher.cuda else None
                launcher.run("gradient", (t, slope * scale, intercept * scale, C, grad),
                             outputs=(4,), blocks=blocks)
            if moved:
                back = xp.transpose(grad.reshape([p_shape[i] for i in order]), np.argsort(order))
                result_grad.reshape(p_shape)[...] = back
            result_grad = (result_grad.reshape(pred_shape),)
        return value, result_grad

    def _loss_and_gradient(self, tp, st, sp, options, xp, want_grad):
        """Per group: the loss and, with want_grad, the slope A and intercept B of its
        gradient ``A t + B`` (float64 arrays of xp)."""
        c, a, b, d = self.coefficients(options)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 gives NaN, as in Keras
            denominator = a * tp + b * (sp - tp) + d * (st - tp) + EPSILON
            ratio = c / denominator
            loss = 1 - ratio * tp
            if not want_grad:
                return loss, None, None
            # A = -c (D - (a - b - d) TP) / D**2, written without that cancellation
            slope = -ratio * (b * sp + d * st + EPSILON) / denominator
            intercept = ratio * (b * tp) / denominator
        return loss, slope, intercept


def _statistics(launcher, t, p, R, C):
    """(TP, St, Sp) per group, float64 arrays (3, R) of the launcher's array module."""
    if not launcher.cuda:
        stats = np.empty((3, R))
        launcher.cpu("statistics", t, p, C, stats)
        return stats
    kernels = launcher.kernels
    blocks, chunks_per_group = kernels.plan(R, C)
    stats = launcher.new((3, R), np.float64)
    if blocks:
        partials = launcher.new((3, blocks if chunks_per_group else 0), np.float64)
        launcher.launch("statistics", blocks, t, p, C, partials, stats)
        if chunks_per_group:
            launcher.launch("statistics_from_chunks", (R + kernels.THREADS - 1) // kernels.THREADS,
                            partials, chunks_per_group, stats)
    return stats if launcher.on_device else launcher.to_host(stats)


def _reduced_axes(name, axis, shape):
    """The sorted, non-negative axes that ``axis`` names in y_pred of ``shape``."""
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}: axis {a} is out of range for y_pred of "
                             f"{ndim} dimensions (shape {tuple(shape)})")
    normalised = [a % ndim for a in axes]
    if len(set(normalised)) != len(normalised):
        raise ValueError(f"{name}: axis {axis} names an axis twice")
    return tuple(sorted(normalised))


def _reduce(loss, layout, dtype, xp):
    """Keras's sample weight and reduction of the per-group losses."""
    weighted = loss * layout.weight
    if layout.rows_shape is not None:
        value = (weighted * layout.row_factor).astype(dtype).reshape(layout.rows_shape)
    else:
        total = xp.sum(weighted) * layout.vscale
        value = dtype.type(total) if xp is np else total.astype(dtype).reshape(())
    if layout.finish is not None:
        value = layout.finish(value, dtype)
    return value

"""Overlap losses (Dice, Tversky, F-beta): functions of sums over whole groups of elements.

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

import math
import os

import numpy as np

from . import _config
from ._arrays import Placement, compute_dtype, import_cupy, squeeze_or_expand_to_same_rank
from ._loss import Loss, Option, keras_layout
from ._run import _PARALLEL_LOCK

EPSILON = 1e-7  # Keras's backend.epsilon()


class AxesOption(Option):
    """Keras's ``axis`` of these losses: None (every axis), an integer, or a tuple (or
    list) of integers; checked against y_pred's rank when the inputs are known."""

    def check(self, value, loss_name):
        if value is None:
            return None
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{loss_name}: {self.name} must be None, an integer or a tuple "
                                f"of integers, got {value!r}")
        axes = tuple(int(v) for v in values)
        return axes if isinstance(value, (tuple, list)) else axes[0]


_AXIS = AxesOption("axis", None)


class OverlapLoss(Loss):
    """A Keras-convention loss of the form ``1 - c TP / (a TP + b FP + d FN + 1e-7)`` per
    group; ``coefficients`` maps the checked options to ``(c, a, b, d)``."""

    def __init__(self, name, coefficients, options, summary):
        super().__init__(name, "overlap", "keras", options, summary)
        self.coefficients = coefficients

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, *,
                 want_value, want_grad, grad_output=None, out=None):
        option_values = self.check_options(options)
        reduction = self.check_reduction(reduction)
        placement = Placement({"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight,
                               "grad_output": grad_output, "out": out})
        xp = placement.xp
        p = placement.asarray(y_pred, "y_pred")
        t = placement.asarray(y_true, "y_true")
        dtype = compute_dtype(p)
        pred_shape = tuple(p.shape)
        t_shape, p_shape = squeeze_or_expand_to_same_rank(tuple(t.shape), pred_shape)
        if t_shape != p_shape:
            # (Keras would sum y_true unbroadcast and y_true * y_pred broadcast: no
            # consistent loss, so refuse rather than differ silently)
            raise ValueError(f"{self.name}: y_true of shape {tuple(t.shape)} must have y_pred's "
                             f"shape {pred_shape}")
        axes = self._reduced_axes(option_values["axis"], p_shape)
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

        layout = keras_layout(self.name, placement, group_shape + (C,), sample_weight,
                              reduction, grad_output, 1)
        grad = result_grad = None
        if want_grad:
            result_grad = self._grad_buffer(out, placement, pred_shape, dtype)
            grad = xp.empty(n, dtype) if moved else result_grad

        kernels = (_CudaKernels(t, p, R, C, xp) if placement.target == "cuda"
                   else _CpuKernels(t, p, R, C))
        tp, st, sp = kernels.statistics()
        loss, slope, intercept = self._loss_and_gradient(tp, st, sp, option_values, xp,
                                                         want_grad)
        value = self._reduce(loss, layout, dtype, xp) if want_value else None
        if want_grad:
            scale = xp.asarray(layout.coef, dtype=np.float64) * layout.gscale
            if n:  # (new, writable (R,) arrays: the kernels see one array type)
                kernels.gradient(slope * scale, intercept * scale, grad)
            if moved:
                back = xp.transpose(grad.reshape([p_shape[i] for i in order]), np.argsort(order))
                result_grad.reshape(p_shape)[...] = back
            result_grad = placement.result(result_grad.reshape(pred_shape))
        return (placement.result(value) if want_value else None), result_grad

    def _reduced_axes(self, axis, shape):
        """The sorted, non-negative axes that ``axis`` names in y_pred of ``shape``."""
        ndim = len(shape)
        if axis is None:
            return tuple(range(ndim))
        axes = axis if isinstance(axis, tuple) else (axis,)
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(f"{self.name}: axis {a} is out of range for y_pred of "
                                 f"{ndim} dimensions (shape {tuple(shape)})")
        normalised = [a % ndim for a in axes]
        if len(set(normalised)) != len(normalised):
            raise ValueError(f"{self.name}: axis {axis} names an axis twice")
        return tuple(sorted(normalised))

    def _loss_and_gradient(self, tp, st, sp, option_values, xp, want_grad):
        """Per group: the loss and, with want_grad, the slope A and intercept B of its
        gradient ``A t + B`` (float64 arrays of xp)."""
        c, a, b, d = self.coefficients(option_values)
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

    @staticmethod
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


# -- running the kernels ------------------------------------------------------------------

class _CpuKernels:
    """The CPU kernels on NumPy arrays: serial below ``_config.PARALLEL_THRESHOLD``
    elements, parallel (launches serialised) above."""

    def __init__(self, t, p, R, C):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see _run.run_cpu
        from fastloss.kernels import overlap
        self.kernels = overlap
        self.t, self.p, self.R, self.C = t, p, R, C
        self.suffix = "parallel" if t.size >= _config.PARALLEL_THRESHOLD else "serial"

    def _launch(self, name, *args):
        kernel = getattr(self.kernels, f"{name}_{self.suffix}")
        if self.suffix == "parallel":
            with _PARALLEL_LOCK:
                kernel(*args)
        else:
            kernel(*args)

    def statistics(self):
        stats = np.empty((3, self.R))
        self._launch("statistics", self.t, self.p, self.C, stats)
        return stats

    def gradient(self, slope, intercept, grad):
        self._launch("gradient", self.t, slope, intercept, self.C, grad)


class _CudaKernels:
    """The CUDA kernels.  CuPy arrays stay on the device and the kernels run on CuPy's
    current stream, nothing waiting for them; NumPy arrays (a forced "cuda" backend, as
    under the simulator) are copied over once and the results back."""

    def __init__(self, t, p, R, C, xp):
        from numba import cuda

        from fastloss.kernels import overlap_cuda
        self.cuda, self.kernels = cuda, overlap_cuda
        self.on_device = xp is not np
        if self.on_device:
            self.cupy = import_cupy()
            self.stream = cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)
        else:
            self.stream = cuda.default_stream()
        self.R, self.C = R, C
        self.t, self.p = self._device(t), self._device(p)
        self.blocks, self.chunks_per_group = overlap_cuda.plan(R, C)

    def _device(self, x):
        if self.on_device:
            return self.cuda.as_cuda_array(x, sync=False)
        return self.cuda.to_device(np.ascontiguousarray(x), stream=self.stream)

    def _empty(self, shape, dtype):
        """(the array as returned to the caller, its device view for the kernels)"""
        if self.on_device:
            x = self.cupy.empty(shape, dtype)
            return x, self.cuda.as_cuda_array(x, sync=False)
        x = self.cuda.device_array(shape, dtype, stream=self.stream)
        return x, x

    def statistics(self):
        threads = self.kernels.THREADS
        stats, stats_dev = self._empty((3, self.R), np.float64)
        if self.blocks:
            partials = self._empty((3, self.blocks if self.chunks_per_group else 0),
                                   np.float64)[1]
            self.kernels.statistics[self.blocks, threads, self.stream](
                self.t, self.p, self.C, partials, stats_dev)
            if self.chunks_per_group:
                self.kernels.statistics_from_chunks[(self.R + threads - 1) // threads, threads,
                                                    self.stream](
                    partials, self.chunks_per_group, stats_dev)
        if self.on_device:
            return stats
        host = stats.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return host

    def gradient(self, slope, intercept, grad):
        grad_dev = self._device(grad) if self.on_device else self._empty(grad.shape, grad.dtype)[1]
        self.kernels.gradient[self.blocks, self.kernels.THREADS, self.stream](
            self.t, self._device(slope), self._device(intercept), self.C, grad_dev)
        if not self.on_device:
            grad_dev.copy_to_host(grad, stream=self.stream)
            self.stream.synchronize()


# -- the losses -------------------------------------------------------------------------

dice = OverlapLoss(
    "dice", lambda v: (2.0, 2.0, 1.0, 1.0), (_AXIS,),
    summary="1 - 2 sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + 1e-7), the sums over "
            "axis (None: every axis, one scalar loss)")
tversky = OverlapLoss(
    "tversky", lambda v: (1.0, 1.0, v["beta"], v["alpha"]),
    (Option("alpha", 0.5, "any"), Option("beta", 0.5, "any"), _AXIS),
    summary="1 - TP / (TP + alpha * sum(y_true * (1 - y_pred)) + beta * sum((1 - y_true) * "
            "y_pred) + 1e-7), TP = sum(y_true * y_pred), the sums over axis (as Keras's code: "
            "alpha weighs the missed targets, beta the false alarms)")
fbeta_loss = OverlapLoss(
    "fbeta_loss", lambda v: (1 + v["beta"] ** 2, 1 + v["beta"] ** 2, 1.0, v["beta"] ** 2),
    (Option("beta", 1.0, "nonnegative"), _AXIS),
    summary="soft F-beta: 1 - (1 + beta**2) TP / ((1 + beta**2) TP + beta**2 FN + FP + 1e-7), "
            "TP = sum(y_true * y_pred), FP = sum((1 - y_true) * y_pred), FN = "
            "sum(y_true * (1 - y_pred)), the sums over axis; Keras conventions")

LOSSES = {"dice": dice, "tversky": tversky, "fbeta_loss": fbeta_loss}


# -- benchmark data and NumPy references (default options: sums over every element) ------

def make_inputs(n, dtype, rng):
    """(y_true, y_pred) of about n elements: (n // 1000, 1000) targets in {0, 1} as floats,
    predictions in (0, 1)."""
    shape = (max(1, n // 1000), 1000)
    return ((rng.random(shape) < 0.5).astype(dtype),
            rng.uniform(0.05, 0.95, shape).astype(dtype))


def numpy_dice(t, p):
    return 1 - 2 * np.sum(t * p) / (np.sum(t) + np.sum(p) + EPSILON)


def numpy_dice_vg(t, p):
    tp = np.sum(t * p)
    denominator = np.sum(t) + np.sum(p) + EPSILON
    return 1 - 2 * tp / denominator, (2 * tp / denominator - 2 * t) / denominator


def numpy_tversky(t, p, alpha=0.5, beta=0.5):
    tp = np.sum(t * p)
    return 1 - tp / (tp + alpha * np.sum(t * (1 - p)) + beta * np.sum((1 - t) * p) + EPSILON)


def numpy_tversky_vg(t, p, alpha=0.5, beta=0.5):
    tp = np.sum(t * p)
    denominator = tp + alpha * np.sum(t * (1 - p)) + beta * np.sum((1 - t) * p) + EPSILON
    d_denominator = (1 - alpha - beta) * t + beta
    return 1 - tp / denominator, (tp * d_denominator - t * denominator) / denominator ** 2


def numpy_fbeta(t, p, beta=1.0):
    b2 = beta ** 2
    tp = np.sum(t * p)
    return 1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * np.sum(t * (1 - p)) + np.sum((1 - t) * p)
                                + EPSILON)


def numpy_fbeta_vg(t, p, beta=1.0):
    b2 = beta ** 2
    tp = np.sum(t * p)
    denominator = (1 + b2) * tp + b2 * np.sum(t * (1 - p)) + np.sum((1 - t) * p) + EPSILON
    # d denominator / d p_j = (1 + b2) t_j - b2 t_j + (1 - t_j) = 1
    return 1 - (1 + b2) * tp / denominator, (1 + b2) * (tp - t * denominator) / denominator ** 2


BENCH = {
    "dice": (make_inputs, numpy_dice, numpy_dice_vg),
    "tversky": (make_inputs, numpy_tversky, numpy_tversky_vg),
    "fbeta_loss": (make_inputs, numpy_fbeta, numpy_fbeta_vg),
}

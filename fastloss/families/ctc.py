"""The dynamic-programming family: CTC (connectionist temporal classification).

Two front doors onto one kernel (kernels/ctc.py, kernels/ctc_cuda.py):

* ``ctc_loss`` (PyTorch's ``F.ctc_loss``, labels first): log-probabilities (T, N, C) or
  (T, C), targets padded (N, S) or concatenated 1-D, a length per sequence, ``blank``,
  ``zero_infinity``; "mean" divides each loss by its target length (at least 1), then
  averages; the gradient is PyTorch's with respect to the log-probabilities.
* ``ctc`` (Keras 3's ``keras.losses.ctc``): labels (batch, max_length) padded with the
  blank 0 (a target's length is its count of non-zero labels), logits (batch, T, C)
  whose log-softmax the kernel takes; every frame is used; Keras's reductions and
  ``sample_weight``.

Every label and length is checked on the host before any kernel runs (a CuPy input's
labels and lengths are copied to the host for that: they are small).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .._arrays import compute_dtype, on_gpu
from ..conventions import keras_layout, row_cotangent, scalar_cotangent
from ..launch import Launcher
from ..pipeline import grad_buffer
from . import Family


def _host_integers(x, name, loss_name, ndims, keras=False):
    """An int64 NumPy copy of labels or lengths (lists, ints, NumPy or CuPy arrays);
    ``keras``: float labels truncated toward zero, as Keras casts them."""
    if on_gpu(x):
        x = x.get()
    a = np.asarray(x)
    if keras and a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{loss_name}: {name} holds a non-finite label")
        if (np.abs(a) >= 2.0 ** 62).any():
            raise ValueError(f"{loss_name}: {name} holds a label out of int64's range")
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{loss_name}: {name} must hold integers, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and a.max() >= 2 ** 63:
        raise ValueError(f"{loss_name}: {name} holds {int(a.max())}, out of int64's range")
    if a.ndim not in ndims:
        raise ValueError(f"{loss_name}: {name} must have {' or '.join(map(str, ndims))} "
                         f"dimension(s), got shape {a.shape}")
    return a.astype(np.int64)


class Sequences(Family):
    """CTC under one of two conventions: "torch" (``ctc_loss``) or "keras" (``ctc``)."""

    name = "sequences"

    def __init__(self, convention):
        super().__init__("ctc")
        self.convention = convention

    def value_shape(self, loss, shapes, options):
        if self.convention == "keras":
            return tuple(shapes["y_pred"][:1])
        lp = tuple(shapes["log_probs"])
        return () if len(lp) == 2 else (lp[1],)

    def compute(self, request):
        if self.convention == "keras":
            return self._keras(request)
        return self._torch(request)

    # -- PyTorch: F.ctc_loss --------------------------------------------------------------

    def _torch(self, request):
        name, placement, xp = request.name, request.placement, request.xp
        options = request.options
        lp = placement.asarray(request.arrays["log_probs"], "log_probs")
        if lp.ndim not in (2, 3):
            raise ValueError(f"{name}: log_probs must be (T, N, C) or (T, C), got shape "
                             f"{tuple(lp.shape)}")
        batched = lp.ndim == 3
        T, N, C = (lp.shape if batched else (lp.shape[0], 1, lp.shape[1]))
        blank = options["blank"]
        if not 0 <= blank < C:
            raise ValueError(f"{name}: blank {blank} is not a class of log_probs' {C}")
        targets = _host_integers(request.arrays["targets"], "targets", name,
                                 (1, 2) if batched else (1,))
        input_lengths = _host_integers(request.arrays["input_lengths"], "input_lengths",
                                       name, (0, 1))
        target_lengths = _host_integers(request.arrays["target_lengths"], "target_lengths",
                                        name, (0, 1))
        for lengths, what in ((input_lengths, "input_lengths"),
                              (target_lengths, "target_lengths")):
            if lengths.size != N or (batched and lengths.ndim != 1):
                raise ValueError(f"{name}: {what} must hold one length per sequence "
                                 f"({N}), got shape {lengths.shape}")
        input_lengths, target_lengths = input_lengths.reshape(N), target_lengths.reshape(N)
        if batched and targets.ndim == 2:
            if targets.shape[0] != N:
                raise ValueError(f"{name}: targets of shape {targets.shape} must have a row "
                                 f"per sequence of log_probs of shape {tuple(lp.shape)}")
            padded = targets
        else:  # concatenated (or one unbatched target)
            padded = _pad_concatenated(name, targets, target_lengths)
        _check_targets(name, padded, input_lengths, target_lengths, T, C, blank)

        dtype = compute_dtype(lp)
        x = xp.ascontiguousarray(lp, dtype=dtype).reshape(-1)
        shape = (N * C, C, T, C)  # (stride_t, stride_n, T, C) of (T, N, C)
        reduction = request.reduction
        divisors = np.maximum(target_lengths, 1).astype(np.float64)
        if reduction == "none":
            go = row_cotangent(name, request.grad_output, np, (N,) if batched else ())
            coef = np.ones(N) if go is None else np.broadcast_to(go, (N,)).astype(np.float64)
        else:
            go = _host_scalar(scalar_cotangent(name, request.grad_output, xp))
            coef = np.full(N, go) / (divisors * N if reduction == "mean" else 1.0)
        losses, grad = _run(request, x, shape, lp.shape, dtype, padded, input_lengths,
                            target_lengths, blank, False, options["zero_infinity"], coef)
        value = None
        if request.want_value:
            if reduction == "none":
                value = losses.astype(dtype).reshape((N,) if batched else ())
            elif reduction == "sum":
                value = dtype.type(math.fsum(losses) if np.isfinite(losses).all()
                                   else losses.sum())
            else:
                value = dtype.type(np.sum(losses / divisors) / N if N else math.nan)
            value = _to_xp(value, xp, dtype)
        return value, grad

    # -- Keras 3: keras.losses.ctc ---------------------------------------------------------

    def _keras(self, request):
        name, placement, xp = request.name, request.placement, request.xp
        y_pred = placement.asarray(request.arrays["y_pred"], "y_pred")
        if y_pred.ndim != 3:
            raise ValueError(f"{name}: y_pred must be logits of shape (batch_size, max_length, "
                             f"num_classes), got shape {tuple(y_pred.shape)}")
        N, T, C = y_pred.shape
        labels = _host_integers(request.arrays["y_true"], "y_true", name, (2,), keras=True)
        if labels.shape[0] != N:
            raise ValueError(f"{name}: y_true of shape {labels.shape} must have the batch size "
                             f"of y_pred of shape {tuple(y_pred.shape)}")
        target_lengths = (labels != 0).sum(axis=1).astype(np.int64)
        inside = np.arange(labels.shape[1]) < target_lengths[:, None]
        if (labels[inside] == 0).any() or (labels[~inside] != 0).any():
            raise ValueError(f"{name}: y_true holds the blank (mask) label 0 inside a target; "
                             "pad targets with 0 at their end only")
        input_lengths = np.full(N, T, np.int64)
        _check_targets(name, labels, input_lengths, target_lengths, T, C, 0, "y_true")

        dtype = compute_dtype(y_pred)
        x = xp.ascontiguousarray(y_pred, dtype=dtype).reshape(-1)
        shape = (C, T * C, T, C)  # (stride_t, stride_n, T, C) of (N, T, C)
        layout = keras_layout(name, placement, (N, 1), request.sample_weight,
                              request.reduction, request.grad_output, 1)
        weight = np.broadcast_to(_host(layout.weight), (N,)).astype(np.float64)
        coef = (np.broadcast_to(_host(layout.coef), (N,)) * _host_scalar(layout.gscale)
                ).astype(np.float64)
        losses, grad = _run(request, x, shape, y_pred.shape, dtype, labels, input_lengths,
                            target_lengths, 0, True, False, coef)
        value = None
        if request.want_value:
            if layout.rows_shape is not None:
                value = xp.asarray((losses * weight * layout.row_factor).astype(dtype)
                                   .reshape(layout.rows_shape))
            else:
                value = _to_xp(dtype.type(np.sum(losses * weight)
                                          * _host_scalar(layout.vscale)), xp, dtype)
            if layout.finish is not None:
                value = layout.finish(value, dtype)
        return value, grad


def _pad_concatenated(name, targets, target_lengths):
    """Concatenated targets (PyTorch's 1-D form) as padded rows."""
    if targets.ndim != 1:
        raise ValueError(f"{name}: targets must be 1-D for an unbatched log_probs, got shape "
                         f"{targets.shape}")
    if (target_lengths < 0).any():
        raise ValueError(f"{name}: target_lengths must not be negative, got "
                         f"{int(target_lengths.min())}")
    total = int(target_lengths.sum())
    if targets.size < total:
        raise ValueError(f"{name}: concatenated targets hold {targets.size} labels, fewer "
                         f"than the {total} that target_lengths add up to")
    S = int(target_lengths.max(initial=0))
    padded = np.zeros((target_lengths.size, max(S, 1)), np.int64)
    starts = np.concatenate([[0], np.cumsum(target_lengths)[:-1]])
    for n, (start, length) in enumerate(zip(starts, target_lengths)):
        padded[n, :length] = targets[start:start + length]
    return padded


def _check_targets(name, padded, input_lengths, target_lengths, T, C, blank, what="targets"):
    """Lengths and labels (of the argument ``what``) in range, before any kernel runs."""
    if (input_lengths < 0).any() or (input_lengths > T).any():
        raise ValueError(f"{name}: input_lengths must lie in [0, {T}] (the frames of the "
                         f"input), got {input_lengths.tolist()}")
    if (target_lengths < 0).any() or (target_lengths > padded.shape[1]).any():
        raise ValueError(f"{name}: target_lengths must lie in [0, {padded.shape[1]}] "
                         f"(the targets' length), got {target_lengths.tolist()}")
    longer = np.nonzero(target_lengths > input_lengths)[0]
    if longer.size:
        n = int(longer[0])
        raise ValueError(f"{name}: the target of sequence {n} ({int(target_lengths[n])} "
                         f"labels) is longer than its input ({int(input_lengths[n])} frames)")
    used = np.arange(padded.shape[1]) < target_lengths[:, None]
    labels = padded[used]
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        bad = int(labels[(labels < 0) | (labels >= C)][0])
        raise ValueError(f"{name}: {what} hold label {bad}, out of range for {C} classes")
    if (labels == blank).any():
        raise ValueError(f"{name}: {what} hold the blank label {blank} inside a target")


def _host(x):
    return x.get() if on_gpu(x) else np.asarray(x)


def _host_scalar(x):
    return float(_host(x).reshape(()))


def _to_xp(value, xp, dtype):
    return value if xp is np else xp.asarray(value, dtype=dtype).reshape(())


_WORKSPACE = threading.local()
# The largest alpha kept between calls (per thread), in float64 values: 512 MB.
KEPT_ALPHA = 1 << 26


def _alpha_scratch(shape):
    """alpha's float64 scratch (uninitialised, as the kernel expects), kept between the
    calls of a thread up to KEPT_ALPHA values: a fresh one of tens of MB page-faults on
    every call (the allocator maps and unmaps a block that large each time), which costs
    more than the recursion at large shapes."""
    size = math.prod(shape)
    if size > KEPT_ALPHA:
        return np.empty(shape)
    kept = getattr(_WORKSPACE, "alpha", None)
    if kept is None or kept.size < size:
        kept = _WORKSPACE.alpha = np.empty(size)
    return kept[:size].reshape(shape)


def _run(request, x, shape, pred_shape, dtype, targets, input_lengths, target_lengths, blank,
         from_logits, zero_infinity, coef):
    """(per-sequence float64 losses on the host, the gradient as a tuple or None)."""
    xp = request.xp
    N = targets.shape[0]
    T, C = shape[2], shape[3]
    L = 2 * targets.shape[1] + 1
    want_grad = request.want_grad
    grad = grad_buffer(request, pred_shape, dtype) if want_grad else None
    launcher = Launcher(request.placement, x.size * L, "ctc", "ctc_cuda")
    from fastloss.kernels.ctc import ROWS

    host_arrays = dict(
        lse=np.zeros((N, T)), targets=np.ascontiguousarray(targets, np.int64),
        input_lengths=input_lengths, target_lengths=target_lengths, coef=coef,
        losses=np.empty(N), rows=np.empty((N, ROWS, L + 2)),
        labels=np.empty((N, L), np.int64), classes=np.empty((N, C)),
        scales=np.empty((N, 2, max(T, 1))))
    alpha_shape = (N, max(T, 1), L + 2)
    if xp is not np:  # (CuPy inputs: the small arrays and scratch go to the device)
        arrays = {k: xp.asarray(v) for k, v in host_arrays.items()}
        arrays["alpha"] = xp.empty(alpha_shape)
    else:
        arrays = dict(host_arrays, alpha=_alpha_scratch(alpha_shape))
    out = grad if want_grad else x[:0]
    args = (x, tuple(np.int64(v) for v in shape), arrays["lse"], arrays["targets"],
            arrays["input_lengths"], arrays["target_lengths"], np.int64(blank),
            bool(from_logits), bool(zero_infinity), bool(want_grad), arrays["coef"],
            arrays["losses"], out, arrays["alpha"], arrays["rows"], arrays["labels"],
            arrays["classes"], arrays["scales"])
    if N:
        launcher.run("ctc", args, outputs=(11, 12), blocks=N)
    losses = _host(arrays["losses"]) if xp is not np else arrays["losses"]
    return losses, ((grad.reshape(pred_shape),) if want_grad else None)

"""The batch-pairwise family: losses of the similarity matrix of a batch of embeddings.

``circle`` (Keras 3) and ``ntxent`` (Optax) take ``y_true``, one integer label per row,
and ``y_pred``, the embeddings ``(N, D)``; pairs of rows with equal labels are positive,
the others negative.  The kernels (kernels/pairwise.py, pairwise_cuda.py) never store
the N x N similarity matrix: pass 1 computes each row's statistics and loss, pass 2
(gradients only) each row's gradient.  Between the passes the family turns the rows'
losses into the value and each row's cotangent (Keras's reduction, mask and weights;
Optax's mean over the positive pairs), with array operations of the inputs' library:
no synchronisation with a GPU.
"""

from __future__ import annotations

import numpy as np

from .._arrays import broadcasts_to, compute_dtype, separate_output, squeeze_or_expand_to_same_rank
from ..conventions import divide_no_nan, keras_layout, row_cotangent, scalar_cotangent
from ..launch import Launcher
from ..pipeline import grad_buffer
from . import Family, as_dtype


class Pairwise(Family):
    """The common part: embeddings (N, D), one label per row, the cotangent checked
    before the first pass; ``_run`` is each loss's two passes."""

    name = "pairwise"

    def __init__(self):
        super().__init__("pairwise")

    def value_shape(self, loss, shapes, options):
        return tuple(shapes["y_pred"])[:1]  # (one loss per embedding)

    def compute(self, request):
        name, xp = request.name, request.xp
        p = _embeddings(request, request.arrays["y_pred"], "y_pred")
        dtype = compute_dtype(p)
        N, D = p.shape
        labels = _labels(request, request.arrays["y_true"], "y_true", N, "y_pred", p.shape)
        if request.grad_output is not None:  # checked here, before the first pass runs
            if request.reduction == "none":
                row_cotangent(name, request.grad_output, xp, (N,))
            else:
                scalar_cotangent(name, request.grad_output, xp)
        e = xp.ascontiguousarray(p, dtype=dtype)
        grad = None
        if request.want_grad:
            grad = grad_buffer(request, (N, D), dtype).reshape(N, D)
        value, grad = self._run(request, labels, e, p.dtype, grad)
        return value, (None if grad is None else (grad,))


def _embeddings(request, x, name):
    x = request.placement.asarray(x, name)
    if x.ndim != 2:
        raise ValueError(f"{request.name}: {name} must be a 2-D array of embeddings, one row "
                         f"per sample (N, D), got shape {tuple(x.shape)}")
    return x


def _labels(request, y, name, N, rows_name, rows_shape):
    """Flat contiguous int64 labels, one per row (Keras: also (N, 1), and floats,
    truncated as Keras casts them to int32)."""
    xp = request.xp
    keras = request.loss.convention == "keras"
    t = request.placement.asarray(y, name)
    if keras and t.ndim == 2 and t.shape[1] == 1:
        t = t.reshape(-1)
    if t.shape != (N,):
        raise ValueError(f"{request.name}: {name} of shape {tuple(t.shape)} must hold one label "
                         f"per row of {rows_name} of shape {tuple(rows_shape)}, i.e. have "
                         f"shape ({N},)")
    if t.dtype.kind == "f":
        if not keras:
            raise TypeError(f"{request.name}: {name} must hold integer labels, got dtype "
                            f"{t.dtype}")
        t = xp.trunc(t)
        # (checked on the host only: a check of CuPy inputs would wait for the device)
        # Labels beyond int64 (and NaN, inf) would wrap on the cast and compare equal.
        if xp is np and not np.all(np.abs(t) < 2.0 ** 63):
            what = ("non-finite labels" if not np.all(np.isfinite(t))
                    else "labels beyond the int64 range")
            raise ValueError(f"{request.name}: {name} holds {what}")
    return xp.ascontiguousarray(t.astype(np.int64))


class Circle(Pairwise):
    """Keras 3's circle loss (keras.losses.circle and keras.losses.Circle).

    ``ref_labels`` / ``ref_embeddings`` (Keras's defaults: y_true, y_pred) give the
    columns of the similarity matrix.  Reference embeddings, when given, are constants:
    the gradient is with respect to y_pred only.  Without them the references are y_pred
    itself, and the gradient flows through both sides of every similarity."""

    def _run(self, request, labels, e, input_dtype, grad):
        from fastloss.kernels.pairwise import CIRCLE_STATS
        xp, options, reduction = request.xp, request.options, request.reduction
        dtype = e.dtype
        N, D = e.shape
        ref_labels, ref = _references(request, labels, e)
        self_ref = options["ref_embeddings"] is None  # the gradient flows through both sides
        M = ref.shape[0]
        weight = _sample_weight(request, N)

        if D == 0:  # no dimensions: every similarity is 0, as with one zero dimension
            e = xp.zeros((N, 1), dtype)
            ref = e if self_ref else xp.zeros((M, 1), dtype)
        launcher = Launcher(request.placement, N * M * max(D, 1), "pairwise", "pairwise_cuda")
        option_args = (float(options["gamma"]), float(options["margin"]),
                       bool(options["remove_diagonal"]))
        stats = xp.empty((N, CIRCLE_STATS), np.float64)
        rows = xp.zeros(N, np.float64)
        if N > 0:
            launcher.run("circle_stats", (labels, e, ref_labels, ref, *option_args, stats, rows),
                         outputs=(7, 8), blocks=N)

        value, layout = circle_reduction(request.name, request.placement, rows, weight,
                                         reduction, request.grad_output, dtype,
                                         request.want_value)
        if grad is not None and N > 0 and D > 0:
            cotangent = xp.ascontiguousarray(
                xp.broadcast_to(layout.coef.reshape(-1), (N,)) * layout.gscale, dtype=np.float64)
            work = separate_output(xp, grad, (e, ref))  # (pass 2 reads e while it writes)
            launcher.run("circle_grad", (labels, e, ref_labels, ref, *option_args, self_ref,
                                         stats, cotangent, work), outputs=(10,), blocks=N)
            if work is not grad:
                grad[...] = work
        return value, grad


def circle_reduction(name, placement, rows, weight, reduction, grad_output, dtype, want_value):
    """(value, layout) of circle's per-row losses ``rows`` (float64, N): Keras masks the
    samples whose loss is 0 (circle sets the mask loss > 0): their weight is 0, and
    "sum_over_batch_size" divides by the others' number; then the sample weights and the
    reduction.  The layout's coef and gscale are each row's gradient factor."""
    xp = placement.xp
    N = rows.size
    kept = rows.astype(dtype) > 0
    if reduction in ("mean", "sum_over_batch_size"):
        mask = xp.where(kept, divide_no_nan(float(N), xp.sum(kept), xp), 0.0)
    else:
        mask = kept.astype(np.float64)
    merged = mask if weight is None else weight * mask
    layout = keras_layout(name, placement, (N, 1), merged if N > 0 else None, reduction,
                          grad_output, 1)
    value = None
    if want_value:
        row_weight = xp.broadcast_to(layout.weight.reshape(-1), (N,))
        if N == 0:
            rows_value, value = layout.empty_values(dtype)
            value = rows_value if layout.rows_shape is not None else value
        elif layout.rows_shape is not None:
            value = (rows * row_weight).astype(dtype)
        else:
            value = as_dtype(xp.sum(rows * row_weight) * layout.vscale, dtype, xp)
    return value, layout


def _references(request, labels, e):
    """(ref_labels, ref_embeddings): Keras's defaults are y_true and y_pred."""
    ref = e
    ref_embeddings, ref_labels = request.options["ref_embeddings"], request.options["ref_labels"]
    if ref_embeddings is not None:
        ref = _embeddings(request, ref_embeddings, "ref_embeddings")
        if ref.shape[1] != e.shape[1]:
            raise ValueError(f"{request.name}: ref_embeddings of shape {tuple(ref.shape)} must "
                             f"have y_pred's {e.shape[1]} columns (y_pred shape "
                             f"{tuple(e.shape)})")
        ref = request.xp.ascontiguousarray(ref, dtype=e.dtype)
    if ref_labels is None:
        if ref.shape[0] != e.shape[0]:
            raise ValueError(f"{request.name}: ref_embeddings of shape {tuple(ref.shape)} need "
                             "ref_labels (y_true labels y_pred's rows only)")
        return labels, ref
    return _labels(request, ref_labels, "ref_labels", ref.shape[0],
                   "ref_embeddings" if ref is not e else "y_pred", ref.shape), ref


def _sample_weight(request, N):
    """sample_weight broadcast to the N per-sample losses as Keras does, float64."""
    if request.sample_weight is None:
        return None
    xp = request.xp
    w = request.placement.asarray(request.sample_weight, "sample_weight")
    values_shape, w_shape = squeeze_or_expand_to_same_rank((N,), w.shape)
    if not broadcasts_to(w_shape, values_shape):
        raise ValueError(f"{request.name}: sample_weight of shape {tuple(w.shape)} does not "
                         f"broadcast to the per-sample loss of shape ({N},)")
    w = xp.broadcast_to(w.reshape(w_shape).astype(np.float64), values_shape)
    return xp.ascontiguousarray(w).reshape(N)


class NTXent(Pairwise):
    """Optax's ntxent (labels first, as every loss here)."""

    def _run(self, request, labels, e, input_dtype, grad):
        from fastloss.kernels.pairwise import NTXENT_POSITIVES, NTXENT_STATS
        xp = request.xp
        dtype = e.dtype
        N, D = e.shape
        go = scalar_cotangent(request.name, request.grad_output, xp)
        # Optax clamps squared norms at its input's epsilon (float16's for float16 input)
        eps = float(np.finfo(input_dtype if input_dtype.kind == "f" else dtype).eps)
        temperature = float(request.options["temperature"])
        if N == 0:  # no positive pair: the mean over them is NaN, as for a batch of one
            return (as_dtype(np.nan, dtype, xp) if request.want_value else None), grad
        if D == 0:  # zero vectors: every similarity is 0, as with one zero dimension
            e = xp.zeros((N, 1), dtype)
        launcher = Launcher(request.placement, N * N * max(D, 1), "pairwise", "pairwise_cuda")
        stats = xp.empty((N, NTXENT_STATS), np.float64)
        rows = xp.empty(N, np.float64)
        if launcher.cuda:
            blocks = (N + launcher.kernels.THREADS - 1) // launcher.kernels.THREADS
            launcher.run("ntxent_norms", (e, eps, stats), outputs=(2,), blocks=blocks)
            launcher.run("ntxent_stats", (labels, e, temperature, stats, rows), outputs=(3, 4),
                         blocks=N)
        else:
            launcher.run("ntxent_stats", (labels, e, eps, temperature, stats, rows))
        pairs = xp.sum(stats[:, NTXENT_POSITIVES])
        value = None
        if request.want_value:
            with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 without positive pairs
                value = as_dtype(xp.sum(rows) / pairs, dtype, xp)
        if grad is not None and D > 0:
            scale = xp.asarray(divide_no_nan(go, pairs, xp), dtype=np.float64).reshape(1)
            work = separate_output(xp, grad, (e,))  # (pass 2 reads e while it writes)
            launcher.run("ntxent_grad", (labels, e, temperature, stats, scale, work),
                         outputs=(5,), blocks=N)
            if work is not grad:
                grad[...] = work
        return value, grad

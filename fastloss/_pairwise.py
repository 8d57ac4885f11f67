"""Batch-pairwise losses: losses of the similarity matrix of a batch of embeddings.

``circle`` (Keras 3) and ``ntxent`` (Optax) take ``y_true``, one integer label per row,
and ``y_pred``, the embeddings ``(N, D)``; pairs of rows with equal labels are positive,
the others negative.  The kernels (kernels/pairwise.py, pairwise_cuda.py) never store
the N x N similarity matrix: pass 1 computes each row's statistics and loss, pass 2
(gradients only) each row's gradient.  Between the passes the front end turns the rows'
losses into the value and each row's cotangent (Keras's reduction, mask and weights;
Optax's mean over the positive pairs), with array operations of the inputs' library:
no synchronisation with a GPU.
"""

import os

import numpy as np

from . import _config
from ._arrays import (Placement, broadcasts_to, compute_dtype, import_cupy, separate_output,
                      squeeze_or_expand_to_same_rank)
from ._loss import (Loss, Option, _divide_no_nan, _row_cotangent, _scalar_cotangent,
                    keras_layout)
from ._run import _PARALLEL_LOCK


class _Launcher:
    """Runs the pairwise kernels where the placement says: on the CPU (the parallel
    kernels once the work, N * M * D multiply-adds per pass, reaches
    ``_config.PARALLEL_THRESHOLD``), or on CUDA (CuPy arrays on CuPy's current stream,
    nothing waits; NumPy arrays copied to the device and back, as under the simulator)."""

    def __init__(self, placement, work):
        self.cuda = placement.target == "cuda"
        self.xp = placement.xp
        if self.cuda:
            from numba import cuda

            from fastloss.kernels import pairwise_cuda
            self.kernels = pairwise_cuda
            self.on_device = self.xp is not np
            self.stream = (cuda.external_stream(import_cupy().cuda.get_current_stream().ptr)
                           if self.on_device else cuda.default_stream())
        else:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as fastloss._run does
            from fastloss.kernels import pairwise
            self.kernels = pairwise
            self.parallel = work >= _config.PARALLEL_THRESHOLD

    def run(self, name, blocks, args, outputs):
        """Runs kernel ``name`` (CUDA: on ``blocks`` blocks) on ``args``, of which the
        positions ``outputs`` are written."""
        if not self.cuda:
            kernel = getattr(self.kernels, f"{name}_{'parallel' if self.parallel else 'serial'}")
            if self.parallel:
                with _PARALLEL_LOCK:
                    kernel(*args)
            else:
                kernel(*args)
            return
        from numba import cuda
        kernel = getattr(self.kernels, name)[blocks, self.kernels.THREADS, self.stream]
        if self.on_device:
            kernel(*[cuda.as_cuda_array(a, sync=False) if hasattr(a, "__cuda_array_interface__")
                     else a for a in args])
            return
        device = [cuda.to_device(a, stream=self.stream) if isinstance(a, np.ndarray) else a
                  for a in args]
        kernel(*device)
        for position in outputs:
            device[position].copy_to_host(args[position], stream=self.stream)
        self.stream.synchronize()


class PairwiseLoss(Loss):
    """A loss of the pairwise similarities of a batch: ``y_true`` holds N integer labels,
    ``y_pred`` the embeddings (N, D); ``grad`` is d value / d y_pred.

    Subclasses provide ``_run(launcher, placement, labels, e, values, arrays, ...)``.
    ``arrays`` names the options that are arrays (checked by the subclass).
    """

    def __init__(self, name, convention, options=(), summary="", arrays=()):
        super().__init__(name, None, convention, options, summary)
        self.arrays = arrays

    @property
    def default_reduction(self):
        return "sum_over_batch_size" if self.convention == "keras" else "mean"

    def check_options(self, options):
        """The scalar options (the array options are checked against the inputs)."""
        return super().check_options({k: v for k, v in options.items() if k not in self.arrays})

    def check_reduction(self, reduction):
        if self.convention == "keras":
            return super().check_reduction(reduction)
        if isinstance(reduction, str) and reduction in ("default", "mean"):
            return "mean"
        raise ValueError(f"{self.name}: reduction must be 'mean' (the mean over the positive "
                         f"pairs, as {self.convention} returns it), got {reduction!r}")

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, *,
                 want_value, want_grad, grad_output=None, out=None):
        values = self.check_options(options)
        arrays = {name: options.get(name) for name in self.arrays}
        reduction = self.check_reduction(reduction)
        if self.convention != "keras" and sample_weight is not None:
            raise TypeError(f"{self.name} follows {self.convention} and takes no sample_weight")
        placement = Placement({"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight,
                               "grad_output": grad_output, "out": out, **arrays})
        xp = placement.xp
        p = self._embeddings(placement, y_pred, "y_pred")
        dtype = compute_dtype(p)
        N, D = p.shape
        labels = self._labels(placement, y_true, "y_true", N, "y_pred", p.shape)
        if grad_output is not None:  # checked here, before the first pass runs
            if reduction == "none":
                _row_cotangent(self.name, grad_output, xp, (N,))
            else:
                _scalar_cotangent(self.name, grad_output, xp)
        e = xp.ascontiguousarray(p, dtype=dtype)
        grad = None
        if want_grad:
            grad = self._grad_buffer(out, placement, (N, D), dtype).reshape(N, D)
        value, grad = self._run(placement, labels, e, p.dtype, values, arrays, sample_weight,
                                reduction, grad_output, grad, want_value)
        return ((placement.result(value) if want_value else None),
                None if grad is None else placement.result(grad))

    # -- argument checks ---------------------------------------------------------------

    def _embeddings(self, placement, x, name):
        x = placement.asarray(x, name)
        if x.ndim != 2:
            raise ValueError(f"{self.name}: {name} must be a 2-D array of embeddings, one row "
                             f"per sample (N, D), got shape {tuple(x.shape)}")
        return x

    def _labels(self, placement, y, name, N, rows_name, rows_shape):
        """Flat contiguous int64 labels, one per row (Keras: also (N, 1), and floats,
        truncated as Keras casts them to int32)."""
        xp = placement.xp
        keras = self.convention == "keras"
        t = placement.asarray(y, name)
        if keras and t.ndim == 2 and t.shape[1] == 1:
            t = t.reshape(-1)
        if t.shape != (N,):
            raise ValueError(f"{self.name}: {name} of shape {tuple(t.shape)} must hold one label "
                             f"per row of {rows_name} of shape {tuple(rows_shape)}, i.e. have "
                             f"shape ({N},)")
        if t.dtype.kind == "f":
            if not keras:
                raise TypeError(f"{self.name}: {name} must hold integer labels, got dtype "
                                f"{t.dtype}")
            t = xp.trunc(t)
            # (checked on the host only: a check of CuPy inputs would wait for the device)
            # Labels beyond int64 (and NaN, inf) would wrap on the cast and compare equal.
            if xp is np and not np.all(np.abs(t) < 2.0 ** 63):
                what = ("non-finite labels" if not np.all(np.isfinite(t))
                        else "labels beyond the int64 range")
                raise ValueError(f"{self.name}: {name} holds {what}")
        return xp.ascontiguousarray(t.astype(np.int64))


def _as_dtype(value, dtype, xp):
    """A value of the compute dtype: a NumPy scalar, or a 0-d device array."""
    return dtype.type(value) if xp is np else xp.asarray(value, dtype=dtype).reshape(())


class CircleLoss(PairwiseLoss):
    """Keras 3's circle loss (keras.losses.circle and keras.losses.Circle).

    ``ref_labels`` / ``ref_embeddings`` (Keras's defaults: y_true, y_pred) give the
    columns of the similarity matrix.  Reference embeddings, when given, are constants:
    the gradient is with respect to y_pred only.  Without them the references are y_pred
    itself, and the gradient flows through both sides of every similarity."""

    def _run(self, placement, labels, e, input_dtype, values, arrays, sample_weight, reduction,
             grad_output, grad, want_value):
        from fastloss.kernels.pairwise import CIRCLE_STATS
        xp = placement.xp
        dtype = e.dtype
        N, D = e.shape
        ref_labels, ref = self._references(placement, labels, e, arrays)
        self_ref = arrays["ref_embeddings"] is None  # the gradient flows through both sides
        M = ref.shape[0]
        weight = self._sample_weight(placement, sample_weight, N)

        if D == 0:  # no dimensions: every similarity is 0, as with one zero dimension
            e = xp.zeros((N, 1), dtype)
            ref = e if self_ref else xp.zeros((M, 1), dtype)
        launcher = _Launcher(placement, N * M * max(D, 1))
        option_args = (float(values["gamma"]), float(values["margin"]),
                       bool(values["remove_diagonal"]))
        stats = xp.empty((N, CIRCLE_STATS), np.float64)
        rows = xp.zeros(N, np.float64)
        if N > 0:
            launcher.run("circle_stats", N, (labels, e, ref_labels, ref, *option_args, stats, rows),
                         outputs=(7, 8))

        # Keras masks the samples whose loss is 0 (circle sets the mask loss > 0): their
        # weight is 0, and "sum_over_batch_size" divides by the others' number.
        kept = rows.astype(dtype) > 0
        if reduction in ("mean", "sum_over_batch_size"):
            mask = xp.where(kept, _divide_no_nan(float(N), xp.sum(kept), xp), 0.0)
        else:
            mask = kept.astype(np.float64)
        merged = mask if weight is None else weight * mask
        layout = keras_layout(self.name, placement, (N, 1), merged if N > 0 else None,
                              reduction, grad_output, 1)
        row_weight = xp.broadcast_to(layout.weight.reshape(-1), (N,))
        value = None
        if want_value:
            if N == 0:
                rows_value, value = layout.empty_values(dtype)
                value = rows_value if layout.rows_shape is not None else value
            elif layout.rows_shape is not None:
                value = (rows * row_weight).astype(dtype)
            else:
                value = _as_dtype(xp.sum(rows * row_weight) * layout.vscale, dtype, xp)
        if grad is not None and N > 0 and D > 0:
            cotangent = xp.ascontiguousarray(
                xp.broadcast_to(layout.coef.reshape(-1), (N,)) * layout.gscale, dtype=np.float64)
            work = separate_output(xp, grad, (e, ref))  # (pass 2 reads e while it writes)
            launcher.run("circle_grad", N, (labels, e, ref_labels, ref, *option_args, self_ref,
                                            stats, cotangent, work), outputs=(10,))
            if work is not grad:
                grad[...] = work
        return value, grad

    def _references(self, placement, labels, e, arrays):
        """(ref_labels, ref_embeddings): Keras's defaults are y_true and y_pred."""
        ref = e
        if arrays["ref_embeddings"] is not None:
            ref = self._embeddings(placement, arrays["ref_embeddings"], "ref_embeddings")
            if ref.shape[1] != e.shape[1]:
                raise ValueError(f"{self.name}: ref_embeddings of shape {tuple(ref.shape)} must "
                                 f"have y_pred's {e.shape[1]} columns (y_pred shape "
                                 f"{tuple(e.shape)})")
            ref = placement.xp.ascontiguousarray(ref, dtype=e.dtype)
        if arrays["ref_labels"] is None:
            if ref.shape[0] != e.shape[0]:
                raise ValueError(f"{self.name}: ref_embeddings of shape {tuple(ref.shape)} need "
                                 "ref_labels (y_true labels y_pred's rows only)")
            return labels, ref
        return self._labels(placement, arrays["ref_labels"], "ref_labels", ref.shape[0],
                            "ref_embeddings" if ref is not e else "y_pred", ref.shape), ref

    def _sample_weight(self, placement, sample_weight, N):
        """sample_weight broadcast to the N per-sample losses as Keras does, float64."""
        if sample_weight is None:
            return None
        xp = placement.xp
        w = placement.asarray(sample_weight, "sample_weight")
        values_shape, w_shape = squeeze_or_expand_to_same_rank((N,), w.shape)
        if not broadcasts_to(w_shape, values_shape):
            raise ValueError(f"{self.name}: sample_weight of shape {tuple(w.shape)} does not "
                             f"broadcast to the per-sample loss of shape ({N},)")
        w = xp.broadcast_to(w.reshape(w_shape).astype(np.float64), values_shape)
        return xp.ascontiguousarray(w).reshape(N)


class NTXentLoss(PairwiseLoss):
    """Optax's ntxent (labels first, as every loss here)."""

    def _run(self, placement, labels, e, input_dtype, values, arrays, sample_weight, reduction,
             grad_output, grad, want_value):
        from fastloss.kernels.pairwise import NTXENT_POSITIVES, NTXENT_STATS
        xp = placement.xp
        dtype = e.dtype
        N, D = e.shape
        go = _scalar_cotangent(self.name, grad_output, xp)
        # Optax clamps squared norms at its input's epsilon (float16's for float16 input)
        eps = float(np.finfo(input_dtype if input_dtype.kind == "f" else dtype).eps)
        temperature = float(values["temperature"])
        if N == 0:  # no positive pair: the mean over them is NaN, as for a batch of one
            return (_as_dtype(np.nan, dtype, xp) if want_value else None), grad
        if D == 0:  # zero vectors: every similarity is 0, as with one zero dimension
            e = xp.zeros((N, 1), dtype)
        launcher = _Launcher(placement, N * N * max(D, 1))
        stats = xp.empty((N, NTXENT_STATS), np.float64)
        rows = xp.empty(N, np.float64)
        if launcher.cuda:
            blocks = (N + launcher.kernels.THREADS - 1) // launcher.kernels.THREADS
            launcher.run("ntxent_norms", blocks, (e, eps, stats), outputs=(2,))
            launcher.run("ntxent_stats", N, (labels, e, temperature, stats, rows), outputs=(3, 4))
        else:
            launcher.run("ntxent_stats", None, (labels, e, eps, temperature, stats, rows),
                         outputs=(4, 5))
        pairs = xp.sum(stats[:, NTXENT_POSITIVES])
        value = None
        if want_value:
            with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 without positive pairs
                value = _as_dtype(xp.sum(rows) / pairs, dtype, xp)
        if grad is not None and D > 0:
            scale = xp.asarray(_divide_no_nan(go, pairs, xp), dtype=np.float64).reshape(1)
            work = separate_output(xp, grad, (e,))  # (pass 2 reads e while it writes)
            launcher.run("ntxent_grad", N, (labels, e, temperature, stats, scale, work),
                         outputs=(5,))
            if work is not grad:
                grad[...] = work
        return value, grad


circle = CircleLoss(
    "circle", "keras",
    (Option("gamma", 80.0, "positive"), Option("margin", 0.4, "any"),
     Option("remove_diagonal", True, "bool")),
    arrays=("ref_labels", "ref_embeddings"),
    summary="softplus(LSE_pos(-gamma max(margin + d, 0) (margin - d)) + LSE_neg(gamma "
            "max(1 + margin - d, 0) (1 - margin - d))) per sample, d = max(1 - <e_i, e_j>, 0) "
            "(embeddings expected L2-normalised); samples with loss 0 are masked as Keras")
ntxent = NTXentLoss(
    "ntxent", "optax", (Option("temperature", 0.07, "positive"),),
    summary="mean over positive pairs (i, j) of log(exp(s_ij) + sum_neg exp(s_ik)) - s_ij, "
            "s the cosine similarities over the temperature")

LOSSES = {"circle": circle, "ntxent": ntxent}


# -- benchmark data and NumPy references (default options) ------------------------------

def make_inputs(n, dtype, rng):
    """(labels, embeddings) of about n elements: N = n // 128 rows (2 to 2048) of D = 128
    unit vectors, labels from about N / 4 classes."""
    N = min(2048, max(2, n // 128))
    e = rng.standard_normal((N, 128))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return rng.integers(0, max(1, N // 4), N), e.astype(dtype)


def _masked_lse(x, mask):
    """Row-wise log-sum-exp of x over mask (-inf for an empty row), and exp(x - lse)."""
    x = np.where(mask, x, -np.inf)
    top = x.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(x - top).sum(axis=1, keepdims=True)) + top
    return lse[:, 0], np.where(mask, np.exp(x - np.where(np.isfinite(lse), lse, 0.0)), 0.0)


def _circle_terms(labels, e, gamma=80.0, margin=0.4):
    s = e @ e.T
    d = np.maximum(1 - s, 0)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    pos_weight = np.maximum(margin + d, 0)
    neg_weight = np.maximum(1 + margin - d, 0)
    p, alpha = _masked_lse(-gamma * pos_weight * (margin - d), positive)
    n, beta = _masked_lse(gamma * neg_weight * (1 - margin - d), ~same)
    loss = np.logaddexp(p + n, 0)
    valid = max(np.count_nonzero(loss > 0), 1)
    return loss, valid, s, d, p + n, alpha, beta, pos_weight, neg_weight, margin, gamma


def numpy_circle(labels, e):
    loss, valid = _circle_terms(labels, e)[:2]
    return loss.sum() / valid


def numpy_circle_vg(labels, e):
    loss, valid, s, d, x, alpha, beta, pos_weight, neg_weight, margin, gamma = \
        _circle_terms(labels, e)
    d_pos = -gamma * ((margin + d > 0) * (margin - d) - pos_weight)
    d_neg = -gamma * ((1 + margin - d > 0) * (1 - margin - d) + neg_weight)
    sigma = 1 / (1 + np.exp(-x))
    G = (sigma[:, None] / valid) * (alpha * d_pos + beta * d_neg) * np.where(1 - s > 0, -1.0, 0.0)
    return loss.sum() / valid, (G + G.T) @ e


def _ntxent_terms(labels, e, temperature=0.07):
    norm = np.sqrt(np.maximum((e * e).sum(axis=1), np.finfo(e.dtype).eps))
    u = e / norm[:, None]
    s = u @ u.T / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    x = s - np.where(positive | ~same, s, -np.inf).max(axis=1, keepdims=True)
    negatives = np.where(~same, np.exp(x), 0).sum(axis=1, keepdims=True)
    denominator = np.exp(x) + negatives
    loss = np.where(positive, np.log(denominator) - x, 0).sum() / positive.sum()
    return loss, u, norm, x, positive, same, negatives, denominator, temperature


def numpy_ntxent(labels, e):
    return _ntxent_terms(labels, e)[0]


def numpy_ntxent_vg(labels, e):
    loss, u, norm, x, positive, same, negatives, denominator, temperature = \
        _ntxent_terms(labels, e)
    inv_sum = np.where(positive, 1 / denominator, 0).sum(axis=1, keepdims=True)
    G = np.where(positive, -negatives / denominator, np.where(~same, np.exp(x) * inv_sum, 0))
    G /= positive.sum() * temperature
    g_u = (G + G.T) @ u
    return loss, (g_u - u * (u * g_u).sum(axis=1, keepdims=True)) / norm[:, None]


BENCH = {
    "circle": (make_inputs, numpy_circle, numpy_circle_vg),
    "ntxent": (make_inputs, numpy_ntxent, numpy_ntxent_vg),
}

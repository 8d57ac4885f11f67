"""Float64 references for the sequence losses (CTC), written from the definitions.

``ctc_nll`` is the forward recursion over the extended target in log space
(Graves et al. 2006, eq. 5-8, as a sum of logaddexps in NumPy), ``brute_force_nll`` the
definition itself: -log of the sum, over every path of T frames that collapses (repeats
merged, then blanks removed) to the target, of the product of its probabilities; the
tests check the first against the second on tiny inputs.
"""

import itertools
import math

import numpy as np


def ctc_nll(lp, target, blank=0):
    """-log p(target | lp) for one sequence: lp (T, C) log-probabilities, target a list."""
    T = lp.shape[0]
    ext = [blank]
    for label in target:
        ext += [int(label), blank]
    L = len(ext)
    if T == 0:
        return 0.0 if L == 1 else math.inf
    alpha = np.full(L, -np.inf)
    alpha[0] = lp[0, ext[0]]
    if L > 1:
        alpha[1] = lp[0, ext[1]]
    for t in range(1, T):
        new = np.full(L, -np.inf)
        for s in range(L):
            terms = [alpha[s]]
            if s >= 1:
                terms.append(alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new[s] = np.logaddexp.reduce(terms) + lp[t, ext[s]]
        alpha = new
    return -float(np.logaddexp.reduce(alpha[-2:] if L > 1 else alpha[-1:]))


def collapse(path, blank=0):
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return [k for k in merged if k != blank]


def brute_force_nll(lp, target, blank=0):
    """The definition: every path of len(lp) frames (C**T of them: tiny T only)."""
    T, C = lp.shape
    logs = [sum(lp[t, k] for t, k in enumerate(path))
            for path in itertools.product(range(C), repeat=T)
            if collapse(path, blank) == list(target)]
    return -float(np.logaddexp.reduce(logs)) if logs else math.inf


def log_softmax(x):
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def _rows(targets, lengths):
    """Per-sequence target lists from padded (N, S) or concatenated 1-D targets."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        return [list(row[:n]) for row, n in zip(targets, lengths)]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    return [list(targets[a:a + n]) for a, n in zip(starts, lengths)]


def ctc_loss(targets, log_probs, input_lengths, target_lengths, blank=0, zero_infinity=False,
             reduction="mean"):
    """PyTorch's F.ctc_loss: "mean" divides each loss by its target length (at least 1)."""
    batched = log_probs.ndim == 3
    lp = log_probs if batched else log_probs[:, None, :]
    input_lengths = np.atleast_1d(input_lengths)
    target_lengths = np.atleast_1d(target_lengths)
    rows = _rows(targets if batched or np.ndim(targets) == 2 else targets, target_lengths)
    losses = np.array([ctc_nll(lp[:T, n], row, blank)
                       for n, (T, row) in enumerate(zip(input_lengths, rows))], dtype=np.float64)
    if zero_infinity:
        losses = np.where(np.isinf(losses), 0.0, losses)
    if reduction == "none":
        return losses if batched else losses[0]
    if reduction == "sum":
        return losses.sum()
    return np.mean(losses / np.maximum(target_lengths, 1)) if losses.size else math.nan


def keras_ctc(y_true, y_pred, sample_weight=None, reduction="sum_over_batch_size"):
    """Keras 3's keras.losses.ctc (0 the blank and the padding, every frame of y_pred's
    log-softmax used), then Keras's sample_weight and reduction."""
    lp = log_softmax(y_pred)
    losses = np.array([ctc_nll(lp[n], [k for k in row if k != 0]) for n, row in
                       enumerate(np.asarray(y_true).astype(np.int64))], dtype=np.float64)
    weight = np.ones_like(losses) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, np.float64), losses.shape)
    weighted = losses * weight
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        total = weight.sum()
        return weighted.sum() / total if total else 0.0
    return weighted.sum() / losses.size if losses.size else 0.0


def torch_gradient_surrogate(targets, log_probs, input_lengths, target_lengths, blank=0,
                             zero_infinity=False, reduction="mean"):
    """A function whose derivative in log_probs is PyTorch's CTC gradient: the loss plus
    each sequence's sum of exp(log_probs) over its frames, scaled as its loss is (PyTorch
    differentiates as if log_probs were a log-softmax, which adds exp(log_probs))."""
    batched = log_probs.ndim == 3
    lp = log_probs if batched else log_probs[:, None, :]
    input_lengths = np.atleast_1d(input_lengths)
    target_lengths = np.atleast_1d(target_lengths)
    extra = np.array([np.exp(lp[:T, n]).sum() for n, T in enumerate(input_lengths)])
    losses = ctc_loss(targets, log_probs, input_lengths, target_lengths, blank, zero_infinity,
                      "none")
    losses = np.atleast_1d(losses)
    if zero_infinity:
        extra = np.where(np.isinf(np.atleast_1d(ctc_loss(
            targets, log_probs, input_lengths, target_lengths, blank, False, "none"))),
            0.0, extra)
    total = losses + extra
    if reduction == "none":
        return total if batched else total[0]
    if reduction == "sum":
        return total.sum()
    return np.mean(total / np.maximum(target_lengths, 1))

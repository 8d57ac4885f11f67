"""Batch-pairwise losses on the CPU: losses of the N x M similarity matrix of a batch.

``S_ij = <e_i, r_j>`` between the rows of the embeddings ``e`` (N, D) and of the
references ``r`` (M, D; usually ``e`` itself), each row ``i`` a log-sum-exp over masked
subsets of its row of ``S``.  ``S`` is never stored: as in flash attention it is
recomputed where needed, one dot product at a time.

* Pass 1, per row ``i``: the row's statistics (online max and sum of exponentials per
  subset, counts) and its loss.
* Pass 2, per row ``k``: the gradient ``g_k = sum_j (G_kj + G_jk) r_j``, with
  ``G = d loss / d S`` built from the pass-1 statistics of rows ``k`` and ``j``
  (``G_jk`` only when ``r`` is ``e``: ``S`` is then symmetric).  Each output row is
  written by one task: no races, and the same result for any number of threads.

The row loops live in functions that take arrays and are called once per row (or, on
CUDA, per thread); what they call per pair takes scalars only (the dot product aside):
an array-taking function inlined per pair cost reference counting on the CPU.

The per-pair math (written once here, compiled for CUDA by ``pairwise_cuda``) runs in
float64: it costs a few operations per pair against the ``D`` multiply-adds of the
pair's dot product, which run in the inputs' dtype.  Row sums and gradient rows are
accumulated in float64.

Functions that visit a row take ``(lane, lanes)``: the row's pairs ``j = lane, lane +
lanes, ...``; on the CPU one lane (0, 1), on CUDA the threads of a block.

Numba's cache checks only this file: clear ``__pycache__`` after editing ``_math.py``.
"""

from math import sqrt

import numpy as np
from numba import njit, prange

from ._math import exp, log, log1p
from .pointwise import FASTMATH

# The device functions of the kernels, by name: pairwise_cuda compiles them for CUDA.
DEVICE_FUNCTIONS = {}

_INF = float("inf")

# Columns of the per-row statistics.
CIRCLE_POSITIVE, CIRCLE_NEGATIVE, CIRCLE_SIGMOID = 0, 1, 2
CIRCLE_STATS = 3
NTXENT_INV_NORM, NTXENT_NORM_SLOPE, NTXENT_MAX, NTXENT_NEGATIVES, NTXENT_INV_SUM, \
    NTXENT_POSITIVES = 0, 1, 2, 3, 4, 5
NTXENT_STATS = 6


def device_function(fn):
    """A function of the kernels, compiled as a function of its own (LLVM inlines it):
    inlining every one in Numba's IR made the kernels take seconds more to compile.  They
    carry the kernels' fastmath flags and error model themselves, as a function of its
    own does not get its caller's."""
    DEVICE_FUNCTIONS[fn.__name__] = fn
    return njit(fastmath=FASTMATH, error_model="numpy")(fn)


# -- scalar math -----------------------------------------------------------------------

@device_function
def relu(x):
    """max(x, 0), NaN kept."""
    return 0.0 if x < 0.0 else x


@device_function
def relu_slope(x):
    """d max(x, 0) / dx as JAX has it: 1 above 0, 1/2 at 0, 0 below."""
    return 1.0 if x > 0.0 else (0.5 if x == 0.0 else 0.0)


@device_function
def log_or_minus_inf(x):
    """log(x), -inf at 0 (spelt out: the CUDA simulator's math.log raises there)."""
    return -_INF if x == 0.0 else log(x)


@device_function
def softplus(x):
    """log(1 + e**x) without overflow; 0 at -inf."""
    return relu(x) + log1p(exp(-abs(x)))


@device_function
def sigmoid(x):
    z = exp(-abs(x))
    return 1.0 / (1.0 + z) if x >= 0.0 else z / (1.0 + z)


@device_function
def lse_add(m, s, x, counted):
    """One step of an online log-sum-exp: ``(m, s)`` holds ``sum exp(x_k - m)`` over the
    counted values, ``m`` the maximum of all values seen (counted or not)."""
    if x > m:
        s = s * exp(m - x)
        m = x
    if counted:
        s += exp(x - m)
    return m, s


@device_function
def lse_value(m, s):
    """The log-sum-exp of an online state; -inf for an empty sum (NaN kept)."""
    return -_INF if s == 0.0 else m + log(s)


# -- Circle (Keras 3) ------------------------------------------------------------------

@device_function
def circle_positive(s, gamma, margin):
    """A positive pair's logit ``-gamma max(margin + d, 0) (margin - d)``, ``d = max(1 -
    s, 0)`` (Keras's cosine distance), and its derivative in ``s``."""
    d = relu(1.0 - s)
    weight = relu(margin + d)
    logit = -gamma * weight * (margin - d)
    d_logit = -gamma * (relu_slope(margin + d) * (margin - d) - weight)
    return logit, -d_logit * relu_slope(1.0 - s)


@device_function
def circle_negative(s, gamma, margin):
    """A negative pair's logit ``gamma max(1 + margin - d, 0) (1 - margin - d)`` and its
    derivative in ``s``."""
    d = relu(1.0 - s)
    weight = relu((1.0 + margin) - d)
    logit = gamma * weight * ((1.0 - margin) - d)
    d_logit = gamma * (-relu_slope((1.0 + margin) - d) * ((1.0 - margin) - d) - weight)
    return logit, -d_logit * relu_slope(1.0 - s)


@device_function
def circle_kind(label, ref_label, h, diagonal, remove_diagonal):
    """The part a pair takes in its row's loss: 1 positive, -1 negative, 0 none (the
    removed diagonal, or a row whose cotangent times sigmoid, h, is 0)."""
    if h == 0.0 or (label == ref_label and remove_diagonal and diagonal):
        return 0
    return 1 if label == ref_label else -1


@device_function
def circle_term(s, kind, h, p, n, gamma, margin):
    """``h * d softplus(p + n) / d s`` for one pair of a row whose log-sum-exps over its
    positive and negative pairs are ``p`` and ``n``; ``h`` is the row's cotangent times
    ``sigmoid(p + n)``."""
    if kind == 0:
        return 0.0
    if kind > 0:
        logit, slope = circle_positive(s, gamma, margin)
        return h * exp(logit - p) * slope
    logit, slope = circle_negative(s, gamma, margin)
    return h * exp(logit - n) * slope


@device_function
def dot(a, i, b, j):
    """<a[i], b[j]>, accumulated in the inputs' dtype (the loop that vectorises).  Rows
    are indexed, not sliced: a view per pair cost reference counting."""
    T = type(a[0, 0])
    acc = T(0.0)
    for d in range(a.shape[1]):
        acc += a[i, d] * b[j, d]
    return acc


@device_function
def circle_row(labels, e, ref_labels, ref, i, lane, lanes, gamma, margin, remove_diagonal):
    """This lane's online log-sum-exps ``(pm, ps, nm, ns)`` of row i's positive and
    negative logits.  Pairs of equal labels are positive (but the diagonal ``i == j``
    with remove_diagonal), the others negative, as Keras's build_pos_neg_masks."""
    pm = -_INF
    ps = 0.0
    nm = -_INF
    ns = 0.0
    for j in range(lane, ref.shape[0], lanes):
        positive = labels[i] == ref_labels[j]
        if positive and remove_diagonal and i == j:
            continue
        s = float(dot(e, i, ref, j))
        if positive:
            pm, ps = lse_add(pm, ps, circle_positive(s, gamma, margin)[0], True)
        else:
            nm, ns = lse_add(nm, ns, circle_negative(s, gamma, margin)[0], True)
    return pm, ps, nm, ns


@device_function
def circle_finish_row(p, n, i, stats, rows):
    """Row i's loss softplus(p + n) (0 without positive or negative pairs) and statistics."""
    stats[i, CIRCLE_POSITIVE] = p
    stats[i, CIRCLE_NEGATIVE] = n
    stats[i, CIRCLE_SIGMOID] = sigmoid(p + n)
    rows[i] = softplus(p + n)


@device_function
def circle_factors(labels, e, ref_labels, ref, k, start, stop, gamma, margin, remove_diagonal,
                   self_ref, stats, cotangent, out, offset):
    """``out[offset + j - start] = G_kj (+ G_jk)`` for ``j`` in [start, stop): the factors
    of ``r_j`` in row k's gradient, ``G = d loss / d S`` (``G_jk`` when the references
    are e itself).  No dot product for pairs outside the masks or of rows whose
    cotangent times sigmoid is 0."""
    h_k = cotangent[k] * stats[k, CIRCLE_SIGMOID]
    for j in range(start, stop):
        kind_k = circle_kind(labels[k], ref_labels[j], h_k, k == j, remove_diagonal)
        kind_j = 0
        h_j = 0.0
        if self_ref:
            h_j = cotangent[j] * stats[j, CIRCLE_SIGMOID]
            kind_j = circle_kind(labels[j], ref_labels[k], h_j, k == j, remove_diagonal)
        c = 0.0
        if kind_k != 0 or kind_j != 0:
            s = float(dot(e, k, ref, j))
            term_j = 0.0  # (circle_term's value for kind 0; stats has no row j beyond e's rows)
            if kind_j != 0:
                term_j = circle_term(s, kind_j, h_j, stats[j, CIRCLE_POSITIVE],
                                     stats[j, CIRCLE_NEGATIVE], gamma, margin)
            c = circle_term(s, kind_k, h_k, stats[k, CIRCLE_POSITIVE],
                            stats[k, CIRCLE_NEGATIVE], gamma, margin) + term_j
        out[offset + j - start] = c


# -- NT-Xent (Optax) -------------------------------------------------------------------

@device_function
def ntxent_norm(e, eps, stats, i):
    """Optax's normalisation of row i, ``e_i / sqrt(max(|e_i|**2, eps))``: its factor and
    the clamp's slope (1 above, 1/2 at, 0 below)."""
    n2 = 0.0
    for d in range(e.shape[1]):
        n2 += float(e[i, d]) * float(e[i, d])
    stats[i, NTXENT_INV_NORM] = 1.0 / sqrt(max(n2, eps))
    stats[i, NTXENT_NORM_SLOPE] = relu_slope(n2 - eps)


@device_function
def ntxent_similarity(e, stats, i, j, temperature):
    """The cosine similarity of rows i and j over the temperature."""
    return (float(dot(e, i, e, j)) * stats[i, NTXENT_INV_NORM] * stats[j, NTXENT_INV_NORM]
            / temperature)


@device_function
def ntxent_row_max(labels, e, stats, i, lane, lanes, temperature):
    """This lane's ``(m, s, count)``: the maximum over row i's pairs (Optax's shift), the
    sum of ``exp(x - m)`` over its negatives and the number of its positives."""
    m = -_INF
    s = 0.0
    count = 0.0
    for j in range(lane, e.shape[0], lanes):
        if j == i:
            continue
        positive = labels[i] == labels[j]
        m, s = lse_add(m, s, ntxent_similarity(e, stats, i, j, temperature), not positive)
        if positive:
            count += 1.0
    return m, s, count


@device_function
def ntxent_row_positives(labels, e, stats, i, lane, lanes, temperature, m, negatives):
    """This lane's ``(loss, inv_sum)`` over row i's positive pairs: the sum of
    ``log(exp(x) + negatives) - x`` and of ``1 / (exp(x) + negatives)``, ``x = s_ij - m``."""
    loss = 0.0
    inv_sum = 0.0
    for j in range(lane, e.shape[0], lanes):
        if j == i or labels[i] != labels[j]:
            continue
        x = ntxent_similarity(e, stats, i, j, temperature) - m
        denominator = exp(x) + negatives
        loss += log_or_minus_inf(denominator) - x
        inv_sum += 1.0 / denominator if denominator > 0.0 else _INF
    return loss, inv_sum


@device_function
def ntxent_positive_share(x, negatives):
    """``negatives / (exp(x) + negatives)``: minus d loss / d x of a positive pair."""
    return 0.0 if negatives == 0.0 else negatives / (exp(x) + negatives)


@device_function
def ntxent_pair_factor(s, positive, m_k, negatives_k, inv_sum_k, m_j, negatives_j, inv_sum_j):
    """``d (sum of pair losses) / d s_kj + d / d s_jk`` (s = similarity / temperature),
    from the pass-1 statistics of rows k and j."""
    if positive:
        return -(ntxent_positive_share(s - m_k, negatives_k)
                 + ntxent_positive_share(s - m_j, negatives_j))
    return exp(s - m_k) * inv_sum_k + exp(s - m_j) * inv_sum_j


@device_function
def ntxent_factors(labels, e, stats, k, start, stop, temperature, out, offset):
    """``out[offset + j - start]``, for ``j`` in [start, stop): the factor of ``e_j`` in
    row k's gradient before the normalisation's chain rule (0 for j = k)."""
    for j in range(start, stop):
        c = 0.0
        if j != k:
            s = ntxent_similarity(e, stats, k, j, temperature)
            c = ntxent_pair_factor(s, labels[k] == labels[j], stats[k, NTXENT_MAX],
                                   stats[k, NTXENT_NEGATIVES], stats[k, NTXENT_INV_SUM],
                                   stats[j, NTXENT_MAX], stats[j, NTXENT_NEGATIVES],
                                   stats[j, NTXENT_INV_SUM]) * stats[j, NTXENT_INV_NORM]
        out[offset + j - start] = c


@device_function
def ntxent_finish_row(m, negatives, count, loss, inv_sum, i, stats, rows):
    stats[i, NTXENT_MAX] = m
    stats[i, NTXENT_NEGATIVES] = negatives
    stats[i, NTXENT_INV_SUM] = inv_sum
    stats[i, NTXENT_POSITIVES] = count
    rows[i] = loss


# -- the CPU kernel bodies -------------------------------------------------------------
# A row's work is a function of its own, shared by the serial and the parallel kernel:
# the same machine code, so the same bits (the row loops inside them are float sums that
# LLVM vectorises; compiled in two contexts they were rounded differently).

_cpu_function = njit(fastmath=FASTMATH, error_model="numpy")


@_cpu_function
def _add_scaled(acc, c, r, j):
    """acc += c * r[j] (skipped for c = 0: a pair outside the masks)."""
    if c != 0.0:
        for d in range(acc.size):
            acc[d] += c * r[j, d]


@_cpu_function
def _circle_grad_row(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref,
                     stats, cotangent, k, grad):
    """Row k of the gradient: the factors of the references, then their sum of the
    references scaled by them, in float64."""
    factors = np.empty(ref.shape[0])
    circle_factors(labels, e, ref_labels, ref, k, 0, ref.shape[0], gamma, margin,
                   remove_diagonal, self_ref, stats, cotangent, factors, 0)
    acc = np.zeros(e.shape[1])
    for j in range(ref.shape[0]):
        _add_scaled(acc, factors[j], ref, j)
    for d in range(acc.size):
        grad[k, d] = acc[d]


@_cpu_function
def _ntxent_grad_row(labels, e, temperature, stats, factor, k, grad):
    """Row k of the gradient, as _circle_grad_row, then through the normalisation."""
    factors = np.empty(e.shape[0])
    ntxent_factors(labels, e, stats, k, 0, e.shape[0], temperature, factors, 0)
    acc = np.zeros(e.shape[1])
    for j in range(e.shape[0]):
        _add_scaled(acc, factors[j], e, j)
    # acc * factor is d loss / d u_k, u_k = e_k * inv_k: the chain rule through it
    inv_k = stats[k, NTXENT_INV_NORM]
    projection = 0.0
    for d in range(acc.size):
        projection += e[k, d] * inv_k * acc[d]
    along = stats[k, NTXENT_NORM_SLOPE] * projection
    for d in range(acc.size):
        grad[k, d] = (acc[d] - e[k, d] * inv_k * along) * (factor * inv_k)


@njit(inline="always")
def _circle_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows):
    for i in prange(e.shape[0]):
        pm, ps, nm, ns = circle_row(labels, e, ref_labels, ref, i, 0, 1, gamma, margin,
                                    remove_diagonal)
        circle_finish_row(lse_value(pm, ps), lse_value(nm, ns), i, stats, rows)


@njit(inline="always")
def _circle_grad(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref, stats,
                 cotangent, grad):
    for k in prange(e.shape[0]):
        _circle_grad_row(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref,
                         stats, cotangent, k, grad)


@njit(inline="always")
def _ntxent_stats(labels, e, eps, temperature, stats, rows):
    N = e.shape[0]
    for i in prange(N):
        ntxent_norm(e, eps, stats, i)
    for i in prange(N):
        m, negatives, count = ntxent_row_max(labels, e, stats, i, 0, 1, temperature)
        loss, inv_sum = ntxent_row_positives(labels, e, stats, i, 0, 1, temperature, m,
                                             negatives)
        ntxent_finish_row(m, negatives, count, loss, inv_sum, i, stats, rows)


@njit(inline="always")
def _ntxent_grad(labels, e, temperature, stats, scale, grad):
    factor = scale[0] / temperature
    for k in prange(e.shape[0]):
        _ntxent_grad_row(labels, e, temperature, stats, factor, k, grad)


# -- the kernels: module-level, so that Numba's on-disk cache holds them -----------------

@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def circle_stats_serial(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows):
    _circle_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def circle_stats_parallel(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats,
                          rows):
    _circle_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def circle_grad_serial(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref,
                       stats, cotangent, grad):
    _circle_grad(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref, stats,
                 cotangent, grad)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def circle_grad_parallel(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref,
                         stats, cotangent, grad):
    _circle_grad(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref, stats,
                 cotangent, grad)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ntxent_stats_serial(labels, e, eps, temperature, stats, rows):
    _ntxent_stats(labels, e, eps, temperature, stats, rows)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ntxent_stats_parallel(labels, e, eps, temperature, stats, rows):
    _ntxent_stats(labels, e, eps, temperature, stats, rows)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ntxent_grad_serial(labels, e, temperature, stats, scale, grad):
    _ntxent_grad(labels, e, temperature, stats, scale, grad)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ntxent_grad_parallel(labels, e, temperature, stats, scale, grad):
    _ntxent_grad(labels, e, temperature, stats, scale, grad)

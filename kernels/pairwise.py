"""Batch-pairwise losses: losses of the N x M similarity matrix of a batch.

``S_ij = <e_i, r_j>`` between the rows of the embeddings ``e`` (N, D) and of the
references ``r`` (M, D; usually ``e`` itself), each row ``i`` a log-sum-exp over masked
subsets of its row of ``S``.  ``S`` is never stored whole: as in flash attention it is
recomputed where needed.

* Pass 1, per row ``i``: the row's statistics (maximum and sum of exponentials per
  subset, counts) and its loss.
* Pass 2, per row ``k``: the gradient ``g_k = sum_j (G_kj + G_jk) r_j``, with
  ``G = d loss / d S`` built from the pass-1 statistics of rows ``k`` and ``j``
  (``G_jk`` only when ``r`` is ``e``: ``S`` is then symmetric).  Each output row is
  written by one task at a time: no races, and the same result for any number of
  threads.

The device functions below (a row's pairs, a pair's factor) are the CUDA kernels' math,
compiled for CUDA by ``pairwise_cuda``: functions that visit a row take ``(lane,
lanes)``, the row's pairs ``j = lane, lane + lanes, ...``, the threads of a block.  The
CPU kernels (after them) compute ``S`` in tiles, 6 x 2 dot products at a time, and run
the per-pair math in vectorised loops over a tile's columns; they call the per-pair
functions, which take scalars only (an array-taking function inlined per pair cost
reference counting on the CPU).

The per-pair math runs in float64: it costs a few operations per pair against the ``D``
multiply-adds of the pair's dot product, which run in the inputs' dtype.  Row sums are
accumulated in float64.  Gradient rows: on CUDA in float64; on the CPU as a product of
the factors (in the inputs' dtype) with the references, in the inputs' dtype (float32:
about 2e-7 of the largest gradient element off the float64 result, against 5e-8 when the
rows were summed in float64 one pair at a time).

Numba's cache checks only this file: clear ``__pycache__`` after editing ``_math.py``.
"""

from math import isnan, sqrt

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

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
        loss += log(denominator) - x
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
# On the CPU the similarities come in tiles.  A task takes a block of rows and computes
# their dot products with a run of reference rows (_products: 6 x 2 products at a time,
# in registers, about as fast as BLAS's sgemm, on the task's own thread), then the
# per-pair math over the tile in loops that LLVM vectorises (no branches, no reduction
# that does not vectorise).  Those loops take every pair for a negative one, the common
# kind; a row's few positive pairs, found by label (_matches), are then done apart.
#
# Pass 1 tiles a block of rows with all the reference rows (a row's statistics need all
# its pairs).  Pass 2 goes over the references in chunks of COLUMNS / D rows, each
# transposed once into a buffer that all the tasks read: a task's factors times the
# chunk's references (_products again) are added to its rows' gradients, which the first
# chunk sets.  Memory: a task's tiles (about BLOCK_PAIRS pairs) and the shared chunk,
# never the N x M matrix, nor a copy of an input.
#
# A block's results depend on the block (and chunk) alone, and its work is a function of
# its own, shared by the serial and the parallel kernel: the same machine code, so the
# same bits for any number of threads (compiled in two contexts, vectorised float sums
# were rounded differently).

_cpu_function = njit(fastmath=FASTMATH, error_model="numpy")

BLOCK_PAIRS = 1 << 13  # the pairs of a task's tile
COLUMNS = 1 << 14  # the elements of pass 2's chunk of references
SPREAD = 500.0  # the widest spread of the rows' log-sum-exps that _common_shift takes


@_cpu_function
def block_rows(M):
    """The rows of a task whose tile has M columns: a multiple of the 6 rows of
    _products' micro tile, the tile about BLOCK_PAIRS pairs (6 to 48 rows)."""
    return 6 * max(1, min(8, BLOCK_PAIRS // (6 * max(M, 1))))


@_cpu_function
def chunk_rows(M, D):
    """The reference rows of a chunk of pass 2: about COLUMNS elements, at least 8."""
    return max(8, min(M, COLUMNS // max(D, 1)))


@_cpu_function
def _products(a, b, out):
    """``out[i, j] = <a_i, b_j>`` for every row i of a and j of b, over a's columns (b's
    rows may be longer), added in a's dtype (b's and out's too).  6 x 2 products at a
    time, 12 accumulators in registers, each load used 6 or 2 times, the loop over the
    dimensions vectorised (from 0: started at a variable, LLVM vectorised it across the
    products instead, three times slower).  The rows and the column left over take the
    last row or column again, computed and stored twice: every product is added in one
    order, so that ``<a_i, b_j>`` and ``<b_j, a_i>`` are the same bits wherever they sit
    in the tiles (pass 2 takes one for the other)."""
    T = type(a[0, 0])
    rows = a.shape[0]
    M = b.shape[0]
    D = a.shape[1]
    for i in range(0, rows, 6):
        i1 = min(i + 1, rows - 1)
        i2 = min(i + 2, rows - 1)
        i3 = min(i + 3, rows - 1)
        i4 = min(i + 4, rows - 1)
        i5 = min(i + 5, rows - 1)
        for j in range(0, M, 2):
            j1 = min(j + 1, M - 1)
            s00 = T(0.0)
            s01 = T(0.0)
            s10 = T(0.0)
            s11 = T(0.0)
            s20 = T(0.0)
            s21 = T(0.0)
            s30 = T(0.0)
            s31 = T(0.0)
            s40 = T(0.0)
            s41 = T(0.0)
            s50 = T(0.0)
            s51 = T(0.0)
            for d in range(D):
                b0 = b[j, d]
                b1 = b[j1, d]
                a0 = a[i, d]
                a1 = a[i1, d]
                a2 = a[i2, d]
                a3 = a[i3, d]
                a4 = a[i4, d]
                a5 = a[i5, d]
                s00 += a0 * b0
                s01 += a0 * b1
                s10 += a1 * b0
                s11 += a1 * b1
                s20 += a2 * b0
                s21 += a2 * b1
                s30 += a3 * b0
                s31 += a3 * b1
                s40 += a4 * b0
                s41 += a4 * b1
                s50 += a5 * b0
                s51 += a5 * b1
            out[i, j] = s00
            out[i1, j] = s10
            out[i2, j] = s20
            out[i3, j] = s30
            out[i4, j] = s40
            out[i5, j] = s50
            out[i, j1] = s01
            out[i1, j1] = s11
            out[i2, j1] = s21
            out[i3, j1] = s31
            out[i4, j1] = s41
            out[i5, j1] = s51


@_cpu_function
def _transpose(ref, j0, j1, out):
    """``out[d, j - j0] = ref[j, d]`` for j in [j0, j1): a chunk of references, transposed
    (8 x 8 at a time)."""
    D = ref.shape[1]
    for jb in range(j0, j1, 8):
        for db in range(0, D, 8):
            for j in range(jb, min(j1, jb + 8)):
                for d in range(db, min(D, db + 8)):
                    out[d, j - j0] = ref[j, d]


@_cpu_function
def _add_products(factors, ref_t, k0, first, grad):
    """``grad[k0 + r] (+)= factors[r] @ ref_t[:, :width].T``, 6 rows at a time (set for
    the first chunk, then added, in the gradient's dtype)."""
    part = np.empty((6, grad.shape[1]), grad.dtype)
    for g in range(0, factors.shape[0], 6):
        rows = min(6, factors.shape[0] - g)
        _products(factors[g:g + rows], ref_t, part[:rows])
        for q in range(rows):
            k = k0 + g + q
            if first:
                for d in range(grad.shape[1]):
                    grad[k, d] = part[q, d]
            else:
                for d in range(grad.shape[1]):
                    grad[k, d] += part[q, d]


@_cpu_function
def _matches(keys, values):
    """The rows j with ``values[j] == keys[k]``, for each k: ``order[start[k]:stop[k]]``,
    in increasing order.  (A merge sort and binary searches of its own: Numba's argsort
    and searchsorted took seconds to compile.)"""
    n = values.size
    order = np.arange(n)
    other = np.empty(n, np.int64)
    width = 1
    while width < n:  # bottom-up merge sort, stable
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a = lo
            b = mid
            for t in range(lo, hi):
                if a < mid and (b >= hi or values[order[a]] <= values[order[b]]):
                    other[t] = order[a]
                    a += 1
                else:
                    other[t] = order[b]
                    b += 1
        order, other = other, order
        width *= 2
    start = np.empty(keys.size, np.int64)
    stop = np.empty(keys.size, np.int64)
    for k in range(keys.size):
        start[k] = _bound(values, order, keys[k], False)
        stop[k] = _bound(values, order, keys[k], True)
    return order, start, stop


@_cpu_function
def _bound(values, order, key, after):
    """The first t with ``values[order[t]] >= key`` (``> key`` if after)."""
    lo = 0
    hi = order.size
    while lo < hi:
        mid = (lo + hi) // 2
        v = values[order[mid]]
        if v < key or (after and v == key):
            lo = mid + 1
        else:
            hi = mid
    return lo


@_cpu_function
def _maximum(x, start, stop, m):
    """The maximum of m and x[start:stop] (NaN skipped, as lse_add skips it).  A loop of
    its own: the select reduction does not vectorise, and in the loop that computes x it
    stopped that loop vectorising."""
    for j in range(start, stop):
        m = x[j] if x[j] > m else m
    return m


@_cpu_function
def _common_shift(lse, weight):
    """A shift for one exponential per pair in pass 2, where a pair's factor has
    ``weight_k exp(x - lse_k) + weight_j exp(x - lse_j)`` (x <= lse_k, lse_j): the largest
    lse, and ``scaled = weight exp(shift - lse)`` (0 for weight 0).  NaN (two exponentials
    then) where the finite lse spread over more than SPREAD (exp(shift - lse) would
    overflow, exp(x - shift) underflow early) or one is NaN; infinite ones (rows without
    a pair of the kind: their pairs are done apart) are left out."""
    low = _INF
    high = -_INF
    for i in range(lse.size):
        if lse[i] != lse[i]:
            high = np.nan
            break
        if abs(lse[i]) < _INF:
            low = min(low, lse[i])
            high = max(high, lse[i])
    shift = high if high - low <= SPREAD else np.nan
    scaled = np.zeros(lse.size)
    if not isnan(shift):
        for i in range(lse.size):
            if weight[i] != 0.0:
                scaled[i] = weight[i] * exp(shift - lse[i])
    return shift, scaled


@_cpu_function
def _zero(x):
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):
            x[i, d] = 0.0


@_cpu_function
def _column(stats, c):
    """A column of the rows' statistics, contiguous (the loops over the pairs read it)."""
    x = np.empty(stats.shape[0])
    for i in range(x.size):
        x[i] = stats[i, c]
    return x


# -- circle on the CPU

@_cpu_function
def _circle_row(tile, r, i, labels, ref_labels, gamma, margin, remove_diagonal, order, start,
                stop, logits):
    """Row i's log-sum-exps ``(p, n)`` of its positive and negative logits from row r of
    the tile, as circle_row has them: each subset's maximum first, then its sum."""
    label = labels[i]
    M = tile.shape[1]
    for j in range(M):
        n_logit = circle_negative(float(tile[r, j]), gamma, margin)[0]
        logits[j] = -_INF if label == ref_labels[j] else n_logit
    nm = _maximum(logits, 0, M, -_INF)
    ns = 0.0
    for j in range(M):
        t = exp(logits[j] - nm)
        ns += 0.0 if label == ref_labels[j] else t
    pm = -_INF
    for t in range(start[i], stop[i]):
        j = order[t]
        if not (remove_diagonal and j == i):
            logits[j] = circle_positive(float(tile[r, j]), gamma, margin)[0]
            pm = logits[j] if logits[j] > pm else pm
    ps = 0.0
    for t in range(start[i], stop[i]):
        j = order[t]
        if not (remove_diagonal and j == i):
            ps += exp(logits[j] - pm)
    return lse_value(pm, ps), lse_value(nm, ns)


@_cpu_function
def _circle_stats_block(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, order,
                        start, stop, i0, i1, stats, rows):
    """Pass 1 for rows [i0, i1)."""
    tile = np.empty((i1 - i0, ref.shape[0]), e.dtype)
    logits = np.empty(ref.shape[0])
    _products(e[i0:i1], ref, tile)
    for i in range(i0, i1):
        p, n = _circle_row(tile, i - i0, i, labels, ref_labels, gamma, margin, remove_diagonal,
                           order, start, stop, logits)
        circle_finish_row(p, n, i, stats, rows)


@_cpu_function
def _circle_pair_factor(s, k, j, labels, ref_labels, gamma, margin, remove_diagonal, self_ref,
                        h, positive_lse, negative_lse):
    """``G_kj (+ G_jk)`` of one pair of similarity s, as circle_factors has it."""
    h_k = h[k]
    kind_k = circle_kind(labels[k], ref_labels[j], h_k, k == j, remove_diagonal)
    c = circle_term(s, kind_k, h_k, positive_lse[k], negative_lse[k], gamma, margin)
    if self_ref:
        h_j = h[j]
        kind_j = circle_kind(labels[j], ref_labels[k], h_j, k == j, remove_diagonal)
        c += circle_term(s, kind_j, h_j, positive_lse[j], negative_lse[j], gamma, margin)
    return c


@_cpu_function
def _first_from(order, start, stop, j0):
    """The first t in [start, stop) with ``order[t] >= j0`` (order rising there)."""
    while start < stop:
        mid = (start + stop) // 2
        if order[mid] < j0:
            start = mid + 1
        else:
            stop = mid
    return start


@_cpu_function
def _circle_factors(tile, k0, j0, labels, ref_labels, gamma, margin, remove_diagonal,
                    self_ref, h, positive_lse, negative_lse, shift, scaled, ref_order,
                    ref_start, ref_stop, both_sides, order, start, stop):
    """The tile (rows k0, ..., columns j0, ...) turned into its factors ``G_kj (+ G_jk)``,
    in place, row by row: every pair as a negative one (both sides with self_ref), then
    the pairs positive on k's side (ref_order) and, with both_sides, on j's side (order),
    whose similarities wait in saved meanwhile."""
    width = tile.shape[1]
    j1 = j0 + width
    saved = np.empty(2 * width, tile.dtype)
    for r in range(tile.shape[0]):
        k = k0 + r
        first = _first_from(ref_order, ref_start[k], ref_stop[k], j0)
        first_j = _first_from(order, start[k], stop[k], j0) if both_sides else 0
        n = 0
        t = first
        while t < ref_stop[k] and ref_order[t] < j1:
            saved[n] = tile[r, ref_order[t] - j0]
            n += 1
            t += 1
        t = first_j
        while both_sides and t < stop[k] and order[t] < j1:
            saved[n] = tile[r, order[t] - j0]
            n += 1
            t += 1
        h_k = h[k]
        n_k = negative_lse[k]
        if not self_ref:
            for jj in range(width):
                n_logit, n_slope = circle_negative(float(tile[r, jj]), gamma, margin)
                tile[r, jj] = 0.0 if h_k == 0.0 else h_k * exp(n_logit - n_k) * n_slope
        elif not isnan(shift):
            # one exponential for both sides: h exp(x - n) = exp(x - shift) h exp(shift - n)
            scaled_k = scaled[k]
            for jj in range(width):
                n_logit, n_slope = circle_negative(float(tile[r, jj]), gamma, margin)
                tile[r, jj] = exp(n_logit - shift) * n_slope * (scaled_k + scaled[j0 + jj])
        else:  # (no common shift: rare, and every pair in turn, not to compile another loop)
            for jj in range(width):
                tile[r, jj] = _circle_pair_factor(float(tile[r, jj]), k, j0 + jj, labels,
                                                  ref_labels, gamma, margin, remove_diagonal,
                                                  True, h, positive_lse, negative_lse)
            continue
        n = 0
        t = first
        p_k = positive_lse[k]
        while t < ref_stop[k] and ref_order[t] < j1:  # positive on k's side
            j = ref_order[t]
            if both_sides:
                c = _circle_pair_factor(float(saved[n]), k, j, labels, ref_labels, gamma,
                                        margin, remove_diagonal, True, h, positive_lse,
                                        negative_lse)
            else:  # (circle_factors for a pair positive on its sides)
                p_logit, p_slope = circle_positive(float(saved[n]), gamma, margin)
                removed = remove_diagonal and j == k
                c = 0.0 if h_k == 0.0 or removed else h_k * exp(p_logit - p_k) * p_slope
                if self_ref and not (h[j] == 0.0 or removed):
                    c += h[j] * exp(p_logit - positive_lse[j]) * p_slope
            tile[r, j - j0] = c
            n += 1
            t += 1
        t = first_j
        while both_sides and t < stop[k] and order[t] < j1:  # positive on j's side
            j = order[t]
            tile[r, j - j0] = _circle_pair_factor(float(saved[n]), k, j, labels, ref_labels,
                                                  gamma, margin, remove_diagonal, True, h,
                                                  positive_lse, negative_lse)
            n += 1
            t += 1


@_cpu_function
def _circle_grad_block(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref,
                       h, positive_lse, negative_lse, shift, scaled, ref_order, ref_start,
                       ref_stop, both_sides, order, start, stop, k0, k1, j0, j1, ref_t, grad):
    """Pass 2 for rows [k0, k1) and the chunk of references [j0, j1) (ref_t: the chunk,
    transposed): the pairs' similarities, turned into their factors, then the factors'
    products with the chunk."""
    tile = np.empty((k1 - k0, j1 - j0), e.dtype)
    _products(e[k0:k1], ref[j0:j1], tile)
    _circle_factors(tile, k0, j0, labels, ref_labels, gamma, margin, remove_diagonal,
                    self_ref, h, positive_lse, negative_lse, shift, scaled, ref_order,
                    ref_start, ref_stop, both_sides, order, start, stop)
    _add_products(tile, ref_t, k0, j0 == 0, grad)


@_cpu_function
def _circle_grad_setup(labels, ref_labels, ref, self_ref, stats, cotangent):
    """Pass 2's data: the pairs positive on k's side and (self_ref) on j's (unless the
    reference labels are the labels: a pair positive on one side is then on the other),
    the rows' cotangent times sigmoid and log-sum-exps, the common shift of the negative
    ones, and the buffer of a chunk of references."""
    N = labels.size
    ref_order, ref_start, ref_stop = _matches(labels, ref_labels)
    both_sides = False
    if self_ref:
        for i in range(N):
            both_sides = both_sides or labels[i] != ref_labels[i]
    order, start, stop = ref_order, ref_start, ref_stop
    if both_sides:
        order, start, stop = _matches(ref_labels, labels)
    h = _column(stats, CIRCLE_SIGMOID)
    for i in range(N):
        h[i] *= cotangent[i]
    negative_lse = _column(stats, CIRCLE_NEGATIVE)
    shift, scaled = _common_shift(negative_lse, h)
    ref_t = np.empty((ref.shape[1], chunk_rows(ref.shape[0], ref.shape[1])), ref.dtype)
    return (ref_order, ref_start, ref_stop, both_sides, order, start, stop, h,
            _column(stats, CIRCLE_POSITIVE), negative_lse, shift, scaled, ref_t)


# -- NT-Xent on the CPU

@_cpu_function
def _ntxent_stats_block(labels, e, inv_norm, temperature, order, start, stop, i0, i1, stats,
                        rows):
    """Pass 1 for rows [i0, i1), as ntxent_row_max and ntxent_row_positives: the row's
    maximum, the sum over its negatives, then its positive pairs (by label)."""
    N = e.shape[0]
    tile = np.empty((i1 - i0, N), e.dtype)
    x = np.empty(N)
    _products(e[i0:i1], e, tile)
    for i in range(i0, i1):
        r = i - i0
        inv_i = inv_norm[i]
        label = labels[i]
        for j in range(N):
            x[j] = float(tile[r, j]) * inv_i * inv_norm[j] / temperature
        m = _maximum(x, i + 1, N, _maximum(x, 0, i, -_INF))
        negatives = 0.0
        for j in range(N):
            t = exp(x[j] - m)
            negatives += 0.0 if label == labels[j] else t
        loss = 0.0
        inv_sum = 0.0
        for t in range(start[i], stop[i]):
            j = order[t]
            if j != i:
                y = x[j] - m
                denominator = exp(y) + negatives
                loss += log(denominator) - y
                inv_sum += 1.0 / denominator if denominator > 0.0 else _INF
        ntxent_finish_row(m, negatives, float(stop[i] - start[i] - 1), loss, inv_sum, i, stats,
                          rows)


@_cpu_function
def _ntxent_stats_setup(labels, e, eps, stats):
    """Pass 1's data: the rows' normalisation (into stats) and their positive pairs."""
    for i in range(e.shape[0]):
        ntxent_norm(e, eps, stats, i)
    order, start, stop = _matches(labels, labels)
    return _column(stats, NTXENT_INV_NORM), order, start, stop


@_cpu_function
def _ntxent_grad_block(labels, e, temperature, inv_norm, maxima, negatives, inv_sums, shift,
                       scaled, order, start, stop, k0, k1, j0, j1, e_t, grad):
    """Pass 2 for rows [k0, k1) and the chunk of rows [j0, j1) (e_t: the chunk,
    transposed): the pairs' similarities turned into ntxent_factors (every pair as a
    negative one, then the row's positive pairs again, whose similarities wait in saved
    meanwhile), then the factors' products with the chunk."""
    width = j1 - j0
    tile = np.empty((k1 - k0, width), e.dtype)
    saved = np.empty(width, e.dtype)
    _products(e[k0:k1], e[j0:j1], tile)
    for k in range(k0, k1):
        r = k - k0
        inv_k = inv_norm[k]
        m_k = maxima[k]
        inv_sum_k = inv_sums[k]
        first = _first_from(order, start[k], stop[k], j0)
        n = 0
        t = first
        while t < stop[k] and order[t] < j1:
            saved[n] = tile[r, order[t] - j0]
            n += 1
            t += 1
        if not isnan(shift):
            # one exponential for both sides: exp(s - m) inv_sum = exp(s - shift) scaled
            scaled_k = scaled[k]
            for jj in range(width):
                j = j0 + jj
                s = float(tile[r, jj]) * inv_k * inv_norm[j] / temperature
                tile[r, jj] = exp(s - shift) * (scaled_k + scaled[j]) * inv_norm[j]
        else:  # (no common shift: rare, and every pair in turn, not to compile a loop)
            for jj in range(width):
                j = j0 + jj
                s = float(tile[r, jj]) * inv_k * inv_norm[j] / temperature
                tile[r, jj] = ntxent_pair_factor(
                    s, labels[k] == labels[j], m_k, negatives[k], inv_sum_k, maxima[j],
                    negatives[j], inv_sums[j]) * inv_norm[j]
        n = 0
        t = first
        while t < stop[k] and order[t] < j1:
            j = order[t]
            c = 0.0
            if j != k:
                s = float(saved[n]) * inv_k * inv_norm[j] / temperature
                c = ntxent_pair_factor(s, True, m_k, negatives[k], inv_sum_k, maxima[j],
                                       negatives[j], inv_sums[j]) * inv_norm[j]
            tile[r, j - j0] = c
            n += 1
            t += 1
    _add_products(tile, e_t, k0, j0 == 0, grad)


@_cpu_function
def _ntxent_finish_block(e, inv_norm, slope, factor, k0, k1, grad):
    """Rows [k0, k1) of the gradient (d loss / d u_k over factor, u_k = e_k inv_k) through
    the normalisation, in place."""
    for k in range(k0, k1):
        inv_k = inv_norm[k]
        projection = 0.0
        for d in range(e.shape[1]):
            projection += e[k, d] * inv_k * float(grad[k, d])
        along = slope[k] * projection
        for d in range(e.shape[1]):
            grad[k, d] = (float(grad[k, d]) - e[k, d] * inv_k * along) * (factor * inv_k)


@_cpu_function
def _ntxent_grad_setup(labels, e, stats):
    """Pass 2's data: the rows' positive pairs and statistics, the common shift of the row
    maxima, and the buffer of a chunk of rows."""
    order, start, stop = _matches(labels, labels)
    maxima = _column(stats, NTXENT_MAX)
    inv_sums = _column(stats, NTXENT_INV_SUM)
    shift, scaled = _common_shift(maxima, inv_sums)
    e_t = np.empty((e.shape[1], chunk_rows(e.shape[0], e.shape[1])), e.dtype)
    return (order, start, stop, _column(stats, NTXENT_INV_NORM), maxima,
            _column(stats, NTXENT_NEGATIVES), inv_sums, _column(stats, NTXENT_NORM_SLOPE),
            shift, scaled, e_t)


# -- the kernels' bodies: the blocks in parallel (prange) or in turn.  What comes before
# the blocks is a function of its own: in a parallel kernel each array it makes became a
# parallel loop of its own, each seconds more to compile.
#
# The blocks are handed out as the threads ask for them (a shared counter, _next_block),
# not split between the threads beforehand: a thread slowed by another process on its
# core (OpenBLAS's workers spin a while after each call) then does fewer blocks.  Which
# thread does a block does not change its bits.

@intrinsic
def _fetch_add(typingctx, counter):
    """``counter[0] += 1`` as one atomic operation; the value before."""
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, context.get_constant(types.int64, 1),
                                  "monotonic")

    return sig, codegen


@_cpu_function
def _next_block(counter):
    return _fetch_add(counter)


@_cpu_function
def _counter():
    """A counter for _next_block.  The kernels run ``prange(blocks)``, each task taking
    blocks until none is left: the first task of each thread takes them all, the others
    find none.  (numba.get_num_threads would tell the threads, but a kernel that calls it
    is not cached.)"""
    return np.zeros(1, np.int64)


@njit(inline="always")
def _circle_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows):
    N = e.shape[0]
    B = block_rows(ref.shape[0])
    blocks = (N + B - 1) // B
    order, start, stop = _matches(labels, ref_labels)
    counter = _counter()
    for _ in prange(blocks):
        block = _next_block(counter)
        while block < blocks:
            _circle_stats_block(labels, e, ref_labels, ref, gamma, margin, remove_diagonal,
                                order, start, stop, block * B, min(N, block * B + B), stats,
                                rows)
            block = _next_block(counter)


@njit(inline="always")
def _circle_grad(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref, stats,
                 cotangent, grad):
    N = e.shape[0]
    M = ref.shape[0]
    (ref_order, ref_start, ref_stop, both_sides, order, start, stop, h, positive_lse,
     negative_lse, shift, scaled, ref_t) = _circle_grad_setup(labels, ref_labels, ref,
                                                              self_ref, stats, cotangent)
    if M == 0:  # (no references: no pairs)
        _zero(grad)
    width = ref_t.shape[1]
    B = block_rows(width)
    blocks = (N + B - 1) // B
    for j0 in range(0, M, width):
        j1 = min(M, j0 + width)
        _transpose(ref, j0, j1, ref_t)
        counter = _counter()
        for _ in prange(blocks):
            block = _next_block(counter)
            while block < blocks:
                _circle_grad_block(labels, e, ref_labels, ref, gamma, margin, remove_diagonal,
                                   self_ref, h, positive_lse, negative_lse, shift, scaled,
                                   ref_order, ref_start, ref_stop, both_sides, order, start,
                                   stop, block * B, min(N, block * B + B), j0, j1, ref_t,
                                   grad)
                block = _next_block(counter)


@njit(inline="always")
def _ntxent_stats(labels, e, eps, temperature, stats, rows):
    N = e.shape[0]
    B = block_rows(N)
    blocks = (N + B - 1) // B
    inv_norm, order, start, stop = _ntxent_stats_setup(labels, e, eps, stats)
    counter = _counter()
    for _ in prange(blocks):
        block = _next_block(counter)
        while block < blocks:
            _ntxent_stats_block(labels, e, inv_norm, temperature, order, start, stop,
                                block * B, min(N, block * B + B), stats, rows)
            block = _next_block(counter)


@njit(inline="always")
def _ntxent_grad(labels, e, temperature, stats, scale, grad):
    N = e.shape[0]
    factor = scale[0] / temperature
    (order, start, stop, inv_norm, maxima, negatives, inv_sums, slope, shift, scaled,
     e_t) = _ntxent_grad_setup(labels, e, stats)
    width = e_t.shape[1]
    B = block_rows(width)
    blocks = (N + B - 1) // B
    for j0 in range(0, N, width):
        j1 = min(N, j0 + width)
        _transpose(e, j0, j1, e_t)
        counter = _counter()
        for _ in prange(blocks):
            block = _next_block(counter)
            while block < blocks:
                _ntxent_grad_block(labels, e, temperature, inv_norm, maxima, negatives,
                                   inv_sums, shift, scaled, order, start, stop, block * B,
                                   min(N, block * B + B), j0, j1, e_t, grad)
                block = _next_block(counter)
    counter = _counter()
    for _ in prange(blocks):
        block = _next_block(counter)
        while block < blocks:
            _ntxent_finish_block(e, inv_norm, slope, factor, block * B, min(N, block * B + B),
                                 grad)
            block = _next_block(counter)


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


# -- tiles of the pair matrix: the blocks of a Dask graph (fastloss/dask_pairs.py) --------
# A tile pairs the rows of one chunk (e, n rows) with the rows of another (the columns:
# ref or f, M rows), wherever they lie in the whole batch: ``diagonal`` is the columns'
# first global row minus the rows' first, so the pair (r, jj) is the diagonal i == j
# where ``r == jj + diagonal``.  Similarities come from _products, as in the kernels
# above; each row's statistics over the tile's columns are merged over the tiles of its
# chunk, in column order, by the merge kernels.  Serial: the graph runs tiles in parallel.

_tile_kernel = njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")


@_tile_kernel
def circle_tile_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, diagonal,
                      out):
    """``out[r] = (p, n)``: row r's log-sum-exps of its positive and negative logits over
    the tile's columns, as circle_row has them over a row (-inf for an empty subset):
    each subset's maximum first, then its sum."""
    n = e.shape[0]
    M = ref.shape[0]
    tile = np.empty((n, M), e.dtype)
    _products(e, ref, tile)
    logits = np.empty(M)
    kinds = np.empty(M, np.int8)  # 1 positive, -1 negative, 0 the removed diagonal
    for r in range(n):
        pm = -_INF
        nm = -_INF
        for jj in range(M):
            s = float(tile[r, jj])
            if labels[r] == ref_labels[jj]:
                if remove_diagonal and r == jj + diagonal:
                    kinds[jj] = 0
                    continue
                kinds[jj] = 1
                logits[jj] = circle_positive(s, gamma, margin)[0]
                pm = logits[jj] if logits[jj] > pm else pm
            else:
                kinds[jj] = -1
                logits[jj] = circle_negative(s, gamma, margin)[0]
                nm = logits[jj] if logits[jj] > nm else nm
        ps = 0.0
        ns = 0.0
        for jj in range(M):
            if kinds[jj] > 0:
                ps += exp(logits[jj] - pm)
            elif kinds[jj] < 0:
                ns += exp(logits[jj] - nm)
        out[r, 0] = lse_value(pm, ps)
        out[r, 1] = lse_value(nm, ns)


@_tile_kernel
def circle_merge_rows(parts, stats, rows):
    """The rows' (p, n) from each tile's (``parts[t]``, in column order), merged as
    log-sum-exps, then each row's statistics and loss (circle_finish_row)."""
    for i in range(parts.shape[1]):
        pm = -_INF
        ps = 0.0
        nm = -_INF
        ns = 0.0
        for t in range(parts.shape[0]):
            p = parts[t, i, 0]
            q = parts[t, i, 1]
            pm, ps = lse_add(pm, ps, p, p != -_INF)  # (NaN counted: it stays NaN)
            nm, ns = lse_add(nm, ns, q, q != -_INF)
        circle_finish_row(lse_value(pm, ps), lse_value(nm, ns), i, stats, rows)


@_tile_kernel
def circle_tile_grad(labels, ref_labels, e, h, positive_lse, negative_lse, col_labels,
                     col_ref_labels, ref, col_h, col_positive, col_negative, gamma, margin,
                     remove_diagonal, self_ref, diagonal, acc):
    """``acc[r] += sum_jj (G_kj (+ G_jk)) ref_jj`` over the tile, in float64, the factors
    as circle_factors has them: row k's side from its own (h, p, n), with self_ref the
    column row j's side from the columns' (``labels[j]``: col_labels, ``ref_labels[k]``:
    ref_labels)."""
    n = e.shape[0]
    M = ref.shape[0]
    tile = np.empty((n, M), e.dtype)
    _products(e, ref, tile)
    factors = np.empty(M)
    for r in range(n):
        h_k = h[r]
        for jj in range(M):
            s = float(tile[r, jj])
            diagonal_pair = r == jj + diagonal
            kind_k = circle_kind(labels[r], col_ref_labels[jj], h_k, diagonal_pair,
                                 remove_diagonal)
            c = circle_term(s, kind_k, h_k, positive_lse[r], negative_lse[r], gamma, margin)
            if self_ref:
                h_j = col_h[jj]
                kind_j = circle_kind(col_labels[jj], ref_labels[r], h_j, diagonal_pair,
                                     remove_diagonal)
                c += circle_term(s, kind_j, h_j, col_positive[jj], col_negative[jj], gamma,
                                 margin)
            factors[jj] = c
        _add_row_products(factors, ref, acc, r)


@_cpu_function
def _add_row_products(factors, ref, acc, r):
    """``acc[r] += factors @ ref``, in float64."""
    for jj in range(ref.shape[0]):
        c = factors[jj]
        for d in range(ref.shape[1]):
            acc[r, d] += c * float(ref[jj, d])


@_tile_kernel
def ntxent_tile_norms(e, eps, stats):
    """The rows' normalisation into stats (ntxent_norm)."""
    for i in range(e.shape[0]):
        ntxent_norm(e, eps, stats, i)


@_cpu_function
def _ntxent_tile_similarities(e, stats, f, col_stats, temperature, r, tile, x):
    """Row r's similarities over the tile's columns, as _ntxent_stats_block has them."""
    inv_i = stats[r, NTXENT_INV_NORM]
    for jj in range(f.shape[0]):
        x[jj] = float(tile[r, jj]) * inv_i * col_stats[jj, NTXENT_INV_NORM] / temperature


@_tile_kernel
def ntxent_tile_negatives(labels, e, stats, col_labels, f, col_stats, temperature, diagonal,
                          out):
    """``out[r] = (m, negatives, positives)`` over the tile's pairs but the diagonal, as
    ntxent_row_max over a row: the maximum of the similarities, the sum of ``exp(x -
    m)`` over the negative pairs, the number of positive pairs."""
    n = e.shape[0]
    M = f.shape[0]
    tile = np.empty((n, M), e.dtype)
    _products(e, f, tile)
    x = np.empty(M)
    for r in range(n):
        _ntxent_tile_similarities(e, stats, f, col_stats, temperature, r, tile, x)
        m = -_INF
        count = 0.0
        for jj in range(M):
            if r != jj + diagonal:
                m = x[jj] if x[jj] > m else m
                if labels[r] == col_labels[jj]:
                    count += 1.0
        negatives = 0.0
        for jj in range(M):
            if labels[r] != col_labels[jj]:
                negatives += exp(x[jj] - m)
        out[r, 0] = m
        out[r, 1] = negatives
        out[r, 2] = count


@_tile_kernel
def ntxent_merge_negatives(parts, stats):
    """The rows' maximum, negatives' sum (rescaled to that maximum) and number of positive
    pairs from each tile's (``parts[t]``, in column order), into stats."""
    for i in range(parts.shape[1]):
        m = -_INF
        for t in range(parts.shape[0]):
            m = parts[t, i, 0] if parts[t, i, 0] > m else m
        negatives = 0.0
        count = 0.0
        for t in range(parts.shape[0]):
            if parts[t, i, 1] != 0.0:
                negatives += parts[t, i, 1] * exp(parts[t, i, 0] - m)
            count += parts[t, i, 2]
        stats[i, NTXENT_MAX] = m
        stats[i, NTXENT_NEGATIVES] = negatives
        stats[i, NTXENT_POSITIVES] = count


@_tile_kernel
def ntxent_tile_positives(labels, e, stats, col_labels, f, col_stats, temperature, diagonal,
                          out):
    """``out[r] = (loss, inv_sum)`` over the tile's positive pairs, as
    ntxent_row_positives over a row, from the row's merged maximum and negatives: only
    the positive pairs' similarities are computed."""
    one = np.empty((1, 1), e.dtype)
    for r in range(e.shape[0]):
        inv_i = stats[r, NTXENT_INV_NORM]
        m = stats[r, NTXENT_MAX]
        negatives = stats[r, NTXENT_NEGATIVES]
        loss = 0.0
        inv_sum = 0.0
        for jj in range(f.shape[0]):
            if labels[r] != col_labels[jj] or r == jj + diagonal:
                continue
            _products(e[r:r + 1], f[jj:jj + 1], one)
            y = float(one[0, 0]) * inv_i * col_stats[jj, NTXENT_INV_NORM] / temperature - m
            denominator = exp(y) + negatives
            loss += log(denominator) - y
            inv_sum += 1.0 / denominator if denominator > 0.0 else _INF
        out[r, 0] = loss
        out[r, 1] = inv_sum


@_tile_kernel
def ntxent_merge_positives(parts, stats, rows):
    """Each row's loss and inverse sums from each tile's (``parts[t]``, in column order),
    added; then its statistics (ntxent_finish_row)."""
    for i in range(parts.shape[1]):
        loss = 0.0
        inv_sum = 0.0
        for t in range(parts.shape[0]):
            loss += parts[t, i, 0]
            inv_sum += parts[t, i, 1]
        ntxent_finish_row(stats[i, NTXENT_MAX], stats[i, NTXENT_NEGATIVES],
                          stats[i, NTXENT_POSITIVES], loss, inv_sum, i, stats, rows)


@_tile_kernel
def ntxent_tile_grad(labels, e, stats, col_labels, f, col_stats, temperature, diagonal, acc):
    """``acc[r] += sum_jj c_kj f_jj`` over the tile, in float64, ``c`` the factors of
    ntxent_factors (ntxent_pair_factor times the column's inverse norm; 0 on the
    diagonal), before the normalisation's chain rule (ntxent_tile_finish)."""
    n = e.shape[0]
    M = f.shape[0]
    tile = np.empty((n, M), e.dtype)
    _products(e, f, tile)
    x = np.empty(M)
    factors = np.empty(M)
    for r in range(n):
        _ntxent_tile_similarities(e, stats, f, col_stats, temperature, r, tile, x)
        for jj in range(M):
            c = 0.0
            if r != jj + diagonal:
                c = ntxent_pair_factor(
                    x[jj], labels[r] == col_labels[jj], stats[r, NTXENT_MAX],
                    stats[r, NTXENT_NEGATIVES], stats[r, NTXENT_INV_SUM],
                    col_stats[jj, NTXENT_MAX], col_stats[jj, NTXENT_NEGATIVES],
                    col_stats[jj, NTXENT_INV_SUM]) * col_stats[jj, NTXENT_INV_NORM]
            factors[jj] = c
        _add_row_products(factors, f, acc, r)


@_tile_kernel
def ntxent_tile_finish(e, stats, factor, grad):
    """A chunk's gradient rows through the normalisation, in place (_ntxent_finish_block)."""
    _ntxent_finish_block(e, _column(stats, NTXENT_INV_NORM), _column(stats, NTXENT_NORM_SLOPE),
                         factor, 0, e.shape[0], grad)

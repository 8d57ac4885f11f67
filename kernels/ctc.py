"""The dynamic-programming family on the CPU: CTC's forward-backward recursion.

Per sequence ``n`` (``Tn`` frames, a target of ``Sn`` labels), over the extended target
``l'`` of ``L = 2 Sn + 1`` positions (a blank before, between and after the labels), in
log space and float64 whatever the input dtype:

    alpha[t, s] = lp[t, l'(s)] + logsumexp(alpha[t-1, s], alpha[t-1, s-1],
                                           alpha[t-1, s-2] if skip[s])
    beta[t, s]  = lp[t, l'(s)] + logsumexp(beta[t+1, s], beta[t+1, s+1],
                                           beta[t+1, s+2] if skip[s+2])
    loss        = -logsumexp(alpha[Tn-1, L-1], alpha[Tn-1, L-2])

where ``skip[s]`` (s odd) says that l'(s) differs from l'(s-2): a repeated label cannot
skip the blank between its two copies.  The gradient with respect to ``x``
(log-probabilities, or logits whose log-softmax ``lp`` is), for t < Tn:

    grad[t, c] = coef * (exp(lp[t, c]) - occupancy[t, c]),
    occupancy[t, c] = sum over s with l'(s) = c of exp(alpha[t, s] + beta[t, s] - lp[t, c] + loss)

and 0 for t >= Tn.  For logits that is the exact gradient (softmax minus the occupation
probabilities); for log-probabilities it is PyTorch's (the ``exp(lp)`` term vanishes
through a log-softmax's backward, as PyTorch's CTC gradient assumes).  An impossible
alignment (loss inf) gives NaN gradients, as PyTorch's; ``zero_infinity`` gives 0 loss and
0 gradients instead.

One fused pass per sequence: alpha forward (kept: ``L`` values per frame), then beta
backward in two alternating rows, each frame's gradient row written as soon as its beta
row is known.  Sequences run in parallel (``prange``) and each writes only its own
gradient rows: no atomics, and the results do not depend on the thread count.

On the CPU the recursion runs first in the linear domain (``_sequence_linear``): each
frame's emissions exp(lp) are taken relative to the band's largest, each frame's alpha
and beta divided by their totals (whose logs add up to the loss), so a position costs
a multiply and two adds instead of an exp and a log, and the emissions take one exp per
class or per position, whichever is fewer.  A term below 2**-500 of its frame's total is
dropped.  That is exact to rounding unless a dropped term would have counted, and then
the frames disagree: every frame's occupancies must add up to the forward pass's
probability (alpha and beta are computed independently, so a path dropped on one side
is missing from the sum of a frame where the other side still has it).  A sequence
whose frames disagree by more than AGREEMENT, or whose band spans more than GAP nats in
a frame, or whose emissions are NaN or inf, runs again in log space (``_sequence_log``,
below), which keeps every path however far apart.  CUDA runs the log-space recursion.

Each frame's update is a loop over positions with no branches (``lse3`` takes the
maximum of its three terms, as every log-sum-exp here does: no term is dropped against a
distant one), so with ``_math``'s exp and log it vectorises.  The occupancies of a frame
are summed in the linear domain after subtracting the frame's largest log occupancy (an
occupancy is at most 1 and the largest at least 1 / L, so only terms below 1e-300 of it
are lost).

``x`` and ``grad`` are flat, element (t, n, c) at ``t * stride_t + n * stride_n + c``: one
kernel signature for PyTorch's (T, N, C) and Keras's (N, T, C) layouts; ``shape`` is
``(stride_t, stride_n, T, C)``.  ``lse`` receives each frame's log-sum-exp of logits
(``from_logits``), else holds zeros.  Scratch per sequence: ``alpha`` (T, L + 2), ``rows``
(ROWS, L + 2), ``labels`` (L,), ``classes`` (C,) and ``scales`` (2, T), the linear
path's cumulative log scale and band maximum per frame (unused by CUDA).
"""

import math

from numba import njit, prange

from ._math import _where, exp, log
from .pointwise import FASTMATH

# The device functions of the kernels, by name: ctc_cuda compiles them for CUDA.
DEVICE_FUNCTIONS = {}

NEG_INF = -math.inf

# The rows of the per-sequence float64 scratch ``rows``.
BETA_EVEN, BETA_ODD, SKIP, FRAME_LP, SCALED = 0, 1, 2, 3, 4
ROWS = 5


def device_function(fn):
    DEVICE_FUNCTIONS[fn.__name__] = fn
    return njit(inline="always", fastmath=FASTMATH, error_model="numpy")(fn)


@device_function
def select(condition, a, b):
    return _where(condition, a, b)


@device_function
def lse3(a, b, c):
    """log(exp(a) + exp(b) + exp(c)), -inf when all three are, NaN when one is."""
    m = max(a, max(b, c))
    total = exp(a - m) + exp(b - m) + exp(c - m)
    return select(m == NEG_INF, a + b + c, m + log(total))  # (-inf, or NaN from a NaN)


@device_function
def alpha_at(prev, skip, frame_lp, s):
    """alpha[t, s] from the previous frame's row ``prev`` (t >= 1); ``skip[s]`` is 1
    where s - 2 -> s is allowed, else 0."""
    b = prev[s - 1] if s >= 1 else NEG_INF
    c = prev[s - 2] if s >= 2 and skip[s] != 0.0 else NEG_INF
    return lse3(prev[s], b, c) + frame_lp[s]


@device_function
def beta_at(later, skip, frame_lp, s, L):
    """beta[t, s] from the next frame's row ``later`` (t < Tn - 1)."""
    b = later[s + 1] if s + 1 < L else NEG_INF
    c = later[s + 2] if s + 2 < L and skip[s + 2] != 0.0 else NEG_INF
    return lse3(later[s], b, c) + frame_lp[s]


@device_function
def gradient_at(lp, occupancy_sum, factor, coef):
    """One element's gradient from its log-probability and its class's occupancy
    (``occupancy_sum * factor``, the frame's sum of scaled terms times their scale)."""
    return coef * (exp(lp) - occupancy_sum * factor)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _prepare(targets, n, L, blank, labels, skip):
    """The extended target's labels and skip factors (1 where s - 2 -> s is allowed)."""
    for s in range(L):
        labels[s] = blank if s % 2 == 0 else targets[n, s // 2]
        skip[s] = 0.0
    for s in range(3, L, 2):
        if labels[s] != labels[s - 2]:
            skip[s] = 1.0


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _frame_lp(x, shape, lse, n, t, labels, L, out):
    base = t * shape[0] + n * shape[1]
    for s in range(L):
        out[s] = float(x[base + labels[s]]) - lse[n, t]


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _log_softmax_scales(x, shape, lse, n, Tn):
    C = shape[3]
    for t in range(Tn):
        base = t * shape[0] + n * shape[1]
        top = NEG_INF
        for c in range(C):
            top = max(top, float(x[base + c]))
        total = 0.0
        for c in range(C):
            total += exp(float(x[base + c]) - top)
        lse[n, t] = top + log(total)


@device_function
def _max(top, value):
    """The larger, or NaN when either is (NaN reaches the loss)."""
    return select(value > top or value != value, value, top)


# How far below the frame's largest value a state's sum may fall before it is recomputed
# with its own maximum (exp of the difference stays a normal float64 above this).
FAR = 600.0


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _window(t, Tn, L):
    """The positions [lo, hi) that lie on a complete alignment at frame t: reachable from
    the start (s < 2t + 2) and able to reach the end (s >= L - 2 (Tn - t)).  Every other
    position's alpha or beta is dead weight (its occupancy is 0), so neither is computed
    there."""
    return max(0, L - 2 * (Tn - t)), min(L, 2 * t + 2)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _alpha_frame(prev, now, skip, frame_lp, scaled, lo, hi, L):
    """alpha's row ``now`` on [lo, hi) from ``prev`` (meaningful on [lo - 2, hi - 2), -inf
    just above): the frame's maximum taken out once (one exp and one log per position,
    vectorised), then the positions whose sum fell far below it recomputed exactly with
    their own maximum (``alpha_at``).  Leaves now[hi], now[hi + 1] at -inf."""
    start = max(lo - 2, 0)
    top = NEG_INF
    for s in range(start, hi):
        top = _max(top, prev[s])
    if top == NEG_INF:
        for s in range(lo, min(hi + 2, L)):
            now[s] = NEG_INF
        return
    for s in range(start, hi):
        scaled[s] = exp(prev[s] - top)
    for s in range(max(lo, 2), hi):
        now[s] = top + log(scaled[s] + scaled[s - 1] + skip[s] * scaled[s - 2]) + frame_lp[s]
    if lo == 0:
        now[0] = top + log(scaled[0]) + frame_lp[0]
    if lo <= 1 < hi:
        now[1] = top + log(scaled[1] + scaled[0]) + frame_lp[1]
    for s in range(lo, hi):
        if now[s] - frame_lp[s] < top - FAR and (
                prev[s] > NEG_INF or (s >= 1 and prev[s - 1] > NEG_INF)
                or (s >= 2 and skip[s] != 0.0 and prev[s - 2] > NEG_INF)):
            now[s] = alpha_at(prev, skip, frame_lp, s)
    for s in range(hi, min(hi + 2, L)):
        now[s] = NEG_INF


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _beta_frame(later, now, skip, frame_lp, scaled, lo, hi, L):
    """beta's row ``now`` on [lo, hi) from ``later`` (meaningful on [lo + 2, hi + 2), -inf
    just below), as ``_alpha_frame``.  Leaves now[lo - 2], now[lo - 1] at -inf."""
    stop = min(hi + 2, L)
    top = NEG_INF
    for s in range(lo, stop):
        top = _max(top, later[s])
    if top == NEG_INF:
        for s in range(max(lo - 2, 0), hi):
            now[s] = NEG_INF
        return
    for s in range(lo, stop):
        scaled[s] = exp(later[s] - top)
    for s in range(lo, min(hi, L - 2)):
        now[s] = top + log(scaled[s] + scaled[s + 1] + skip[s + 2] * scaled[s + 2]) + frame_lp[s]
    if lo <= L - 2 < hi:
        now[L - 2] = top + log(scaled[L - 2] + scaled[L - 1]) + frame_lp[L - 2]
    if hi == L:
        now[L - 1] = top + log(scaled[L - 1]) + frame_lp[L - 1]
    for s in range(lo, hi):
        if now[s] - frame_lp[s] < top - FAR and (
                later[s] > NEG_INF or (s + 1 < L and later[s + 1] > NEG_INF)
                or (s + 2 < L and skip[s + 2] != 0.0 and later[s + 2] > NEG_INF)):
            now[s] = beta_at(later, skip, frame_lp, s, L)
    for s in range(max(lo - 2, 0), lo):
        now[s] = NEG_INF


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _sequence_log(x, shape, lse, blank, zero_infinity, want_grad, coef, losses, grad, alpha,
                  rows, labels, classes, n, Tn, L):
    """The log-space recursion for sequence n: the loss into losses[n] and, with
    want_grad, its gradient rows."""
    T, C = shape[2], shape[3]
    skip, frame_lp, scaled = rows[n, SKIP], rows[n, FRAME_LP], rows[n, SCALED]
    seq_labels = labels[n]

    first = alpha[n, 0]
    _frame_lp(x, shape, lse, n, 0, seq_labels, L, frame_lp)
    for s in range(L):
        first[s] = NEG_INF
    first[0] = frame_lp[0]
    if L > 1:
        first[1] = frame_lp[1]
    for t in range(1, Tn):
        _frame_lp(x, shape, lse, n, t, seq_labels, L, frame_lp)
        lo, hi = _window(t, Tn, L)
        _alpha_frame(alpha[n, t - 1], alpha[n, t], skip, frame_lp, scaled, lo, hi, L)
    last = alpha[n, max(Tn - 1, 0)]
    nll = -lse3(last[L - 1], last[L - 2] if L > 1 else NEG_INF, NEG_INF)
    if Tn == 0:  # (no frames: only the empty target is possible, with probability 1)
        nll = 0.0 if L == 1 else math.inf
    infinite = nll == math.inf
    losses[n] = 0.0 if infinite and zero_infinity else nll
    if not want_grad:
        return

    stride_t, stride_n = shape[0], shape[1]
    for t in range(Tn, T):  # (frames past the input's end)
        base = t * stride_t + n * stride_n
        for c in range(C):
            grad[base + c] = 0.0
    if infinite and zero_infinity:
        for t in range(Tn):
            base = t * stride_t + n * stride_n
            for c in range(C):
                grad[base + c] = 0.0
        return
    scale = coef[n]
    class_sum = classes[n]
    for t in range(Tn - 1, -1, -1):
        _frame_lp(x, shape, lse, n, t, seq_labels, L, frame_lp)
        now = rows[n, BETA_EVEN + t % 2]
        lo, hi = _window(t, Tn, L)
        if t == Tn - 1:
            for s in range(L):
                now[s] = NEG_INF
            now[L - 1] = frame_lp[L - 1]
            if L > 1:
                now[L - 2] = frame_lp[L - 2]
        else:
            _beta_frame(rows[n, BETA_EVEN + (t + 1) % 2], now, skip, frame_lp, scaled, lo, hi, L)
        # log occupancies minus the loss: alpha + beta - lp, the frame's largest taken out
        here = alpha[n, t]
        top = NEG_INF
        for s in range(lo, hi):
            scaled[s] = select(frame_lp[s] == NEG_INF, NEG_INF, here[s] + now[s] - frame_lp[s])
            top = _max(top, scaled[s])
        for s in range(lo, hi):
            scaled[s] = exp(scaled[s] - top)
        for c in range(C):
            class_sum[c] = 0.0
        for s in range(lo, hi):  # (a scatter: the exps above stay in a loop that vectorises)
            class_sum[seq_labels[s]] += scaled[s]
        base = t * stride_t + n * stride_n
        factor = exp(top + nll)
        for c in range(C):
            lp = float(x[base + c]) - lse[n, t]
            grad[base + c] = gradient_at(lp, class_sum[c], factor, scale)


# -- the scaled recursion in the linear domain: the CPU's path, the log-space one its fallback

# The rows of ``rows`` it uses (each at least L + 2 wide): beta in two alternating rows
# (zeros at L and L + 1, so s + 1 and s + 2 need no bounds), the skip factors (zeros from
# L on), the frame's emissions and its occupancies.  alpha[n, t] holds position s at
# s + LEAD, after two zeros, so that s - 1 and s - 2 need no bounds either.
EMISSIONS, OCCUPANCY = FRAME_LP, SCALED
LEAD = 2
# The totals must agree to this, relative to the sum of their logs' magnitudes (rounding
# leaves them within about 1e-15 of it); a larger gap means a term that counts fell out
# of the float64 range, and the sequence is run again in log space.
AGREEMENT = 1e-10
# Normalised values below FLOOR are set to 0 (subnormal arithmetic is slow, and a term
# that small only counts where the totals then disagree); the widest spread of a frame's
# emissions, in nats, that the linear path takes: so every product of a value, a sum of
# them and an emission stays a normal float64 (2**-500 * e**-300 > 2**-1022).
FLOOR = 2.0 ** -500
GAP = 300.0
# A frame whose largest band log-probability lies in (UNSHIFTED_LOW, UNSHIFTED_HIGH) takes
# its emissions unshifted: at least exp(-346) = 2**-500 then, at most exp(400).
UNSHIFTED_LOW, UNSHIFTED_HIGH = 46.0 - GAP, 400.0


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _class_exps(x, base, lse_t, C, table):
    for c in range(C):
        table[c] = exp(float(x[base + c]) - lse_t)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _band_top(x, base, lse_t, labels, lo, hi, y):
    """y[s] = lp[t, l'(s)] on [lo, hi); returns the largest, or NaN where one lies more
    than GAP below it (its emission would lose its digits against the others)."""
    top, low = NEG_INF, math.inf  # (low: the least above -inf, an exact 0; a NaN
    for s in range(lo, hi):       # reaches the totals through the emissions)
        v = float(x[base + labels[s]]) - lse_t
        y[s] = v
        top = select(v > top, v, top)
        low = select(v < low and v > NEG_INF, v, low)
    return top if low >= top - GAP else math.nan


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _emissions(x, base, lse_t, labels, lo, hi, C, table, probabilities, top, y, gathered):
    """y[s] = exp(lp[t, l'(s)] - shift) on [lo, hi) (y holds the lp when ``gathered``);
    returns the shift: ``top``, or 0 where the unshifted emissions keep every product
    normal.  With ``probabilities``, table[c] = exp(lp[t, c]) for every class too (the
    gradient's).  A frame takes as few exps as it can: the band's, or the classes'."""
    if probabilities:
        _class_exps(x, base, lse_t, C, table)
        if UNSHIFTED_LOW < top < UNSHIFTED_HIGH:
            for s in range(lo, hi):
                y[s] = table[labels[s]]
            return 0.0
    elif C < hi - lo:
        _class_exps(x, base, lse_t + top, C, table)
        for s in range(lo, hi):
            y[s] = table[labels[s]]
        return top
    if not gathered:
        for s in range(lo, hi):
            y[s] = float(x[base + labels[s]]) - lse_t
    for s in range(lo, hi):
        y[s] = exp(y[s] - top)
    return top


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _divide(band, total):
    """band / total, what falls below FLOOR set to 0."""
    inv = 1.0 / total
    for i in range(band.size):
        u = band[i] * inv
        band[i] = select(u < FLOOR, 0.0, u)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _alpha_step(prev, now, skip, y, lo, hi, L):
    """alpha's row ``now`` on [lo, hi) from ``prev``, divided by its total; returns the
    total.  Sets the positions the next frame reads outside its window to 0."""
    total = 0.0
    for s in range(lo, hi):
        v = (prev[s + LEAD] + prev[s + LEAD - 1] + skip[s] * prev[s]) * y[s]
        now[s + LEAD] = v
        total += v
    _divide(now[lo + LEAD:hi + LEAD], total)
    now[lo] = 0.0  # (positions lo - 2 and lo - 1)
    now[lo + 1] = 0.0
    for s in range(hi, min(hi + 2, L)):
        now[s + LEAD] = 0.0
    return total


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _beta_step(later, now, here, skip, y, occupancy, lo, hi):
    """beta's row ``now`` on [lo, hi) from ``later``, divided by its total, and the
    frame's occupancies alpha * (beta before this frame's emission) (``here`` is alpha's
    row); returns both totals.
    Sets the two positions below the window to 0."""
    total, occupied = 0.0, 0.0
    for s in range(lo, hi):
        onward = later[s] + later[s + 1] + skip[s + 2] * later[s + 2]
        w = here[s + LEAD] * onward
        occupancy[s] = w
        occupied += w
        v = onward * y[s]
        now[s] = v
        total += v
    _divide(now[lo:hi], total)
    for s in range(max(lo - 2, 0), lo):
        now[s] = 0.0
    return total, occupied


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _sequence_linear(x, shape, lse, blank, want_grad, coef, losses, grad, alpha, rows,
                     labels, classes, scales, n, Tn, L):
    """Sequence n by the scaled recursion in float64: each frame's alpha and beta divided
    by their totals, whose logs add up to the loss.  Every frame's occupancies must total
    the same probability as the forward pass; where they do not (a term that counts
    underflowed, an emission NaN, inf or 0 on every path), returns False having written
    nothing that the log-space path does not overwrite."""
    stride_t, stride_n, T, C = shape[0], shape[1], shape[2], shape[3]
    skip, y, occupancy = rows[n, SKIP], rows[n, EMISSIONS], rows[n, OCCUPANCY]
    seq_labels, table, logs, tops = labels[n], classes[n], scales[n, 0], scales[n, 1]
    skip[L] = 0.0
    skip[L + 1] = 0.0

    start = occupancy  # (the row before frame 0: 1 at position 0)
    for i in range(min(L + LEAD, 4)):
        start[i] = 0.0
    start[LEAD] = 1.0
    log_p, magnitude = 0.0, 0.0
    for t in range(Tn):
        lo, hi = _window(t, Tn, L)
        base = t * stride_t + n * stride_n
        top = _band_top(x, base, lse[n, t], seq_labels, lo, hi, y)
        if top != top:
            return False
        tops[t] = top
        shift = _emissions(x, base, lse[n, t], seq_labels, lo, hi, C, table, False, top, y,
                           True)
        total = _alpha_step(alpha[n, t - 1] if t > 0 else start, alpha[n, t], skip, y, lo,
                            hi, L)
        if not 0.0 < total < math.inf:
            return False
        step = log(total) + shift
        log_p += step
        magnitude += abs(step)
        logs[t] = log_p
    last = alpha[n, Tn - 1]
    end = last[L - 1 + LEAD] + last[L - 2 + LEAD]  # (position -1 is a zero when L = 1)
    log_p += log(end)
    tolerance = AGREEMENT * (1.0 + magnitude)

    later = rows[n, BETA_EVEN + Tn % 2]  # (the row after the last frame: 1 at L - 1)
    for s in range(L + 2):
        later[s] = 0.0
    later[L - 1] = 1.0
    other = rows[n, BETA_EVEN + (Tn + 1) % 2]
    other[L] = 0.0
    other[L + 1] = 0.0
    log_beta = 0.0
    scale = coef[n]
    for t in range(Tn - 1, -1, -1):
        lo, hi = _window(t, Tn, L)
        base = t * stride_t + n * stride_n
        shift = _emissions(x, base, lse[n, t], seq_labels, lo, hi, C, table, want_grad,
                           tops[t], y, False)
        now = rows[n, BETA_EVEN + t % 2]
        total, occupied = _beta_step(rows[n, BETA_EVEN + (t + 1) % 2], now, alpha[n, t],
                                     skip, y, occupancy, lo, hi)
        if not (abs(logs[t] + log_beta + log(occupied) - log_p) <= tolerance
                and 0.0 < total < math.inf):
            return False
        log_beta += log(total) + shift
        if want_grad:  # (softmax minus the frame's occupation probabilities)
            norm = 1.0 / occupied
            blanks = 0.0
            for s in range(lo + lo % 2, hi, 2):
                blanks += occupancy[s]
            table[blank] -= blanks * norm
            for s in range(lo + 1 - lo % 2, hi, 2):  # (a scatter: labels may repeat)
                table[seq_labels[s]] -= occupancy[s] * norm
            for c in range(C):
                grad[base + c] = scale * table[c]
    losses[n] = -log_p
    if want_grad:
        for t in range(Tn, T):  # (frames past the input's end)
            base = t * stride_t + n * stride_n
            for c in range(C):
                grad[base + c] = 0.0
    return True


# Not inlined: the serial and the parallel kernel call one compiled sequence (a call per
# sequence costs nothing beside its recursion), which halves the compile time and keeps
# the parallel loop's body small.
@njit(nogil=True, fastmath=FASTMATH, error_model="numpy")
def _sequence(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
              zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes,
              scales, n):
    """The loss (into losses[n]) and, with want_grad, the gradient rows of sequence n."""
    Tn = input_lengths[n]
    L = 2 * target_lengths[n] + 1
    _prepare(targets, n, L, blank, labels[n], rows[n, SKIP])
    if from_logits:
        _log_softmax_scales(x, shape, lse, n, Tn)
    if Tn == 0 or not _sequence_linear(x, shape, lse, blank, want_grad, coef, losses, grad,
                                       alpha, rows, labels, classes, scales, n, Tn, L):
        _sequence_log(x, shape, lse, blank, zero_infinity, want_grad, coef, losses, grad,
                      alpha, rows, labels, classes, n, Tn, L)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ctc_serial(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
               zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes,
               scales):
    for n in range(losses.size):
        _sequence(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
                  zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes,
                  scales, n)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ctc_parallel(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
                 zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes,
                 scales):
    for n in prange(losses.size):
        _sequence(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
                  zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes,
                  scales, n)

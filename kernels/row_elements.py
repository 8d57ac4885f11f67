"""The math of every row-wise loss, written once for the CPU and CUDA.

A row-wise loss reduces a whole row (the class axis) to one number: a softmax
cross-entropy, a cosine similarity, a hinge over classes.  Its *row element* is called
once per row::

    loss = row_elem(t, label, p, cw, <options>, g, scale, lane, lanes, shared, GRAD)

``p`` is the row of predictions; ``t`` the row of dense targets (size 0 for integer
labels; for the INDEX_TARGETS elements the row's class indices, int64), ``label`` the
row's class index (-1 for dense targets); ``cw`` the class weights (size 0: all ones);
the loss's options come by name (compute dtype; any parameter not named above is one, as
in elements.py); with ``GRAD`` the element writes ``scale * d loss / d p`` into ``g``.  It returns the row's loss (float64).

The same code runs on both targets by visiting a row as ``lanes`` interleaved lanes:
``for j in range(lane, C, lanes)``.  On the CPU a row is one lane (``lane=0, lanes=1``:
plain unit-stride loops that LLVM vectorises) and ``row_sum``/``row_max`` return their
argument; on CUDA the threads of a block are the lanes and those two are block-wide
reductions (``rowwise_cuda``), which every lane calls and whose result every lane gets.
A value a lane writes, only that lane reads back, so no other synchronisation is needed.
"""

from numba import njit

from ._math import exp, exp_bounded, log, log_positive, sqrt
from .elements import EPSILON, bce_logits, clamp_min_zero, clip, hinge_slope, sign
from .cpu_target import inlined
from .pointwise import FASTMATH

ROW_ELEMENTS = {}
# Row elements whose targets t are int64 class indices, not the compute dtype (the kernels
# compile for that signature; tests/test_kernels.py compiles it for the GPU).
INDEX_TARGETS = ("multilabel_margin",)
# Elements over rows of several inputs (the tuplewise body: triplets, pairs, ...).
TUPLE_ELEMENTS = {}
# Plain helper functions of the row elements; rowwise_cuda compiles them for CUDA too.
ROW_HELPERS = {}

_INF = float("inf")


# Functions with loops over a row are inlined into the kernel in Numba's IR, so that the
# CPU's lane = 0, lanes = 1 are constants there and the loops vectorise.  The small
# scalar helpers are compiled as functions of their own (LLVM inlines them): inlining
# them at every call site in Numba's IR made a kernel take minutes to compile.  They
# carry the kernels' fastmath flags and error model themselves, as a function of its own
# does not get its caller's.


def row_element(fn):
    """Register a row element function and compile it for inlining into CPU kernels."""
    ROW_ELEMENTS[fn.__name__] = fn
    return njit(inline="always")(fn)


def tuple_element(fn):
    """Register a tuple element (rowwise.tuplewise) and compile it for inlining."""
    TUPLE_ELEMENTS[fn.__name__] = fn
    return njit(inline="always")(fn)


def helper(fn):
    """A scalar helper of the row elements."""
    ROW_HELPERS[fn.__name__] = fn
    return inlined(fn)


def loop_helper(fn):
    """A helper with loops over the row, inlined like the row elements."""
    ROW_HELPERS[fn.__name__] = fn
    return njit(inline="always")(fn)


# Second derivatives of row and tuple elements, for grad_hess: {element: function}, each
# taking the element's parameters without the GRAD flag and writing the gradient and the
# Hessian's diagonal (scaled by ``scale``), returning the row's loss.  A row element's
# takes ``g, h`` (the gradient and second-derivative rows) for ``g``; a tuple element's
# (of two predictions) ``g = (ga, gb, ha, hb)``.
ROW_SECOND_DERIVATIVES = {}


def row_second_derivative(of):
    def register(fn):
        ROW_SECOND_DERIVATIVES[of.py_func.__name__] = fn
        return njit(inline="always")(fn)
    return register


@helper
def row_sum(x, shared, lane, lanes):
    """The sum of ``x`` over the lanes of a row (one lane on the CPU)."""
    return x


@helper
def row_max(x, shared, lane, lanes):
    return x


# A sum over the classes whose terms an element's loop computes (a log, an exp per class):
# on the CPU each term is added in float64 inside the loop (the float32 math stays at full
# width: kernels/cpu_target.py); on CUDA each lane adds its terms, then the block adds
# the lanes.
#     acc = 0.0
#     for j in range(lane, C, lanes):
#         acc = class_term(acc, shared, 0, j, term_j)     # term_j in the compute dtype
#     total = class_total(acc, shared, 0, C, lane, lanes)  # every lane gets it
# On the CPU ``shared`` is SCRATCH_SLOTS rows of C scratch values per thread: slot 0 is the
# sums' slot index (unused there: the sums are in float64 registers), slot 1 holds
# multilabel_margin_loss's row with its listed classes masked (mask_listed).
SCRATCH_SLOTS = 2


@helper
def class_term(acc, shared, slot, j, v):
    """Adds the term v of class j to a class sum."""
    return acc + float(v)


@helper
def class_total(acc, shared, slot, C, lane, lanes):
    """The float64 sum of a class sum's terms."""
    return acc


@helper
def class_weight(cw, j):
    return cw[j] if cw.size > 0 else 1.0


@helper
def clip_probability(q):
    """``(clip(q, eps, 1 - eps), its slope)`` as Keras clips probabilities."""
    T = type(q)
    return clip(q, T(EPSILON), T(1.0 - EPSILON))


@loop_helper  # (inlined: as a function of its own LLVM left it a call, the loop scalar)
def power(x, a):
    """x**a for x > 0 (exact for the common a = 2)."""
    T = type(x)
    return x * x if a == T(2.0) else exp(a * log(x))


# Elements per block of the softmax pass.
SOFTMAX_BLOCK = 1024
# A block's sum of exponentials above this means its logits exceed the reference by
# more than about 69: the pass then moves the reference up to the block's maximum
# (rescaling what it has summed and stored), so nothing overflows, in float32 either.
SOFTMAX_LIMIT = 1e30


@loop_helper
def softmax_pass(p, g, lane, lanes, STORE):
    """One read pass over this lane's part of the row: ``(ref, s)`` with
    ``s = sum_j exp(p_j - ref)``.  The reference starts at the lane's first logit and
    moves up only when a block overflows the limit, so a row usually costs one
    exponential per element and no maximum.  With STORE, ``g_j = exp(p_j - ref)``, which
    the caller rescales by ``exp(ref - max) / sum`` into the softmax.  A lane whose
    elements are all -inf returns ``ref = -inf, s = 0``; NaN propagates into ``s``."""
    T = type(p[0])
    C = p.size
    ref = float(p[lane]) if lane < C else -_INF
    s = 0.0
    step = SOFTMAX_BLOCK * lanes
    for b0 in range(0, C, step):
        # The block as slices, its loops from 0: with raw block bounds LLVM vectorised the
        # loop at half the speed (measured: the value of (1024, 1000) float32 0.61 ms ->
        # 0.34 ms on one core).
        pb = p[b0:min(b0 + step, C)]
        gb = g[b0:min(b0 + step, C)] if STORE else g
        acc = T(0.0)
        r = T(ref)
        for j in range(lane, pb.size, lanes):
            e = exp_bounded(pb[j] - r)
            if STORE:
                gb[j] = e
            acc += e
        if not acc < T(SOFTMAX_LIMIT):  # overflow, or a reference of -inf or NaN
            bm = T(-_INF)
            for j in range(lane, pb.size, lanes):
                x = pb[j]
                bm = x if x > bm else bm
            if bm > ref or ref != ref:
                f = exp(ref - bm) if ref > -_INF else 0.0
                s *= f
                if STORE:
                    ff = T(f)
                    for j in range(lane, b0, lanes):
                        g[j] *= ff
                ref = float(bm)
            acc = T(0.0)
            if ref > -_INF:
                r = T(ref)
                for j in range(lane, pb.size, lanes):
                    e = exp_bounded(pb[j] - r)
                    if STORE:
                        gb[j] = e
                    acc += e
            elif STORE:
                for j in range(lane, pb.size, lanes):
                    gb[j] = T(0.0)
        s += acc
    return ref, s


@loop_helper
def row_total(p, shared, lane, lanes):
    """sum(p) over the whole row (float64)."""
    total = 0.0
    for j in range(lane, p.size, lanes):
        total += p[j]
    return row_sum(total, shared, lane, lanes)


@loop_helper
def softmax_stats(p, g, shared, lane, lanes, STORE):
    """``(lse, f)``: the row's log-sum-exp, and the factor ``f`` turning this lane's
    ``exp(p_j - ref)`` (stored in ``g`` with STORE) into the softmax."""
    ref, s = softmax_pass(p, g, lane, lanes, STORE)
    m = row_max(ref, shared, lane, lanes)
    scale = exp(ref - m) if ref > -_INF else 0.0
    total = row_sum(s * scale, shared, lane, lanes)
    return m + log(total), scale / total


@helper
def smoothed_target(t, label, j, C, smoothing):
    """y_j: the dense target (or one-hot of the label), smoothed towards 1/C."""
    T = type(smoothing)
    y = t[j] if t.size > 0 else (T(1.0) if j == label else T(0.0))
    return y * (T(1.0) - smoothing) + smoothing / T(C)


@row_element
def softmax_cross_entropy(t, label, p, cw, label_smoothing, poly_epsilon, g, scale, lane, lanes,
                          shared, GRAD):
    """sum_j w_j y_j (lse - x_j) + eps (sum_j y_j - sum_j y_j softmax_j), y smoothed by
    label_smoothing, w the class weights, eps = poly_epsilon (Optax's poly loss; 0
    otherwise).

    With integer labels and neither smoothing nor weights nor eps (the common case) the
    row is read once for its log-sum-exp, and the gradient softmax - onehot is written
    from the exponentials stored in the same pass."""
    return softmax_ce_row(t, label, p, cw, label_smoothing, poly_epsilon, g, g, scale, lane,
                          lanes, shared, GRAD, False)


@row_second_derivative(of=softmax_cross_entropy)
def softmax_cross_entropy_hess(t, label, p, cw, label_smoothing, poly_epsilon, g, h, scale,
                                lane, lanes, shared):
    """softmax_cross_entropy's gradient into g and its Hessian's diagonal into h:
    d2/dx_j2 = sum_k w_k y_k s_j (1 - s_j) - eps s_j (y_j - sum_k y_k s_k) (1 - 2 s_j),
    s = softmax(x) (the cross-entropy's p (1 - p) times the weighted targets' sum, and
    the poly term's)."""
    return softmax_ce_row(t, label, p, cw, label_smoothing, poly_epsilon, g, h, scale, lane,
                          lanes, shared, True, True)


@loop_helper
def softmax_ce_row(t, label, p, cw, label_smoothing, poly_epsilon, g, h, scale, lane, lanes,
                   shared, GRAD, HESS):
    """softmax_cross_entropy's row; with HESS the second derivatives go to h, computed
    from the same softmax as the gradient (which does not change)."""
    T = type(p[0])
    C = p.size
    smoothing = label_smoothing
    eps = poly_epsilon
    lse, f = softmax_stats(p, g, shared, lane, lanes, GRAD)
    simple = t.size == 0 and cw.size == 0 and smoothing == T(0.0) and eps == T(0.0)
    if simple:
        swy = 1.0
        swyx = float(p[label])
        sye = 0.0
    else:
        swy = 0.0
        swyx = 0.0
        sye = 0.0
        for j in range(lane, C, lanes):
            y = smoothed_target(t, label, j, C, smoothing)
            wy = class_weight(cw, j) * y
            swy += wy
            swyx += wy * p[j]
            if eps != T(0.0):
                sye += y * ((g[j] * T(f)) if GRAD else exp(p[j] - T(lse)))
        swy = row_sum(swy, shared, lane, lanes)
        swyx = row_sum(swyx, shared, lane, lanes)
        sye = row_sum(sye, shared, lane, lanes)
    loss = lse * swy - swyx
    if eps != T(0.0):
        sy = 0.0
        for j in range(lane, C, lanes):
            sy += smoothed_target(t, label, j, C, smoothing)
        loss += eps * (row_sum(sy, shared, lane, lanes) - sye)
    if GRAD:
        if simple:
            fs = T(f * scale)
            sc = T(scale)
            for j in range(lane, C, lanes):
                if HESS:
                    s = g[j] * T(f)
                    h[j] = sc * (s * (T(1.0) - s))
                g[j] = g[j] * fs - (sc if j == label else T(0.0))
        else:
            fs = T(f * scale)
            sc = T(scale)
            a = T(swy + eps * sye)
            for j in range(lane, C, lanes):
                y = smoothed_target(t, label, j, C, smoothing)
                if HESS:
                    s = g[j] * T(f)
                    h[j] = sc * (T(swy) * s * (T(1.0) - s)
                                 - eps * s * (y - T(sye)) * (T(1.0) - T(2.0) * s))
                r = g[j] * fs  # scale * softmax_j
                g[j] = r * (a - eps * y) - sc * class_weight(cw, j) * y
    return loss


@row_element
def probs_cross_entropy(t, label, p, cw, label_smoothing, g, scale, lane, lanes, shared, GRAD):
    """Keras's crossentropy on probabilities: q = p / sum(p), clipped to [1e-7, 1 - 1e-7],
    loss = -sum_j y_j log q_j (y smoothed by label_smoothing).  d loss / d p_k =
    (-y_k c'_k / q_k + sum_j y_j c'_j) / sum(p), c' the clip's slope."""
    T = type(p[0])
    C = p.size
    smoothing = label_smoothing
    total64 = row_total(p, shared, lane, lanes)
    total = T(total64)
    if t.size == 0 and smoothing == T(0.0):
        # A class index and no smoothing: y is one-hot, so only the label's term is not
        # zero (no log per class); every other class's gradient is sc * slope_label.
        q, slope = clip_probability(p[label] / total)
        if GRAD:
            sc = T(scale) / total
            rest = sc * slope
            for j in range(lane, C, lanes):
                g[j] = rest
            if label % lanes == lane:
                g[label] = sc * (slope - slope / q)
        return -float(log_positive(q))
    # One pass computes every class's log and keeps y_k c'_k / q_k in g (a division
    # per class, not three: the normalisation is a product by 1 / sum(p)); the second
    # pass only combines it with the row's sum.
    # (from the float64 sum: 1 / float32 sum would let LLVM turn x * (1 / s) back into
    # x / s)
    inverse = T(1.0 / total64)
    loss = 0.0
    inside = 0.0
    for j in range(lane, C, lanes):
        y = smoothed_target(t, label, j, C, smoothing)
        q, slope = clip_probability(p[j] * inverse)
        loss = class_term(loss, shared, 0, j, y * log_positive(q))
        inside = class_term(inside, shared, 1, j, y * slope)
        if GRAD:
            g[j] = y * slope / q
    loss = -class_total(loss, shared, 0, C, lane, lanes)
    if GRAD:
        inside = T(class_total(inside, shared, 1, C, lane, lanes))
        sc = T(scale) / total
        for j in range(lane, C, lanes):
            g[j] = sc * (inside - g[j])
    return loss


@loop_helper  # (inlined, as power)
def focal_term(y, q, alpha, gamma):
    """Keras's focal crossentropy term of one class and its derivative in q:
    -alpha y (1 - c)**gamma log c, c = clip(q)."""
    T = type(q)
    c, slope = clip_probability(q)
    one_minus = T(1.0) - c
    if gamma == T(2.0):  # (a constant in the default's own loop: no division, no exp)
        modulation = one_minus * one_minus
        d_modulation = T(2.0) * one_minus
    elif gamma == T(0.0):
        modulation = T(1.0)
        d_modulation = T(0.0)
    else:
        modulation = power(one_minus, gamma)
        d_modulation = gamma * modulation / one_minus
    log_c = log_positive(c)  # (c is clipped: a positive normal number or NaN)
    term = -alpha * y * modulation * log_c
    return term, alpha * y * (d_modulation * log_c - modulation / c) * slope


@row_element
def focal_cross_entropy(t, label, p, cw, alpha, gamma, label_smoothing, from_logits, g, scale,
                        lane, lanes, shared, GRAD):
    """Keras's categorical_focal_crossentropy: q = softmax(p) with from_logits, else
    p / sum(p); loss =
    sum_j focal_term(y_j, q_j).  The gradient goes through the normalisation:
    q_k (h_k - D) for the softmax, (h_k - D) / sum(p) otherwise, h = d term / dq and
    D = sum_j h_j q_j."""
    T = type(p[0])
    # A loop for each of gamma = 2 (the default) or not, from_logits or not, with those
    # constants there: in one loop for every option, the vectorised selects computed
    # (1 - c)**gamma through exp and log, and the softmax's exp, for every class whatever
    # the options (measured: 1.68 -> 1.20 ns a class on one core, the default options).
    logits = T(1.0) if from_logits != T(0.0) else T(0.0)
    if gamma == T(2.0) and logits == T(1.0):
        return focal_row(t, label, p, alpha, T(2.0), label_smoothing, T(1.0), g, scale,
                         lane, lanes, shared, GRAD)
    if gamma == T(2.0):
        return focal_row(t, label, p, alpha, T(2.0), label_smoothing, T(0.0), g, scale,
                         lane, lanes, shared, GRAD)
    if logits == T(1.0):
        return focal_row(t, label, p, alpha, gamma, label_smoothing, T(1.0), g, scale,
                         lane, lanes, shared, GRAD)
    return focal_row(t, label, p, alpha, gamma, label_smoothing, T(0.0), g, scale,
                     lane, lanes, shared, GRAD)


@loop_helper
def focal_row(t, label, p, alpha, gamma, smoothing, from_logits, g, scale, lane, lanes, shared,
              GRAD):
    """focal_cross_entropy's row."""
    T = type(p[0])
    C = p.size
    logits = from_logits != T(0.0)
    if logits:
        lse = T(softmax_stats(p, g, shared, lane, lanes, False)[0])
        inverse = T(1.0)
    else:
        lse = T(0.0)
        inverse = T(1.0 / row_total(p, shared, lane, lanes))
    loss = 0.0
    d = 0.0
    # The first pass keeps each class's h in g, so the second pass has no log to redo.
    for j in range(lane, C, lanes):
        y = smoothed_target(t, label, j, C, smoothing)
        q = exp(p[j] - lse) if logits else p[j] * inverse
        term, h = focal_term(y, q, alpha, gamma)
        loss = class_term(loss, shared, 0, j, term)
        if GRAD:
            d = class_term(d, shared, 1, j, h * q)
            g[j] = h
    loss = class_total(loss, shared, 0, C, lane, lanes)
    if GRAD:
        d = T(class_total(d, shared, 1, C, lane, lanes))
        sc = T(scale)
        for j in range(lane, C, lanes):
            if logits:
                g[j] = sc * exp(p[j] - lse) * (g[j] - d)
            else:
                g[j] = sc * (g[j] - d) * inverse
    return loss


@row_element
def cosine_similarity(t, label, p, cw, g, scale, lane, lanes, shared, GRAD):
    """Keras's cosine_similarity: -sum(t_hat * p_hat), x_hat = x / sqrt(max(sum x^2,
    1e-14)) (Keras's normalize: a zero vector gets a finite, zero gradient)."""
    T = type(p[0])
    C = p.size
    stp = 0.0
    stt = 0.0
    spp = 0.0
    for j in range(lane, C, lanes):
        stp += t[j] * p[j]
        stt += t[j] * t[j]
        spp += p[j] * p[j]
    stp = row_sum(stp, shared, lane, lanes)
    stt = row_sum(stt, shared, lane, lanes)
    spp = row_sum(spp, shared, lane, lanes)
    floor = EPSILON * EPSILON
    inv_t = 1.0 / sqrt(max(stt, floor))
    inv_p = 1.0 / sqrt(max(spp, floor))
    if GRAD:
        # the clamp's slope: 1 above it, 1/2 at it, 0 below
        slope = 1.0 if spp > floor else (0.5 if spp == floor else 0.0)
        a = T(-scale * inv_t * inv_p)
        b = T(scale * stp * inv_t * inv_p * inv_p * inv_p * slope)
        for j in range(lane, C, lanes):
            g[j] = a * t[j] + b * p[j]
    return -stp * inv_t * inv_p


@row_element
def categorical_hinge(t, label, p, cw, g, scale, lane, lanes, shared, GRAD):
    """Keras's categorical_hinge: max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0).  The
    gradient of the max is shared by tied maxima, 1/2 at the hinge, as JAX has it."""
    T = type(p[0])
    C = p.size
    pos = 0.0
    neg = -_INF
    ties = 0.0
    for j in range(lane, C, lanes):
        pos += t[j] * p[j]
        v = (T(1.0) - t[j]) * p[j]
        if v > neg:
            neg = v
            ties = 1.0
        elif v == neg:
            ties += 1.0
    pos = row_sum(pos, shared, lane, lanes)
    top = row_max(neg, shared, lane, lanes)
    ties = row_sum(ties if neg == top else 0.0, shared, lane, lanes)
    z = top - pos + 1.0
    if GRAD:
        active = scale * hinge_slope(z)
        share = T(active / ties)
        act = T(active)
        for j in range(lane, C, lanes):
            v = (T(1.0) - t[j]) * p[j]
            g[j] = ((T(1.0) - t[j]) * share if v == top else T(0.0)) - act * t[j]
    return 0.0 if z <= 0.0 else z  # max(z, 0) that keeps NaN


@loop_helper
def zero_except_label(g, label, value, lane, lanes):
    """Writes a gradient row that is zero but at the label."""
    T = type(g[0])
    for j in range(lane, g.size, lanes):
        g[j] = value if j == label else T(0.0)


@row_element
def generalized_cross_entropy(t, label, p, cw, q, g, scale, lane, lanes, shared, GRAD):
    """Keras's categorical_generalized_cross_entropy: (1 - p_y**q) / q."""
    T = type(p[0])
    py = p[label]
    # p <= 0 tested (not p > 0) so that NaN takes the power and stays NaN
    pq = T(0.0) if py <= T(0.0) else power(py, q)
    if GRAD:
        # d/dp p**q at p = 0 is infinite (for q < 1), as JAX has it
        slope = T(_INF) if py <= T(0.0) else pq / py
        zero_except_label(g, label, T(-scale) * slope, lane, lanes)
    return (T(1.0) - pq) / q


@row_element
def negative_log_likelihood(t, label, p, cw, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's nll_loss of one row: -w_y x_y."""
    T = type(p[0])
    w = class_weight(cw, label)
    if GRAD:
        zero_except_label(g, label, T(-scale * w), lane, lanes)
    return -w * p[label]


@row_element
def multi_margin(t, label, p, cw, power, margin, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's multi_margin_loss of one row: sum_{j != y} w_y max(0, margin - x_y +
    x_j)**power / C, power 1 or 2 (PyTorch's p).  Its backward counts z > 0 only."""
    T = type(p[0])
    C = p.size
    squared = power == T(2.0)
    w = class_weight(cw, label)
    xy = p[label]
    loss = 0.0
    slope_sum = 0.0
    k = T(w * scale / C)
    for j in range(lane, C, lanes):
        z = margin - xy + p[j]
        active = j != label and z > T(0.0)
        loss += (z * z if squared else z) if active else T(0.0)
        if GRAD:
            gj = k * (T(2.0) * z if squared else T(1.0)) if active else T(0.0)
            g[j] = gj
            slope_sum += gj
    if GRAD:
        slope_sum = row_sum(slope_sum, shared, lane, lanes)
        if label % lanes == lane:  # the lane that wrote g[label] (as zero) owns it
            g[label] = T(-slope_sum)
    return w * row_sum(loss, shared, lane, lanes) / C


@row_element
def multilabel_soft_margin(t, label, p, cw, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's multilabel_soft_margin_loss of one row: the mean over classes of
    w_j * binary crossentropy of logit x_j against t_j."""
    T = type(p[0])
    C = p.size
    loss = 0.0
    k = scale / C
    kt = T(k)
    for j in range(lane, C, lanes):
        # (the weight in the compute dtype: a float64 product here halved the lanes)
        w = T(class_weight(cw, j))
        value, d = bce_logits(t[j], p[j], T(0.0))
        loss = class_term(loss, shared, 0, j, w * value)
        if GRAD:
            g[j] = kt * w * d
    return class_total(loss, shared, 0, C, lane, lanes) / C


@loop_helper
def mask_listed(t, k, p, shared):
    """Copies the row p into a scratch row with the classes t[:k] lists set to -inf, for
    ``unlisted`` (on CUDA, which has no row-long scratch, ``unlisted`` searches the list
    instead)."""
    masked = shared[1, :p.size]
    for i in range(p.size):
        masked[i] = p[i]
    for m in range(k):
        masked[int(t[m])] = type(p[0])(-_INF)
    return 0


@helper
def unlisted(t, k, p, i, shared):
    """p[i], or -inf where class i is among t[:k] (see ``mask_listed``)."""
    return shared[1, i]


@row_element
def multilabel_margin(t, label, p, cw, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's multilabel_margin_loss of one row: t holds the row's class indices
    (int64), its targets those before the first -1 (the family checked every entry to lie
    in [-1, C)); loss = sum over the listed targets j (a repeated one repeatedly) and the
    classes i not listed of max(0, 1 - (x_j - x_i)) / C.  The backward, as PyTorch's,
    counts the terms z > 0 only.

    One pass over the classes per target over a copy of the row with the listed classes
    at -inf (their terms 1 - x_j - inf are never positive, whatever x_j; a scratch row on
    the CPU, so the pass is a plain vectorised one); with GRAD each unlisted class's count of active
    terms goes into its gradient element and each target's count out of its own."""
    T = type(p[0])
    one = T(1.0)
    zero = T(0.0)
    C = p.size
    k = 0  # the row's targets: t[:k]
    while k < C and t[k] >= 0:
        k += 1
    mask_listed(t, k, p, shared)
    if GRAD:
        for i in range(lane, C, lanes):
            g[i] = zero
    loss = 0.0
    for m in range(k):
        j = int(t[m])
        shift = one - p[j]
        terms = 0.0
        active = zero
        for i in range(lane, C, lanes):
            z = shift + unlisted(t, k, p, i, shared)
            on = z > zero
            terms += float(z) if on else 0.0
            active += one if on else zero
            if GRAD:
                g[i] += one if on else zero
        loss += row_sum(terms, shared, lane, lanes)
        if GRAD:
            active = row_sum(active, shared, lane, lanes)
            if j % lanes == lane:  # (the lane that owns g[j])
                g[j] -= T(active)
    if GRAD:
        k_scale = T(scale / C)
        for i in range(lane, C, lanes):
            g[i] = k_scale * g[i]
    return loss / C


# -- Metric learning: rows of several embeddings ------------------------------------------
# A tuple element gets a row of each input, x = (a, b, c, d) (unused ones empty), and its
# gradients g in the same order; y is the row's label (0 when the loss has none).


@helper
def max_zero(x):
    """``(max(x, 0), slope)`` with half the slope at the kink, as JAX's maximum (NaN
    propagates)."""
    T = type(x)
    if x > T(0.0):
        return x, T(1.0)
    if x == T(0.0):
        return x, T(0.5)
    return (T(0.0) if x < T(0.0) else x), T(0.0)


@loop_helper
def squared_distance(x1, x2, shared, lane, lanes):
    """sum_j (x1_j - x2_j)**2 over the whole row (float64)."""
    s = 0.0
    for j in range(lane, x1.size, lanes):
        v = x1[j] - x2[j]
        s += v * v
    return row_sum(s, shared, lane, lanes)


@loop_helper  # (inlined, as power)
def abs_power(v, power):
    """|v|**power (0 at v = 0)."""
    T = type(v)
    av = abs(v)
    return exp(power * log(av)) if av > T(0.0) else T(0.0)


@loop_helper
def p_distance(x1, x2, power, eps, shared, lane, lanes):
    """PyTorch's pairwise_distance of two rows: ||x1 - x2 + eps||_power (float64)."""
    T = type(eps)
    s = 0.0
    if power == T(2.0):
        for j in range(lane, x1.size, lanes):
            v = x1[j] - x2[j] + eps
            s += v * v
        return sqrt(row_sum(s, shared, lane, lanes))
    if power == T(1.0):
        for j in range(lane, x1.size, lanes):
            s += abs(x1[j] - x2[j] + eps)
        return row_sum(s, shared, lane, lanes)
    for j in range(lane, x1.size, lanes):
        s += abs_power(x1[j] - x2[j] + eps, power)
    s = row_sum(s, shared, lane, lanes)
    return exp(log(s) / power) if s > 0.0 else 0.0


@helper
def inverse_or_zero(x):
    """1 / x, and 0 for x = 0 (a zero norm has a zero gradient, as PyTorch's)."""
    T = type(x)
    return T(1.0) / x if x != T(0.0) else T(0.0)


@loop_helper  # (inlined, as power)
def p_distance_slope(v, dist, power):
    """d ||v||_power / d v_j for the component v_j of a vector of norm dist: 0 where
    the norm is 0, as PyTorch's norm backward."""
    T = type(v)
    if not dist != T(0.0):
        return T(0.0)
    if power == T(2.0):
        return v / dist
    if power == T(1.0):
        return sign(v)
    return sign(v) * abs_power(v / dist, power - T(1.0))


@helper
def triplet_hinge(margin, d_ap, d_an, d_pn, swapped, scale):
    """The triplet hinge of its three distances: ``(loss, s, s_an, s_pn)``, loss =
    max(margin + d_ap - d_neg, 0) and s, s_an, s_pn its slopes in d_ap, d_an, d_pn times
    scale.  d_neg = min(d_an, d_pn) with swap (half the gradient to each at a tie, as
    PyTorch's minimum), else d_an (d_pn unused); the kink's slope is 1 (PyTorch's
    clamp_min)."""
    T = type(margin)
    w_pn = T(0.0)
    d_neg = d_an
    if swapped:
        w_pn = T(1.0) if d_pn < d_an else (T(0.5) if d_pn == d_an else T(0.0))
        d_neg = d_pn if d_pn < d_an else d_an
    loss, slope = clamp_min_zero(margin + d_ap - d_neg)
    s = T(scale) * slope
    return loss, s, s * (T(1.0) - w_pn), s * w_pn


@tuple_element
def triplet_margin(y, x, margin, power, eps, swap, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's triplet_margin_loss: max(margin + d(a, pos) - d(a, neg), 0),
    d = pairwise_distance of norm degree power (PyTorch's p); with swap d(a, neg)
    becomes min(d(a, neg), d(pos, neg)) (half the gradient to each at a tie, as
    PyTorch's minimum)."""
    return triplet_row(x, margin, power, eps, swap, g, scale, lane, lanes, shared, GRAD)


# PyTorch's defaults of the distances' eps: pairwise_distance's (added to x1 - x2) and
# cosine_similarity's (each norm's lower clamp).
PAIRWISE_EPS = 1e-6
COSINE_EPS = 1e-8


@tuple_element
def triplet_margin_distance(y, x, margin, cosine, eps, swap, g, scale, lane, lanes, shared,
                            GRAD):
    """PyTorch's triplet_margin_with_distance_loss with a named distance: triplet_margin's
    row with d = pairwise_distance (p = 2), or with cosine d = 1 - cosine_similarity
    (cosine_triplet); eps is that distance's (a negative eps: its PyTorch default, 1e-6
    or 1e-8)."""
    T = type(margin)
    if cosine != T(0.0):
        return cosine_triplet(x, margin, T(COSINE_EPS) if eps < T(0.0) else eps, swap, g,
                              scale, lane, lanes, shared, GRAD)
    return triplet_row(x, margin, T(2.0), T(PAIRWISE_EPS) if eps < T(0.0) else eps, swap, g,
                       scale, lane, lanes, shared, GRAD)


@loop_helper
def triplet_row(x, margin, power, eps, swap, g, scale, lane, lanes, shared, GRAD):
    """triplet_margin's row: the hinge (triplet_hinge) of the p-distances
    ||x - y + eps||_power (PyTorch's pairwise_distance)."""
    a, pos, neg = x[0], x[1], x[2]
    T = type(margin)
    swapped = swap != T(0.0)
    d_ap = T(p_distance(a, pos, power, eps, shared, lane, lanes))
    d_an = T(p_distance(a, neg, power, eps, shared, lane, lanes))
    d_pn = T(p_distance(pos, neg, power, eps, shared, lane, lanes)) if swapped else d_an
    loss, s, s_an, s_pn = triplet_hinge(margin, d_ap, d_an, d_pn, swapped, scale)
    if GRAD:
        ga, gp, gn = g[0], g[1], g[2]
        if power == T(2.0):  # the common case, as a loop LLVM vectorises
            c_ap = s * inverse_or_zero(d_ap)
            c_an = s_an * inverse_or_zero(d_an)
            c_pn = s_pn * inverse_or_zero(d_pn)
            for j in range(lane, a.size, lanes):
                u_ap = c_ap * (a[j] - pos[j] + eps)
                u_an = c_an * (a[j] - neg[j] + eps)
                u_pn = c_pn * (pos[j] - neg[j] + eps)
                ga[j] = u_ap - u_an
                gp[j] = -u_ap - u_pn
                gn[j] = u_an + u_pn
        else:
            for j in range(lane, a.size, lanes):
                u_ap = s * p_distance_slope(a[j] - pos[j] + eps, d_ap, power)
                u_an = s_an * p_distance_slope(a[j] - neg[j] + eps, d_an, power)
                u_pn = s_pn * p_distance_slope(pos[j] - neg[j] + eps, d_pn, power)
                ga[j] = u_ap - u_an
                gp[j] = -u_ap - u_pn
                gn[j] = u_an + u_pn
    return loss


@helper
def clamped_norm(squared, eps):
    """``(max(|x|, eps), 1 / (max(|x|, eps) |x|))`` of a squared norm (float64): PyTorch's
    cosine_similarity divides by the first and differentiates it as the norm itself
    (d|x| / dx = x / |x|, 0 at x = 0); NaN kept."""
    n = sqrt(squared)
    c = eps if n < eps else n
    return c, (1.0 / (c * n) if n != 0.0 else 0.0)


@loop_helper
def cosine_triplet(x, margin, eps, swap, g, scale, lane, lanes, shared, GRAD):
    """The triplet hinge (triplet_hinge) of the cosine distances d(x, y) = 1 - cos(x, y),
    cos = sum_j (x_j / |x|_eps) (y_j / |y|_eps), |x|_eps = max(|x|, eps): PyTorch's
    cosine_similarity, whose backward passes the clamped norm's gradient as the norm's,
    so the gradient of d(x, y) in x is cos x / (|x|_eps |x|) - y / (|x|_eps |y|_eps)."""
    a, pos, neg = x[0], x[1], x[2]
    T = type(margin)
    swapped = swap != T(0.0)
    aa = 0.0
    pp = 0.0
    nn = 0.0
    ap = 0.0
    an = 0.0
    pn = 0.0
    for j in range(lane, a.size, lanes):
        aa += a[j] * a[j]
        pp += pos[j] * pos[j]
        nn += neg[j] * neg[j]
        ap += a[j] * pos[j]
        an += a[j] * neg[j]
        pn += pos[j] * neg[j]
    e = float(eps)
    c_a, r_a = clamped_norm(row_sum(aa, shared, lane, lanes), e)
    c_p, r_p = clamped_norm(row_sum(pp, shared, lane, lanes), e)
    c_n, r_n = clamped_norm(row_sum(nn, shared, lane, lanes), e)
    b_ap = 1.0 / (c_a * c_p)
    b_an = 1.0 / (c_a * c_n)
    b_pn = 1.0 / (c_p * c_n)
    cos_ap = row_sum(ap, shared, lane, lanes) * b_ap
    cos_an = row_sum(an, shared, lane, lanes) * b_an
    cos_pn = row_sum(pn, shared, lane, lanes) * b_pn
    d_an = T(1.0 - cos_an)
    loss, s, s_an, s_pn = triplet_hinge(margin, T(1.0 - cos_ap), d_an,
                                        T(1.0 - cos_pn) if swapped else d_an, swapped, scale)
    if GRAD:
        ga, gp, gn = g[0], g[1], g[2]
        k_ap, k_an = float(s), float(s_an)
        k_pn = float(s_pn) if swapped else 0.0  # (no term of d(pos, neg) without swap)
        # each gradient row as a combination of the three rows
        a_a = T((k_ap * cos_ap - k_an * cos_an) * r_a)
        a_p = T(-k_ap * b_ap)
        a_n = T(k_an * b_an)
        p_p = T((k_ap * cos_ap - (k_pn * cos_pn if swapped else 0.0)) * r_p)
        p_n = T(k_pn * b_pn) if swapped else T(0.0)
        n_n = T(-(k_an * cos_an + (k_pn * cos_pn if swapped else 0.0)) * r_n)
        for j in range(lane, a.size, lanes):
            ga[j] = a_a * a[j] + a_p * pos[j] + a_n * neg[j]
            gp[j] = p_p * pos[j] + a_p * a[j] + p_n * neg[j]
            gn[j] = n_n * neg[j] + a_n * a[j] + p_n * pos[j]
    return loss


@tuple_element
def quadruplet(y, x, alpha1, alpha2, g, scale, lane, lanes, shared, GRAD):
    """The quadruplet loss (Chen et al. 2017), squared Euclidean distances D: max(D(a, pos) - D(a, neg1) + alpha1, 0) +
    max(D(a, pos) - D(neg1, neg2) + alpha2, 0)."""
    a, pos, n1, n2 = x
    T = type(alpha1)
    d_ap = squared_distance(a, pos, shared, lane, lanes)
    d_an = squared_distance(a, n1, shared, lane, lanes)
    d_nn = squared_distance(n1, n2, shared, lane, lanes)
    l1, s1 = max_zero(d_ap - d_an + alpha1)
    l2, s2 = max_zero(d_ap - d_nn + alpha2)
    if GRAD:
        ga, gp, gn1, gn2 = g
        c1 = T(2.0 * scale * s1)
        c2 = T(2.0 * scale * s2)
        c12 = c1 + c2
        for j in range(lane, a.size, lanes):
            u = a[j] - pos[j]
            v = a[j] - n1[j]
            w = n1[j] - n2[j]
            ga[j] = c12 * u - c1 * v
            gp[j] = -c12 * u
            gn1[j] = c1 * v - c2 * w
            gn2[j] = c2 * w
    return l1 + l2


@tuple_element
def contrastive(y, x, margin, eps, g, scale, lane, lanes, shared, GRAD):
    """The contrastive loss of Siamese pairs (label 1: similar):
    y d**2 + (1 - y) max(margin - d, 0)**2, d = ||x1 - x2 + eps|| (PyTorch's
    pairwise_distance, so the gradient is finite for identical vectors)."""
    return contrastive_row(y, x, margin, eps, g, scale, lane, lanes, shared, GRAD, False)


@row_second_derivative(of=contrastive)
def contrastive_hess(y, x, margin, eps, g, scale, lane, lanes, shared):
    """d2/dx1_j2 = d2/dx2_j2 = c + 2 (1 - y) margin u_j**2 / d**3 where the margin term
    is active, c = 2 (y - (1 - y) h / d) the gradient's factor, u = x1 - x2 + eps."""
    return contrastive_row(y, x, margin, eps, g, scale, lane, lanes, shared, True, True)


@loop_helper
def contrastive_row(y, x, margin, eps, g, scale, lane, lanes, shared, GRAD, HESS):
    a, b = x[0], x[1]
    T = type(margin)
    d = T(p_distance(a, b, T(2.0), eps, shared, lane, lanes))
    h = clamp_min_zero(margin - d)[0]
    loss = y * d * d + (T(1.0) - y) * h * h
    if GRAD:
        ga, gb = g[0], g[1]
        # d loss / d (x1 - x2) = 2 (y - (1 - y) h / d) (x1 - x2 + eps)
        pull = (T(1.0) - y) * h / d if d > T(0.0) else T(0.0)
        c = T(2.0 * scale) * (y - pull)
        # (HESS: the pull's own slope, where the margin term is active)
        w = T(2.0 * scale) * (T(1.0) - y) * margin / (d * d * d) if (
            HESS and h > T(0.0) and d > T(0.0)) else T(0.0)
        for j in range(lane, a.size, lanes):
            u = a[j] - b[j] + eps
            v = c * u
            ga[j] = v
            gb[j] = -v
            if HESS:
                curvature = c + w * u * u
                g[2][j] = curvature
                g[3][j] = curvature
    return loss


# PyTorch's EPSILON in cosine_embedding_loss, added to each squared norm.
COSINE_EMBEDDING_EPS = 1e-12


@tuple_element
def cosine_embedding(y, x, margin, g, scale, lane, lanes, shared, GRAD):
    """PyTorch's cosine_embedding_loss: 1 - cos(x1, x2) for y = 1,
    max(0, cos - margin) for y = -1, 0 for any other label;
    cos = x1.x2 / sqrt((|x1|**2 + 1e-12) (|x2|**2 + 1e-12))."""
    return cosine_embedding_row(y, x, margin, g, scale, lane, lanes, shared, GRAD, False)


@row_second_derivative(of=cosine_embedding)
def cosine_embedding_hess(y, x, margin, g, scale, lane, lanes, shared):
    """The loss is linear in cos on each piece, so d2/dx1_j2 = dcos * d2cos/dx1_j2 with
    d2cos/dx1_j2 = -(x1_j x2_j / (den m1) + q_j x1_j / m1 + cos / m1) + 2 cos x1_j**2 / m1**2,
    q_j = dcos/dx1_j, m1 = |x1|**2 + 1e-12, den = sqrt(m1 m2) (x2 alike)."""
    return cosine_embedding_row(y, x, margin, g, scale, lane, lanes, shared, True, True)


@loop_helper
def cosine_embedding_row(y, x, margin, g, scale, lane, lanes, shared, GRAD, HESS):
    a, b = x[0], x[1]
    T = type(margin)
    s12 = 0.0
    s11 = 0.0
    s22 = 0.0
    for j in range(lane, a.size, lanes):
        s12 += a[j] * b[j]
        s11 += a[j] * a[j]
        s22 += b[j] * b[j]
    m1 = row_sum(s11, shared, lane, lanes) + COSINE_EMBEDDING_EPS
    m2 = row_sum(s22, shared, lane, lanes) + COSINE_EMBEDDING_EPS
    den = sqrt(m1 * m2)
    cos = row_sum(s12, shared, lane, lanes) / den
    loss = 0.0
    dcos = 0.0
    if y == T(1.0):
        loss = 1.0 - cos
        dcos = -1.0
    elif y == T(-1.0):
        loss, dcos = clamp_min_zero(cos - margin)
    if GRAD:
        ga, gb = g[0], g[1]
        c = T(scale * dcos / den)
        ca = T(scale * dcos * cos / m1)
        cb = T(scale * dcos * cos / m2)
        for j in range(lane, a.size, lanes):
            ga[j] = c * b[j] - ca * a[j]
            gb[j] = c * a[j] - cb * b[j]
        if HESS:
            k = scale * dcos
            for j in range(lane, a.size, lanes):
                aj = float(a[j])
                bj = float(b[j])
                qa = bj / den - cos * aj / m1
                qb = aj / den - cos * bj / m2
                g[2][j] = T(k * (2.0 * cos * aj * aj / (m1 * m1)
                                 - (aj * bj / (den * m1) + qa * aj / m1 + cos / m1)))
                g[3][j] = T(k * (2.0 * cos * bj * bj / (m2 * m2)
                                 - (aj * bj / (den * m2) + qb * bj / m2 + cos / m2)))
    return loss


@row_element
def stacked_triplet(t, label, p, cw, alpha, g, scale, lane, lanes, shared, GRAD):
    """The triplet loss of Keras tutorials on a row [anchor | positive | negative]
    (three equal parts): max(|a - pos|**2 - |a - neg|**2 + alpha, 0)
    (half the gradient at the kink, as JAX's maximum)."""
    T = type(p[0])
    D = p.size // 3
    pos_d = 0.0
    neg_d = 0.0
    for j in range(lane, D, lanes):
        u = p[j] - p[D + j]
        v = p[j] - p[2 * D + j]
        pos_d += u * u
        neg_d += v * v
    basic = row_sum(pos_d, shared, lane, lanes) - row_sum(neg_d, shared, lane, lanes) + alpha
    loss, slope = max_zero(basic)
    if GRAD:
        c = T(2.0 * scale * slope)
        for j in range(lane, D, lanes):
            u = p[j] - p[D + j]
            v = p[j] - p[2 * D + j]
            g[j] = c * (u - v)
            g[D + j] = -c * u
            g[2 * D + j] = c * v
    return loss

"""The math of every pointwise loss, written once.

Each element function takes one label ``t``, one prediction ``p`` and the loss's scalar
options by name (``huber(t, p, delta)``; a parameter other than ``t`` and ``p`` is an
option: the loss's option of that name, or one its family's ``kernel_values`` gives),
all in the compute dtype, and returns ``(loss, d loss / d p)``.  (Kernels receive the
options as one tuple of ``OPTION_SLOTS`` values, so they have one signature; the
generated ``bind_<element>`` spreads it over the named parameters.)  A kernel that needs only the
value drops the derivative and LLVM removes its arithmetic.

The same Python functions are compiled for the CPU here (``cpu_target.inlined``: LLVM
inlines them into the kernels' loops; they call the vectorisable ``exp``/``log``/``log1p``
of ``_math``) and for CUDA in
``pointwise_cuda`` (the same names rebound to the ``math`` module's, which CUDA
lowers to the hardware's functions).  Constants are written ``T(c)`` with
``T = type(p)`` so a float32 kernel stays in float32.
"""

import math

from numba import njit

from ._math import exp, log, log1p, log1p_unit, log_positive
from .cpu_target import inlined

ELEMENTS = {}
# Most named options an element function takes (the length of the kernels' option tuple).
OPTION_SLOTS = 4


# Plain helper functions the element functions call, by name; pointwise_cuda compiles
# them for CUDA too (and resolves their names, like the elements', among the CUDA ones).
HELPERS = {}


def element(fn):
    """Register an element function and compile it for inlining into CPU kernels."""
    ELEMENTS[fn.__name__] = fn
    return inlined(fn)


# Elements of two prediction arrays: ``(t, a, b, options...) -> (loss, d loss/d a, d loss/d b)``
# (the pointwise_pair body; e.g. a mean and a variance).
PAIR_ELEMENTS = {}


def pair_element(fn):
    PAIR_ELEMENTS[fn.__name__] = fn
    return inlined(fn)


# Elements whose kernels get a second loop for the common values of some options, with
# those values constants there: {element: {option: value}}.  A loop-invariant option
# tested inside the element does not split the loop: LLVM vectorises the branches as
# selects and computes both (for the focal losses' gamma, exp(gamma log q) beside the
# default's q*q; for poisson_nll_loss, a log and Stirling's two beside the default's exp).
SPECIALISED = {}


def specialise(**values):
    """Give an element's kernels a loop of their own for options equal to ``values``."""
    def register(fn):
        SPECIALISED[fn.py_func.__name__] = values
        return fn
    return register


# Second derivatives: {element: function of the element's own parameters returning
# d2 loss / d p2}, for ``grad_hess`` (the gradient still comes from the element itself,
# so grad_hess's gradient is grad's).  Where the second derivative is zero almost
# everywhere (a kink, a linear piece) the function says what it returns instead.
SECOND_DERIVATIVES = {}


def second_derivative(of):
    """Register ``fn`` as the second derivative of element ``of`` in its prediction."""
    def register(fn):
        SECOND_DERIVATIVES[of.py_func.__name__] = fn
        return inlined(fn)
    return register


def helper(fn):
    """Register a helper of the element functions, compiled like them."""
    HELPERS[fn.__name__] = fn
    return inlined(fn)


@helper
def sign(x):
    T = type(x)
    return T(1.0) if x > T(0.0) else (T(-1.0) if x < T(0.0) else T(0.0))


# Keras's clipping epsilon (keras.backend.epsilon()).
EPSILON = 1e-7


@element
def squared_error(t, p):
    d = p - t
    return d * d, d + d


@element
def absolute_error(t, p):
    d = p - t
    return abs(d), sign(d)


@element
def absolute_percentage_error(t, p):
    T = type(p)
    scale = T(100.0) / max(abs(t), T(EPSILON))
    d = (t - p) * scale
    return abs(d), -sign(d) * scale


@element
def squared_log_error(t, p):
    T = type(p)
    eps = T(EPSILON)
    shifted_p = max(p, eps) + T(1.0)
    d = log(shifted_p) - log(max(t, eps) + T(1.0))
    # the clip's slope is 0 below eps; NaN takes the other branch and stays NaN
    g = T(0.0) if p <= eps else (d + d) / shifted_p
    return d * d, g


@element
def huber(t, p, delta):
    """Huber: quadratic while |p - t| <= delta, linear beyond.  PyTorch's huber_loss
    switches at |p - t| < delta instead; both pieces agree there, value and slope."""
    T = type(p)
    d = p - t
    ad = abs(d)
    quadratic = ad <= delta
    loss = T(0.5) * d * d if quadratic else delta * ad - T(0.5) * delta * delta
    return loss, min(max(d, -delta), delta)


@element
def smooth_l1(t, p, beta):
    """PyTorch's smooth_l1_loss: Huber divided by beta; L1 at beta 0."""
    T = type(p)
    d = p - t
    ad = abs(d)
    linear = ad >= beta  # False at NaN: the quadratic branch keeps it
    loss = ad - T(0.5) * beta if linear else T(0.5) * d * d / beta
    # PyTorch's slope d / beta is NaN at NaN; at beta 0 its l1_loss's sign(NaN) is 0
    return loss, sign(d) if linear or beta == T(0.0) else d / beta


@element
def log_cosh(t, p):
    """log(cosh(x)) as |x| + log1p(exp(-2|x|)) - log 2; its derivative is tanh(x)."""
    T = type(p)
    x = p - t
    ax = abs(x)
    e = exp(T(-2.0) * ax)
    loss = ax + log1p_unit(e) - T(0.6931471805599453)
    # tanh(|x|) = (1 - e) / (1 + e) cancels for small |x|; there the odd series is exact.
    x2 = ax * ax
    series = ax * (T(1.0) + x2 * (T(-1.0 / 3.0) + x2 * (T(2.0 / 15.0) + x2 * (
        T(-17.0 / 315.0) + x2 * T(62.0 / 2835.0)))))
    tanh_ax = series if ax < T(0.0625) else (T(1.0) - e) / (T(1.0) + e)
    return loss, tanh_ax if x >= T(0.0) else -tanh_ax


@element
def poisson(t, p):
    T = type(p)
    shifted = p + T(EPSILON)
    return p - t * log(shifted), T(1.0) - t / shifted


# -- Binary classification ---------------------------------------------------------------
# Where a clip bound or the kink of a max() is hit exactly, the gradient is half the
# one-sided one, as JAX's clip/maximum (and PyTorch's maximum) differentiate a tie.
# log and exp never see an argument outside their domain or range (log(0), exp(1000)):
# the CUDA simulator runs Python's math functions, which raise there.

_NAN = float("nan")
_INF = float("inf")


@helper
def clip(x, lo, hi):
    """(x clipped to [lo, hi], its slope): 1 inside, 1/2 at a bound, 0 outside and for
    NaN (whose clipped value stays NaN)."""
    T = type(x)
    xc = lo if x < lo else (hi if x > hi else x)
    slope = (T(1.0) if x < hi else (T(0.5) if x == hi else T(0.0))) if x > lo else (
        T(0.5) if x == lo else T(0.0))
    return xc, slope


@helper
def smooth(t, ls):
    """Keras's label smoothing: t squeezed towards 1/2 by ls (exactly t for ls = 0)."""
    T = type(t)
    return t * (T(1.0) - ls) + T(0.5) * ls


@helper
def class_balance(y, alpha):
    """The focal losses' class weight: alpha for label 1, 1 - alpha for label 0."""
    T = type(y)
    return y * alpha + (T(1.0) - y) * (T(1.0) - alpha)


@helper
def sigmoids(x):
    """(sigmoid(x), sigmoid(-x), log(1 + exp(-|x|))).  1 - sigmoid(x) is taken as
    sigmoid(-x), not as a difference, so both keep their relative precision at any logit;
    exp only sees arguments <= 0, so nothing overflows (a caller that drops the log1p pays
    nothing for it)."""
    T = type(x)
    e = exp(-abs(x))
    r = T(1.0) / (T(1.0) + e)
    er = e * r
    return (r if x >= T(0.0) else er), (er if x >= T(0.0) else r), log1p_unit(e)


@helper
def softplus(z):
    """(log(1 + exp(z)), its derivative sigmoid(z)), as log1p(exp(-|z|)) + max(z, 0):
    exact where exp(z) would overflow."""
    T = type(z)
    s, c, tail = sigmoids(z)
    return tail + (z if z > T(0.0) else T(0.0)), s


@helper
def logistic_ce(y, x):
    """(-y log sigmoid(x) - (1 - y) log sigmoid(-x), its derivative in x, sigmoid(x),
    sigmoid(-x)), as log1p(exp(-|x|)) + max(x, 0) - y x: exact for any finite logit."""
    T = type(x)
    one = T(1.0)
    s, c, tail = sigmoids(x)
    loss = tail + ((x if x > T(0.0) else T(0.0)) - y * x)
    return loss, (one - y) * s - y * c, s, c


@helper
def clipped_bce(y, prob, comp):
    """Keras's crossentropy of a probability, -(y log P + (1 - y) log(1 - P)) with P =
    prob clipped to [1e-7, 1 - 1e-7], and its derivative in prob (none where clipped).
    comp = 1 - prob comes from the caller (from logits it is sigmoid(-x), exact where
    1 - sigmoid(x) would cancel); clipped to [1 - hi, 1 - lo] it is 1 - P at the bounds."""
    one = type(prob)(1.0)
    pc, cc, slope = clipped_probabilities(prob, comp)
    return (-(y * log_positive(pc) + (one - y) * log_positive(cc)),
            ((one - y) / cc - y / pc) * slope)


@helper
def clipped_probabilities(prob, comp):
    """(P, 1 - P, the clip's slope): prob clipped to [1e-7, 1 - 1e-7] as Keras clips it,
    and comp = 1 - prob clipped to the mirrored bounds."""
    T = type(prob)
    one = T(1.0)
    lo = T(EPSILON)
    hi = T(1.0 - EPSILON)
    pc, slope = clip(prob, lo, hi)
    return pc, clip(comp, one - hi, one - lo)[0], slope


@helper
def focal_power(q, gamma, dq):
    """(q**gamma, gamma q**(gamma - 1) dq): the focal factor of q = 1 - p_t and its
    derivative, given dq = d q / d y_pred up to its sign.  Exact for the default gamma = 2;
    q**0 = 1 (also at q = 0).  At q = 0 the derivative is dq for gamma = 1, else 0 (for
    0 < gamma < 1 it is unbounded: 0 is the value's one-sided minimum).  q < 0 (a
    probability outside [0, 1]) gives NaN, without a log of a negative number.  The
    quotient is dq / q where dq <= q (sigmoid'(x) <= 1 - p_t), so it cannot overflow, and
    q**gamma / q where dq > q (probabilities: dq = 1, q may be subnormal)."""
    T = type(q)
    one = T(1.0)
    zero = T(0.0)
    two = T(2.0)
    power = q * q if gamma == two else (one if gamma == zero else (
        exp(gamma * log(q)) if q > zero else (zero if q == zero else T(_NAN))))
    d = two * q * dq if gamma == two else (
        (gamma * power * (dq / q) if dq <= q else gamma * power / q * dq) if q != zero
        else (dq if gamma == one else zero))
    return power, d


@helper
def keras_focal(y, prob, comp, dprob, apply_class_balancing, alpha, gamma):
    """Keras's binary focal crossentropy of a probability and its derivative in y_pred:
    w (1 - p_t)**gamma bce, bce as clipped_bce, 1 - p_t = y comp + (1 - y) prob (prob
    unclipped, as Keras), w = class_balance(y, alpha) when balancing, else 1.
    y: the smoothed label; comp = 1 - prob; dprob = d prob / d y_pred."""
    T = type(prob)
    one = T(1.0)
    bce, dbce = clipped_bce(y, prob, comp)
    focal, dfocal = focal_power(y * comp + (one - y) * prob, gamma, dprob)
    w = class_balance(y, alpha) if apply_class_balancing != T(0.0) else one
    return w * focal * bce, w * (dfocal * (one - T(2.0) * y) * bce + focal * dbce * dprob)


@element
def bce_probs(t, p, label_smoothing):
    """Keras's binary_crossentropy on probabilities: labels smoothed, p clipped."""
    return clipped_bce(smooth(t, label_smoothing), p, type(p)(1.0) - p)


@element
def bce_logits(t, p, label_smoothing):
    """-y log sigmoid(x) - (1 - y) log sigmoid(-x), y = labels smoothed: Keras's
    binary_crossentropy(from_logits=True) and PyTorch's binary_cross_entropy_with_logits
    (label_smoothing 0)."""
    loss, g, s, c = logistic_ce(smooth(t, label_smoothing), p)
    return loss, g


@specialise(gamma=2.0, apply_class_balancing=0.0, label_smoothing=0.0)
@element
def binary_focal_probs(t, p, apply_class_balancing, alpha, gamma, label_smoothing):
    """Keras's binary_focal_crossentropy on probabilities."""
    T = type(p)
    return keras_focal(smooth(t, label_smoothing), p, T(1.0) - p, T(1.0),
                       apply_class_balancing, alpha, gamma)


@specialise(gamma=2.0, apply_class_balancing=0.0, label_smoothing=0.0)
@element
def binary_focal_logits(t, p, apply_class_balancing, alpha, gamma, label_smoothing):
    """Keras's binary_focal_crossentropy(from_logits=True): keras_focal of s = sigmoid(x)
    (its crossentropy clipped too), with 1 - s and sigmoid'(x) = s (1 - s) taken from the
    rounded s, as Keras and JAX's sigmoid derivative take them.  (sigmoid(-x) would be
    more precise where s nears 1, but Keras's float32 values differ from it by up to 1e-3
    relative for x in about [8, 17]; past that s is clipped, both ways alike.)"""
    T = type(p)
    s = sigmoids(p)[0]
    comp = T(1.0) - s
    return keras_focal(smooth(t, label_smoothing), s, comp, s * comp,
                       apply_class_balancing, alpha, gamma)


@specialise(gamma=2.0)
@element
def sigmoid_focal(t, p, alpha, gamma):
    """Optax's sigmoid_focal_loss: ce (1 - p_t)**gamma, times class_balance(t, alpha) when
    alpha >= 0 (alpha=None is passed as -1).  ce = logistic_ce (unclipped),
    1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)."""
    T = type(p)
    one = T(1.0)
    ce, dce, s, c = logistic_ce(t, p)
    focal, dfocal = focal_power(t * c + (one - t) * s, gamma, s * c)
    w = class_balance(t, alpha) if alpha >= T(0.0) else one
    return w * ce * focal, w * (dce * focal + ce * (one - T(2.0) * t) * dfocal)


@helper
def hinge_label(t, binary_labels):
    """Keras's hinge label: 0 and 1 read as -1 and 1 when every label is one of them
    (``binary_labels`` = 1, found by the front end before the kernel), else as given."""
    T = type(t)
    return T(2.0) * t - T(1.0) if binary_labels != T(0.0) else t


@helper
def hinge_slope(m):
    """d max(m, 0) / dm as JAX has it: 1 above the kink, 1/2 at it, 0 below; NaN kept."""
    T = type(m)
    return T(1.0) if m > T(0.0) else (T(0.5) if m == T(0.0) else (T(0.0) if m < T(0.0) else m))


@element
def hinge(t, p, binary_labels):
    """Keras's hinge: max(1 - t p, 0), labels of 0 and 1 read as -1 and 1 (hinge_label)."""
    T = type(p)
    t = hinge_label(t, binary_labels)
    m = T(1.0) - t * p
    loss = T(0.0) if m < T(0.0) else m
    return loss, -t * hinge_slope(m)


@element
def squared_hinge(t, p, binary_labels):
    """Keras's squared_hinge: max(1 - t p, 0)**2, labels as hinge's."""
    T = type(p)
    t = hinge_label(t, binary_labels)
    m = T(1.0) - t * p
    mp = T(0.0) if m < T(0.0) else m
    return mp * mp, T(-2.0) * t * mp


@element
def kl_divergence(t, p):
    """Keras's kl_divergence term: t log(t / p), t and p clipped to [1e-7, 1]."""
    T = type(p)
    lo = T(EPSILON)
    one = T(1.0)
    tc = clip(t, lo, one)[0]
    pc = clip(p, lo, one)[0]
    r = tc / pc
    # -r inside, selected rather than multiplied by clip's slope: with r shared by the value,
    # LLVM reassociated the product differently in the gradient-only and the fused kernel
    # (their gradients then differed in the last bit).  Half at a bound; NaN stays NaN.
    g = (-r if p < one else (T(-0.5) * r if p == one else T(0.0))) if p > lo else (
        T(-0.5) * r if p == lo else (T(0.0) if p < lo else r))
    return tc * log_positive(r), g


@element
def torch_bce(t, p):
    """PyTorch's binary_cross_entropy: -(t max(log p, -100) + (1 - t) max(log1p(-p), -100));
    its backward (p - t) / max(p (1 - p), 1e-12), as PyTorch defines it.  p outside [0, 1]
    (which the front end rejects on the CPU) gives NaN: a log of a negative number is NaN,
    which the floor keeps (as it turns the -inf at 0 and 1 into -100)."""
    T = type(p)
    one = T(1.0)
    floor = T(-100.0)
    lp = log(p)
    lq = log1p(-p)
    lp = floor if lp < floor else lp
    lq = floor if lq < floor else lq
    loss = -(t * lp + (one - t) * lq)
    pq = p * (one - p)
    eps = T(9.999999960041972e-13)  # PyTorch: float EPSILON = 1e-12, in any dtype
    g = (p - t) / (eps if pq < eps else pq)
    g = g if p >= T(0.0) else T(_NAN)
    g = g if p <= one else T(_NAN)
    return loss, g


@element
def soft_margin(t, p):
    """PyTorch's soft_margin_loss: log(1 + exp(-t x)), as softplus(-t x) (finite where
    PyTorch's exp(-t x) overflows)."""
    loss, s = softplus(-t * p)
    return loss, -t * s


@specialise(log_target=0.0)
@element
def torch_kl_div(t, p, log_target):
    """PyTorch's kl_div with the input p a log-probability: t (log t - p), 0 where t = 0
    (xlogy), NaN for t < 0; with log_target exp(t) (t - p).  d/dp = -t (-exp(t))."""
    T = type(p)
    zero = T(0.0)
    if log_target != zero:
        e = exp(t)
        return e * (t - p), -e
    t_log_t = t * log(t) if t > zero else (zero if t == zero else T(_NAN))
    return t_log_t - t * p, -t


# -- PyTorch's embedding and likelihood losses -------------------------------------------

@helper
def clamp_min_zero(x):
    """``(max(x, 0), slope)`` as PyTorch's clamp_min differentiates it: slope 1 where
    x >= 0 (the kink included); NaN propagates."""
    T = type(x)
    if x >= T(0.0):
        return x, T(1.0)
    return (T(0.0) if x < T(0.0) else x), T(0.0)


@element
def hinge_embedding(t, p, margin):
    """PyTorch's hinge_embedding_loss: x where y != -1, plus max(0, margin - x) where
    y != 1 (a label other than 1 and -1 gets both terms, as in PyTorch)."""
    T = type(p)
    loss = T(0.0)
    g = T(0.0)
    if t != T(-1.0):
        loss = p
        g = T(1.0)
    if t != T(1.0):
        h, slope = clamp_min_zero(margin - p)
        loss += h
        g -= slope
    return loss, g


@helper
def log_or_nan(x):
    """log(x), -inf at 0 and NaN below (never a domain error in the CUDA simulator)."""
    T = type(x)
    if x > T(0.0):
        return log(x)
    return T(-_INF) if x == T(0.0) else T(_NAN)


@specialise(log_input=1.0, full=0.0)
@element
def poisson_nll(t, p, log_input, full, eps):
    """PyTorch's poisson_nll_loss: exp(x) - y x for a log-rate x (log_input), else
    x - y log(x + eps); with full, Stirling's y log y - y + log(2 pi y) / 2 where y > 1."""
    T = type(p)
    if log_input != T(0.0):
        e = exp(p)
        loss = e - t * p
        g = e - t
    else:
        q = p + eps
        loss = p - t * log_or_nan(q)
        g = T(1.0) - t / q
    if full != T(0.0) and t > T(1.0):
        loss += t * log(t) - t + T(0.5) * log(T(2.0 * math.pi) * t)
    return loss, g


@pair_element
def margin_ranking(t, a, b, margin):
    """PyTorch's margin_ranking_loss: max(0, -y (x1 - x2) + margin)."""
    h, slope = clamp_min_zero(margin - t * (a - b))
    return h, -t * slope, t * slope


@pair_element
def gaussian_nll(t, a, b, full, eps):
    """PyTorch's gaussian_nll_loss: (log v + (x - y)**2 / v) / 2, x the mean a,
    v = max(var b, eps) (the clamp is not differentiated, as PyTorch's is done under
    no_grad); + log(2 pi) / 2 with full.  A negative variance gives NaN (the front
    end rejects it on the CPU)."""
    T = type(a)
    half = T(0.5)
    v = eps if b < eps else b
    v = T(_NAN) if b < T(0.0) else v
    d = a - t
    inv = T(1.0) / v
    slope = d * inv
    loss = half * (log_or_nan(v) + d * d * inv)
    if full != T(0.0):
        loss += T(0.5 * math.log(2.0 * math.pi))
    # (1/v - d**2/v**2) / 2 from the mean's slope, not from the loss's d**2 / v: a term
    # the loss shares would be fused into an FMA only where the loss is not computed,
    # and the gradient-only kernel would round differently from the fused one.
    return loss, slope, half * inv - half * slope * slope


@pair_element
def gaussian_kl(t, a, b):
    """The VAE's KL term against N(0, 1): -(1 + logvar - mean**2 - exp(logvar)) / 2,
    a the mean, b the log-variance (t is unused)."""
    T = type(a)
    e = exp(b)
    return T(-0.5) * (T(1.0) + b - a * a - e), a, T(0.5) * (e - T(1.0))


# -- Second derivatives (grad_hess) --------------------------------------------------------
# (Those of a pair element return the second derivatives in both predictions, (d2/da2,
# d2/db2): the Hessian's diagonal.)
# Each is d/dp of its element's gradient, piece by piece as the element defines the
# pieces; checked against finite differences of the gradient in tests/test_grad_hess.py.

@second_derivative(of=squared_error)
def squared_error_hess(t, p):
    return type(p)(2.0)


@second_derivative(of=absolute_error)
def absolute_error_hess(t, p):
    """Zero almost everywhere; 1, as XGBoost's reg:absoluteerror, so that a boosting
    step has a curvature to divide by (the sign of the residual is the gradient)."""
    return type(p)(1.0)


@second_derivative(of=absolute_percentage_error)
def absolute_percentage_error_hess(t, p):
    """Zero almost everywhere (piecewise linear)."""
    return type(p)(0.0)


@second_derivative(of=squared_log_error)
def squared_log_error_hess(t, p):
    T = type(p)
    eps = T(EPSILON)
    shifted_p = max(p, eps) + T(1.0)
    d = log(shifted_p) - log(max(t, eps) + T(1.0))
    return T(0.0) if p <= eps else T(2.0) * (T(1.0) - d) / (shifted_p * shifted_p)


@second_derivative(of=huber)
def huber_hess(t, p, delta):
    T = type(p)
    return T(1.0) if abs(p - t) <= delta else T(0.0)


@second_derivative(of=smooth_l1)
def smooth_l1_hess(t, p, beta):
    T = type(p)
    return T(0.0) if abs(p - t) >= beta or beta == T(0.0) else T(1.0) / beta


@second_derivative(of=log_cosh)
def log_cosh_hess(t, p):
    """sech(x)**2 = 4 e / (1 + e)**2, e = exp(-2|x|): no cancellation at any x."""
    T = type(p)
    e = exp(T(-2.0) * abs(p - t))
    one_e = T(1.0) + e
    return T(4.0) * e / (one_e * one_e)


@second_derivative(of=poisson)
def poisson_hess(t, p):
    T = type(p)
    shifted = p + T(EPSILON)
    return t / (shifted * shifted)


@second_derivative(of=poisson_nll)
def poisson_nll_hess(t, p, log_input, full, eps):
    T = type(p)
    if log_input != T(0.0):
        return exp(p)
    q = p + eps
    return t / (q * q)


@second_derivative(of=hinge)
def hinge_hess(t, p, binary_labels):
    """Zero almost everywhere; as XGBoost's binary:hinge, 1 where the margin is active
    (t p < 1), and the gradient's own slope rule at the kink."""
    return hinge_slope(type(p)(1.0) - hinge_label(t, binary_labels) * p)


@second_derivative(of=squared_hinge)
def squared_hinge_hess(t, p, binary_labels):
    T = type(p)
    t = hinge_label(t, binary_labels)
    return T(2.0) * t * t if T(1.0) - t * p > T(0.0) else T(0.0)


@second_derivative(of=hinge_embedding)
def hinge_embedding_hess(t, p, margin):
    """Zero almost everywhere (piecewise linear)."""
    return type(p)(0.0)


@second_derivative(of=kl_divergence)
def kl_divergence_hess(t, p):
    T = type(p)
    lo = T(EPSILON)
    tc = clip(t, lo, T(1.0))[0]
    pc, slope = clip(p, lo, T(1.0))
    return slope * tc / (pc * pc)


@second_derivative(of=torch_kl_div)
def torch_kl_div_hess(t, p, log_target):
    """Zero: the loss is linear in the log-probability p."""
    return type(p)(0.0)


@second_derivative(of=torch_bce)
def torch_bce_hess(t, p):
    """d/dp (p - t) / p(1 - p) = (p**2 - 2 t p + t) / (p (1 - p))**2 (1 / max(., 1e-12)
    where PyTorch's gradient takes its floor)."""
    T = type(p)
    one = T(1.0)
    pq = p * (one - p)
    eps = T(9.999999960041972e-13)
    h = (p * p - T(2.0) * t * p + t) / (pq * pq) if pq >= eps else one / eps
    h = h if p >= T(0.0) else T(_NAN)
    return h if p <= one else T(_NAN)


@second_derivative(of=soft_margin)
def soft_margin_hess(t, p):
    s, c, tail = sigmoids(-t * p)
    return t * t * s * c


@second_derivative(of=bce_logits)
def bce_logits_hess(t, p, label_smoothing):
    s, c, tail = sigmoids(p)
    return s * c


@helper
def clipped_bce_hess(y, prob, comp):
    """d2 clipped_bce / d prob2: (y / P**2 + (1 - y) / (1 - P)**2) inside the clip."""
    one = type(prob)(1.0)
    pc, cc, slope = clipped_probabilities(prob, comp)
    return ((one - y) / (cc * cc) + y / (pc * pc)) * slope


@second_derivative(of=bce_probs)
def bce_probs_hess(t, p, label_smoothing):
    return clipped_bce_hess(smooth(t, label_smoothing), p, type(p)(1.0) - p)


@helper
def focal_powers(q, gamma):
    """(gamma q**(gamma - 1), gamma (gamma - 1) q**(gamma - 2)): the first and second
    derivatives of the focal factor q**gamma in q (exact for gamma 0, 1, 2; at q = 0 a
    negative power is inf, as the derivative is unbounded there)."""
    T = type(q)
    zero = T(0.0)
    one = T(1.0)
    two = T(2.0)
    if gamma == two:
        return two * q, two
    if gamma == one:
        return one, zero
    if gamma == zero:
        return zero, zero
    lq = log(q) if q > zero else (T(-_INF) if q == zero else T(_NAN))
    return gamma * exp((gamma - one) * lq), gamma * (gamma - one) * exp((gamma - two) * lq)


@helper
def focal_hess(y, q, dq, d2q, w, ce, dce, d2ce, gamma):
    """d2/dx2 of w q**gamma ce, given q, ce and their first and second derivatives in
    the prediction x (q = 1 - p_t, ce the crossentropy)."""
    T = type(q)
    focal = q * q if gamma == T(2.0) else focal_power(q, gamma, T(0.0))[0]
    f1, f2 = focal_powers(q, gamma)
    d_focal = f1 * dq
    d2_focal = f2 * dq * dq + f1 * d2q
    return w * (d2_focal * ce + T(2.0) * d_focal * dce + focal * d2ce)


@helper
def keras_focal_hess(y, prob, comp, dprob, d2prob, apply_class_balancing, alpha, gamma):
    """d2/dx2 of keras_focal, prob a function of the prediction x with derivatives
    dprob and d2prob."""
    T = type(prob)
    one = T(1.0)
    bce, dbce = clipped_bce(y, prob, comp)
    d2bce = clipped_bce_hess(y, prob, comp)
    w = class_balance(y, alpha) if apply_class_balancing != T(0.0) else one
    sign = one - T(2.0) * y
    return focal_hess(y, y * comp + (one - y) * prob, sign * dprob, sign * d2prob, w, bce,
                      dbce * dprob, d2bce * dprob * dprob + dbce * d2prob, gamma)


@second_derivative(of=binary_focal_probs)
def binary_focal_probs_hess(t, p, apply_class_balancing, alpha, gamma, label_smoothing):
    T = type(p)
    return keras_focal_hess(smooth(t, label_smoothing), p, T(1.0) - p, T(1.0), T(0.0),
                            apply_class_balancing, alpha, gamma)


@second_derivative(of=binary_focal_logits)
def binary_focal_logits_hess(t, p, apply_class_balancing, alpha, gamma, label_smoothing):
    T = type(p)
    s = sigmoids(p)[0]
    comp = T(1.0) - s
    ds = s * comp
    return keras_focal_hess(smooth(t, label_smoothing), s, comp, ds, ds * (comp - s),
                            apply_class_balancing, alpha, gamma)


@second_derivative(of=sigmoid_focal)
def sigmoid_focal_hess(t, p, alpha, gamma):
    T = type(p)
    one = T(1.0)
    ce, dce, s, c = logistic_ce(t, p)
    sc = s * c
    sign = one - T(2.0) * t
    w = class_balance(t, alpha) if alpha >= T(0.0) else one
    return focal_hess(t, t * c + (one - t) * s, sign * sc, sign * sc * (c - s), w, ce, dce,
                      sc, gamma)


@second_derivative(of=margin_ranking)
def margin_ranking_hess(t, a, b, margin):
    """Zero almost everywhere (piecewise linear in each score; no boosting objective of
    this kind to copy)."""
    zero = type(a)(0.0)
    return zero, zero


@second_derivative(of=gaussian_nll)
def gaussian_nll_hess(t, a, b, full, eps):
    """d2/da2 = 1 / v, d2/db2 = d**2 / v**3 - 1 / (2 v**2), v the clamped variance (its
    clamp not differentiated, as in the gradient)."""
    T = type(a)
    v = eps if b < eps else b
    v = T(_NAN) if b < T(0.0) else v
    d = a - t
    inv = T(1.0) / v
    return inv, (d * d * inv - T(0.5)) * inv * inv


@second_derivative(of=gaussian_kl)
def gaussian_kl_hess(t, a, b):
    """d2/dmean2 = 1, d2/dlogvar2 = exp(logvar) / 2."""
    T = type(a)
    return T(1.0), T(0.5) * exp(b)

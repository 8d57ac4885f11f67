"""The math of every pointwise loss, written once.

Each element function takes ``(t, p, o)`` - one label, one prediction and the tuple of
the loss's scalar options (``OPTION_SLOTS`` values: ``delta``, ``beta``, ... in the order
the loss declares them, unused slots zero), all in the compute dtype - and returns
``(loss, d loss / d p)``.  A kernel that needs only the
value drops the derivative and LLVM removes its arithmetic.

The same Python functions are compiled for the CPU here (``njit(inline="always")``,
calling the vectorisable ``exp``/``log``/``log1p`` of ``_math``) and for CUDA in
``pointwise_cuda`` (the same names rebound to the ``math`` module's, which CUDA
lowers to the hardware's functions).  Constants are written ``T(c)`` with
``T = type(p)`` so a float32 kernel stays in float32.
"""

from numba import njit

from ._math import exp, log, log1p

ELEMENTS = {}
# Scalar options an element function receives (a tuple, so kernels have one signature).
OPTION_SLOTS = 4


def _sign(x):
    T = type(x)
    return T(1.0) if x > T(0.0) else (T(-1.0) if x < T(0.0) else T(0.0))


sign = njit(inline="always")(_sign)
# Plain helper functions the element functions call; the CUDA build compiles them too.
HELPERS = {"sign": _sign}


def element(fn):
    """Register an element function and compile it for inlining into CPU kernels."""
    ELEMENTS[fn.__name__] = fn
    return njit(inline="always")(fn)


# Keras's clipping epsilon (keras.backend.epsilon()).
EPSILON = 1e-7


@element
def squared_error(t, p, o):
    d = p - t
    return d * d, d + d


@element
def absolute_error(t, p, o):
    d = p - t
    return abs(d), sign(d)


@element
def absolute_percentage_error(t, p, o):
    T = type(p)
    scale = T(100.0) / max(abs(t), T(EPSILON))
    d = (t - p) * scale
    return abs(d), -sign(d) * scale


@element
def squared_log_error(t, p, o):
    T = type(p)
    eps = T(EPSILON)
    shifted_p = max(p, eps) + T(1.0)
    d = log(shifted_p) - log(max(t, eps) + T(1.0))
    g = (d + d) / shifted_p if p > eps else T(0.0)
    return d * d, g


@element
def huber(t, p, o):
    """Huber: quadratic while |p - t| <= delta, linear beyond.  PyTorch's huber_loss
    switches at |p - t| < delta instead; both pieces agree there, value and slope."""
    T = type(p)
    a = o[0]
    d = p - t
    ad = abs(d)
    quadratic = ad <= a
    loss = T(0.5) * d * d if quadratic else a * ad - T(0.5) * a * a
    return loss, min(max(d, -a), a)


@element
def smooth_l1(t, p, o):
    """PyTorch's smooth_l1_loss: Huber divided by beta; L1 at beta 0."""
    T = type(p)
    a = o[0]
    d = p - t
    ad = abs(d)
    quadratic = ad < a
    loss = T(0.5) * d * d / a if quadratic else ad - T(0.5) * a
    return loss, d / a if quadratic else sign(d)


@element
def log_cosh(t, p, o):
    """log(cosh(x)) as |x| + log1p(exp(-2|x|)) - log 2; its derivative is tanh(x)."""
    T = type(p)
    x = p - t
    ax = abs(x)
    e = exp(T(-2.0) * ax)
    loss = ax + log1p(e) - T(0.6931471805599453)
    # tanh(|x|) = (1 - e) / (1 + e) cancels for small |x|; there the odd series is exact.
    x2 = ax * ax
    series = ax * (T(1.0) + x2 * (T(-1.0 / 3.0) + x2 * (T(2.0 / 15.0) + x2 * (
        T(-17.0 / 315.0) + x2 * T(62.0 / 2835.0)))))
    tanh_ax = series if ax < T(0.0625) else (T(1.0) - e) / (T(1.0) + e)
    return loss, tanh_ax if x >= T(0.0) else -tanh_ax


@element
def poisson(t, p, o):
    T = type(p)
    shifted = p + T(EPSILON)
    return p - t * log(shifted), T(1.0) - t / shifted

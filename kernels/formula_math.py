"""The functions that the kernels of user-defined losses call (fastloss.define_loss writes
them by these names), for the CPU and for CUDA.

``exp``, ``log``, ``log1p``, ``expm1`` and ``sqrt`` are ``_math``'s vectorisable ones (CUDA:
the ``math`` module's, which CUDA lowers natively); the rest are written here once, in
terms of those, and compiled for each target like the element helpers.
"""

import math

from ._math import exp, expm1, log, log1p, sqrt
from .cpu_target import inlined

# name -> Python function, compiled for the CPU below and for CUDA by cuda_functions().
FUNCTIONS = {}


def _function(fn):
    FUNCTIONS[fn.__name__] = fn
    return inlined(fn)


@_function
def tanh(x):
    """tanh as (1 - e) / (1 + e), e = exp(-2|x|), its sign restored; below |x| = 1/16,
    where that difference cancels, the odd series (exact to rounding there)."""
    T = type(x)
    ax = abs(x)
    e = exp(T(-2.0) * ax)
    x2 = ax * ax
    series = ax * (T(1.0) + x2 * (T(-1.0 / 3.0) + x2 * (T(2.0 / 15.0) + x2 * (
        T(-17.0 / 315.0) + x2 * T(62.0 / 2835.0)))))
    t = series if ax < T(0.0625) else (T(1.0) - e) / (T(1.0) + e)
    return t if x >= T(0.0) else (-t if x < T(0.0) else x)


@_function
def sigmoid(x):
    """1 / (1 + exp(-x)) with exp only of -|x| (nothing overflows, both tails exact)."""
    T = type(x)
    e = exp(-abs(x))
    r = T(1.0) / (T(1.0) + e)
    return r if x >= T(0.0) else e * r


@_function
def softplus(x):
    """log(1 + exp(x)) as log1p(exp(-|x|)) + max(x, 0): exact where exp(x) overflows."""
    T = type(x)
    return log1p(exp(-abs(x))) + (x if x > T(0.0) else T(0.0))


@_function
def sign(x):
    T = type(x)
    return T(1.0) if x > T(0.0) else (T(-1.0) if x < T(0.0) else (T(0.0) if x == T(0.0) else x))


@_function
def heaviside(x):
    """The step 0 / 1 with 1/2 at 0 (a tie of maximum/minimum is split, as JAX does)."""
    T = type(x)
    return T(1.0) if x > T(0.0) else (T(0.0) if x < T(0.0) else (T(0.5) if x == T(0.0) else x))


@_function
def maximum(a, b):
    """The larger of a and b; NaN if either is."""
    return a if a > b else (b if b >= a else a + b)


@_function
def minimum(a, b):
    """The smaller of a and b; NaN if either is."""
    return a if a < b else (b if b <= a else a + b)


@_function
def power(b, e):
    """b**e for a real exponent: exp(e log b) for b > 0, the limits at b = 0, and for b < 0
    the signed power where e is an integer (else NaN)."""
    T = type(b)
    zero = T(0.0)
    if b > zero:
        return exp(e * log(b))
    if b == zero:
        return zero if e > zero else (T(1.0) if e == zero else T(math.inf))
    m = exp(e * log(-b))
    half = e * T(0.5)
    whole = e == math.floor(e)
    return (-m if half != math.floor(half) else m) if whole else T(math.nan)


def cuda_functions():
    """Every name a user-defined loss's kernels call, as CUDA device functions."""
    from .cuda_target import CUDA_MATH, retarget

    namespace = {"math": math, **CUDA_MATH, "expm1": math.expm1}
    return {**CUDA_MATH, "expm1": math.expm1, **retarget(FUNCTIONS, namespace)}


__all__ = ["exp", "log", "log1p", "expm1", "sqrt", *FUNCTIONS]

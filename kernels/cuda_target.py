"""The one CUDA re-targeting of the kernels' Python device code.

The element functions, their helpers and the pairwise device functions are written once,
as Python, and compiled for the CPU with ``njit``.  For CUDA the same code is compiled
again with its global names - math functions, helpers, other elements - resolved in a
namespace of CUDA versions: the math to what CUDA lowers natively, everything else to its
own CUDA compilation (added to the namespace as it is made, so device functions call
each other's CUDA versions, whatever order they are compiled in).
"""

import math
import types

from numba import cuda


# log and log1p as the CPU's _math has them for every argument (-inf at the pole, NaN
# below): elements may take the log of 0 or of a negative number, which the simulator's
# math.log would raise on.
@cuda.jit(device=True, inline="always")
def _log(x):
    T = type(x)
    return math.log(x) if x > T(0.0) else (T(-math.inf) if x == T(0.0) else T(math.nan))


@cuda.jit(device=True, inline="always")
def _log1p(x):
    T = type(x)
    return math.log1p(x) if x > T(-1.0) else (T(-math.inf) if x == T(-1.0) else T(math.nan))


CUDA_MATH = {"exp": math.exp, "log": _log, "log1p": _log1p, "sqrt": math.sqrt,
             "log_positive": math.log, "log1p_unit": math.log1p}


def namespace_of(module, **extra):
    """A module's globals with the math rebound to CUDA's, plus ``extra`` names."""
    return {**vars(module), **CUDA_MATH, **extra}


def retarget(functions, namespace, inline=True):
    """CUDA device versions of ``functions`` (name -> Python function), each resolving its
    global names in ``namespace``, into which it is entered."""
    compile_device = cuda.jit(device=True, inline="always") if inline else cuda.jit(device=True)
    compiled = {}
    for name, fn in functions.items():
        compiled[name] = namespace[name] = compile_device(types.FunctionType(
            fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__))
    return compiled

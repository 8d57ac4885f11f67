"""The vectorisable exp/log/log1p/expm1 of kernels/_math.py against NumPy, in ulps.

Every check runs the functions the way the loss kernels do: inlined into a
``njit(parallel=True, fastmath={"reassoc", "contract"})`` loop.  float64 results are
compared with NumPy's float64 functions, float32 results with NumPy's float64 result
rounded to float32 (that is, with the correctly rounded float32 result, nearly always).
"""

import re

import numpy as np
import pytest
from numba import float32, float64, int64, njit, prange

try:
    from fastloss.kernels import _math
except ImportError:  # a checkout that is not installed: import the folder directly
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kernels import _math

exp, log, log1p, expm1 = _math.exp, _math.log, _math.log1p, _math.expm1
exp_bounded = _math.exp_bounded


def bounded_exp_reference(x):
    """exp_bounded's contract: exp of x saturated at 88 (709), 0 below -86 (-708)."""
    hi, lo = (88.0, -86.0) if x.dtype == np.float32 else (709.0, -708.0)
    return np.where(x < lo, 0.0, np.exp(np.minimum(x, hi).astype(np.float64)))


FASTMATH = {"reassoc", "contract"}
NAMES = ["exp", "log", "log1p", "expm1", "exp_bounded"]
REFERENCE = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
             "exp_bounded": bounded_exp_reference}
# Allowed error (measured on AVX2+FMA: 1 ulp everywhere but float64 expm1, 2; the
# margin covers CPUs where LLVM contracts differently).
MAX_ULP = {np.float64: 4, np.float32: 2}


@njit(parallel=True, fastmath=FASTMATH)
def apply(x, which):
    """which(x) elementwise, in a parallel fastmath loop like the loss kernels'."""
    out = np.empty_like(x)
    if which == 0:
        for i in prange(x.size):
            out[i] = exp(x[i])
    elif which == 1:
        for i in prange(x.size):
            out[i] = log(x[i])
    elif which == 2:
        for i in prange(x.size):
            out[i] = log1p(x[i])
    elif which == 3:
        for i in prange(x.size):
            out[i] = expm1(x[i])
    else:
        for i in prange(x.size):
            out[i] = exp_bounded(x[i])
    return out


def run(name, x):
    return apply(x, NAMES.index(name))


def reference(name, x):
    with np.errstate(all="ignore"):
        if name == "exp_bounded":  # its bounds depend on the dtype
            return bounded_exp_reference(x).astype(x.dtype)
        return REFERENCE[name](x.astype(np.float64)).astype(x.dtype)


def ordered(a):
    """Float bits as integers in the floats' order (-0 and +0 both 0)."""
    it = np.int32 if a.dtype == np.float32 else np.int64
    v = a.view(it).astype(np.int64)
    return np.where(v < 0, np.int64(np.iinfo(it).min) - v, v)


def ulps(a, b):
    """|a - b| in ulps (0 where both are NaN, inf where only one is)."""
    d = np.abs(ordered(a) - ordered(b)).astype(np.float64)
    an, bn = np.isnan(a), np.isnan(b)
    d[an & bn] = 0.0
    d[an ^ bn] = np.inf
    return d


def assert_ulps(name, x, max_ulp=None):
    max_ulp = MAX_ULP[x.dtype.type] if max_ulp is None else max_ulp
    got, want = run(name, x), reference(name, x)
    d = ulps(got, want)
    worst = int(np.argmax(d))
    assert d[worst] <= max_ulp, (
        f"{name}({x[worst]!r}) = {got[worst]!r}, NumPy {want[worst]!r}: {d[worst]} ulp")


def random_bits(dtype, n, rng):
    """Floats with uniformly random bit patterns, finite, both signs (log-uniform)."""
    if dtype == np.float64:
        b = rng.integers(0, 0x7FF0000000000000, n, dtype=np.int64).view(np.float64)
    else:
        b = rng.integers(0, 0x7F800000, n, dtype=np.int32).view(np.float32)
    return np.where(rng.random(n) < 0.5, -b, b).astype(dtype)


def powers_around(dtype, lo_exp, hi_exp):
    """Each power of two in [2**lo_exp, 2**hi_exp] and its two neighbours, both signs."""
    p = np.ldexp(np.ones(hi_exp - lo_exp + 1, dtype), np.arange(lo_exp, hi_exp + 1))
    p = np.concatenate([p, np.nextafter(p, 0), np.nextafter(p, np.inf)])
    return np.concatenate([p, -p])


def inputs(name, dtype, n=200_000, seed=0):
    """Random, log-spaced and edge inputs over the function's whole finite domain."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    lo_exp, hi_exp = int(np.log2(info.smallest_subnormal)), info.maxexp - 1
    x = np.concatenate([random_bits(dtype, n, rng), powers_around(dtype, lo_exp, hi_exp),
                        rng.uniform(-2, 2, n).astype(dtype)])
    f64 = dtype == np.float64
    if name in ("exp", "expm1", "exp_bounded"):
        hi, lo = (709.79, -745.2) if f64 else (88.73, -103.98)
        x = np.concatenate([x, np.linspace(lo, hi, n, dtype=dtype)])
        x = x[(x > lo - 5) & (x < hi + 5)]
    elif name == "log":
        # near 1, where log is small, and log-uniform over all positive floats
        x = np.concatenate([np.abs(x), 1 + rng.uniform(-0.3, 0.5, n).astype(dtype)])
    else:  # log1p: (-1, inf); near -1, near 0, large
        near_m1 = (-1 + np.ldexp(np.ones(60, dtype), -np.arange(60))).astype(dtype)
        x = np.concatenate([x, near_m1, np.abs(x), rng.uniform(-1, 1, n).astype(dtype)])
        x = x[x > -1]
    return np.ascontiguousarray(x, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_accuracy(name, dtype):
    assert_ulps(name, inputs(name, dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_edges(dtype):
    """Around overflow and through the subnormals down to 0."""
    info = np.finfo(dtype)
    big = np.log(info.max.astype(np.float64))          # largest x with a finite exp
    small = np.log(float(info.smallest_subnormal))     # exp(x) ~ smallest subnormal
    norm = np.log(float(info.smallest_normal))
    pts = np.array([big, small, small + np.log(2), norm, small - np.log(2) / 2], dtype)
    steps = np.arange(-600, 601) * np.spacing(np.abs(pts))[:, None]
    x = np.concatenate([(pts[:, None] + steps).ravel(),
                        np.linspace(small - 1, norm + 1, 50_001)]).astype(dtype)
    assert_ulps("exp", x)
    assert_ulps("expm1", x)
    y = run("exp", x)
    assert np.all(y[x > big * (1 + 1e-6)] == np.inf)
    assert np.all(y[x < small - 1] == 0)
    assert np.any((y > 0) & (y < info.smallest_normal))  # subnormal results happen


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_subnormal_inputs(dtype):
    info = np.finfo(dtype)
    mant_bits = info.nmant
    it = np.int64 if dtype == np.float64 else np.int32
    rng = np.random.default_rng(3)
    powers = 1 << np.arange(mant_bits + 1)
    bits = np.concatenate([np.arange(1, 5000), rng.integers(1, 1 << mant_bits, 100_000),
                           powers[1:] - 1, powers])
    x = bits.astype(it).view(dtype)
    assert np.all((x > 0) & (x <= info.smallest_normal))
    assert_ulps("log", x)
    assert_ulps("log1p", x)
    assert_ulps("exp", x)
    assert_ulps("expm1", x)
    assert_ulps("log1p", -x)
    assert_ulps("expm1", -x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiny_and_near_one(dtype):
    """log1p(x) = expm1(x) = x for tiny x; log near 1; log1p near -1."""
    rng = np.random.default_rng(4)
    eps = np.finfo(dtype).eps
    t = np.ldexp(rng.uniform(1, 2, 20_000), rng.integers(-140 if dtype == np.float32 else
                                                         -1070, -20, 20_000)).astype(dtype)
    t = np.concatenate([t, -t])
    for name in ("log1p", "expm1"):
        assert_ulps(name, t)
    assert np.array_equal(run("log1p", t[np.abs(t) < eps / 4]), t[np.abs(t) < eps / 4])
    near1 = (1 + np.arange(-2000, 2001) * eps / 2).astype(dtype)
    assert_ulps("log", near1)
    near_m1 = (-1 + np.arange(1, 4001) * eps / 2).astype(dtype)
    assert_ulps("log1p", near_m1)


def same(a, b):
    """Equal with NaN == NaN and the sign of zero checked (not NaN's sign)."""
    a, b = np.asarray(a), np.asarray(b)
    zeros = (a == 0) & (b == 0)
    return (np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a[zeros]), np.signbit(b[zeros])))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    cases = {
        "exp": ([nan, inf, -inf, 0.0, -0.0, 1e4, -1e4], [nan, inf, 0.0, 1.0, 1.0, inf, 0.0]),
        "log": ([nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, -np.finfo(dtype).smallest_subnormal],
                [nan, inf, nan, -inf, -inf, 0.0, nan, nan]),
        "log1p": ([nan, inf, -inf, 0.0, -0.0, -1.0, -1.5, -1e30],
                  [nan, inf, nan, 0.0, -0.0, -inf, nan, nan]),
        "expm1": ([nan, inf, -inf, 0.0, -0.0, 1e4, -1e4], [nan, inf, -1.0, 0.0, -0.0, inf, -1.0]),
    }
    for name, (x, want) in cases.items():
        x = np.array(x, dtype)
        got = run(name, x)
        assert got.dtype == dtype
        assert same(got, np.array(want, dtype)), (name, x, got)
        assert same(got, reference(name, x)), (name, x, got)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_bounded_flushes_and_saturates(dtype):
    hi, lo = (88.0, -86.0) if dtype == np.float32 else (709.0, -708.0)
    x = np.array([np.nan, -np.inf, np.inf, 0.0, lo - 1, lo, hi, hi + 1, 1e4, -1e4], dtype)
    got = run("exp_bounded", x)
    top = np.exp(np.float64(hi)).astype(dtype)
    want = np.array([np.nan, 0.0, top, 1.0, 0.0, np.exp(np.float64(lo)), top, top, top, 0.0],
                    dtype)
    assert got.dtype == dtype
    assert np.all(ulps(got, want) <= MAX_ULP[dtype]), (x, got, want)
    assert np.all(np.isfinite(got[1:]))  # never inf: a softmax sum cannot overflow by it


def test_float32_stays_float32():
    """No double arithmetic anywhere in the float32 kernel (constants, bit tricks and
    polynomials all in float32, so its loops run 8 lanes wide)."""
    sig = (float32[::1], int64)
    apply.compile(sig)
    llvm = apply.inspect_llvm(sig)
    assert "@llvm.fma.f32" in llvm  # the inlined functions are in there
    assert " double" not in llvm


def test_integer_argument():
    """Integers are computed in float64, like math.exp."""
    @njit
    def f(n):
        return exp(n)

    assert f(3) == np.exp(3.0) or ulps(np.array([f(3)]), np.array([np.exp(3.0)]))[0] <= 1
    assert f.overloads[(int64,)].signature.return_type == float64


def test_python_fallback():
    x = np.array([0.5, 2.0])
    assert same(_math.exp(x), np.exp(x)) and same(_math.log1p(x), np.log1p(x))


def _host_has_avx2():
    import os

    from llvmlite import binding as ll
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    return ll.get_host_cpu_features().get("avx2", False)


@pytest.mark.skipif(not _host_has_avx2(), reason="checks AVX2 code generation")
@pytest.mark.parametrize("ty", [float32, float64])
def test_loops_vectorise(ty):
    """The kernel's loops use full 256-bit registers: no scalar libm calls left."""
    sig = (ty[::1], int64)
    apply.compile(sig)
    asm = apply.inspect_asm(sig)
    assert "ymm" in asm
    # Numba calls libm as `movabsq $expf, %reg; callq *%reg` (or a direct call)
    libm = re.compile(r"(\$|call\w*\s+)(exp|log|log1p|expm1)f?\b")
    assert not libm.search(asm)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sqrt_is_correctly_rounded_and_vectorises(dtype):
    """``sqrt`` is the IEEE square root, bit for bit ``np.sqrt`` (special values too),
    and compiles to the instruction, not a call of the C library's ``sqrt``."""
    @njit(fastmath=FASTMATH, error_model="numpy")
    def roots(x, out):
        for i in range(x.size):
            out[i] = _math.sqrt(x[i])

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0, 10, 5000), 10.0 ** rng.uniform(-300, 300, 5000),
                        [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 5e-324]])
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        x = x.astype(dtype)  # (float32: the large ones become inf, the tiny ones 0)
        out = np.empty_like(x)
        roots(x, out)
        assert same(out, np.sqrt(x))
    ir = roots.inspect_llvm(roots.signatures[0])
    assert "@llvm.sqrt" in ir and "@sqrt" not in ir
    assert _math.sqrt(4.0) == 2.0  # (NumPy outside compiled code)


@njit(parallel=True, fastmath=FASTMATH)
def apply_restricted(x):
    """(log_positive(x), log1p_unit(x)) in a loop like the kernels'."""
    positive, unit = np.empty_like(x), np.empty_like(x)
    for i in prange(x.size):
        positive[i] = _math.log_positive(x[i])
        unit[i] = _math.log1p_unit(x[i])
    return positive, unit


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_positive_and_log1p_unit(dtype):
    """The restricted logs on the arguments they are for: log_positive on positive normal
    numbers (every binade, and Keras's clipped probabilities), log1p_unit on [0, 1]
    (tiny values, both sides of sqrt(2) - 1, 1 itself); NaN stays NaN in both."""
    rng = np.random.default_rng(3)
    info = np.finfo(dtype)
    bits = random_bits(dtype, 200_000, rng)
    normal = bits[np.isfinite(bits) & (bits >= info.tiny)]
    clipped = np.clip(rng.random(50_000), 1e-7, 1 - 1e-7)
    positive = np.concatenate([normal, clipped.astype(dtype), [info.tiny, info.max, 1.0]])
    unit = np.concatenate([rng.random(100_000), rng.random(1000) * 1e-6,
                           np.sqrt(2.0) - 1 + np.linspace(-1e-6, 1e-6, 1001),
                           [0.0, 1e-30, 1.0]]).astype(dtype)
    x = np.concatenate([positive, unit, [np.nan]]).astype(dtype)
    got_positive, got_unit = apply_restricted(x)
    with np.errstate(divide="ignore"):  # (log of the unit inputs' 0: not compared)
        want_positive = np.log(x.astype(np.float64)).astype(dtype)
    want_unit = np.log1p(x.astype(np.float64)).astype(dtype)
    p, u = slice(0, positive.size), slice(positive.size, positive.size + unit.size)
    for got, want, part in ((got_positive, want_positive, p), (got_unit, want_unit, u)):
        d = ulps(got[part], want[part])
        assert d.max() <= MAX_ULP[dtype], (x[part][np.argmax(d)], d.max())
    assert np.isnan(got_positive[-1]) and np.isnan(got_unit[-1])

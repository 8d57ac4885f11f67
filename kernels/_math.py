"""Vectorisable ``exp``, ``log``, ``log1p`` and ``expm1`` for Numba CPU kernels.

Numba lowers ``math.exp``/``math.log`` to calls into the scalar C library, and a call
stops LLVM's loop vectoriser: a kernel that takes an exponential per element then runs
several times slower than a pass over its memory.  The functions here are written
out in plain arithmetic (range reduction, a polynomial, exponent bit tricks) so that
they inline into a kernel's loop and vectorise with it.

Use them like the ``math`` functions inside ``@njit`` code::

    from fastloss.kernels._math import exp, log, log1p, expm1

    @njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
    def kernel(x): ...   # exp(x[i]) etc.

Two restricted variants save kernels their special cases: ``log_positive(x)`` for x a
positive normal number (Keras's clipped probabilities: no subnormal, zero, negative or
infinite x), and ``log1p_unit(x)`` for x in [0, 1] (softplus's log1p(exp(-|z|)): no
special values, a polynomial reciprocal in place of a division).

Each name is a Python stub (falling back on NumPy outside compiled code) with a Numba
``overload`` compiled as a function that LLVM inlines (``cpu_target.INLINED``): a ``float32`` argument gets a ``float32``
implementation (``float32`` constants, ``int32`` exponent arithmetic, shorter
polynomials, so up to eight lanes per AVX2 register), a ``float64`` argument a
``float64`` one; an integer argument is computed in ``float64`` like ``math.exp``.

Accuracy against NumPy (``tests/test_math.py``): float64 within 1 ulp (``expm1``: 2),
float32 within 1 ulp of NumPy's float64 result rounded to float32 (checked over all
2**32 inputs), over the whole finite range, subnormals included.  Special values are
exact: ``exp(nan) = nan``, ``exp(inf) = inf``, ``exp(-inf) = 0``, overflow to ``inf``,
underflow through the subnormals to ``0``; ``log(0) = -inf``, ``log(x < 0) = nan``,
``log(inf) = inf``; ``log1p(-1) = -inf``, ``log1p(x < -1) = nan``, ``log1p(tiny) =
tiny`` (sign of zero kept); ``expm1(-inf) = -1``, ``expm1(inf) = inf``.

Written to survive the kernels' ``fastmath={"reassoc", "contract"}`` (they are compiled
with those flags, whoever calls them):

* every branch is a ``select`` (the ``_where`` intrinsic) between values already
  computed, and no division is Python-checked (``_div`` is a bare ``fdiv``), so a loop
  calling these has no control flow left and vectorises;
* the Cody-Waite reduction ``r = x - k*ln2_hi - k*ln2_lo`` is two ``llvm.fma`` calls
  (``_fma``), which neither reassociation nor contraction may merge or reorder;
* ``2**k`` is built from integer bits (``_scale``), the first half of ``k`` added to
  the polynomial's exponent field as an integer, so no chain of float multiplies by
  powers of two is left for reassociation to reorder into an overflow or underflow;
* the exact compensation terms of ``log1p`` (``x - ((1 + x) - 1)``) use ``_sub``, an
  ``fsub`` emitted with its own (harmless) ``contract`` flag: Numba's fastmath pass
  only flags float instructions that carry no flags, so these keep IEEE semantics even
  under ``fastmath=True``;
* no ``(x + magic) - magic`` rounding tricks: ``k`` comes from ``llvm.floor``.

NaN and infinity handling relies on the kernels not using ``nnan``/``ninf`` (plain
``fastmath=True`` lets LLVM drop the NaN and inf tests; the finite results stay within
3 ulp even then).  CUDA kernels do not use this
module: they call ``math.exp`` and friends, which CUDA lowers to its own functions.

Float-to-integer conversions go through ``int32`` (``cvttps2dq``/``cvttpd2dq``) and
integer-to-float ones likewise, because AVX2 has no vector ``int64`` <-> ``double``
conversion; 64-bit integer work is limited to adds, ands and logical shifts, which it
has.  Note: Numba's on-disk cache of a kernel is not invalidated when this file
changes (only the kernel's own source file is checked); clear ``__pycache__`` after
editing it.
"""

import decimal
import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from .cpu_target import INLINED, inlined

__all__ = ["exp", "log", "log1p", "expm1", "sqrt", "log_positive", "log1p_unit"]

_f32 = np.float32
_f64 = np.float64


# --------------------------------------------------------------------------------------
# Intrinsics: the few operations that must not be left to Python-level arithmetic.
# --------------------------------------------------------------------------------------

def _same_float(*tys):
    return isinstance(tys[0], types.Float) and all(t == tys[0] for t in tys)


def _int_layout(fty):
    """(integer type, mantissa bits, exponent bias) of an LLVM float type."""
    if isinstance(fty, ir.DoubleType):
        return ir.IntType(64), 52, 1023
    return ir.IntType(32), 23, 127


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (``llvm.fma``, an instruction on FMA CPUs)."""
    if not _same_float(a, b, c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def _floor(typingctx, x):
    """floor(x) as a float (``llvm.floor``: ``vroundps``/``vroundpd``)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.floor", [args[0].type])
        return builder.call(fn, args)

    return x(x), codegen


@intrinsic
def _where(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` (no branch)."""
    if not (isinstance(cond, types.Boolean) and _same_float(a, b)):
        return None

    def codegen(context, builder, sig, args):
        c, x, y = args
        if c.type != ir.IntType(1):
            c = builder.icmp_unsigned("!=", c, ir.Constant(c.type, 0))
        return builder.select(c, x, y)

    return a(cond, a, b), codegen


@intrinsic
def _sub(typingctx, a, b):
    """a - b, exactly as IEEE says, whatever fastmath flags the kernel has."""
    if not _same_float(a, b):
        return None

    def codegen(context, builder, sig, args):
        # An instruction that already has flags is skipped by Numba's fastmath pass;
        # 'contract' alone permits nothing here (no operand is a multiplication).
        return builder.fsub(args[0], args[1], flags=("contract",))

    return a(a, b), codegen


@intrinsic
def _div(typingctx, a, b):
    """a / b as a bare ``fdiv``: Numba's own ``/`` checks for a zero divisor (and
    raises) unless the caller compiled with error_model="numpy", a branch that would
    stop vectorisation; here a zero divisor gives IEEE's inf or nan."""
    if not _same_float(a, b):
        return None

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])

    return a(a, b), codegen


def _pow2_bits(builder, k, ity, mbits, bias):
    """Integer bits of the float 2**k, k an i32 in the normal exponent range."""
    if ity.width != 32:
        k = builder.sext(k, ity)
    return builder.shl(builder.add(k, ir.Constant(ity, bias)), ir.Constant(ity, mbits))


@intrinsic
def _scale(typingctx, p, kf):
    """p * 2**k for an integral float k, |k| < 2 * (largest exponent + 1) and p in
    [1/2, 2]: p's exponent field gets k // 2 added as an integer, then one float
    multiply by 2**(k - k // 2) rounds once, into the subnormals or to inf if needed."""
    if not _same_float(p, kf):
        return None

    def codegen(context, builder, sig, args):
        pv, kv = args
        fty = pv.type
        ity, mbits, bias = _int_layout(fty)
        i32 = ir.IntType(32)
        k = builder.fptosi(kv, i32)
        k1 = builder.ashr(k, ir.Constant(i32, 1))
        k2 = builder.sub(k, k1)
        if ity.width != 32:
            k1 = builder.sext(k1, ity)
        k1_bits = builder.shl(k1, ir.Constant(ity, mbits))
        bits = builder.add(builder.bitcast(pv, ity), k1_bits)
        half = builder.bitcast(bits, fty)
        rest = builder.bitcast(_pow2_bits(builder, k2, ity, mbits, bias), fty)
        return builder.fmul(half, rest)

    return p(p, kf), codegen


@intrinsic
def _shift_exponent(typingctx, p, kf):
    """p * 2**k for an integral float k where the product is a normal number: k added
    to p's exponent field as an integer (no rounding, no subnormal or overflow care)."""
    if not _same_float(p, kf):
        return None

    def codegen(context, builder, sig, args):
        pv, kv = args
        ity, mbits, _ = _int_layout(pv.type)
        k = builder.fptosi(kv, ir.IntType(32))
        if ity.width != 32:
            k = builder.sext(k, ity)
        bits = builder.add(builder.bitcast(pv, ity), builder.shl(k, ir.Constant(ity, mbits)))
        return builder.bitcast(bits, pv.type)

    return p(p, kf), codegen


@intrinsic
def _pow2(typingctx, kf):
    """2**k for an integral float k in the normal exponent range."""
    if not isinstance(kf, types.Float):
        return None

    def codegen(context, builder, sig, args):
        fty = args[0].type
        ity, mbits, bias = _int_layout(fty)
        k = builder.fptosi(args[0], ir.IntType(32))
        return builder.bitcast(_pow2_bits(builder, k, ity, mbits, bias), fty)

    return kf(kf), codegen


# Bits of the smallest mantissa of the reduced range [sqrt(1/2), sqrt(2)) (fdlibm/musl).
_SQRT_HALF_BITS = {32: 0x3F3504F3, 64: 0x3FE6A09E667F3BCD}


def _log_split(builder, x):
    """(m, k) with x = m * 2**k and m in [sqrt(1/2), sqrt(2)), for positive normal x;
    k as a float of x's type (the conversion goes through i32)."""
    fty = x.type
    ity, mbits, bias = _int_layout(fty)
    sqrt_half = _SQRT_HALF_BITS[ity.width]
    one = bias << mbits
    ix = builder.add(builder.bitcast(x, ity), ir.Constant(ity, one - sqrt_half))
    e = builder.lshr(ix, ir.Constant(ity, mbits))
    if ity.width != 32:
        e = builder.trunc(e, ir.IntType(32))
    e = builder.sub(e, ir.Constant(ir.IntType(32), bias))
    k = builder.sitofp(e, fty)
    mant = builder.and_(ix, ir.Constant(ity, (1 << mbits) - 1))
    m = builder.bitcast(builder.add(mant, ir.Constant(ity, sqrt_half)), fty)
    return m, k


@intrinsic
def _log_mantissa(typingctx, x):
    """m of x = m * 2**k, m in [sqrt(1/2), sqrt(2)) (x positive and normal)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return _log_split(builder, args[0])[0]

    return x(x), codegen


@intrinsic
def _log_exponent(typingctx, x):
    """k of x = m * 2**k, m in [sqrt(1/2), sqrt(2)), as a float (x positive, normal)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return _log_split(builder, args[0])[1]

    return x(x), codegen


# --------------------------------------------------------------------------------------
# Constants, one set per float type.
# --------------------------------------------------------------------------------------

class _Consts:
    def __init__(self, T, **values):
        for name, value in values.items():
            setattr(self, name, T(value) if not isinstance(value, tuple)
                    else tuple(T(v) for v in value))


def _ln2_split(T):
    """ln2 = hi + lo (+ O(ulp(lo))), hi = ln2 rounded to T."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        ln2 = decimal.Decimal(2).ln()
        hi = T(float(ln2))
        lo = T(float(ln2 - decimal.Decimal(float(hi))))
    return hi, lo


_LN2_HI32, _LN2_LO32 = _ln2_split(_f32)
_LN2_HI64, _LN2_LO64 = _ln2_split(_f64)

# Reciprocals for rounding corrections, where a few correct bits do: minimax quadratics
# a + b x + c x**2 for 1/m on [sqrt(1/2), sqrt(2)] (1% off) and 1/u on [sqrt(2), 2] (0.13%).
_RECIPROCALS = dict(RECIP_M=(2.9998214, -2.9090361, 0.91421101),
                    RECIP_U=(1.78380982, -1.05267893, 0.20554841))

# exp: clamping range (outside it the result is inf or 0 anyway; keeps k's halves in
# the normal range), log2(e), ln2 split for Cody-Waite.
C32 = _Consts(
    _f32, ZERO=0.0, HALF=0.5, ONE=1.0, TWO=2.0, NAN=math.nan, INF=math.inf,
    LOG2E=1.4426950408889634, LN2_HI=float(_LN2_HI32), LN2_LO=float(_LN2_LO32),
    EXP_HI=89.0, EXP_LO=-104.0,
    # exp_bounded: the range where 2**k needs no subnormal or overflow care.
    BOUNDED_HI=88.0, BOUNDED_LO=-86.0,
    # expm1: below EXPM1_LO the result rounds to -1; above K_BIG it is exp(x) - 1 = exp(x).
    EXPM1_LO=-18.0, EXPM1_K_BIG=25.0,
    # log: smallest normal, 2**25 to scale subnormals up by, and its exponent.
    TINY=2.0 ** -126, SUBNORMAL_SCALE=2.0 ** 25, SUBNORMAL_K=-25.0,
    # log1p: |x| range where f = x directly (musl), k beyond which c is negligible.
    LOG1P_SMALL_HI=0.41421356, LOG1P_SMALL_LO=-0.29289323, LOG1P_K_EXACT=25.0,
    # log: ln2 hi/lo with 9 trailing zeros in hi (0x3f317200), so k*ln2_hi is exact;
    # musl logf's polynomial.
    LOG_LN2_HI=6.9314575195e-01, LOG_LN2_LO=1.4286067653e-06,
    LG=(0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841),
    **_RECIPROCALS,
)
C64 = _Consts(
    _f64, ZERO=0.0, HALF=0.5, ONE=1.0, TWO=2.0, NAN=math.nan, INF=math.inf,
    LOG2E=1.4426950408889634, LN2_HI=float(_LN2_HI64), LN2_LO=float(_LN2_LO64),
    EXP_HI=710.0, EXP_LO=-746.0,
    BOUNDED_HI=709.0, BOUNDED_LO=-708.0,
    EXPM1_LO=-40.0, EXPM1_K_BIG=56.0,
    TINY=2.0 ** -1022, SUBNORMAL_SCALE=2.0 ** 54, SUBNORMAL_K=-54.0,
    LOG1P_SMALL_HI=0.41421356237309503, LOG1P_SMALL_LO=-0.29289321881345248,
    LOG1P_K_EXACT=54.0,
    LOG_LN2_HI=6.93147180369123816490e-01, LOG_LN2_LO=1.90821492927058770002e-10,
    LG=(6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
        2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
        1.479819860511658591e-01),
    **_RECIPROCALS,
)

_LG32, _LG64 = C32.LG, C64.LG

# exp(r) = 1 + r + r*r*G(r) and expm1(r) = r + r*r*G(r) on |r| <= ln2/2, with
# G(r) = (exp(r) - 1 - r) / r**2 fitted by Chebyshev interpolation (near-minimax; mpmath
# chebyfit on [-1.0005, 1.0005] * ln2/2).  Relative error of the fit alone, in ulps:
# exp float32 deg 4: 0.18, float64 deg 9: 0.15; expm1 (one degree more, as its result can
# be as small as r) float32 deg 5: 0.03, float64 deg 10: 0.007.
_G4_32 = tuple(_f32(c) for c in (
    0.5, 0.16666576845993977, 0.04166655443768594, 0.008363202971575855,
    0.0013926213466332444))
_G5_32 = tuple(_f32(c) for c in (
    0.5000000013498178, 0.16666666681659179, 0.04166646460202654, 0.008333310889582076,
    0.0013933685862617174, 0.00019891030654370327))
_G9_64 = tuple(_f64(c) for c in (
    0.5000000000000001, 0.16666666666666669, 0.04166666666662399, 0.008333333333330051,
    0.0013888888917281794, 0.00019841269863105968, 2.480152119021773e-05,
    2.7557268378684192e-06, 2.7620138719733994e-07, 2.5100424157005067e-08))
_G10_64 = tuple(_f64(c) for c in (
    0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326112,
    0.001388888888888373, 0.0001984126987490126, 2.4801587325605324e-05,
    2.7557255297969643e-06, 2.755727357010214e-07, 2.5105259538448494e-08,
    2.0914717341716378e-09))
_ONE32, _ONE64 = _f32(1.0), _f64(1.0)


# --------------------------------------------------------------------------------------
# Polynomials (Horner; contraction turns each step into one FMA).
# --------------------------------------------------------------------------------------

def _exp_poly32(r):
    """exp(r) = 1 + r*(1 + r*G(r)), |r| <= ln2/2: six FMAs."""
    g0, g1, g2, g3, g4 = _G4_32
    p = g4 * r + g3
    p = p * r + g2
    p = p * r + g1
    p = p * r + g0
    p = p * r + _ONE32
    return p * r + _ONE32


def _exp_poly64(r):
    """exp(r) = 1 + r*(1 + r*G(r)), |r| <= ln2/2: eleven FMAs."""
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g9 = _G9_64
    p = g9 * r + g8
    p = p * r + g7
    p = p * r + g6
    p = p * r + g5
    p = p * r + g4
    p = p * r + g3
    p = p * r + g2
    p = p * r + g1
    p = p * r + g0
    p = p * r + _ONE64
    return p * r + _ONE64


def _expm1_poly32(r):
    """expm1(r) = r + r*r*G(r), |r| <= ln2/2, the last step one FMA so that r, the
    leading term, is added exactly once."""
    g0, g1, g2, g3, g4, g5 = _G5_32
    p = g5 * r + g4
    p = p * r + g3
    p = p * r + g2
    p = p * r + g1
    p = p * r + g0
    return _fma(r * r, p, r)


def _expm1_poly64(r):
    """expm1(r) = r + r*r*G(r), |r| <= ln2/2."""
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10 = _G10_64
    p = g10 * r + g9
    p = p * r + g8
    p = p * r + g7
    p = p * r + g6
    p = p * r + g5
    p = p * r + g4
    p = p * r + g3
    p = p * r + g2
    p = p * r + g1
    p = p * r + g0
    return _fma(r * r, p, r)


def _log_r32(s):
    """musl logf's R(z), z = s*s, for log(1+f) = f - f*f/2 + s*(f*f/2 + R)."""
    Lg1, Lg2, Lg3, Lg4 = _LG32
    z = s * s
    w = z * z
    t1 = w * (Lg2 + w * Lg4)
    t2 = z * (Lg1 + w * Lg3)
    return t2 + t1


def _log_r64(s):
    """musl log's R(z), z = s*s."""
    Lg1, Lg2, Lg3, Lg4, Lg5, Lg6, Lg7 = _LG64
    z = s * s
    w = z * z
    t1 = w * (Lg2 + w * (Lg4 + w * Lg6))
    t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)))
    return t2 + t1


# --------------------------------------------------------------------------------------
# The functions, built once per float type from the same bodies.
# --------------------------------------------------------------------------------------

def _make(C, exp_poly, expm1_poly, log_r):
    exp_poly = inlined(exp_poly)
    expm1_poly = inlined(expm1_poly)
    log_r = inlined(log_r)

    ZERO, HALF, ONE, TWO, NAN, INF = C.ZERO, C.HALF, C.ONE, C.TWO, C.NAN, C.INF
    NEG_ONE, NEG_INF = -C.ONE, -C.INF
    LOG2E, NEG_LN2_HI, NEG_LN2_LO = C.LOG2E, -C.LN2_HI, -C.LN2_LO
    EXP_HI, EXP_LO, EXPM1_LO, EXPM1_K_BIG = C.EXP_HI, C.EXP_LO, C.EXPM1_LO, C.EXPM1_K_BIG
    TINY, SUBNORMAL_SCALE, SUBNORMAL_K = C.TINY, C.SUBNORMAL_SCALE, C.SUBNORMAL_K
    SMALL_HI, SMALL_LO, K_EXACT = C.LOG1P_SMALL_HI, C.LOG1P_SMALL_LO, C.LOG1P_K_EXACT
    LOG_LN2_HI, LOG_LN2_LO = C.LOG_LN2_HI, C.LOG_LN2_LO
    RECIP_M, RECIP_U = C.RECIP_M, C.RECIP_U

    @inlined
    def reduce_exp(x, lo):
        """(k, r) with x = k*ln2 + r, |r| <= ln2/2, x first clamped to [lo, EXP_HI]
        (NaN goes to EXP_HI; callers select NaN back)."""
        xc = _where(x < EXP_HI, x, EXP_HI)
        xc = _where(xc > lo, xc, lo)
        k = _floor(_fma(xc, LOG2E, HALF))
        r = _fma(k, NEG_LN2_HI, xc)
        r = _fma(k, NEG_LN2_LO, r)
        return k, r

    def exp_impl(x):
        k, r = reduce_exp(x, EXP_LO)
        y = _scale(exp_poly(r), k)
        return _where(x == x, y, x)

    BOUNDED_HI, BOUNDED_LO = C.BOUNDED_HI, C.BOUNDED_LO

    def exp_bounded_impl(x):
        xc = _where(x < BOUNDED_HI, x, BOUNDED_HI)
        xc = _where(xc > BOUNDED_LO, xc, BOUNDED_LO)
        k = _floor(_fma(xc, LOG2E, HALF))
        r = _fma(k, NEG_LN2_HI, xc)
        r = _fma(k, NEG_LN2_LO, r)
        y = _shift_exponent(exp_poly(r), k)
        y = _where(x < BOUNDED_LO, ZERO, y)
        return _where(x == x, y, x)

    def expm1_impl(x):
        k, r = reduce_exp(x, EXPM1_LO)
        e = expm1_poly(r)
        # 2**k * (1 + e) - 1, rounded once while -1 still matters; exp's scaling beyond.
        t = _pow2(_where(k < EXPM1_K_BIG, k, ZERO))
        y = _fma(t, e, _sub(t, ONE))
        y = _where(k < EXPM1_K_BIG, y, _scale(ONE + e, k))
        y = _where(k == ZERO, e, y)  # skips a rounding
        y = _where(x == ZERO, x, y)  # expm1(-0) = -0 (r loses the sign if ln2_lo > 0)
        return _where(x == x, y, x)

    @inlined
    def log_core(f, k, c):
        """log(2**k * (1 + f)) + c, f in [sqrt(1/2) - 1, sqrt(2) - 1] (fdlibm)."""
        s = _div(f, TWO + f)
        R = log_r(s)
        hfsq = HALF * f * f
        return s * (hfsq + R) + (k * LOG_LN2_LO + c) - hfsq + f + k * LOG_LN2_HI

    def log_impl(x):
        sub = x < TINY
        xs = _where(sub, x * SUBNORMAL_SCALE, x)
        k = _log_exponent(xs) + _where(sub, SUBNORMAL_K, ZERO)
        y = log_core(_log_mantissa(xs) - ONE, k, ZERO)
        y = _where(x < INF, y, x)         # inf -> inf, nan -> nan
        y = _where(x == ZERO, NEG_INF, y)
        return _where(x < ZERO, NAN, y)   # also -inf -> nan

    def log1p_impl(x):
        u = ONE + x
        k = _log_exponent(u)
        m = _log_mantissa(u)
        # c = log(1 + x) - log(u) ~ (x - (u - 1)) / u, the error of u (exactly computed)
        # over u.  It is below half an ulp of u, so a 1% reciprocal does: 1/u = 2**-k / m
        # with 1/m a quadratic in m (no division).
        inverse_m = RECIP_M[0] + m * (RECIP_M[1] + m * RECIP_M[2])
        c = _where(k >= TWO, _sub(ONE, _sub(u, x)), _sub(x, _sub(u, ONE))) * (
            inverse_m * _pow2(-k))
        c = _where(k < K_EXACT, c, ZERO)
        f = m - ONE
        small = (x < SMALL_HI) & (x > SMALL_LO)
        f = _where(small, x, f)
        k = _where(small, ZERO, k)
        c = _where(small, ZERO, c)
        y = log_core(f, k, c)
        y = _where(x < INF, y, x)          # inf -> inf, nan -> nan
        y = _where(x == NEG_ONE, NEG_INF, y)
        y = _where(x == ZERO, x, y)        # log1p(-0) = -0
        return _where(x < NEG_ONE, NAN, y)    # also -inf -> nan

    def log_positive_impl(x):
        # A normal x: no subnormal scaling, no zero, negative or infinite x; NaN would
        # come out of the mantissa's bits as a finite number, so it is selected back.
        y = log_core(_log_mantissa(x) - ONE, _log_exponent(x), ZERO)
        return _where(x == x, y, x)

    def log1p_unit_impl(x):
        # 1 + x in [1, 2]: below SMALL_HI f = x directly; above, 1 + x = 2 (1 + f) with
        # f = (1 + x)/2 - 1 exact, and c the rounding error of u = 1 + x over u (log1p's
        # division), which is below half an ulp of u: a 0.13% reciprocal of u does.  No
        # special value but NaN can come in, and NaN goes through f.
        u = ONE + x
        small = x < SMALL_HI
        f = _where(small, x, _sub(HALF * u, ONE))
        k = _where(small, ZERO, ONE)
        inverse_u = RECIP_U[0] + u * (RECIP_U[1] + u * RECIP_U[2])
        c = _where(small, ZERO, _sub(x, _sub(u, ONE)) * inverse_u)
        return log_core(f, k, c)

    return (exp_impl, expm1_impl, log_impl, log1p_impl, exp_bounded_impl, log_positive_impl,
            log1p_unit_impl)


_NAMES = ("exp", "expm1", "log", "log1p", "exp_bounded", "log_positive", "log1p_unit")
_IMPLS = {
    32: dict(zip(_NAMES, _make(C32, _exp_poly32, _expm1_poly32, _log_r32))),
    64: dict(zip(_NAMES, _make(C64, _exp_poly64, _expm1_poly64, _log_r64))),
}


# --------------------------------------------------------------------------------------
# The public names: stubs for Python, overloads for Numba.
# --------------------------------------------------------------------------------------

def exp(x):
    """e**x (NumPy outside compiled code; vectorisable inside @njit code)."""
    return np.exp(x)


def log(x):
    """Natural logarithm (NumPy outside compiled code; vectorisable inside @njit code)."""
    return np.log(x)


def log1p(x):
    """log(1 + x), accurate near 0 (NumPy outside compiled code; vectorisable inside)."""
    return np.log1p(x)


def expm1(x):
    """e**x - 1, accurate near 0 (NumPy outside compiled code; vectorisable inside)."""
    return np.expm1(x)


def exp_bounded(x):
    """e**x flushed to 0 below e**-86 (float32; e**-708 in float64) and saturated at
    e**88 (e**709), with exp's accuracy in between: fewer instructions than ``exp``, for
    sums of exponentials that only need relative accuracy (the softmax)."""
    y = np.exp(np.minimum(x, 88.0 if np.asarray(x).dtype == np.float32 else 709.0))
    return np.where(x < (-86.0 if np.asarray(x).dtype == np.float32 else -708.0), 0.0, y)


def log_positive(x):
    """log(x) for a positive normal finite x (or NaN): log without its subnormal scaling
    and zero, negative and infinite cases, for arguments clipped away from them (Keras's
    probabilities in [1e-7, 1 - 1e-7]).  Within log's accuracy; CUDA: ``math.log``."""
    return np.log(x)


def log1p_unit(x):
    """log(1 + x) for x in [0, 1] (or NaN): log1p without its special values and with a
    polynomial reciprocal in place of its division, for softplus's log1p(exp(-|z|)).
    Within log1p's accuracy; CUDA: ``math.log1p(x)``."""
    return np.log1p(x)


@intrinsic
def _sqrt(typingctx, x):
    """IEEE square root (``llvm.sqrt``: ``vsqrtps``/``vsqrtpd``); Numba lowers
    ``math.sqrt`` to a call of the C library's ``sqrt`` instead."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, args)

    return x(x), codegen


def sqrt(x):
    """Square root, correctly rounded like ``math.sqrt`` (NumPy outside compiled code;
    an instruction, so vectorisable, inside @njit code; NaN for x < 0)."""
    return np.sqrt(x)


@overload(sqrt, jit_options=INLINED)
def _ol_sqrt(x):
    if isinstance(x, types.Float):
        return lambda x: _sqrt(x)
    if isinstance(x, (types.Integer, types.Boolean)):
        return lambda x: _sqrt(np.float64(x))
    return None


def _register(stub):
    name = stub.__name__
    impl32, impl64 = _IMPLS[32][name], _IMPLS[64][name]

    def ol(x):
        if isinstance(x, types.Float):
            return impl32 if x.bitwidth == 32 else impl64
        if isinstance(x, (types.Integer, types.Boolean)):
            return lambda x: stub(np.float64(x))
        return None

    ol.__name__ = f"_ol_{name}"
    overload(stub, jit_options=INLINED)(ol)


for _stub in (exp, log, log1p, expm1, exp_bounded, log_positive, log1p_unit):
    _register(_stub)
del _stub

"""The overlap losses (dice, tversky, fbeta_loss) against float64 references written from
their formulas, on every backend; gradients also against finite differences."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastloss._bench_references import OVERLAP_BENCH as BENCH
from fastloss.losses import by_family
from overlap_references import reference, reference_grad
from references import finite_difference_grad

LOSSES = by_family("overlap")

RTOL = {np.float32: 2e-5, np.float64: 1e-10}
KERAS_REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none"]

# (loss, options, targets): every option that changes the math; soft targets too.
CASES = [
    ("dice", {}, "binary"),
    ("tversky", {"alpha": 0.3, "beta": 0.7}, "binary"),
    ("tversky", {}, "soft"),
    ("fbeta_loss", {"beta": 2.0}, "binary"),
    ("fbeta_loss", {}, "soft"),
]
# (y_pred shape, axis): every axis, one trailing axis, trailing axes, non-trailing ones.
AXES = [((4, 6), None), ((4, 6), (1,)), ((3, 4, 5), (1, 2)), ((3, 4, 5), (0,)),
        ((3, 4, 5), (0, 2))]


def case_id(case):
    name, options, targets = case
    return "-".join([name, targets] + [f"{k}={v}" for k, v in options.items()])


# -- helpers ------------------------------------------------------------------------------

def make_data(shape, targets, dtype, seed=0):
    rng = np.random.default_rng(seed)
    t = (rng.random(shape) < 0.5) * 1.0 if targets == "binary" else rng.uniform(0, 1, shape)
    p = rng.uniform(0.02, 0.98, shape)
    return t.astype(dtype), p.astype(dtype)


def sample_weight(form, shape, axis, rng):
    """None, a scalar, or one weight per sample (for axis=None, where the per-sample loss
    is a scalar, one per row: Keras then multiplies the loss into the weights' shape)."""
    if form == "none":
        return None
    if form == "scalar":
        return 0.7
    if axis is None:
        return rng.uniform(0.1, 2.0, shape[0])
    return rng.uniform(0.1, 2.0, [n for i, n in enumerate(shape) if i not in axis])


def check(actual, expected, dtype, atol=1e-12):
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    assert actual.shape == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)


def run_case(case, dtype, reduction, weight_form, shape, axis):
    name, options, targets = case
    loss = LOSSES[name]
    t, p = make_data(shape, targets, dtype)
    rng = np.random.default_rng(1)
    kw = dict(sample_weight=sample_weight(weight_form, shape, axis, rng), reduction=reduction,
              axis=axis, **options)
    expected = reference(name, t, p, **kw)
    value = loss(t, p, **kw)
    check(value, expected, dtype)

    grad_output = rng.uniform(-1, 1, np.shape(expected)) if reduction == "none" else 1.3
    expected_grad = reference_grad(name, t, p, grad_output, **kw)
    grad = loss.grad(t, p, grad_output=grad_output, **kw)
    check(grad, expected_grad, dtype, atol=1e-12 if dtype == np.float64 else 1e-7)

    # The value comes from the same sums in both calls: bitwise equal.
    fused_value, fused_grad = loss.value_and_grad(t, p, grad_output=grad_output, **kw)
    np.testing.assert_array_equal(fused_value, value)
    assert np.asarray(fused_value).dtype == dtype
    np.testing.assert_array_equal(fused_grad, grad)


# -- values and gradients -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_reduction_weight_and_axis(case, dtype, backend):
    if backend == "cuda":  # the simulator is slow: a few combinations, every axis
        combos = [("sum_over_batch_size", "per_sample", 0), ("none", "scalar", 1),
                  ("mean_with_sample_weight", "per_sample", 3), ("sum", "none", 4),
                  ("none", "per_sample", 0), ("mean", "none", 2)]
    else:
        combos = [(r, w, a) for r in KERAS_REDUCTIONS for w in ("none", "scalar", "per_sample")
                  for a in range(len(AXES))]
    for reduction, weight_form, axis_case in combos:
        run_case(case, dtype, reduction, weight_form, *AXES[axis_case])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradients_against_finite_differences(case):
    """The reference gradient and fastloss's both against central differences of the
    float64 reference value."""
    name, options, targets = case
    rng = np.random.default_rng(2)
    for shape, axis in AXES:
        t, p = make_data(shape, targets, np.float64, seed=3)
        for reduction, weight_form in (("sum_over_batch_size", "per_sample"),
                                       ("none", "scalar")):
            kw = dict(sample_weight=sample_weight(weight_form, shape, axis, rng),
                      reduction=reduction, axis=axis, **options)
            go = rng.uniform(-1, 1, np.shape(reference(name, t, p, **kw)))
            fd = finite_difference_grad(lambda q: np.sum(go * reference(name, t, q, **kw)), p,
                                        h=1e-4)
            np.testing.assert_allclose(reference_grad(name, t, p, go, **kw), fd, rtol=1e-8,
                                       atol=1e-11)
            np.testing.assert_allclose(LOSSES[name].grad(t, p, grad_output=go, **kw), fd,
                                       rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("shape_cpu, shape_cuda", [((2, 9000), (2, 70)), ((1, 9000), (1, 70))])
def test_groups_longer_than_a_task(shape_cpu, shape_cuda, backend):
    """Groups split into chunks (CPU: of 4096 elements; CUDA: groups of 64 and more)."""
    shape = shape_cuda if backend == "cuda" else shape_cpu
    t, p = make_data(shape, "binary", np.float32, seed=4)
    for name, options, _ in CASES[:4] if backend != "cuda" else CASES[1:2]:
        kw = dict(axis=(1,), reduction="none", **options)
        value, grad = LOSSES[name].value_and_grad(t, p, **kw)
        check(value, reference(name, t, p, **kw), np.float32)
        expected_grad = reference_grad(name, t, p, np.ones(shape[0]), **kw)
        check(grad, expected_grad, np.float32, atol=1e-9)


@pytest.mark.parametrize("shape, axis", [((3, 1, 5), (1,)), ((3, 1, 5, 1), (1, 3)),
                                         ((1, 4, 1), (0,)), ((3, 4), ()), ((5,), (0,))])
def test_axes_of_length_one_and_no_axis(shape, axis):
    """Moving axes of length 1 needs no copy; axis=() reduces nothing (one element a group)."""
    for name, options, targets in CASES[:2]:
        t, p = make_data(shape, targets, np.float64, seed=7)
        kw = dict(axis=axis, reduction="none", **options)
        value, grad = LOSSES[name].value_and_grad(t, p, **kw)
        expected = reference(name, t, p, **kw)
        check(value, expected, np.float64)
        check(grad, reference_grad(name, t, p, np.ones(np.shape(expected)), **kw), np.float64)


def test_default_cotangent_is_one():
    t, p = make_data((3, 4), "binary", np.float64)
    for reduction in ("sum", "none"):
        for name in LOSSES:
            a = LOSSES[name].grad(t, p, reduction=reduction, axis=1)
            go = np.ones(3) if reduction == "none" else 1.0
            np.testing.assert_array_equal(a, LOSSES[name].grad(t, p, reduction=reduction, axis=1,
                                                               grad_output=go))


def test_defaults_are_keras_defaults():
    t, p = make_data((4, 6), "binary", np.float64)
    for name, kw in (("dice", {}), ("tversky", {"alpha": 0.5, "beta": 0.5}),
                     ("fbeta_loss", {"beta": 1.0})):
        assert LOSSES[name](t, p) == LOSSES[name](t, p, axis=None, reduction="none", **kw)
    # alpha weighs the false positives, beta the false negatives (Keras main, the paper)
    t = np.array([1.0, 1.0, 0.0, 0.0])
    p = np.array([1.0, 0.0, 0.0, 0.0])  # TP = 1, one false negative, no false positive
    np.testing.assert_allclose(LOSSES["tversky"](t, p, alpha=1.0, beta=0.0), 0.0, atol=1e-6)
    np.testing.assert_allclose(LOSSES["tversky"](t, p, alpha=0.0, beta=1.0), 0.5, rtol=1e-6)
    # tversky(0.5, 0.5) is dice; fbeta(1) is dice
    t, p = make_data((4, 6), "soft", np.float64)
    np.testing.assert_allclose(LOSSES["fbeta_loss"](t, p), LOSSES["dice"](t, p), rtol=1e-12)
    np.testing.assert_allclose(LOSSES["tversky"](t, p), LOSSES["dice"](t, p), rtol=1e-6)


def test_scalar_loss_times_weights_like_keras():
    """axis=None makes the per-sample loss a scalar; a sample_weight array then gives the
    loss times the weights (Keras's broadcast), reduced by `reduction`."""
    t, p = make_data((4, 6), "binary", np.float64)
    w = np.array([0.5, 1.0, 2.0, 0.0])
    L = LOSSES["dice"](t, p)
    np.testing.assert_allclose(LOSSES["dice"](t, p, sample_weight=w, reduction="none"), L * w)
    np.testing.assert_allclose(LOSSES["dice"](t, p, sample_weight=w), L * w)
    np.testing.assert_allclose(LOSSES["dice"](t, p, sample_weight=w,
                                              reduction="sum_over_batch_size"), L * w.sum() / 4)
    np.testing.assert_allclose(LOSSES["dice"](t, p, sample_weight=w, reduction="sum"), L * w.sum())
    np.testing.assert_allclose(
        LOSSES["dice"](t, p, sample_weight=w, reduction="mean_with_sample_weight"), L)
    assert LOSSES["dice"](t, p, sample_weight=0.0, reduction="sum") == 0
    # a scalar per-sample loss is returned unreduced: a 0-d value for "none"
    assert np.shape(LOSSES["dice"](t, p, reduction="none")) == ()


# -- dtypes, out=, empty inputs, errors ---------------------------------------------------

def test_dtypes():
    t, p = make_data((4, 6), "binary", np.float64)
    for pred, dtype in ((p.astype(np.float16), np.float32), ((p > 0.5) * 1, np.float32),
                        (p > 0.5, np.float32), (p.astype(np.float32), np.float32),
                        (p, np.float64)):
        for name in LOSSES:
            value, grad = LOSSES[name].value_and_grad(t.astype(np.int8), pred)
            assert np.asarray(value).dtype == dtype and grad.dtype == dtype
            check(value, reference(name, t, pred), dtype)
    assert LOSSES["dice"](t.tolist(), p.tolist()) == LOSSES["dice"](t, p)


@pytest.mark.parametrize("axis", [None, (0,)])
def test_out_and_in_place(axis, backend):
    t, p = make_data((3, 4, 5), "binary", np.float32)
    expected = LOSSES["tversky"].grad(t, p, axis=axis, alpha=0.2)
    out = np.empty_like(p)
    result = LOSSES["tversky"].grad(t, p, axis=axis, alpha=0.2, out=out)
    if backend != "cuda":
        assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, expected)
    q = p.copy()
    value, _ = LOSSES["tversky"].value_and_grad(t, q, axis=axis, alpha=0.2, out=q)
    np.testing.assert_array_equal(q, expected)
    np.testing.assert_array_equal(value, LOSSES["tversky"](t, p, axis=axis, alpha=0.2))


def test_empty_inputs(backend):
    dice = LOSSES["dice"]
    empty = np.zeros((0, 5))
    # every axis summed over nothing: 1 - 0 / (0 + 1e-7) = 1, as Keras
    for reduction in KERAS_REDUCTIONS:
        value, grad = dice.value_and_grad(empty, empty, reduction=reduction)
        assert value == 1.0 and grad.shape == (0, 5)
    # no samples: 0 for the reductions (as every loss here), an empty array for "none"
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        value, grad = dice.value_and_grad(empty, empty, axis=1, reduction=reduction)
        assert value == 0.0 and grad.shape == (0, 5)
    assert dice(empty, empty, axis=1, reduction="none").shape == (0,)
    # samples summed over an empty axis: a loss of 1 each, as Keras
    empty_groups = np.zeros((3, 0))
    np.testing.assert_array_equal(dice(empty_groups, empty_groups, axis=1, reduction="none"),
                                  np.ones(3))
    value, grad = dice.value_and_grad(empty_groups, empty_groups, axis=1, sample_weight=[1, 2, 3],
                                      reduction="sum")
    assert value == 6.0 and grad.shape == (3, 0)


def test_zero_denominator_gives_nan_like_keras():
    # alpha = beta = 0 and no overlap: 0 / (0 + 1e-7) = 0, loss 1; a negative coefficient
    # can make the denominator 0: 0 / 0 is NaN, as in Keras
    t = np.array([1.0, 0.0])
    p = np.array([0.0, 0.0])  # TP = 0, FN = 1, FP = 0
    assert LOSSES["tversky"](t, p, alpha=0.0, beta=0.0) == 1.0
    value, grad = LOSSES["tversky"].value_and_grad(t, p, beta=-1e-7)
    assert np.isnan(value) and np.all(np.isnan(grad))


A = np.full((4, 3), 0.5)


@pytest.mark.parametrize("call, error, words", [
    (lambda L: L["dice"](np.ones((4, 2)), A), ValueError, ["y_true", "(4, 2)", "(4, 3)"]),
    (lambda L: L["dice"](np.ones((1, 3)), A), ValueError, ["y_true", "(1, 3)"]),
    (lambda L: L["dice"](A, A, axis=2), ValueError, ["axis 2", "range"]),
    (lambda L: L["dice"](A, A, axis=(0, -3)), ValueError, ["axis -3"]),
    (lambda L: L["dice"](A, A, axis=(1, -1)), ValueError, ["axis", "twice"]),
    (lambda L: L["dice"](A, A, axis=1.0), TypeError, ["axis"]),
    (lambda L: L["dice"](A, A, axis=(1, "a")), TypeError, ["axis"]),
    (lambda L: L["dice"](A, A, alpha=0.5), TypeError, ["alpha"]),
    (lambda L: L["tversky"](A, A, alpha="x"), TypeError, ["alpha"]),
    (lambda L: L["tversky"](A, A, beta=float("inf")), ValueError, ["beta"]),
    (lambda L: L["fbeta_loss"](A, A, beta=-1.0), ValueError, ["beta"]),
    (lambda L: L["dice"](A, A, reduction="avg"), ValueError, ["reduction"]),
    (lambda L: L["dice"](A, A, axis=1, sample_weight=np.ones(3)), ValueError,
     ["sample_weight", "(3,)"]),
    (lambda L: L["dice"](A, A, sample_weight=["x"]), TypeError, ["sample_weight"]),
    (lambda L: L["dice"].grad(A, A, grad_output=np.ones(4)), ValueError, ["grad_output"]),
    (lambda L: L["dice"].grad(A, A, axis=1, reduction="none", grad_output=np.ones(3)),
     ValueError, ["grad_output"]),
    (lambda L: L["dice"].grad(A, A, out=np.empty((3, 4))), ValueError, ["out", "(4, 3)"]),
    (lambda L: L["dice"].grad(A, A, out=np.empty((4, 3), np.float32)), ValueError,
     ["out", "dtype"]),
    (lambda L: L["dice"](np.ones(3), np.array(["a", "b", "c"])), TypeError, ["y_pred"]),
    (lambda L: L["dice"](np.ones(3), np.ones(3) + 1j), TypeError, ["y_pred", "complex"]),
    (lambda L: L["dice"](np.array([None] * 3), np.ones(3)), TypeError, ["y_true"]),
])
def test_bad_input_raises_clearly(call, error, words):
    with pytest.raises(error) as info:
        call(LOSSES)
    for word in words:
        assert word in str(info.value)


# -- kernels ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_kernels_agree_bitwise(dtype):
    from fastloss.kernels import overlap
    rng = np.random.default_rng(5)
    for R, C in ((2, 2 * overlap.CHUNK + 77), (1, 3 * overlap.CHUNK), (300, 50), (5, 0), (0, 3)):
        t = rng.uniform(0, 1, R * C).astype(dtype)
        p = rng.uniform(0, 1, R * C).astype(dtype)
        serial, parallel = np.empty((3, R)), np.empty((3, R))
        overlap.statistics_serial(t, p, C, serial)
        overlap.statistics_parallel(t, p, C, parallel)
        assert np.array_equal(serial, parallel)
        tf, pf = t.astype(np.float64).reshape(R, C), p.astype(np.float64).reshape(R, C)
        np.testing.assert_allclose(serial, [(tf * pf).sum(1), tf.sum(1), pf.sum(1)], rtol=1e-13)
        slope, intercept = rng.standard_normal(R), rng.standard_normal(R)
        g1, g2 = np.empty_like(t), np.empty_like(t)
        overlap.gradient_serial(t, slope, intercept, C, g1)
        overlap.gradient_parallel(t, slope, intercept, C, g2)
        assert np.array_equal(g1, g2)
        expected = (slope[:, None] * tf + intercept[:, None]).astype(dtype).reshape(-1)
        # (equal up to an FMA: one rounding of slope * t + intercept, or two)
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(g1, expected, rtol=eps,
                                   atol=2 * eps * (np.abs(slope).max(initial=0)
                                                   + np.abs(intercept).max(initial=0)))


@pytest.mark.slow
def test_cuda_kernels_compile_to_ptx_for_sm90():
    """The simulator runs Python, so it would not catch a typing error: compile for real."""
    code = """
        from numba import cuda, float32, float64, int64
        from fastloss.kernels import overlap_cuda as K
        count = 0
        for dt in (float32, float64):
            for kernel, sig in (
                    (K.statistics, (dt[::1], dt[::1], int64, float64[:, ::1], float64[:, ::1])),
                    (K.gradient, (dt[::1], float64[::1], float64[::1], int64, dt[::1]))):
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
                assert ".target sm_90" in ptx
                count += 1
        ptx, _ = cuda.compile_ptx(K.statistics_from_chunks.py_func,
                                  (float64[:, ::1], int64, float64[:, ::1]), cc=(9, 0))
        print(count + (".target sm_90" in ptx))
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env={**env, "NUMBA_ENABLE_CUDASIM": "0"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) == 5


def test_bench_references_match():
    rng = np.random.default_rng(6)
    for name, (make_inputs, value, value_and_grad) in BENCH.items():
        t, p = make_inputs(3000, np.float64, rng)
        assert t.shape == p.shape == (3, 1000)
        expected_value, expected_grad = LOSSES[name].value_and_grad(t, p)
        np.testing.assert_allclose(value(t, p), expected_value, rtol=1e-12)
        v, g = value_and_grad(t, p)
        np.testing.assert_allclose(v, expected_value, rtol=1e-12)
        np.testing.assert_allclose(g, expected_grad, rtol=1e-10, atol=1e-18)
        t32, p32 = make_inputs(1500, np.float32, rng)
        assert t32.dtype == p32.dtype == np.float32 and t32.shape == (1, 1000)

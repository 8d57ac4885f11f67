"""Batch-pairwise losses (circle, ntxent) against float64 NumPy references written from
their formulas with the full N x N similarity matrix, on every backend; the references'
gradients against finite differences."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import loss_cases
from fastloss import _config
from fastloss import circle, ntxent
from fastloss._bench_references import PAIRWISE_BENCH as BENCH
from fastloss.losses import by_family
from pairwise_references import (circle_reference, circle_reference_grad, ntxent_reference,
                                 ntxent_reference_grad)
from references import finite_difference_grad

LOSSES = by_family("pairwise")

KERAS_REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none"]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
N, D = 8, 5  # (under the simulator: two tiles of columns, two chunks of dimensions)
LABELS = np.array([1, 0, 2, 1, 0, 3, 1, 2])  # class 3 has one row: no positive pair
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"  # (set by conftest.py)


@pytest.fixture(autouse=True)
def quick_simulator():
    with loss_cases.quick_simulator(SIMULATOR):
        yield


def embeddings(kind, rng, rows=N, dim=D):
    """'unit': L2-normalised rows, as Keras's circle expects; 'short': norms in [0.6,
    0.95], so that no similarity, the diagonal's included, sits on the kink at 1."""
    e = rng.standard_normal((rows, dim))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e if kind == "unit" else e * rng.uniform(0.6, 0.95, (rows, 1))


# -- cases --------------------------------------------------------------------------------

def check(actual, expected, dtype, what=""):
    actual = np.asarray(actual)
    assert actual.dtype == dtype, what
    assert actual.shape == np.shape(expected), what
    scale = np.abs(expected).max() if np.size(expected) else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                               err_msg=what)


def circle_case(kind, rng):
    """(labels, embeddings, options) of each form of the call."""
    if kind == "defaults":
        return LABELS, embeddings("unit", rng), {}
    if kind == "options":
        return LABELS, embeddings("short", rng), {"gamma": 2.5, "margin": 0.25,
                                                  "remove_diagonal": False}
    if kind == "references":  # gradient for y_pred only
        return LABELS, embeddings("short", rng), {
            "gamma": 10.0, "ref_labels": np.array([0, 3, 1, 2, 2, 5]),
            "ref_embeddings": embeddings("short", rng, rows=6)}
    # reference labels alone: the references are y_pred, the gradient flows through both
    return LABELS, embeddings("short", rng), {"gamma": 10.0,
                                              "ref_labels": rng.integers(0, 4, N)}


CIRCLE_CASES = ["defaults", "options", "references", "reference_labels"]


def sample_weights(kind, rng):
    return {"none": None, "scalar": 0.7, "rows": rng.uniform(0.1, 2.0, N),
            "column": rng.uniform(0.1, 2.0, (N, 1))}[kind]


def rounded(options, dtype):
    """The options with reference embeddings rounded to the compute dtype, in float64."""
    return {k: (v.astype(dtype).astype(np.float64) if k == "ref_embeddings" else v)
            for k, v in options.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", CIRCLE_CASES)
def test_circle_matches_reference(kind, dtype, backend):
    rng = np.random.default_rng(CIRCLE_CASES.index(kind))
    labels, e, options = circle_case(kind, rng)
    x = e.astype(dtype)
    ref_options = rounded(options, dtype)
    options = {k: (v.astype(dtype) if k == "ref_embeddings" else v) for k, v in options.items()}
    exact = x.astype(np.float64)
    if backend == "cuda":  # the simulator is slow: a few combinations
        combos = [("sum_over_batch_size", "rows"), ("none", "scalar")]
    else:
        combos = [(r, w) for r in KERAS_REDUCTIONS for w in ("none", "scalar", "rows", "column")]
    for reduction, weights in combos:
        w = sample_weights(weights, rng)
        what = f"{kind} {reduction} weights={weights}"
        kw = dict(sample_weight=w, reduction=reduction)
        expected = circle_reference(labels, exact, **kw, **ref_options)
        go = rng.uniform(-1, 1, N) if reduction == "none" else 1.3
        expected_grad = circle_reference_grad(labels, exact, **kw, grad_output=go, **ref_options)
        value, grad = circle.value_and_grad(labels, x, grad_output=go, **kw, **options)
        check(value, expected, dtype, what + " value")
        check(grad, expected_grad, dtype, what + " grad")
        if backend != "cuda":  # one pass 1 for both: the same bits as the separate calls
            assert np.array_equal(circle(labels, x, **kw, **options), value), what
            assert np.array_equal(circle.grad(labels, x, grad_output=go, **kw, **options),
                                  grad), what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent_matches_reference(temperature, dtype, backend):
    rng = np.random.default_rng(int(temperature * 100))
    x = embeddings("unit", rng).astype(dtype) * rng.uniform(0.5, 2.0, (N, 1)).astype(dtype)
    exact = x.astype(np.float64)
    eps = np.finfo(dtype).eps
    value, grad = ntxent.value_and_grad(LABELS, x, grad_output=1.3, temperature=temperature)
    check(value, ntxent_reference(LABELS, exact, temperature, eps), dtype, "value")
    check(grad, ntxent_reference_grad(LABELS, exact, temperature, eps, grad_output=1.3), dtype,
          "grad")
    assert np.array_equal(ntxent(LABELS, x, temperature=temperature), value)
    if backend != "cuda":
        assert np.array_equal(ntxent.grad(LABELS, x, grad_output=1.3, temperature=temperature),
                              grad)


@pytest.mark.parametrize("kind", CIRCLE_CASES)
def test_circle_reference_gradient_is_the_derivative(kind):
    rng = np.random.default_rng(10 + CIRCLE_CASES.index(kind))
    labels, e, options = circle_case(kind, rng)
    for reduction, w in (("mean_with_sample_weight", rng.uniform(0.1, 2, N)), ("none", None)):
        go = rng.uniform(-1, 1, N) if reduction == "none" else 0.8
        kw = dict(sample_weight=w, reduction=reduction, **options)
        fd = finite_difference_grad(
            lambda q: np.sum(go * circle_reference(labels, q, **kw)), e, h=1e-5)
        np.testing.assert_allclose(circle_reference_grad(labels, e, grad_output=go, **kw), fd,
                                   rtol=1e-6, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent_reference_gradient_is_the_derivative(temperature):
    rng = np.random.default_rng(20)
    e = rng.standard_normal((N, D))
    fd = finite_difference_grad(lambda q: ntxent_reference(LABELS, q, temperature), e, h=1e-5)
    np.testing.assert_allclose(ntxent_reference_grad(LABELS, e, temperature), fd, rtol=1e-6,
                               atol=1e-8 * np.abs(fd).max())


# -- edge cases ---------------------------------------------------------------------------

def test_batch_of_one(backend):
    """One sample has no pair: Keras's circle gives 0 (the sample is masked), Optax's
    ntxent NaN (no positive pair to average); both gradients are 0."""
    x = np.array([[0.6, 0.8, 0.0]])
    for reduction in (["sum_over_batch_size", "none"] if backend == "cuda" else KERAS_REDUCTIONS):
        value, grad = circle.value_and_grad([4], x, reduction=reduction, sample_weight=[2.0])
        assert np.all(np.asarray(value) == 0) and np.shape(value) == (
            (1,) if reduction == "none" else ())
        assert np.array_equal(grad, np.zeros((1, 3)))
    value, grad = ntxent.value_and_grad([4], x)
    assert np.isnan(value) and np.array_equal(grad, np.zeros((1, 3)))


def test_no_positive_or_no_negative_pairs(backend):
    rng = np.random.default_rng(30)
    x = embeddings("unit", rng, rows=5, dim=3)
    distinct, same = np.arange(5), np.zeros(5, np.int64)
    for labels in (distinct, same):  # every row without positives, or without negatives
        for reduction in ("sum_over_batch_size", "none"):
            value, grad = circle.value_and_grad(labels, x, reduction=reduction)
            assert np.all(np.asarray(value) == 0) and np.array_equal(grad, np.zeros_like(x))
    value, grad = ntxent.value_and_grad(distinct, x)  # Optax: 0 / 0 pairs; zero gradient
    assert np.isnan(value) and np.array_equal(grad, np.zeros_like(x))
    value, grad = ntxent.value_and_grad(same, x)  # log(e**s) - s: 0 but for rounding
    assert abs(value) < 1e-15 and np.array_equal(grad, np.zeros_like(x))


def test_empty_batch_and_empty_embeddings():
    for reduction in KERAS_REDUCTIONS:
        value, grad = circle.value_and_grad(np.zeros(0, np.int64), np.zeros((0, 4)),
                                            reduction=reduction)
        expected = np.zeros(0) if reduction == "none" else 0.0  # the library's empty batch
        assert np.array_equal(value, expected) and grad.shape == (0, 4)
    value, grad = ntxent.value_and_grad(np.zeros(0, np.int64), np.zeros((0, 4)))
    assert np.isnan(value) and grad.shape == (0, 4)
    # D = 0: every similarity is 0
    x = np.zeros((N, 0))
    value, grad = circle.value_and_grad(LABELS, x, reduction="none")
    check(value, circle_reference(LABELS, x, reduction="none"), np.float64)
    assert grad.shape == (N, 0)
    value, grad = ntxent.value_and_grad(LABELS, x)
    check(value, ntxent_reference(LABELS, x), np.float64)
    assert grad.shape == (N, 0)


def test_label_forms():
    rng = np.random.default_rng(31)
    x = embeddings("unit", rng)
    expected = circle(LABELS, x, reduction="none")
    assert np.array_equal(circle(LABELS[:, None], x, reduction="none"), expected)
    assert np.array_equal(circle(LABELS.astype(np.uint8), x, reduction="none"), expected)
    # float labels are truncated, as Keras casts them to int32
    assert np.array_equal(circle(LABELS + 0.75, x, reduction="none"), expected)
    assert np.array_equal(circle(np.array([0.5, -0.5, 1.2, 1.9, 2, 2, 2, 2]), x),
                          circle(np.array([0, 0, 1, 1, 2, 2, 2, 2]), x))
    assert circle(LABELS, x).shape == LABELS.shape  # Keras's function: per-sample losses
    assert ntxent(LABELS.astype(np.int8), x) == ntxent(LABELS, x)
    assert ntxent(LABELS % 2 == 0, x) == ntxent(LABELS % 2, x)
    assert np.array_equal(circle(list(LABELS), x.tolist()), circle(LABELS, x))


@pytest.mark.parametrize("loss", [circle, ntxent], ids=lambda loss: loss.name)
def test_low_precision_and_integer_embeddings_compute_in_float32(loss):
    rng = np.random.default_rng(32)
    x = embeddings("unit", rng)
    for low in (x.astype(np.float16), (x * 4).round().astype(np.int32)):
        value, grad = loss.value_and_grad(LABELS, low)
        assert np.asarray(value).dtype == np.float32 and grad.dtype == np.float32
        assert np.array_equal(value, loss(LABELS, low.astype(np.float32)))


@pytest.mark.parametrize("loss", [circle, ntxent], ids=lambda loss: loss.name)
def test_out_and_in_place(loss, backend):
    rng = np.random.default_rng(33)
    x = embeddings("short", rng)
    grad = loss.grad(LABELS, x)
    out = np.empty_like(x)
    assert np.shares_memory(loss.grad(LABELS, x, out=out), out)
    assert np.array_equal(out, grad)
    y = x.copy()
    loss.grad(LABELS, y, out=y)  # pass 2 reads every row while it writes: it must not see y change
    assert np.array_equal(y, grad)
    value, g = loss.value_and_grad(LABELS, x.copy(), out=out)
    assert np.array_equal(g, grad) and np.array_equal(value, loss(LABELS, x))


def test_nan_propagates():
    x = embeddings("unit", np.random.default_rng(34))
    x[2, 1] = np.nan
    for loss in (circle, ntxent):
        value, grad = loss.value_and_grad(LABELS, x)
        assert np.isnan(value).any() and np.isnan(grad).any()


def test_serial_and_parallel_kernels_are_bitwise_equal(monkeypatch):
    rng = np.random.default_rng(35)
    labels = rng.integers(0, 6, 40)
    e = embeddings("unit", rng, rows=40, dim=19)
    calls = [(circle, {}), (circle, {"sample_weight": rng.uniform(0, 1, 40),
                                     "reduction": "mean_with_sample_weight"}),
             (circle, {"ref_labels": labels[:30], "ref_embeddings": e[5:35] * 0.9}),
             (ntxent, {"temperature": 0.2})]
    for dtype in (np.float32, np.float64):
        results = []
        for threshold in (1 << 62, 0):
            monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", threshold)
            results.append([loss.value_and_grad(labels, e.astype(dtype), **kw)
                            for loss, kw in calls])
        for (v1, g1), (v2, g2) in zip(*results):
            assert np.array_equal(v1, v2) and np.array_equal(g1, g2)


def test_bitwise_identical_across_thread_counts():
    code = textwrap.dedent("""
        import hashlib, numpy as np
        from fastloss import _config
        from fastloss.losses import by_family
        LOSSES = by_family("pairwise")
        _config.PARALLEL_THRESHOLD = 0
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 9, 37)
        h = hashlib.sha256()
        for dtype in (np.float32, np.float64):
            e = rng.standard_normal((37, 11)).astype(dtype)
            for name, loss in sorted(LOSSES.items()):
                v, g = loss.value_and_grad(labels, e)
                h.update(np.asarray(v).tobytes()); h.update(g.tobytes())
        print(h.hexdigest())
    """)
    digests = []
    for threads in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**os.environ, "NUMBA_NUM_THREADS": threads}, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(result.stdout)
    assert digests[0] == digests[1]


# -- bad input ----------------------------------------------------------------------------

X = np.full((4, 3), 0.5)
Y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("call, error, words", [
    (lambda: circle(Y, X[0]), ValueError, ["y_pred", "2-D", "(3,)"]),
    (lambda: circle(Y, X[None]), ValueError, ["y_pred", "(1, 4, 3)"]),
    (lambda: ntxent(Y[:3], X), ValueError, ["y_true", "(3,)", "(4, 3)"]),
    (lambda: circle(Y[:, None] * np.ones(2), X), ValueError, ["y_true", "(4, 2)"]),
    (lambda: ntxent(Y[:, None], X), ValueError, ["y_true", "(4, 1)"]),
    (lambda: ntxent(Y * 1.0, X), TypeError, ["y_true", "integer", "float64"]),
    (lambda: circle(np.array([0, np.nan, 1, 1]), X), ValueError, ["y_true", "non-finite"]),
    (lambda: circle(np.array(["a"] * 4), X), TypeError, ["y_true"]),
    (lambda: circle(Y, X, gamma=0.0), ValueError, ["gamma", "positive"]),
    (lambda: circle(Y, X, margin=np.inf), ValueError, ["margin"]),
    (lambda: circle(Y, X, remove_diagonal=1), TypeError, ["remove_diagonal"]),
    (lambda: circle(Y, X, temperature=1.0), TypeError, ["temperature"]),
    (lambda: ntxent(Y, X, temperature=-0.1), ValueError, ["temperature"]),
    (lambda: ntxent(Y, X, sample_weight=np.ones(4)), TypeError, ["sample_weight"]),
    (lambda: ntxent(Y, X, reduction="sum"), ValueError, ["reduction", "mean"]),
    (lambda: circle(Y, X, reduction="avg"), ValueError, ["reduction", "avg"]),
    (lambda: circle(Y, X, sample_weight=np.ones(3)), ValueError, ["sample_weight", "(3,)"]),
    (lambda: circle.grad(Y, X, grad_output=np.ones(3)), ValueError, ["grad_output"]),
    (lambda: circle.grad(Y, X, reduction="sum", grad_output=np.ones(4)), ValueError,
     ["grad_output"]),
    (lambda: circle.grad(Y, X, reduction="none", grad_output=np.ones(3)), ValueError,
     ["grad_output"]),
    (lambda: ntxent.grad(Y, X, grad_output=np.ones(2)), ValueError, ["grad_output"]),
    (lambda: circle.grad(Y, X, out=np.empty((3, 4))), ValueError, ["out", "(4, 3)"]),
    (lambda: ntxent.grad(Y, X, out=np.empty((4, 3), np.float32)), ValueError, ["out", "dtype"]),
    (lambda: circle(Y, X, ref_embeddings=np.ones((4, 2))), ValueError,
     ["ref_embeddings", "(4, 2)", "3 columns"]),
    (lambda: circle(Y, X, ref_embeddings=np.ones((5, 3))), ValueError,
     ["ref_embeddings", "ref_labels"]),
    (lambda: circle(Y, X, ref_labels=[0, 1], ref_embeddings=np.ones((3, 3))), ValueError,
     ["ref_labels", "(2,)", "(3,)"]),
    (lambda: circle(Y, X, ref_labels=[0, 1]), ValueError, ["ref_labels", "(2,)", "(4,)"]),
])
def test_bad_input_raises_clearly(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


# -- the benchmark suite's inputs and NumPy versions -----------------------------------------

@pytest.mark.parametrize("name", sorted(BENCH))
def test_bench_numpy_versions_agree(name):
    make_inputs, numpy_value, numpy_value_and_grad = BENCH[name]
    labels, e = make_inputs(128 * 24, np.float64, np.random.default_rng(36))
    assert e.shape == (24, 128) and labels.shape == (24,)
    reduced = {"reduction": "sum_over_batch_size"} if LOSSES[name].convention == "keras" else {}
    value, grad = LOSSES[name].value_and_grad(labels, e, **reduced)
    np.testing.assert_allclose(numpy_value(labels, e), value, rtol=1e-12)
    v, g = numpy_value_and_grad(labels, e)
    np.testing.assert_allclose(v, value, rtol=1e-12)
    np.testing.assert_allclose(g, grad, rtol=1e-9, atol=1e-12 * np.abs(grad).max())
    assert make_inputs(10, np.float32, np.random.default_rng(0))[1].shape == (2, 128)
    assert make_inputs(10 ** 9, np.float32, np.random.default_rng(0))[1].shape == (2048, 128)


# -- a real GPU ---------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(SIMULATOR, reason="needs a real GPU (FASTLOSS_TEST_GPU=1)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_inputs_match_the_cpu(dtype):
    """CuPy in, CuPy out, on a stream of the caller's (several tiles of columns; with D
    = 300 several chunks of dimensions too)."""
    cupy = pytest.importorskip("cupy")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver
        devices = 0
    if not devices:
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(40)
    tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    for rows, dim in ((300, 70), (40, 300)):
        labels = rng.integers(0, rows // 4, rows)
        x = embeddings("unit", rng, rows, dim).astype(dtype)
        calls = [(circle, {"reduction": r, "sample_weight": rng.uniform(0.1, 2, rows)})
                 for r in KERAS_REDUCTIONS]
        calls += [(circle, {"ref_labels": labels[:50], "ref_embeddings": x[10:60] * 0.9}),
                  (ntxent, {"temperature": 0.1})]
        with cupy.cuda.Stream(non_blocking=True):
            for loss, kw in calls:
                device_kw = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v
                             for k, v in kw.items()}
                value, grad = loss.value_and_grad(cupy.asarray(labels), cupy.asarray(x),
                                                  **device_kw)
                assert isinstance(value, cupy.ndarray) and isinstance(grad, cupy.ndarray)
                cpu_value, cpu_grad = loss.value_and_grad(labels, x, **kw)
                np.testing.assert_allclose(cupy.asnumpy(value), cpu_value, **tolerance)
                scale = np.abs(cpu_grad).max()
                np.testing.assert_allclose(cupy.asnumpy(grad) / scale, cpu_grad / scale,
                                           **tolerance)


# -- CUDA kernels compile for a real GPU ------------------------------------------------------

@pytest.mark.slow
def test_cuda_kernels_compile_to_ptx_for_sm90():
    """The simulator runs Python, so it would not catch a typing error: compile for real."""
    code = textwrap.dedent("""
        from numba import boolean, cuda, float32, float64, int64
        from fastloss.kernels import pairwise_cuda as K
        count = 0
        for dt in (float32, float64):
            labels, e, rows, stats = int64[::1], dt[:, ::1], float64[::1], float64[:, ::1]
            signatures = {
                K.circle_stats: (labels, e, labels, e, float64, float64, boolean, stats, rows),
                K.circle_grad: (labels, e, labels, e, float64, float64, boolean, boolean, stats,
                                rows, e),
                K.ntxent_norms: (e, float64, stats),
                K.ntxent_stats: (labels, e, float64, stats, rows),
                K.ntxent_grad: (labels, e, float64, stats, rows, e),
            }
            for kernel, signature in signatures.items():
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
                assert ".target sm_90" in ptx
                if dt is float32 and kernel is not K.ntxent_norms:  # dot products in float32
                    assert "fma.rn.f32" in ptx
                count += 1
        print(count)
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "NUMBA_ENABLE_CUDASIM": "0"}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) == 10

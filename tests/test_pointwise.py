"""The pointwise losses against float64 references, on every backend."""

import numpy as np
import pytest

import fastloss as fl
from references import POINTWISE, finite_difference_grad, reference_value

KERAS = [n for n, (_, conv, _) in POINTWISE.items() if conv == "keras"]
TORCH = [n for n, (_, conv, _) in POINTWISE.items() if conv == "torch"]
KERAS_REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none"]
OPTION_VALUES = {"delta": 0.4, "beta": 0.3}
RTOL = {np.float32: 2e-5, np.float64: 1e-10}
# Gradients are compared with finite differences of the reference: looser in float64.
GRAD_RTOL = {np.float32: 2e-5, np.float64: 1e-7}


def options(name):
    option = POINTWISE[name][2]
    return {option: OPTION_VALUES[option]} if option else {}


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.1, 2.0, shape)
    p = rng.uniform(0.05, 2.0, shape)
    return t.astype(dtype), p.astype(dtype)


def weights(form, rng):
    return {"none": None, "scalar": 0.7, "per_sample": rng.uniform(0.1, 2.0, 4),
            "column": rng.uniform(0.1, 2.0, (4, 1))}[form]


def check(actual, expected, dtype, atol=1e-12, rtol=RTOL):
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol[dtype], atol=atol)


def reference_grad(name, t, p, grad_output=None, **kwargs):
    """The vector-Jacobian product of the float64 reference, by finite differences."""
    t, p = t.astype(np.float64), p.astype(np.float64)
    if grad_output is None:
        return finite_difference_grad(lambda q: reference_value(name, t, q, **kwargs), p)
    return finite_difference_grad(
        lambda q: np.sum(grad_output * reference_value(name, t, q, **kwargs)), p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_form", ["none", "scalar", "per_sample", "column"])
@pytest.mark.parametrize("reduction", KERAS_REDUCTIONS)
@pytest.mark.parametrize("name", KERAS)
def test_keras_value_grad(name, reduction, weight_form, dtype, backend):
    t, p = data((4, 5), dtype)
    rng = np.random.default_rng(1)
    kw = dict(sample_weight=weights(weight_form, rng), reduction=reduction, **options(name))
    loss = getattr(fl, name)
    expected = reference_value(name, t, p, **kw)
    value = loss(t, p, **kw)
    check(value, expected, dtype)

    grad_output = rng.uniform(-1, 1, np.shape(expected)) if reduction == "none" else 1.7
    expected_grad = reference_grad(name, t, p, grad_output=grad_output, **kw)
    grad = loss.grad(t, p, grad_output=grad_output, **kw)
    assert grad.shape == p.shape
    check(grad, expected_grad, dtype, atol=1e-7, rtol=GRAD_RTOL)

    fused_value, fused_grad = loss.value_and_grad(t, p, grad_output=grad_output, **kw)
    assert_same_up_to_summation_order(fused_value, value)
    np.testing.assert_array_equal(fused_grad, grad)


def assert_same_up_to_summation_order(a, b):
    """The value-only and fused kernels may vectorise their float64 sums differently, so
    a reduced value may differ in its last bit after rounding to the compute dtype."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=2 * np.finfo(a.dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", TORCH)
def test_torch_value_grad(name, reduction, dtype, backend):
    t, p = data((4, 5), dtype)
    t = t[0]  # broadcast along the batch, as torch does with a warning
    kw = dict(reduction=reduction, **options(name))
    loss = getattr(fl, name)
    expected = reference_value(name, t, p, **kw)
    check(loss(t, p, **kw), expected, dtype)
    grad_output = np.random.default_rng(2).uniform(-1, 1, p.shape) if reduction == "none" else None
    value, grad = loss.value_and_grad(t, p, grad_output=grad_output, **kw)
    check(value, expected, dtype)
    check(grad, reference_grad(name, t, p, grad_output=grad_output, **kw), dtype, atol=1e-7,
          rtol=GRAD_RTOL)


@pytest.mark.parametrize("name", list(POINTWISE))
def test_gradient_matches_finite_differences_of_the_kernel(name):
    """The kernel's own value, differentiated numerically, gives the kernel's gradient."""
    t, p = data((3, 4), np.float64, seed=5)
    kw = options(name)
    loss = getattr(fl, name)
    numeric = finite_difference_grad(lambda q: np.sum(loss(t, q, **kw)), p)  # (grad: of the sum)
    np.testing.assert_allclose(loss.grad(t, p, **kw), numeric, rtol=1e-7, atol=1e-9)


def test_seed_examples():
    assert fl.mean_absolute_error([1.0, 0.0], [2.0, 3.0]) == 2.0
    assert fl.mean_squared_error([1.0, 0.0], [2.0, 3.0]) == 5.0
    assert fl.mae is fl.mean_absolute_error and fl.MSE is fl.mean_squared_error


@pytest.mark.parametrize("t_shape, p_shape", [((6,), (6, 1)), ((6, 1), (6,)), ((6,), (6,)),
                                              ((2, 3, 4), (2, 3, 4)), ((2, 3, 1), (2, 3)),
                                              ((4,), (3, 4))])
def test_keras_shapes(t_shape, p_shape, backend):
    rng = np.random.default_rng(3)
    t, p = rng.uniform(0, 1, t_shape), rng.uniform(0, 1, p_shape)
    for reduction in ("none", "sum_over_batch_size"):
        value, grad = fl.huber.value_and_grad(t, p, reduction=reduction)
        expected = reference_value("huber", t, p, reduction=reduction)
        np.testing.assert_allclose(value, expected, rtol=1e-12)
        assert np.shape(value) == np.shape(expected)
        assert grad.shape == p.shape


def test_long_rows_split_into_chunks(backend):
    """Rows longer than a task (layout A) with per-row weights and per-row outputs."""
    C = 5000 if backend != "cuda" else 70
    t, p = data((3, C), np.float64)
    w = np.array([0.5, 2.0, 1.5])
    for reduction in ("none", "sum", "mean_with_sample_weight"):
        kw = dict(sample_weight=w, reduction=reduction)
        value, grad = fl.log_cosh.value_and_grad(t, p, **kw)
        np.testing.assert_allclose(value, reference_value("log_cosh", t, p, **kw), rtol=1e-12)
        expected = np.tanh(p - t) / C * w[:, None]
        if reduction == "mean_with_sample_weight":
            expected /= w.sum()
        if reduction != "none":
            np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_non_contiguous_and_integer_inputs(backend):
    t, p = data((4, 10), np.float64)
    value = fl.mse(t[:, ::2], p[:, ::2])
    np.testing.assert_allclose(value, reference_value("mean_squared_error", t[:, ::2], p[:, ::2]))
    value = fl.mse(t.T, p.T)
    np.testing.assert_allclose(value, reference_value("mean_squared_error", t.T, p.T))
    ti, pi = np.array([[1, 2], [3, 4]]), np.array([[2, 2], [5, 4]], dtype=np.int16)
    value, grad = fl.mse.value_and_grad(ti, pi, reduction="sum_over_batch_size")
    assert value.dtype == np.float32 and grad.dtype == np.float32
    assert value == np.float32(1.25)
    np.testing.assert_array_equal(grad, np.array([[0.5, 0], [1.0, 0]], np.float32))
    value = fl.mae(np.array([True, False]), np.array([1.0, 1.0], np.float16),
                   reduction="sum_over_batch_size")
    assert value.dtype == np.float32 and value == 0.5


def test_out_and_in_place(backend):
    t, p = data((4, 5), np.float32)
    expected = fl.huber.grad(t, p, delta=0.5)
    out = np.empty_like(p)
    result = fl.huber.grad(t, p, delta=0.5, out=out)
    if backend != "cuda":
        assert result is not None and np.shares_memory(result, out)
    np.testing.assert_array_equal(out, expected)
    q = p.copy()
    fl.huber.value_and_grad(t, q, delta=0.5, out=q)
    np.testing.assert_array_equal(q, expected)


def test_empty_inputs(backend):
    empty = np.zeros((0, 3))
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        value, grad = fl.mse.value_and_grad(empty, empty, reduction=reduction)
        assert value == 0.0 and grad.shape == (0, 3)
    assert fl.mse(empty, empty, reduction="none").shape == (0,)
    assert np.isnan(fl.mse_loss(np.zeros(0), np.zeros(0)))
    assert fl.mse_loss(np.zeros(0), np.zeros(0), reduction="sum") == 0.0


def test_keras_style_classes():
    t, p = data((4, 5), np.float64)
    huber = fl.Huber(delta=0.4, reduction="sum")
    np.testing.assert_allclose(huber(t, p), reference_value("huber", t, p, delta=0.4, reduction="sum"))
    value, grad = huber.value_and_grad(t, p, sample_weight=np.ones(4))
    assert value == huber(t, p) and grad.shape == p.shape
    assert fl.get("MeanSquaredError")().get_config()["reduction"] == "sum_over_batch_size"
    assert fl.SmoothL1Loss(beta=0.5)(t, p) == fl.smooth_l1_loss(t, p, beta=0.5)


def test_float32_sum_is_accurate_at_ten_million():
    rng = np.random.default_rng(7)
    n = 10 ** 7
    t = rng.standard_normal(n, dtype=np.float32)
    p = t + rng.uniform(-1, 1, n).astype(np.float32)
    expected = np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2)
    assert abs(float(fl.mse(t, p)) - expected) <= 1e-6 * expected

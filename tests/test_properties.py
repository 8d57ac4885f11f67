"""Properties of every loss in fastloss.LOSSES, on calls drawn by Hypothesis
(tests/loss_cases.py): shapes (an empty batch, one element, a long last axis), float32
and float64, every reduction the loss accepts, its options, sample weights, and the
serial, parallel and CUDA kernels.

A loss added to the table without a case in tests/loss_cases.py fails here.
Examples are derandomized (reproducible in CI) and few per loss: the whole file must stay
fast on two cores, and the CUDA simulator runs Python for every thread.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastloss as fl
import loss_cases
from loss_cases import MAKERS, calls, reductions
from pairwise_references import circle_reference_grad

# Drawn shapes include a class axis of 1, where Keras's categorical crossentropies warn.
pytestmark = pytest.mark.filterwarnings("ignore:In loss categorical:SyntaxWarning")

# (set by conftest.py; not imported from it: benchmarks/ has a conftest too)
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
NAMES = sorted(fl.LOSSES)
KERAS_NAMES = [name for name in NAMES if fl.LOSSES[name].convention == "keras"]
SUMMABLE_NAMES = [name for name in NAMES
                  if {"sum", "none"} <= set(reductions(fl.LOSSES[name]))]

# Value: the kernels compute in the input's dtype and sum in float64.
VALUE_RTOL = {np.float32: 5e-5, np.float64: 1e-9}
# Gradient against central differences of the float64 reference: float64 is limited by
# the differences' truncation and rounding, float32 by the kernels' arithmetic.
GRAD_RTOL = {np.float32: 2e-4, np.float64: 2e-6}


def examples(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def quick_simulator():
    with loss_cases.quick_simulator(SIMULATOR):
        yield


def as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


def cotangent(call, rng):
    """grad_output: a scalar for a reduced value, an array of the unreduced value's shape
    for "none" (exact in float32 either way)."""
    if call.reduction == "none":
        return rng.integers(-64, 65, np.shape(call.expected())) / 32.0
    return 1.25


def assert_close(actual, expected, dtype, rtol):
    """Within rtol of the largest expected magnitude, and never closer than 100 ulp of
    1: a loss near 0 is a difference of terms of order 1 (a softmax over one class, a
    positive pair far more similar than the negatives), whose rounding it keeps."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    assert actual.shape == np.shape(expected)
    finite = np.isfinite(expected)
    scale = float(np.max(np.abs(np.asarray(expected)[finite]), initial=0.0))
    atol = max(rtol * scale, 100 * np.finfo(dtype).eps * max(scale, 1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def test_every_loss_has_a_case():
    missing = sorted(set(NAMES) - set(MAKERS))
    assert not missing, f"losses without a case in tests/loss_cases.py (MAKERS): {missing}"
    assert sorted(MAKERS) == NAMES


# -- 1. the value against the float64 reference ------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@examples(15)
@given(data=st.data())
def test_value_matches_the_float64_reference(name, data):
    call = data.draw(calls(name), label="call")
    assert_close(call.run(), call.expected(), call.dtype, VALUE_RTOL[call.dtype])


# -- 2. the fused call against the separate ones ------------------------------------------------

def assert_equal_or_within_ulps(actual, expected, ulps):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if ulps == 0:
        np.testing.assert_array_equal(actual, expected)
        return
    eps = np.finfo(actual.dtype).eps
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=ulps * eps, atol=ulps * eps * scale)


def fused_ulps(call):
    """How far the fused call may stray from the separate ones.  README: bitwise, but a
    value that sums (over a row or the batch) may round its last bit differently (LLVM
    vectorises the two kernels' sums differently), and over classes or embedding rows the
    gradient, which depends on row sums (a softmax's total, a distance), may differ by a
    few ulp."""
    elementwise = call.reduction == "none" and all(
        np.shape(call.arrays[k]) == call.values_shape for k in call.gradients)
    value = 0 if elementwise else 2
    grad = 16 if call.loss.spec.family in ("rows", "embeddings") else 0
    return value, grad


@pytest.mark.parametrize("name", NAMES)
@examples(10)
@given(data=st.data())
def test_value_and_grad_equals_value_and_grad_separately(name, data):
    call = data.draw(calls(name), label="call")
    go = cotangent(call, np.random.default_rng(call.seed))
    value, grad = call.run("value_and_grad", grad_output=go)
    value_ulps, grad_ulps = fused_ulps(call)
    assert_equal_or_within_ulps(value, call.run(), value_ulps)
    separate = call.run("grad", grad_output=go)
    for fused, alone in zip(as_tuple(grad), as_tuple(separate), strict=True):
        assert_equal_or_within_ulps(fused, alone, grad_ulps)


# -- 3. the gradient against central differences ------------------------------------------------

def central_difference(f, x, index):
    """(central difference of f along x.flat[index], the difference of the one-sided
    slopes, whether that difference is a kink's, the difference's own rounding error): at
    a kink (max, abs, a clip) within the step the one-sided slopes differ by as much
    however short the step; where f is smooth, by an amount that shrinks with it.  The
    rounding error bounds what the difference can resolve: f's float64 rounding over the
    step (a gradient that is 0 in exact arithmetic is only known to that)."""
    x0 = x.flat[index]
    h = 1e-6 * max(1.0, abs(x0))

    def at(step):
        y = x.copy()
        y.flat[index] = x0 + step
        return f(y)
    middle = at(0.0)

    def slopes(step):
        up, down = at(step), at(-step)
        return (up - down) / (2 * step), abs((up - middle) - (middle - down)) / step
    fd, jump = slopes(h)
    _, short_jump = slopes(h / 8)
    noise = 4 * np.finfo(np.float64).eps * max(abs(at(h)), abs(at(-h)), abs(middle)) / h
    return fd, jump, short_jump > jump / 2, noise


@pytest.mark.parametrize("name", NAMES)
@examples(10)
@given(data=st.data())
def test_gradient_matches_central_differences(name, data):
    call = data.draw(calls(name), label="call")
    rng = np.random.default_rng(call.seed)
    go = cotangent(call, rng)
    grads = as_tuple(call.run("grad", grad_output=go))
    assert len(grads) == len(call.gradients)
    exact = call.exact()
    scale = max((float(np.max(np.abs(g), initial=0.0)) for g in grads), default=0.0)
    rtol = GRAD_RTOL[call.dtype]
    # A gradient that is 0 in exact arithmetic keeps the rounding of terms of order
    # |grad_output| / (the elements averaged); no reduction divides by more than their count.
    floor = 100 * np.finfo(call.dtype).eps * np.max(np.abs(go), initial=0.0) / max(
        1, *(np.size(call.arrays[k]) for k in call.gradients))
    for position, grad in zip(call.gradients, grads):
        x = exact[position]
        assert grad.shape == x.shape and grad.dtype == call.dtype
        if call.empty or x.size == 0:
            continue

        def f(y, position=position):
            arrays = list(exact)
            arrays[position] = y
            return np.sum(go * call.differentiated(arrays))
        for index in rng.choice(x.size, min(3, x.size), replace=False):
            fd, jump, kink, noise = central_difference(f, x, index)
            tolerance = max(rtol * max(scale, abs(fd)), floor, noise)
            if jump > tolerance and kink:  # (where the central difference means nothing)
                continue
            assert abs(grad.flat[index] - fd) <= tolerance, (position, index, grad.flat[index], fd)


# -- 4. no NaN from finite valid inputs ---------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@examples(10)
@given(data=st.data())
def test_finite_valid_inputs_never_give_nan(name, data):
    """Wider ranges than the other properties (large logits, probabilities at 0 and 1,
    tiny positive values); NaN only where documented: PyTorch's mean of an empty batch."""
    call = data.draw(calls(name, wide=True), label="call")
    value, grad = call.run("value_and_grad")
    if call.nan_by_rule():
        assert np.isnan(value)
    else:
        assert not np.any(np.isnan(value))
    for g in as_tuple(grad):
        assert not np.any(np.isnan(g))


# -- 5. "sum" is the sum of "none" ---------------------------------------------------------------

@pytest.mark.parametrize("name", SUMMABLE_NAMES)
@examples(10)
@given(data=st.data())
def test_sum_is_the_sum_of_the_unreduced_values(name, data):
    call = data.draw(calls(name, reduction="sum"), label="call")
    total = call.run(reduction="sum")
    values = call.run(reduction="none")
    assert np.shape(total) == ()
    # each unreduced value and the total are rounded once to the compute dtype
    eps = np.finfo(call.dtype).eps
    bound = 2 * eps * (np.sum(np.abs(values), dtype=np.float64) + abs(float(total)))
    assert abs(float(total) - np.sum(values, dtype=np.float64)) <= bound


# -- 6. sample weights of ones are no weights ------------------------------------------------------

@pytest.mark.parametrize("name", KERAS_NAMES)
@examples(10)
@given(data=st.data())
def test_sample_weights_of_ones_change_nothing(name, data):
    call = data.draw(calls(name), label="call")
    assume(not call.empty)  # (test_empty_batch_with_empty_sample_weight)
    ones = np.ones(call.values_shape)
    value, grad = call.run("value_and_grad", sample_weight=None)
    weighted_value, weighted_grad = call.run("value_and_grad", sample_weight=ones)
    # Without per-sample weights Keras's pointwise losses run as one row over the whole
    # array, with them as a sum per row: a reduced value may round differently.
    assert_equal_or_within_ulps(weighted_value, value, 0 if call.reduction == "none" else 4)
    assert_equal_or_within_ulps(weighted_grad, grad, 0)


# -- an empty batch with its (empty) weights; reference rows beyond the batch's ----------------

def empty_batch_arrays(name):
    if name == "ctc":  # (labels (0, S), logits (0, T, C))
        return np.zeros((0, 2), np.int64), np.zeros((0, 5, 3))
    labels, rows = np.zeros(0, np.int64), np.zeros((0, 3))
    takes_labels = ("circle", "sparse_categorical_crossentropy",
                    "categorical_generalized_cross_entropy")
    return (labels, rows) if name in takes_labels else (rows, rows)


# (name, options): one (empty) weight per sample; sparse_categorical_crossentropy's
# ignore_class mask becomes an empty weight array too, with no sample_weight given.
OVERLAP_NAMES = ("dice", "tversky", "fbeta_loss")
EMPTY_BATCH_CALLS = [
    (name, {"sample_weight": np.zeros(0), **({"axis": -1} if name in OVERLAP_NAMES else {})})
    for name in KERAS_NAMES] + [("sparse_categorical_crossentropy", {"ignore_class": 0})]


@pytest.mark.parametrize("name, options", [
    pytest.param(name, options, id=name + ("-ignore_class" if "ignore_class" in options else ""))
    for name, options in EMPTY_BATCH_CALLS])
def test_empty_batch_with_empty_sample_weight(name, options):
    """README's rule for an empty batch (0 for Keras's reductions, an empty array for
    "none") holds with its per-sample weights, an empty array."""
    loss = fl.LOSSES[name]
    arrays = empty_batch_arrays(name)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        value, grad = loss.value_and_grad(*arrays, reduction=reduction, **options)
        assert value == 0 and grad.shape == arrays[1].shape
    assert loss(*arrays, reduction="none", **options).shape == (0,)


@pytest.mark.skipif(not SIMULATOR, reason="the simulator checks bounds; a GPU reads silently")
def test_circle_gradient_with_more_reference_rows_than_rows():
    """circle's gradient once read the statistics of row j for every reference row j: out
    of bounds when ref_embeddings has more rows than y_pred (IndexError in the simulator)."""
    e = np.array([[0.6, 0.0], [0.0, 0.6]])
    ref = np.array([[0.9, 0.0], [0.0, 0.9], [0.6, 0.6]])
    options = {"ref_labels": [0, 1, 1], "ref_embeddings": ref}
    with fl.backend("cuda"):
        grad = fl.circle.grad([0, 1], e, **options)
    expected = circle_reference_grad(np.array([0, 1]), e, ref_labels=np.array([0, 1, 1]),
                                     ref_embeddings=ref)
    np.testing.assert_allclose(grad, expected, rtol=1e-10)

"""Bad input gets a clear ValueError/TypeError naming the argument; never a crash."""

import numpy as np
import pytest

import fastloss as fl

T = np.ones((4, 3))
P = np.full((4, 3), 0.5)


@pytest.mark.parametrize("call, error, words", [
    (lambda: fl.mse(np.ones((4, 2)), P), ValueError, ["y_true", "(4, 2)", "(4, 3)"]),
    (lambda: fl.mse_loss(np.ones(5), np.ones(3)), ValueError, ["y_true", "(5,)"]),
    (lambda: fl.mse(T, np.array([["a"] * 3] * 4)), TypeError, ["y_pred", "dtype"]),
    (lambda: fl.mse(np.array([None] * 3), P[0]), TypeError, ["y_true"]),
    (lambda: fl.mse(T, P + 1j), TypeError, ["y_pred", "complex"]),
    (lambda: fl.mse(T, P, reduction="avg"), ValueError, ["reduction", "avg"]),
    (lambda: fl.mse_loss(T, P, reduction="sum_over_batch_size"), ValueError, ["reduction"]),
    (lambda: fl.mse(T, P, delta=1.0), TypeError, ["delta"]),
    (lambda: fl.huber(T, P, delt=1.0), TypeError, ["delt", "delta"]),
    (lambda: fl.huber(T, P, delta=-1.0), ValueError, ["delta", "-1.0"]),
    (lambda: fl.huber(T, P, delta=float("nan")), ValueError, ["delta"]),
    (lambda: fl.huber(T, P, delta="1"), TypeError, ["delta"]),
    (lambda: fl.huber_loss(T, P, delta=0.0), ValueError, ["delta", "positive"]),
    (lambda: fl.smooth_l1_loss(T, P, beta=-0.5), ValueError, ["beta"]),
    (lambda: fl.mse(T, P, sample_weight=np.ones(3)), ValueError, ["sample_weight", "(3,)"]),
    (lambda: fl.mse(T, P, sample_weight=np.ones((4, 3))), ValueError, ["sample_weight"]),
    (lambda: fl.mse(T, P, sample_weight=["x"] * 4), TypeError, ["sample_weight"]),
    (lambda: fl.mse_loss(T, P, sample_weight=np.ones(4)), TypeError, ["sample_weight"]),
    (lambda: fl.mse.grad(T, P, grad_output=np.ones(4)), ValueError, ["grad_output"]),
    (lambda: fl.mse.grad(T, P, reduction="none", grad_output=np.ones(3)), ValueError, ["grad_output"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((3, 4))), ValueError, ["out", "(4, 3)"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((4, 3), np.float32)), ValueError, ["out", "dtype"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((3, 4)).T), ValueError, ["out", "contiguous"]),
    (lambda: fl.mse.grad(T, P, out=[0.0] * 12), TypeError, ["out"]),
    (lambda: fl.get("nope"), ValueError, ["nope"]),
])
def test_bad_input_raises_clearly(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


class FakeGpuArray:
    """Anything exposing __cuda_array_interface__ counts as a GPU array."""
    __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f8", "data": (0, False), "version": 3}


def test_mixed_devices_name_the_arguments():
    with pytest.raises(TypeError, match=r"y_pred on the GPU, y_true on the CPU"):
        fl.mse(T, FakeGpuArray())


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        with fl.backend("tpu"):
            pass


def test_nan_propagates_and_inf_does_not_crash():
    p = P.copy()
    p[1, 2] = np.nan
    assert np.isnan(fl.mse(T, p))
    value, grad = fl.mse.value_and_grad(T, p)
    assert np.isnan(value) and np.isnan(grad[1, 2]) and np.isfinite(np.delete(grad.ravel(), 5)).all()
    p[1, 2] = np.inf
    assert fl.mse(T, p) == np.inf

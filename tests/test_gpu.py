"""The CUDA kernels on a real GPU with CuPy arrays (skipped where there is none).

Run with ``FASTLOSS_TEST_GPU=1 python -m pytest -m gpu tests`` (the variable keeps
conftest.py from turning on the simulator)."""

import os

import numpy as np
import pytest

import fastloss as fl
from fastloss.losses import LOSSES
from references import POINTWISE, reference_value
from row_references import ROW_LOSSES
from row_references import reference as row_reference

# conftest.py has set this before any test module is imported.
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
cupy = pytest.importorskip("cupy") if not SIMULATOR else None
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(SIMULATOR, reason="needs a real GPU (FASTLOSS_TEST_GPU=1)")]


def gpu_available():
    try:
        return cupy is not None and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver: a CPU-only machine
        return False


if not SIMULATOR and not gpu_available():
    pytestmark.append(pytest.mark.skip(reason="no CUDA device"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (300, 70), (3, 10000), (1 << 20,)])
@pytest.mark.parametrize("name", sorted(set(LOSSES) & set(POINTWISE)))
def test_cupy_matches_reference(name, shape, dtype):
    rng = np.random.default_rng(0)
    t = rng.uniform(0.1, 2, shape).astype(dtype)
    p = rng.uniform(0.1, 2, shape).astype(dtype)
    loss = LOSSES[name]
    keras = POINTWISE[name][1] == "keras"
    option = {POINTWISE[name][2]: 0.4} if POINTWISE[name][2] else {}
    reductions = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"] if keras \
        else ["mean", "sum", "none"]
    for reduction in reductions:
        kw = dict(reduction=reduction, **option)
        if keras and len(shape) > 1:
            kw["sample_weight"] = rng.uniform(0.1, 1, shape[0])
        expected = reference_value(name, t, p, **kw)
        dkw = {k: (cupy.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        value, grad = loss.value_and_grad(cupy.asarray(t), cupy.asarray(p), **dkw)
        assert isinstance(value, cupy.ndarray) and isinstance(grad, cupy.ndarray)
        rtol = 2e-5 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(cupy.asnumpy(value), expected, rtol=rtol, atol=1e-12)
        cpu_grad = loss.grad(t, p, **kw)
        # CUDA's log/exp and the CPU's differ in the last ulp; where a gradient is a
        # difference of two logs that cancel (msle), the scale of the gradient bounds it.
        np.testing.assert_allclose(cupy.asnumpy(grad), cpu_grad, rtol=rtol,
                                   atol=rtol * float(np.abs(cpu_grad).max()))
        again = loss.value_and_grad(cupy.asarray(t), cupy.asarray(p), **dkw)
        assert cupy.array_equal(again[0], value) and cupy.array_equal(again[1], grad)


def test_runs_on_the_current_stream_without_sync():
    t = cupy.random.rand(1 << 22, dtype=cupy.float32)
    p = cupy.random.rand(1 << 22, dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        value, grad = fl.mse.value_and_grad(t, p)
    stream.synchronize()
    expected = cupy.mean((p.astype(cupy.float64) - t) ** 2)
    assert abs(float(value) - float(expected)) <= 1e-6 * float(expected)


def row_inputs(name, shape, rng):
    """(y_true, y_pred) for a row-wise loss: class indices or distributions, and scores
    valid both as logits and as (unnormalised) probabilities."""
    targets = ROW_LOSSES[name][1]
    p = rng.uniform(0.05, 2.0, shape)
    if targets == "dense":
        return rng.dirichlet(np.ones(shape[-1]), shape[:-1]), p
    if targets == "label_sets":  # up to 5 class indices a row (repeats too), then -1
        t = rng.integers(-1, shape[-1], shape)
        for r, row in enumerate(t):
            row[:r % 6] = rng.integers(0, shape[-1], r % 6)
            row[r % 6] = -1
        return t, p
    return rng.integers(0, shape[-1], shape[:-1]), p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (300, 70), (3, 40000)])
@pytest.mark.parametrize("name", sorted(ROW_LOSSES))
def test_cupy_rows_match_reference(name, shape, dtype):
    rng = np.random.default_rng(1)
    t, p = row_inputs(name, shape, rng)
    loss = LOSSES[name]
    logits = {"from_logits": True} if name in ("categorical_crossentropy",
                                               "sparse_categorical_crossentropy") else {}
    rtol = 2e-5 if dtype == np.float32 else 1e-10
    for reduction in (["sum_over_batch_size", "none"] if ROW_LOSSES[name][0] == "keras"
                      else ["mean", "none"]):
        kw = dict(reduction=reduction, **logits)
        expected = row_reference(name, t, p, **kw)
        value, grad = loss.value_and_grad(cupy.asarray(t), cupy.asarray(p.astype(dtype)), **kw)
        assert isinstance(value, cupy.ndarray) and isinstance(grad, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(value), expected, rtol=rtol, atol=1e-12)
        cpu_grad = loss.grad(t, p.astype(dtype), **kw)
        np.testing.assert_allclose(cupy.asnumpy(grad), cpu_grad, rtol=rtol,
                                   atol=rtol * float(np.abs(cpu_grad).max()))
        again = loss.value_and_grad(cupy.asarray(t), cupy.asarray(p.astype(dtype)), **kw)
        assert cupy.array_equal(again[0], value) and cupy.array_equal(again[1], grad)

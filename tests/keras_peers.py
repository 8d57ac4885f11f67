"""Keras 3 on JAX, for the comparisons with the peers (tests/test_peers*.py): importing
this skips the importing test module where keras or jax is missing (CI has neither).
Float64 runs in JAX (jax_enable_x64); ``keep_float64`` also lifts Keras's float64 ->
float32 demotion for one test."""

import os
import zlib

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - a keras imported before us
    pytest.skip(f"needs KERAS_BACKEND=jax, keras runs on {keras.backend.backend()}",
                allow_module_level=True)
import jax.numpy as jnp  # noqa: E402

from keras.src.backend.common import dtypes as keras_dtypes  # noqa: E402


def keep_float64(monkeypatch):
    monkeypatch.setitem(keras_dtypes.BIT64_TO_BIT32_DTYPE, "float64", "float64")


def rng_for(*key):
    """A generator seeded by the test's parameters: each case its own data."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def keras_value_and_grad(loss, y, x, w, rng, dtype):
    """A Keras loss's value, and jax.grad of it (of <cotangent, value> for unreduced
    values, the cotangent drawn from rng) with respect to x; returns the cotangent too."""
    value = np.asarray(loss(y, jnp.asarray(x), sample_weight=w))
    go = None if value.shape == () else rng.normal(size=value.shape).astype(dtype)

    def scalar(q):
        out = loss(y, q, sample_weight=w)
        return out if go is None else jnp.sum(jnp.asarray(go, out.dtype) * out)
    return value, np.asarray(jax.grad(scalar)(jnp.asarray(x))), go

"""fastloss against the real libraries: Keras 3 (JAX backend) and torch.nn.functional.

Needs keras, jax and torch, which are not project dependencies: the module is skipped
where any is missing (CI has none).  To run it, in a separate environment:

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install -e ".[test]" keras jax torch
    /tmp/peers/bin/python -m pytest -q tests/test_peers.py

Values are compared with the library's value, gradients with jax.grad of the Keras loss
object / torch autograd (for unreduced values, the VJP of a random cotangent).
"""

import os
import zlib

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - a keras imported before us
    pytest.skip(f"needs KERAS_BACKEND=jax, keras runs on {keras.backend.backend()}",
                allow_module_level=True)
import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fastloss as fl  # noqa: E402

RTOL = {np.float32: 2e-5, np.float64: 1e-7}
ATOL = {np.float32: 1e-7, np.float64: 1e-13}

# -- inputs ------------------------------------------------------------------------------


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def inputs(name, shape, dtype, rng):
    """(y_true, y_pred) in the loss's domain, with some points where the math branches."""
    if name == "mean_squared_logarithmic_error":  # some below the clip at epsilon
        t, p = rng.uniform(-0.3, 3.0, shape), rng.uniform(-0.3, 3.0, shape)
    elif name == "poisson":  # y_pred > 0, counts-like y_true
        t, p = rng.uniform(0.0, 4.0, shape), rng.uniform(0.05, 4.0, shape)
    elif name == "mean_absolute_percentage_error":  # y_true of both signs, off zero
        t = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 3.0, shape)
        p = rng.normal(0.0, 2.0, shape)
    else:
        t, p = rng.normal(0.0, 1.5, shape), rng.normal(0.0, 1.5, shape)
    return t.astype(dtype), p.astype(dtype)


def check(actual, expected, dtype, what):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, peer {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)


# -- Keras ----------------------------------------------------------------------------

KERAS_LOSSES = {  # fastloss name: (Keras class, fastloss options == Keras constructor options)
    "mean_squared_error": (keras.losses.MeanSquaredError, {}),
    "mean_absolute_error": (keras.losses.MeanAbsoluteError, {}),
    "mean_absolute_percentage_error": (keras.losses.MeanAbsolutePercentageError, {}),
    "mean_squared_logarithmic_error": (keras.losses.MeanSquaredLogarithmicError, {}),
    "huber": (keras.losses.Huber, {"delta": 1.0}),
    "huber-delta0.3": (keras.losses.Huber, {"delta": 0.3}),
    "huber-delta0": (keras.losses.Huber, {"delta": 0.0}),
    "log_cosh": (keras.losses.LogCosh, {}),
    "poisson": (keras.losses.Poisson, {}),
}
KERAS_REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]
SHAPES = [(8, 5), (8,), (4, 3, 5)]
WEIGHTS = ["none", "scalar", "per_sample", "per_sample_column"]


def sample_weight(form, shape, rng):
    """None, a scalar, or one weight per batch element as (B,) or (B, 1)."""
    batch = shape[0]
    return {"none": None, "scalar": 0.7, "per_sample": rng.uniform(0.1, 2.0, batch),
            "per_sample_column": rng.uniform(0.1, 2.0, (batch, 1))}[form]


def keras_value_and_grad(cls, options, t, p, w, reduction, dtype, cotangent_rng):
    """The Keras loss object's value, and its VJP w.r.t. y_pred by jax.grad (a random
    cotangent for unreduced values; returned too)."""
    loss = cls(reduction=reduction, dtype=np.dtype(dtype).name, **options)
    t_j = jnp.asarray(t)
    value = np.asarray(loss(t_j, jnp.asarray(p), sample_weight=w))
    cotangent = None
    if value.shape != ():
        cotangent = cotangent_rng.normal(size=value.shape).astype(dtype)

    def scalar(q):
        out = loss(t_j, q, sample_weight=w)
        return out if cotangent is None else jnp.sum(jnp.asarray(cotangent, out.dtype) * out)
    grad = np.asarray(jax.grad(scalar)(jnp.asarray(p)))
    return value, grad, cotangent


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weight_form", WEIGHTS)
@pytest.mark.parametrize("reduction", KERAS_REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", list(KERAS_LOSSES))
def test_keras(case, shape, reduction, weight_form, dtype):
    name = case.split("-")[0]
    cls, options = KERAS_LOSSES[case]
    rng = rng_for(case, shape, reduction, weight_form, np.dtype(dtype).name)
    t, p = inputs(name, shape, dtype, rng)
    w = sample_weight(weight_form, shape, rng)
    loss = getattr(fl, name)
    kw = dict(sample_weight=w, reduction=reduction, **options)
    try:
        k_value, k_grad, cotangent = keras_value_and_grad(cls, options, t, p, w, reduction,
                                                          dtype, rng)
    except Exception as exc:  # Keras rejects it: so must fastloss, with a ValueError
        with pytest.raises(ValueError):
            loss(t, p, **kw)
        pytest.skip(f"Keras rejects it ({type(exc).__name__}); fastloss raises ValueError too")
    what = f"{case} {shape} {reduction} weight={weight_form} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), k_value, dtype, what + " value")
    check(loss.grad(t, p, grad_output=cotangent, **kw), k_grad, dtype, what + " grad")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, k_value, dtype, what + " value_and_grad[0]")
    check(g, k_grad, dtype, what + " value_and_grad[1]")


# -- torch.nn.functional ----------------------------------------------------------------

TORCH_LOSSES = {  # fastloss name: (F function, options)
    "l1_loss": (F.l1_loss, {}),
    "mse_loss": (F.mse_loss, {}),
    "smooth_l1_loss": (F.smooth_l1_loss, {"beta": 1.0}),
    "smooth_l1_loss-beta0.3": (F.smooth_l1_loss, {"beta": 0.3}),
    "smooth_l1_loss-beta0": (F.smooth_l1_loss, {"beta": 0.0}),
    "huber_loss": (F.huber_loss, {"delta": 1.0}),
    "huber_loss-delta0.3": (F.huber_loss, {"delta": 0.3}),
}
# (target shape, input shape): equal shapes, and a target broadcast over the batch
TORCH_SHAPES = [((8, 5), (8, 5)), ((8,), (8,)), ((4, 3, 5), (4, 3, 5)), ((5,), (8, 5))]


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shapes", TORCH_SHAPES,
                         ids=lambda s: "x".join(map(str, s[0])) + "-" + "x".join(map(str, s[1])))
@pytest.mark.parametrize("case", list(TORCH_LOSSES))
def test_torch(case, shapes, reduction, dtype):
    name = case.split("-")[0]
    fn, options = TORCH_LOSSES[case]
    t_shape, p_shape = shapes
    rng = rng_for(case, shapes, reduction, np.dtype(dtype).name)
    t = rng.normal(0.0, 1.5, t_shape).astype(dtype)
    p = rng.normal(0.0, 1.5, p_shape).astype(dtype)
    x = torch.tensor(p, requires_grad=True)
    out = fn(x, torch.tensor(t), reduction=reduction, **options)
    cotangent = None
    if reduction == "none":
        cotangent = rng.normal(size=tuple(out.shape)).astype(dtype)
        out.backward(torch.tensor(cotangent))
    else:
        out.backward()
    t_value, t_grad = out.detach().numpy(), x.grad.numpy()

    loss = getattr(fl, name)
    kw = dict(reduction=reduction, **options)
    what = f"{case} {t_shape}->{p_shape} {reduction} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), t_value, dtype, what + " value")
    check(loss.grad(t, p, grad_output=cotangent, **kw), t_grad, dtype, what + " grad")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, t_value, dtype, what + " value_and_grad[0]")
    check(g, t_grad, dtype, what + " value_and_grad[1]")

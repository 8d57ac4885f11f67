"""fastloss against the real libraries: Keras 3 (JAX backend), torch.nn.functional, Optax.

Needs keras, jax, torch and optax, which are not project dependencies: the module is
skipped where any is missing (CI has none).  To run it, in a separate environment:

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install -e ".[test]" keras jax torch optax
    KERAS_BACKEND=jax /tmp/peers/bin/python -m pytest -q tests/test_peers.py

Values are compared with the library's value, gradients with jax.grad of the Keras loss
object / torch autograd (for unreduced values, the VJP of a random cotangent).

float64 and Keras: on every backend but TensorFlow, Keras's dtype promotion
(keras/src/backend/common/dtypes.py, ``_lattice_result_type``: ``BIT64_TO_BIT32_DTYPE``)
demotes float64 to float32, and ``keras.ops.mean`` takes its accumulator dtype from it
(``result_type(x.dtype, "float32")``): the JAX backend's mean over the last axis of a
float64 array runs as ``jnp.mean(x, dtype=float32)`` and is cast back, so a "float64"
Keras loss is only float32-accurate (about 1e-7 relative, value and gradient).  The
float64 cases therefore compare with Keras with that demotion lifted (float64 kept as
float64, which is what Keras's TensorFlow backend does); ``test_keras_jax_mean_demotes_float64``
pins the demotion, so it fails, and says so, the day Keras drops it.
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
from keras_peers import jax, jnp, keep_float64, keras, rng_for  # noqa: E402
optax = pytest.importorskip("optax")
import torch.nn.functional as F  # noqa: E402

import fastloss as fl  # noqa: E402

RTOL = {np.float32: 2e-5, np.float64: 1e-7}
ATOL = {np.float32: 1e-7, np.float64: 1e-13}

# -- inputs ------------------------------------------------------------------------------


def inputs(name, shape, dtype, rng):
    """(y_true, y_pred) in the loss's domain, with some points where the math branches."""
    if name == "mean_squared_logarithmic_error":  # some below the clip at epsilon
        t, p = rng.uniform(-0.3, 3.0, shape), rng.uniform(-0.3, 3.0, shape)
    elif name == "poisson":  # y_pred > 0, counts-like y_true
        t, p = rng.uniform(0.0, 4.0, shape), rng.uniform(0.05, 4.0, shape)
    elif name == "mean_absolute_percentage_error":  # y_true of both signs, off zero
        t = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 3.0, shape)
        p = rng.normal(0.0, 2.0, shape)
    elif name in PROBABILITY_LOSSES:  # soft labels; probabilities, a few beyond the clip
        t = rng.choice([0.0, 1.0, 0.3, 0.8], shape)
        p = np.where(rng.uniform(size=shape) < 0.1, rng.choice([0.0, 1.0], shape),
                     rng.uniform(0.01, 0.99, shape))
    elif name in LOGIT_LOSSES:
        t, p = rng.choice([0.0, 1.0, 0.3, 0.8], shape), rng.normal(0.0, 3.0, shape)
    elif name in ("hinge", "squared_hinge", "soft_margin_loss"):  # -1/1 labels (or 0/1)
        t = rng.choice([-1.0, 1.0], shape) if rng.uniform() < 0.5 or name == "soft_margin_loss" \
            else rng.choice([0.0, 1.0], shape)
        p = rng.normal(0.0, 1.5, shape)
    elif name == "kl_divergence":  # a few labels and predictions below the clip at 1e-7
        t, p = rng.uniform(0.0, 1.0, shape), rng.uniform(0.01, 1.0, shape)
        t[rng.uniform(size=shape) < 0.1] = 0.0
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

PROBABILITY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy", "binary_cross_entropy")
LOGIT_LOSSES = ("binary_crossentropy-logits", "binary_focal_crossentropy-logits",
                "binary_cross_entropy_with_logits", "sigmoid_focal_loss")

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
    "binary_crossentropy": (keras.losses.BinaryCrossentropy, {}),
    "binary_crossentropy-smoothing": (keras.losses.BinaryCrossentropy, {"label_smoothing": 0.2}),
    "binary_crossentropy-logits": (keras.losses.BinaryCrossentropy,
                                   {"from_logits": True, "label_smoothing": 0.1}),
    "binary_focal_crossentropy": (keras.losses.BinaryFocalCrossentropy, {}),
    "binary_focal_crossentropy-balanced": (
        keras.losses.BinaryFocalCrossentropy,
        {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5, "label_smoothing": 0.1}),
    "binary_focal_crossentropy-logits": (
        keras.losses.BinaryFocalCrossentropy,
        {"from_logits": True, "apply_class_balancing": True, "gamma": 0.5}),
    "hinge": (keras.losses.Hinge, {}),
    "squared_hinge": (keras.losses.SquaredHinge, {}),
    "kl_divergence": (keras.losses.KLDivergence, {}),
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
def test_keras(case, shape, reduction, weight_form, dtype, monkeypatch):
    if dtype == np.float64:  # see the module's docstring
        keep_float64(monkeypatch)
    name = case.split("-")[0]
    cls, options = KERAS_LOSSES[case]
    rng = rng_for(case, shape, reduction, weight_form, np.dtype(dtype).name)
    t, p = inputs(case if case in LOGIT_LOSSES else name, shape, dtype, rng)
    w = sample_weight(weight_form, shape, rng)
    loss = getattr(fl, name)
    kw = dict(sample_weight=w, reduction=reduction, **options)
    try:
        k_value, k_grad, cotangent = keras_value_and_grad(cls, options, t, p, w, reduction,
                                                          dtype, rng)
    except Exception as exc:  # Keras rejects it: so must fastloss, with a ValueError
        with pytest.raises(ValueError):
            loss(t, p, **kw)
        assert "broadcast" in str(exc) or "Incompatible shapes" in str(exc), exc
        return
    what = f"{case} {shape} {reduction} weight={weight_form} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), k_value, dtype, what + " value")
    check(loss.grad(t, p, grad_output=cotangent, **kw), k_grad, dtype, what + " grad")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, k_value, dtype, what + " value_and_grad[0]")
    check(g, k_grad, dtype, what + " value_and_grad[1]")


AXIS_CASES = ["binary_crossentropy", "binary_crossentropy-logits", "binary_focal_crossentropy",
              "binary_focal_crossentropy-logits"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weight_form", ["none", "scalar", "per_value"])
@pytest.mark.parametrize("reduction", KERAS_REDUCTIONS)
@pytest.mark.parametrize("shape, axis", [((8, 5), 0), ((8, 5), 1), ((4, 3, 5), 0),
                                         ((4, 3, 5), 1), ((4, 3, 5), -2)])
@pytest.mark.parametrize("case", AXIS_CASES)
def test_keras_axis(case, shape, axis, reduction, weight_form, dtype, monkeypatch):
    """The axis option: the mean over that axis, the rest as for axis=-1."""
    if dtype == np.float64:
        keep_float64(monkeypatch)
    cls, options = KERAS_LOSSES[case]
    options = dict(options, axis=axis)
    rng = rng_for(case, shape, axis, reduction, weight_form, np.dtype(dtype).name)
    t, p = inputs(case if case in LOGIT_LOSSES else case.split("-")[0], shape, dtype, rng)
    values_shape = tuple(np.delete(shape, axis))
    w = {"none": None, "scalar": 0.7,
         "per_value": rng.uniform(0.1, 2.0, values_shape)}[weight_form]
    k_value, k_grad, cotangent = keras_value_and_grad(cls, options, t, p, w, reduction,
                                                      dtype, rng)
    loss = getattr(fl, case.split("-")[0])
    kw = dict(sample_weight=w, reduction=reduction, **options)
    what = f"{case} {shape} axis={axis} {reduction} weight={weight_form} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), k_value, dtype, what + " value")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, k_value, dtype, what + " value_and_grad[0]")
    check(g, k_grad, dtype, what + " value_and_grad[1]")
    check(loss.grad(t, p, grad_output=cotangent, **kw), k_grad, dtype, what + " grad")


def test_keras_jax_mean_demotes_float64():
    """Why the float64 cases lift Keras's float64 -> float32 demotion: stock keras.ops.mean
    of a float64 array is the float32 mean cast back to float64 (JAX backend, x64 on)."""
    x = rng_for("demotion").normal(size=(8, 5))
    stock = np.asarray(keras.ops.mean(jnp.asarray(x), axis=-1))
    assert stock.dtype == np.float64
    as_float32 = np.asarray(jnp.mean(jnp.asarray(x), axis=-1, dtype=jnp.float32), np.float64)
    assert np.array_equal(stock, as_float32), (
        "keras.ops.mean now keeps float64 precision under JAX: compare the float64 cases "
        "with stock Keras and drop the monkeypatch in test_keras")
    assert not np.allclose(stock, x.mean(axis=-1), rtol=1e-12, atol=0)


# -- torch.nn.functional ----------------------------------------------------------------

TORCH_LOSSES = {  # fastloss name: (F function, options)
    "l1_loss": (F.l1_loss, {}),
    "mse_loss": (F.mse_loss, {}),
    "smooth_l1_loss": (F.smooth_l1_loss, {"beta": 1.0}),
    "smooth_l1_loss-beta0.3": (F.smooth_l1_loss, {"beta": 0.3}),
    "smooth_l1_loss-beta0": (F.smooth_l1_loss, {"beta": 0.0}),
    "huber_loss": (F.huber_loss, {"delta": 1.0}),
    "huber_loss-delta0.3": (F.huber_loss, {"delta": 0.3}),
    "binary_cross_entropy": (F.binary_cross_entropy, {}),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits, {}),
    "soft_margin_loss": (F.soft_margin_loss, {}),
}
# PyTorch's binary crossentropies want the target in the input's shape (fastloss broadcasts
# it): they get it expanded.
EXPAND_TARGET = ("binary_cross_entropy", "binary_cross_entropy_with_logits")
# PyTorch computes binary_cross_entropy_with_logits as (1 - t) x - log_sigmoid(x) and its
# gradient as sigmoid(x) - t: in float32 both cancel (t = 0, x < 0; t = 1, x > 0), off by
# 1e-4 relative at |x| = 5 and by everything past |x| = 17; fastloss's log1p form keeps full
# precision.  Its float32 results are compared with PyTorch's float64 ones on the same
# (float32) inputs, rounded to float32.
FLOAT64_PEER = ("binary_cross_entropy_with_logits",)


def torch_value_and_grad(fn, name, p, t, dtype, reduction, rng, **kw):
    """PyTorch's value and VJP (a random cotangent for unreduced values; returned too)."""
    peer = np.float64 if name in FLOAT64_PEER else dtype
    x = torch.tensor(p.astype(peer), requires_grad=True)
    kw = {k: torch.tensor(v.astype(peer)) if isinstance(v, np.ndarray) else v
          for k, v in kw.items()}
    out = fn(x, torch.tensor(np.asarray(t, peer)), reduction=reduction, **kw)
    cotangent = None
    if reduction == "none":
        cotangent = rng.normal(size=tuple(out.shape)).astype(dtype)
        out.backward(torch.tensor(cotangent.astype(peer)))
    else:
        out.backward()
    return out.detach().numpy().astype(dtype), x.grad.numpy().astype(dtype), cotangent
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
    if name in PROBABILITY_LOSSES or name in LOGIT_LOSSES or name == "soft_margin_loss":
        t, p = inputs(name, p_shape, dtype, rng)
        t = t[(0,) * (len(p_shape) - len(t_shape))]  # a row of it, for a broadcast target
    else:
        t = rng.normal(0.0, 1.5, t_shape).astype(dtype)
        p = rng.normal(0.0, 1.5, p_shape).astype(dtype)
    t_peer = np.broadcast_to(t, p_shape).copy() if name in EXPAND_TARGET else t
    t_value, t_grad, cotangent = torch_value_and_grad(fn, name, p, t_peer, dtype, reduction,
                                                      rng, **options)

    loss = getattr(fl, name)
    kw = dict(reduction=reduction, **options)
    what = f"{case} {t_shape}->{p_shape} {reduction} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), t_value, dtype, what + " value")
    check(loss.grad(t, p, grad_output=cotangent, **kw), t_grad, dtype, what + " grad")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, t_value, dtype, what + " value_and_grad[0]")
    check(g, t_grad, dtype, what + " value_and_grad[1]")


WEIGHTED = ["binary_cross_entropy", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weight_shape", [(8, 5), (5,), (8, 1), ()], ids=str)
@pytest.mark.parametrize("name", WEIGHTED)
def test_torch_weight(name, weight_shape, reduction, dtype):
    """PyTorch's weight: an elementwise rescaling of the loss, broadcast to the input."""
    fn = getattr(F, name)
    rng = rng_for(name, weight_shape, reduction, np.dtype(dtype).name)
    t, p = inputs(name, (8, 5), dtype, rng)
    weight = rng.uniform(0.0, 2.0, weight_shape).astype(dtype)
    t_value, t_grad, cotangent = torch_value_and_grad(fn, name, p, t, dtype, reduction, rng,
                                                      weight=weight)
    loss = getattr(fl, name)
    kw = dict(reduction=reduction, weight=weight)
    what = f"{name} weight{weight_shape} {reduction} {np.dtype(dtype).name}"
    check(loss(t, p, **kw), t_value, dtype, what + " value")
    check(loss.grad(t, p, grad_output=cotangent, **kw), t_grad, dtype, what + " grad")
    v, g = loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, t_value, dtype, what + " value_and_grad[0]")
    check(g, t_grad, dtype, what + " value_and_grad[1]")


def test_torch_binary_cross_entropy_rejects_input_outside_0_1():
    """PyTorch raises on such input; so does fastloss (a ValueError naming y_pred)."""
    t, p = np.array([0.0, 1.0]), np.array([0.5, 1.5])
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(torch.tensor(p), torch.tensor(t))
    with pytest.raises(ValueError, match="y_pred"):
        fl.binary_cross_entropy(t, p)


# -- Optax ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"alpha": 0.25}, {"alpha": 0.7, "gamma": 0.5},
                                     {"gamma": 3.0}], ids=str)
def test_optax_sigmoid_focal_loss(options, reduction, dtype):
    """optax.losses.sigmoid_focal_loss(logits, labels) is elementwise; "mean"/"sum" are
    jnp.mean/jnp.sum of it."""
    rng = rng_for("sigmoid_focal_loss", tuple(options.items()), reduction, np.dtype(dtype).name)
    t, p = inputs("sigmoid_focal_loss", (8, 5), dtype, rng)
    reduce = {"none": lambda v: v, "mean": jnp.mean, "sum": jnp.sum}[reduction]

    def peer(q):
        return reduce(optax.losses.sigmoid_focal_loss(q, jnp.asarray(t), **options))
    value, vjp = jax.vjp(peer, jnp.asarray(p))
    cotangent = rng.normal(size=value.shape).astype(dtype) if reduction == "none" else None
    o_grad = np.asarray(vjp(jnp.ones((), value.dtype) if cotangent is None
                            else jnp.asarray(cotangent))[0])
    o_value = np.asarray(value)
    kw = dict(reduction=reduction, **options)
    what = f"sigmoid_focal_loss {options} {reduction} {np.dtype(dtype).name}"
    check(fl.sigmoid_focal_loss(t, p, **kw), o_value, dtype, what + " value")
    v, g = fl.sigmoid_focal_loss.value_and_grad(t, p, grad_output=cotangent, **kw)
    check(v, o_value, dtype, what + " value_and_grad[0]")
    check(g, o_grad, dtype, what + " value_and_grad[1]")
    check(fl.sigmoid_focal_loss.grad(t, p, grad_output=cotangent, **kw), o_grad, dtype,
          what + " grad")

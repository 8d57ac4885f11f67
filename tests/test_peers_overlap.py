"""The overlap losses against Keras 3 (JAX backend): ``keras.losses.Dice`` and ``Tversky``,
and ``fbeta_loss`` against its formula written in ``keras.ops`` and wrapped in Keras's own
``LossFunctionWrapper`` (so with Keras's sample weights and reductions).  Skipped where
keras or jax is missing (CI has neither); see tests/test_peers.py for how to run it and
why the float64 cases lift Keras's float64 -> float32 demotion."""


import numpy as np
import pytest

from keras_peers import jax, jnp, keep_float64, keras, keras_value_and_grad, rng_for  # noqa: E402,E501
from keras import ops  # noqa: E402

from keras.src.losses.losses import LossFunctionWrapper  # noqa: E402

from fastloss.losses import by_family  # noqa: E402

RTOL = {np.float32: 2e-5, np.float64: 1e-7}
ATOL = {np.float32: 1e-7, np.float64: 1e-13}
SHAPE = (4, 5, 6)

LOSSES = by_family("overlap")


def keras_fbeta(y_true, y_pred, beta=1.0, axis=None):
    """Soft F-beta loss as fastloss documents it, in keras.ops."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    b2 = beta ** 2
    tp = ops.sum(y_true * y_pred, axis=axis)
    fp = ops.sum((1 - y_true) * y_pred, axis=axis)
    fn = ops.sum(y_true * (1 - y_pred), axis=axis)
    return 1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + keras.backend.epsilon())


def _keras_swaps_tversky():
    """Keras up to 3.15 weighs the false negatives by alpha (keras-team/keras#23333 fixed
    it): one false negative, no false positive, alpha=1, beta=0 gives 0.5 there, 0 on main."""
    t, p = np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0, 0.0]])
    return float(np.asarray(keras.losses.tversky(t, p, alpha=1.0, beta=0.0))) > 0.25


KERAS_SWAPS_TVERSKY = _keras_swaps_tversky()


def keras_loss(name, options, reduction, dtype, axis):
    if name == "dice":
        return keras.losses.Dice(reduction=reduction, axis=axis, dtype=dtype)
    if name == "tversky":  # checked against Keras main's definition, on any Keras
        alpha, beta = options.get("alpha", 0.5), options.get("beta", 0.5)
        if KERAS_SWAPS_TVERSKY:
            alpha, beta = beta, alpha
        return keras.losses.Tversky(reduction=reduction, axis=axis, dtype=dtype, alpha=alpha,
                                    beta=beta)
    return LossFunctionWrapper(keras_fbeta, reduction=reduction, dtype=dtype, axis=axis, **options)


CASES = [  # (fastloss name, options, targets)
    ("dice", {}, "binary"),
    ("tversky", {}, "binary"),
    ("tversky", {"alpha": 0.2, "beta": 0.9}, "soft"),
    ("fbeta_loss", {"beta": 2.0}, "binary"),
    ("fbeta_loss", {"beta": 0.5}, "soft"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]
AXES = [None, (1, 2), (2,), (0,), (0, 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["none", "scalar", "per_sample"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[1]}")
def test_keras(case, reduction, axis, weights, dtype, monkeypatch):
    if dtype == np.float64:
        keep_float64(monkeypatch)
    name, options, targets = case
    rng = rng_for(name, options, reduction, axis, weights, np.dtype(dtype).name)
    t = (rng.random(SHAPE) < 0.5) * 1.0 if targets == "binary" else rng.uniform(0, 1, SHAPE)
    t, p = t.astype(dtype), rng.uniform(0.02, 0.98, SHAPE).astype(dtype)
    if weights == "none":
        w = None
    elif weights == "scalar":
        w = 0.6
    else:  # one per sample; for axis=None (a scalar loss) one per row, which Keras broadcasts
        kept = [n for i, n in enumerate(SHAPE) if axis is not None and i not in axis]
        w = rng.uniform(0.1, 2.0, kept if axis is not None else SHAPE[0])
    kloss = keras_loss(name, options, reduction, np.dtype(dtype).name, axis)
    value, grad, go = keras_value_and_grad(kloss, jnp.asarray(t), p, w, rng, dtype)

    what = f"{name} {options} {reduction} axis={axis} weights={weights} {np.dtype(dtype).name}"
    v, g = LOSSES[name].value_and_grad(t, p, sample_weight=w, reduction=reduction, axis=axis,
                                       grad_output=go, **options)
    for actual, expected, part in ((v, value, "value"), (g, grad, "grad")):
        actual = np.asarray(actual)
        assert actual.dtype == dtype, f"{what} {part}: dtype {actual.dtype}"
        assert actual.shape == expected.shape, (f"{what} {part}: shape {actual.shape}, "
                                                f"Keras {expected.shape}")
        np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype],
                                   err_msg=f"{what} {part}")


def test_keras_empty_axis_and_empty_batch():
    """Empty groups: a loss of 1, as Keras; an empty batch: Keras returns the empty
    per-sample array for every reduction, fastloss 0 for the reductions (as all its losses)."""
    empty_groups = np.zeros((3, 0), np.float32)
    for name in ("dice", "tversky"):
        kloss = keras_loss(name, {}, "none", "float32", (1,))
        np.testing.assert_array_equal(LOSSES[name](empty_groups, empty_groups, axis=1,
                                                   reduction="none"),
                                      np.asarray(kloss(empty_groups, empty_groups)))
        everything = keras_loss(name, {}, "sum", "float32", None)
        empty = np.zeros((0, 4), np.float32)
        assert LOSSES[name](empty, empty, reduction="sum") == np.asarray(everything(empty, empty))
        batch = keras_loss(name, {}, "sum", "float32", (1,))
        assert np.asarray(batch(empty, empty)).shape == (0,)
        assert LOSSES[name](empty, empty, axis=1, reduction="sum") == 0


@pytest.mark.parametrize("t_shape, p_shape, axis", [((8,), (8, 1), None), ((8,), (8, 1), (1,)),
                                                    ((8, 1), (8,), (-1,)), ((8, 1), (8,), None)])
def test_keras_trailing_axis_of_one(t_shape, p_shape, axis, monkeypatch):
    """Keras's squeeze/expand of a trailing axis of size 1 happens before ``axis`` applies."""
    keep_float64(monkeypatch)
    rng = rng_for(t_shape, p_shape, axis)
    t = (rng.random(t_shape) < 0.5) * 1.0
    p = rng.uniform(0.02, 0.98, p_shape)
    for name in ("dice", "tversky"):
        kloss = keras_loss(name, {}, "sum", "float64", axis)
        value = np.asarray(kloss(jnp.asarray(t), jnp.asarray(p)))
        grad = np.asarray(jax.grad(lambda q: kloss(jnp.asarray(t), q))(jnp.asarray(p)))
        v, g = LOSSES[name].value_and_grad(t, p, axis=axis, reduction="sum")
        np.testing.assert_allclose(v, value, rtol=RTOL[np.float64], atol=ATOL[np.float64])
        assert g.shape == grad.shape == p_shape
        np.testing.assert_allclose(g, grad, rtol=RTOL[np.float64], atol=ATOL[np.float64])

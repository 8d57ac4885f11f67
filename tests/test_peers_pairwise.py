"""The batch-pairwise losses against the real libraries: Keras 3's circle (JAX backend)
and Optax's ntxent, values and jax.grad.  Skipped where any is missing (CI has none); run
it as tests/test_peers.py says:

    KERAS_BACKEND=jax /tmp/peers/bin/python -m pytest tests/test_peers_pairwise.py

The float64 Keras cases lift Keras's float64 -> float32 demotion (see tests/test_peers.py).
"""


import numpy as np
import pytest

from keras_peers import jax, jnp, keep_float64, keras, keras_value_and_grad, rng_for  # noqa: E402,E501
optax = pytest.importorskip("optax")

from keras.src.losses.losses import LossFunctionWrapper  # noqa: E402

from fastloss import circle, ntxent  # noqa: E402

RTOL = {np.float32: 2e-5, np.float64: 1e-7}
# Absolute tolerance, relative to the largest gradient element: an element is a sum of
# N terms of about that size, which float32 (the peer's and ours) rounds at about 1e-7.
ATOL = {np.float32: 1e-6, np.float64: 1e-10}
N, D = 12, 6
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]


def labels_for(rng, rows=N):
    y = rng.integers(0, 4, rows)
    y[-1] = 9  # a row without positives
    return y


def embeddings(kind, rng, rows=N):
    """'unit' rows as circle expects them; 'short' rows (norms 0.6 to 0.95) keep every
    similarity, the diagonal's included, off circle's kink at 1, where a last-bit
    difference in the dot product flips the gradient."""
    e = rng.standard_normal((rows, D))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e if kind == "unit" else e * rng.uniform(0.6, 0.95, (rows, 1))


def check(actual, expected, dtype, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, peer {expected.shape}"
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype] * scale,
                               err_msg=what)


CIRCLE_CASES = {  # name: (embeddings, options)
    "defaults": ("unit", {}),
    "options": ("short", {"gamma": 3.0, "margin": 0.2, "remove_diagonal": False}),
    "margin": ("unit", {"gamma": 30.0, "margin": 0.6}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["none", "scalar", "rows"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CIRCLE_CASES))
def test_keras_circle(case, reduction, weights, dtype, monkeypatch):
    if dtype == np.float64:
        keep_float64(monkeypatch)
    kind, options = CIRCLE_CASES[case]
    rng = rng_for("circle", case, reduction, weights, np.dtype(dtype).name)
    y = labels_for(rng)
    x = embeddings(kind, rng).astype(dtype)
    w = {"none": None, "scalar": 0.7, "rows": rng.uniform(0.1, 2.0, N)}[weights]
    kloss = keras.losses.Circle(reduction=reduction, dtype=np.dtype(dtype).name, **options)
    k_value, k_grad, go = keras_value_and_grad(kloss, y, x, w, rng, dtype)
    what = f"{case} {reduction} weights={weights} {np.dtype(dtype).name}"
    kw = dict(sample_weight=w, reduction=reduction, **options)
    value, grad = circle.value_and_grad(y, x, grad_output=go, **kw)
    check(value, k_value, dtype, what + " value")
    check(grad, k_grad, dtype, what + " grad")
    check(circle(y, x, **kw), k_value, dtype, what + " value alone")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("references", ["both", "labels"])
def test_keras_circle_with_references(references, reduction, monkeypatch):
    """ref_labels / ref_embeddings through Keras's own loss wrapper.  With reference
    embeddings the gradient is for y_pred only; with reference labels alone the
    references are y_pred itself, and the gradient flows through both sides."""
    keep_float64(monkeypatch)
    rng = rng_for("circle-references", references, reduction)
    y = labels_for(rng)
    x = embeddings("short", rng)
    refs = {"ref_labels": rng.integers(0, 4, 7 if references == "both" else N)}
    if references == "both":
        refs["ref_embeddings"] = embeddings("short", rng, rows=7)
    kloss = LossFunctionWrapper(keras.losses.circle, reduction=reduction, dtype="float64",
                                gamma=20.0, **refs)
    w = rng.uniform(0.1, 2.0, N)
    k_value, k_grad, go = keras_value_and_grad(kloss, y, x, w, rng, np.float64)
    kw = dict(sample_weight=w, reduction=reduction, gamma=20.0, **refs)
    value, grad = circle.value_and_grad(y, x, grad_output=go, **kw)
    check(value, k_value, np.float64, f"{references} {reduction} value")
    check(grad, k_grad, np.float64, f"{references} {reduction} grad")


def test_keras_circle_edge_cases(monkeypatch):
    keep_float64(monkeypatch)
    rng = rng_for("circle-edges")
    x = embeddings("unit", rng)
    for y in (np.arange(N), np.zeros(N, np.int64), np.array([3]), np.array([1, 1, 1, 2])):
        for reduction in REDUCTIONS:
            kloss = keras.losses.Circle(reduction=reduction, dtype="float64")
            k_value, k_grad, go = keras_value_and_grad(kloss, y, x[:len(y)], None, rng,
                                                       np.float64)
            value, grad = circle.value_and_grad(y, x[:len(y)], grad_output=go,
                                                reduction=reduction)
            check(value, k_value, np.float64, f"labels {y} {reduction} value")
            check(grad, k_grad, np.float64, f"labels {y} {reduction} grad")
    # float labels: Keras casts them to int32 (toward zero)
    y = rng.uniform(-0.9, 3.9, N)
    check(circle(y, x, reduction="sum_over_batch_size"),
          keras.losses.Circle(dtype="float64")(y, x), np.float64, "float labels")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("temperature", [0.07, 0.3, 1.0])
def test_optax_ntxent(temperature, dtype):
    rng = rng_for("ntxent", temperature, np.dtype(dtype).name)
    y = labels_for(rng)
    x = (rng.standard_normal((N, D)) * rng.uniform(0.2, 3.0, (N, 1))).astype(dtype)
    go = 0.7

    def peer(q):
        return optax.losses.ntxent(q, jnp.asarray(y), temperature)
    o_value = np.asarray(peer(jnp.asarray(x)))
    o_grad = np.asarray(jax.grad(lambda q: go * peer(q))(jnp.asarray(x)))
    value, grad = ntxent.value_and_grad(y, x, grad_output=go, temperature=temperature)
    check(value, o_value, dtype, "value")
    check(grad, o_grad, dtype, "grad")


def test_optax_ntxent_edge_cases():
    rng = rng_for("ntxent-edges")
    x = rng.standard_normal((N, D))
    x[3] = 0.0  # a zero row: Optax's epsilon keeps it finite
    x[5] *= 1e-9  # below the epsilon's clamp
    for y in (labels_for(rng), np.arange(N), np.array([2]), np.array([1, 1, 1, 2])):
        q = jnp.asarray(x[:len(y)])
        o_value = np.asarray(optax.losses.ntxent(q, jnp.asarray(y)))
        o_grad = np.asarray(jax.grad(lambda q: optax.losses.ntxent(q, jnp.asarray(y)))(q))
        value, grad = ntxent.value_and_grad(y, x[:len(y)])
        what = f"labels {y}"
        if np.isnan(o_value):
            assert np.isnan(value), what
        else:
            check(value, o_value, np.float64, what + " value")
        check(grad, o_grad, np.float64, what + " grad")
    # all positives: both give 0 but for rounding, and a zero gradient
    y = np.zeros(4, np.int64)
    assert abs(ntxent(y, x[:4])) < 1e-15
    assert abs(float(optax.losses.ntxent(jnp.asarray(x[:4]), jnp.asarray(y)))) < 1e-15

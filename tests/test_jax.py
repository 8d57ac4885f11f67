"""fastloss.jax: every loss under jax.jit(jax.value_and_grad(...)) against the NumPy API
(value and gradient), unreduced losses' cotangents, vmap, array options, errors."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy
flj = pytest.importorskip("fastloss.jax")

import fastloss as fl  # noqa: E402
from fastloss._bench import arguments  # noqa: E402

NAMES = sorted(fl.LOSSES)


def _arrays(name, seed=0, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    return arguments(name, rng.uniform(0.05, 0.95, shape), rng.uniform(0.05, 0.95, shape))


@pytest.mark.parametrize("name", NAMES)
def test_jit_value_and_grad_equal_the_numpy_api(name):
    loss = fl.LOSSES[name]
    args = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
            for a in _arrays(name)]
    reduction = [r for r in loss.spec.reductions if r not in ("none", None)][0]
    positions = [loss.inputs.index(p) for p in loss.predictions]

    def f(*preds):
        full = list(args)
        for i, x in zip(positions, preds):
            full[i] = x
        return getattr(flj, name)(*full, reduction=reduction)

    value, grads = jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(positions)))))(
        *(args[i] for i in positions))
    expected, expected_grads = loss.value_and_grad(*args, reduction=reduction)
    expected_grads = expected_grads if isinstance(expected_grads, tuple) else (expected_grads,)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_unreduced_cotangent_vmap_and_array_options():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 4, 8)
    w = np.linspace(0.5, 2.0, 4)
    cot = np.linspace(-1, 1, 8)

    def f(x):
        return (flj.cross_entropy(y, x, reduction="none", weight=w) * cot).sum()
    np.testing.assert_allclose(jax.grad(f)(x), fl.cross_entropy.grad(
        y, x, reduction="none", weight=w, grad_output=cot), rtol=1e-13)
    batched = jax.vmap(lambda p: flj.mse_loss(jnp.zeros(4), p))(x)
    np.testing.assert_allclose(batched, [fl.mse_loss(np.zeros(4), row) for row in x],
                               rtol=1e-14)
    sw = np.linspace(0.1, 1.0, 8)
    v, g = jax.value_and_grad(lambda p: flj.huber(x, p, sample_weight=sw, delta=0.5,
                                                  reduction="sum"))(x * 0.5)
    ev, eg = fl.huber.value_and_grad(x, x * 0.5, sample_weight=sw, delta=0.5, reduction="sum")
    np.testing.assert_allclose(v, ev, rtol=1e-14)
    np.testing.assert_allclose(g, eg, rtol=1e-14)
    with pytest.raises(ValueError, match="delta"):
        flj.huber(x, x, delta=-1.0)


def test_bench_framework_times_the_adapter_against_jax(tmp_path):
    """``bench --framework jax``: the jitted adapter agrees with JAX's own loss (a loss of
    each family here; every one in ``python -m fastloss bench --framework jax``)."""
    import json

    from fastloss.__main__ import main

    out = tmp_path / "frameworks.json"
    names = ["cross_entropy", "mean_squared_error", "triplet_margin_loss", "dice",
             "gaussian_nll_loss"]
    assert main(["bench", "--framework", "jax", "--shape", "6x10", "--repeat", "1",
                 "--loss", *names, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["loss"] for r in rows] == names
    assert all(r["agree"] and r["adapter_s"] > 0 for r in rows)

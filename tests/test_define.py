"""fl.define_loss: losses defined by their formula, against their float64 NumPy formula
(fastloss.math on arrays is NumPy), hand-written derivatives and finite differences, in
float32 and float64, serial, parallel and CUDA; the module cache in a second process;
clear errors for bad definitions."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss as fl
from fastloss import math as fm
from fastloss.define import cache_folder
from references import finite_difference_grad, keras_loss, torch_loss
from loss_cases import on_backend

pytest.importorskip("sympy")


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """A cache folder of this module's own (not the user's)."""
    before = os.environ.get("FASTLOSS_CACHE_DIR")
    os.environ["FASTLOSS_CACHE_DIR"] = str(tmp_path_factory.mktemp("fastloss-cache"))
    yield os.environ["FASTLOSS_CACHE_DIR"]
    if before is None:
        del os.environ["FASTLOSS_CACHE_DIR"]
    else:
        os.environ["FASTLOSS_CACHE_DIR"] = before


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name: (formula, options, convention, d/dp, d2/dp2 (float64 NumPy, written by hand),
# (lo, hi) of the predictions drawn)
CASES = {
    "asymmetric": (lambda t, p, tau: fm.where(p > t, tau * (p - t) ** 2, (p - t) ** 2),
                   {"tau": 2.0}, "keras",
                   lambda t, p, tau: np.where(p > t, 2 * tau * (p - t), 2 * (p - t)),
                   lambda t, p, tau: np.where(p > t, 2 * tau, 2.0), (-2, 2)),
    "pseudo_huber": (lambda t, p, delta: delta ** 2 * (fm.sqrt(1 + ((p - t) / delta) ** 2) - 1),
                     {"delta": 1.5}, "keras",
                     lambda t, p, delta: (p - t) / np.sqrt(1 + ((p - t) / delta) ** 2),
                     lambda t, p, delta: (1 + ((p - t) / delta) ** 2) ** -1.5, (-3, 3)),
    "logistic": (lambda t, p: fm.softplus(p) - t * p, {}, "torch",
                 lambda t, p: _sigmoid(p) - t,
                 lambda t, p: _sigmoid(p) * (1 - _sigmoid(p)), (-6, 6)),
    "pinball": (lambda t, p, q: fm.maximum(q * (t - p), (q - 1) * (t - p)), {"q": 0.3}, "keras",
                lambda t, p, q: np.where(p > t, 1 - q, -q),
                lambda t, p, q: np.zeros_like(p), (-2, 2)),
    "power": (lambda t, p, r: fm.abs(p - t) ** r, {"r": 1.5}, "keras",
              lambda t, p, r: r * np.abs(p - t) ** (r - 1) * np.sign(p - t),
              lambda t, p, r: r * (r - 1) * np.abs(p - t) ** (r - 2), (-2, 2)),
    "cauchy": (lambda t, p, c: c * c / 2 * fm.log1p(((p - t) / c) ** 2), {"c": 0.7}, "keras",
               lambda t, p, c: (p - t) / (1 + ((p - t) / c) ** 2),
               lambda t, p, c: (1 - ((p - t) / c) ** 2) / (1 + ((p - t) / c) ** 2) ** 2, (-3, 3)),
    "gated": (lambda t, p: (fm.clip(p, 0.1, 0.9) - t) ** 2 + fm.where((p > 1.5) & (t < 0.5),
                                                                       fm.tanh(p), 0.0),
              {}, "keras",
              lambda t, p: np.where((p > 0.1) & (p < 0.9), 2 * (np.clip(p, 0.1, 0.9) - t), 0.0)
              + np.where((p > 1.5) & (t < 0.5), 1 - np.tanh(p) ** 2, 0.0),
              lambda t, p: np.where((p > 0.1) & (p < 0.9), 2.0, 0.0)
              + np.where((p > 1.5) & (t < 0.5), -2 * np.tanh(p) * (1 - np.tanh(p) ** 2), 0.0),
              (-1, 2.5)),
}
_DEFINED = {}


def defined(name):
    if name not in _DEFINED:
        formula, options, convention, *_ = CASES[name]
        _DEFINED[name] = fl.define_loss(name, formula, options=options, convention=convention)
    return _DEFINED[name]


def draw(name, shape=(5, 7), seed=0, dtype=np.float64):
    lo, hi = CASES[name][5]
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, shape) if name in ("logistic", "gated") else rng.uniform(lo, hi, shape)
    p = rng.uniform(lo, hi, shape)
    return t.astype(dtype), p.astype(dtype)


def reference(name, t, p, reduction, sample_weight=None, **options):
    formula, defaults, convention, *_ = CASES[name]
    opts = {**defaults, **options}

    def elementwise(t, p):
        return np.asarray(formula(t, p, *opts.values()), np.float64), None
    if convention == "keras":
        return keras_loss(elementwise, t, p, sample_weight, reduction)
    return torch_loss(elementwise, t, p, reduction)


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_gradient_and_second_derivative(name):
    """float64, serial: values against the formula in NumPy, under the convention's
    reductions; gradients and second derivatives against the hand-written ones, and the
    gradient of the reduced value against its finite differences."""
    loss = defined(name)
    formula, options, convention, d1, d2, _ = CASES[name]
    t, p = draw(name)
    keras = convention == "keras"
    weight = np.linspace(0.5, 2.0, t.shape[0]) if keras else None
    reduction = "sum_over_batch_size" if keras else "mean"
    kw = {"sample_weight": weight} if keras else {}
    np.testing.assert_allclose(loss.value_and_grad(t, p, reduction="none")[0],
                               reference(name, t, p, "none"), rtol=1e-12, atol=1e-14)
    value, grad = loss.value_and_grad(t, p, reduction=reduction, **kw)
    np.testing.assert_allclose(value, reference(name, t, p, reduction, weight), rtol=1e-12)
    # the reduction's factor on each element: Keras's per-row mean and weights, or the mean
    scale = (weight[:, None] / t.size) if keras else 1 / t.size
    opts = options.values()
    np.testing.assert_allclose(grad, scale * d1(t, p, *opts), rtol=1e-10, atol=1e-14)
    fd = finite_difference_grad(lambda q: reference(name, t, q, reduction, weight), p, h=1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    g, h = loss.grad_hess(t, p, reduction="none")
    per_row = 1 / t.shape[-1] if keras else 1.0
    np.testing.assert_allclose(g, per_row * d1(t, p, *opts), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h, per_row * d2(t, p, *opts), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["pseudo_huber", "logistic", "gated"])
def test_float32_and_options(name):
    """float32 kernels against the float64 result, with a non-default option."""
    loss = defined(name)
    options = {k: v * 1.3 for k, v in CASES[name][1].items()}
    t, p = draw(name, (64, 33), seed=1)
    with on_backend("serial"):
        v64, g64 = loss.value_and_grad(t, p, reduction="sum", **options)
        v32, g32 = loss.value_and_grad(t.astype(np.float32), p.astype(np.float32),
                                       reduction="sum", **options)
        h32 = loss.grad_hess(t.astype(np.float32), p.astype(np.float32), **options)[1]
        h64 = loss.grad_hess(t, p, **options)[1]
    assert v32.dtype == np.float32 and g32.dtype == np.float32 and h32.dtype == np.float32
    np.testing.assert_allclose(v64, reference(name, t, p, "sum", **options), rtol=1e-12)
    np.testing.assert_allclose(v32, v64, rtol=2e-6)
    np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=1e-6 * np.abs(g64).max())
    np.testing.assert_allclose(h32, h64, rtol=2e-5, atol=1e-6 * np.abs(h64).max())


def test_serial_and_parallel_agree_bitwise():
    loss = defined("cauchy")
    t, p = draw("cauchy", (300, 50), seed=2, dtype=np.float32)
    with on_backend("serial"):
        serial = loss.value_and_grad(t, p, reduction="sum_over_batch_size")
    with on_backend("parallel"):
        parallel = loss.value_and_grad(t, p, reduction="sum_over_batch_size")
    assert serial[0] == parallel[0]
    np.testing.assert_array_equal(serial[1], parallel[1])


@pytest.mark.parametrize("name", ["asymmetric", "cauchy"])
def test_grad_out_and_grad_output(name):
    """grad (the value-less kernel) is value_and_grad's gradient (to the last bit: it may
    contract a multiply-add differently), scaled by a cotangent, into out."""
    loss = defined(name)
    t, p = draw(name)
    np.testing.assert_allclose(loss.grad(t, p, reduction="sum"),
                               loss.value_and_grad(t, p, reduction="sum")[1], rtol=1e-15)
    cotangent = np.linspace(-1, 2, t.shape[0])
    expected = loss.grad(t, p, reduction="none") * cotangent[:, None]
    out = np.empty_like(p)
    got = loss.grad(t, p, reduction="none", grad_output=cotangent, out=out)
    assert np.shares_memory(got, out)
    np.testing.assert_allclose(out, expected, rtol=1e-15)


@pytest.mark.cudasim
@pytest.mark.parametrize("name", ["asymmetric", "logistic", "power", "gated"])
def test_cuda_kernels_match_the_cpu(name):
    """Every mode of a defined loss on the CUDA kernels (the simulator without a GPU)."""
    loss = defined(name)
    t, p = draw(name, (2, 6), seed=3)
    p = np.where(np.abs(p - t) < 1e-3, p + 0.1, p)  # (power: away from its cusp)

    def run():
        return [loss(t, p), *loss.value_and_grad(t, p), loss.grad(t, p),
                *loss.grad_hess(t, p, reduction="none")]
    cpu = run()
    with fl.backend("cuda"):
        cuda = run()
    for a, b in zip(cpu, cuda):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)


def test_given_derivatives_are_used_and_checked():
    def formula(t, p, k):
        return k * (p - t) ** 4

    def grad(t, p, k):
        return 4 * k * (p - t) ** 3

    def hess(t, p, k):
        return 12 * k * (p - t) ** 2

    loss = fl.define_loss("quartic_given", formula, options={"k": 0.5}, grad=grad, hess=hess)
    t, p = np.zeros(4), np.array([-1.0, 0.5, 1.0, 2.0])
    g, h = loss.grad_hess(t, p, reduction="none")
    np.testing.assert_allclose(g, 4 * 0.5 * p ** 3 / 4)
    np.testing.assert_allclose(h, 12 * 0.5 * p ** 2 / 4)
    with pytest.raises(ValueError, match="the given grad .* does not match finite differences"):
        fl.define_loss("quartic_wrong", formula, options={"k": 0.5},
                       grad=lambda t, p, k: 3 * k * (p - t) ** 3)
    with pytest.raises(ValueError, match="the given hess"):
        fl.define_loss("quartic_wrong_hess", formula, options={"k": 0.5}, grad=grad,
                       hess=lambda t, p, k: 12 * k * (p - t))


@pytest.mark.parametrize("formula, error, match", [
    (lambda t, p: p if p > t else t, TypeError, "cannot branch on an array value"),
    (lambda t, p: max(p, t), TypeError, "cannot branch"),
    (lambda t, p: np.exp(p - t), TypeError, "numpy.exp is not a formula function"),
    (lambda t, p: __import__("math").exp(p), TypeError, "not Python floats"),
    (lambda t, p: undefined_function(p), ValueError, "could not be traced"),  # noqa: F821
    (lambda t, p: t * 2.0, ValueError, "does not depend on p"),
    (lambda t, p: p > t, TypeError, "returned a comparison"),
    (lambda t, p: "p", TypeError, "returned str"),
    (lambda t: t, TypeError, r"called as formula\(t, p\)"),
    (lambda t, p: p // 2, TypeError, "not formula operations"),
    (lambda t, p: fm.log(-1 - p * p), ValueError, "not finite and smooth at any sample point"),
])
def test_bad_formulas_fail_at_definition(formula, error, match):
    with pytest.raises(error, match=match):
        fl.define_loss("bad", formula)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(options={"t": 1.0}), ValueError, "option name 't' clashes"),
    (dict(options={"reduction": 1.0}), ValueError, "'reduction' clashes"),
    (dict(options={"exp": 1.0}), ValueError, "'exp' clashes"),
    (dict(options={"2x": 1.0}), ValueError, "not a Python identifier"),
    (dict(options={"k": "one"}), ValueError, "finite number"),
    (dict(options={"k": float("nan")}), ValueError, "finite number"),
    (dict(options={f"k{i}": 1.0 for i in range(5)}), ValueError, "at most 4 options"),
    (dict(convention="jax"), ValueError, "convention must be"),
])
def test_bad_definitions(kwargs, error, match):
    with pytest.raises(error, match=match):
        fl.define_loss("bad", lambda t, p, *o: (p - t) ** 2, **kwargs)


def test_bad_names():
    with pytest.raises(ValueError, match="built-in loss"):
        fl.define_loss("huber", lambda t, p: (p - t) ** 2)
    with pytest.raises(ValueError, match="identifier"):
        fl.define_loss("my loss", lambda t, p: (p - t) ** 2)
    with pytest.raises(TypeError, match="must be a function"):
        fl.define_loss("not_callable", 3.0)


def test_options_are_checked_and_named_in_the_signature():
    loss = defined("asymmetric")
    assert "tau=2.0" in str(loss.__signature__)
    assert fl.get("asymmetric") is loss
    with pytest.raises(ValueError, match="tau must be finite"):
        loss(np.zeros(3), np.ones(3), tau=float("inf"))
    with pytest.raises(TypeError, match="unexpected option 'delta'"):
        loss(np.zeros(3), np.ones(3), delta=1.0)


def test_missing_sympy_names_the_extra(monkeypatch):
    from fastloss import define
    define._sympy_functions.cache_clear()
    monkeypatch.setitem(sys.modules, "sympy", None)
    with pytest.raises(ImportError, match=r"fastloss\[define\]"):
        fl.define_loss("needs_sympy", lambda t, p: (p - t) ** 6)
    define._sympy_functions.cache_clear()


def test_a_second_process_uses_the_cache():
    """The same definition in a new process imports the module written before (no
    SymPy), and its kernels load from Numba's cache."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import fastloss as fl
        from fastloss import math as fm
        loss = fl.define_loss("cached", lambda t, p, k: k * fm.log1p(fm.exp(p - t)),
                              options={"k": 2.0})
        loss.value_and_grad(np.zeros(8), np.linspace(-1, 1, 8))
        from fastloss.launch import generated_module
        kernel = getattr(generated_module(loss.family.element),
                         loss.family.element + "_value_and_grad_serial")
        print("sympy" in sys.modules, sum(kernel.stats.cache_hits.values()),
              sum(kernel.stats.cache_misses.values()))
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, check=True).stdout.split() for _ in range(2)]
    assert runs[0][:2] == ["True", "0"], runs  # first: derived with SymPy, compiled
    assert runs[1][:2] == ["False", "1"], runs  # second: no SymPy, loaded from the cache
    modules = sorted(p.name for p in cache_folder().glob("cached_*.py"))
    assert len(modules) == 2, modules  # (the CPU and the CUDA module, written once)


@pytest.mark.parametrize("name", ["asymmetric", "pseudo_huber", "logistic", "cauchy"])
def test_against_jax_autodiff(name):
    """Gradient and second derivative against JAX's autodiff of the same formula."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    fns = {"asymmetric": lambda t, p: jnp.where(p > t, 2.0 * (p - t) ** 2, (p - t) ** 2),
           "pseudo_huber": lambda t, p: 1.5 ** 2 * (jnp.sqrt(1 + ((p - t) / 1.5) ** 2) - 1),
           "logistic": lambda t, p: jax.nn.softplus(p) - t * p,
           "cauchy": lambda t, p: 0.7 ** 2 / 2 * jnp.log1p(((p - t) / 0.7) ** 2)}
    t, p = draw(name, (64,), seed=4)
    d1 = jax.vmap(jax.grad(fns[name], argnums=1))(t, p)
    d2 = jax.vmap(jax.grad(jax.grad(fns[name], argnums=1), argnums=1))(t, p)
    g, h = defined(name).grad_hess(t[:, None], p[:, None], reduction="none")
    np.testing.assert_allclose(g[:, 0], d1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h[:, 0], d2, rtol=1e-12, atol=1e-15)

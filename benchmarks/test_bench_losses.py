"""Every loss's value and value_and_grad beside the NumPy reference (and PyTorch and
JAX where installed), at three sizes, plus a copy per size: the bandwidth a memory-bound kernel
can reach.  Each loss+mode+size is one benchmark group, so the implementations sit
side by side; ``benchmarks/report.py`` turns the groups into GB/s and ratios."""

import numpy as np
import pytest

import fastloss
from fastloss import _bench
from fastloss._bench import sci

SIZES = [10**3, 10**5, 10**7]
TORCH = _bench.torch_functions()
JAX = _bench.jax_functions()
IMPLS = ["fastloss", "numpy"] + (["torch"] if TORCH else []) + (["jax"] if JAX else [])


@pytest.mark.parametrize("n", SIZES, ids=sci)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, mode", [(name, mode) for name in fastloss.LOSSES
                                        for mode in _bench.modes_of(name)])
def test_loss(benchmark, sample, name, mode, impl, n):
    t, p, out = sample(n)
    fn = _bench.calls(name, mode, t, p, out, TORCH, JAX).get(impl)
    if fn is None:
        pytest.skip(f"no {impl} version of {name}")
    benchmark.group = f"{name} {mode} n={sci(n)}"
    args = _bench.arguments(name, t, p)
    benchmark.extra_info.update(
        loss=name, mode=mode, impl=impl, n=n,
        bytes=_bench.moved_bytes(mode, args, _bench.gradient_positions(name, len(args))))
    benchmark(fn)


@pytest.mark.parametrize("n", SIZES, ids=sci)
def test_copy(benchmark, sample, n):
    p = sample(n)[1]
    copy, nbytes = _bench.copy_call(p)
    benchmark.group = f"copy n={sci(n)}"
    benchmark.extra_info.update(impl="copy", n=n, bytes=nbytes)
    benchmark(copy)


@pytest.mark.parametrize("name", sorted(_bench.NUMPY))
def test_numpy_reference_matches(sample, name):
    """The NumPy references compute what fastloss computes (else the ratios lie)."""
    t, p, _ = sample(10**4, "float64")
    loss = fastloss.LOSSES[name]
    args = _bench.arguments(name, t, p)
    value, vg = _bench.NUMPY[name]
    np.testing.assert_allclose(value(*args), loss(*args, **_bench.reduced(loss)), rtol=1e-10)
    ref_value, ref_grad = vg(*args)
    got_value, got_grad = loss.value_and_grad(*args, **_bench.reduced(loss))
    np.testing.assert_allclose(ref_value, got_value, rtol=1e-10)
    ref_grad = ref_grad if isinstance(ref_grad, tuple) else (ref_grad,)
    got_grad = got_grad if isinstance(got_grad, tuple) else (got_grad,)
    assert len(ref_grad) == len(got_grad)
    for ref, got in zip(ref_grad, got_grad):
        np.testing.assert_allclose(ref, got, rtol=1e-10, atol=1e-15)


PEER_CASES = [(name, "torch") for name in TORCH] + [(name, "jax") for name in JAX]


@pytest.mark.parametrize("name, impl", PEER_CASES, ids=[f"{i}-{n}" for n, i in PEER_CASES])
def test_peer_matches(sample, name, impl):
    """PyTorch's and JAX's versions (``--peers``) compute fastloss's value and gradients
    with the bench's reduction on its float32 data (else the ratios lie): rtol 1e-4, and an
    atol of 1e-6 of the loss's largest gradient element (float32 cancellation where a
    gradient nearly vanishes, e.g. y_pred ~ y_true).  Runs where PyTorch or JAX and Optax
    are installed."""
    t, p, _ = sample(10**4)
    loss = fastloss.LOSSES[name]
    args = _bench.arguments(name, t, p)
    positions = _bench.gradient_positions(name, len(args))
    value = loss(*args, **_bench.reduced(loss))
    ref_value, ref_grad = loss.value_and_grad(*args, **_bench.reduced(loss))
    ref_grad = ref_grad if isinstance(ref_grad, tuple) else (ref_grad,)
    if impl == "torch":
        got = _bench._torch_call(TORCH[name], "value", args, positions)().detach().numpy()
        got_value, got_grad = _bench._torch_call(TORCH[name], "value_and_grad", args,
                                                 positions)()
        got_value, got_grad = got_value.detach().numpy(), [g.numpy() for g in got_grad]
    else:
        got = np.asarray(_bench._jax_call(JAX[name][0], args)())
        got_value, got_grad = _bench._jax_call(JAX[name][1], args)()
        got_grad = got_grad if isinstance(got_grad, tuple) else (got_grad,)
    np.testing.assert_allclose(got, value, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(got_value), ref_value, rtol=1e-4, atol=1e-7)
    assert len(got_grad) == len(ref_grad)
    scale = max(float(np.max(np.abs(g))) for g in ref_grad)
    # CTC: the peers run the recursion over the 500 frames of the sample in float32 (fastloss
    # in float64): PyTorch's float32 gradient is 1.6e-5 off its own float64 one here, where
    # fastloss's float32 one is 2e-9 off it; the gradient's elements are ~0.02
    floor = 1e-3 if loss.spec.family == "sequences" else 1e-6
    for ref, got in zip(ref_grad, got_grad):
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=floor * scale)


CROSS_ENTROPY_SHAPE = (4096, 32768)  # a large vocabulary: 512 MB of float32 logits


@pytest.mark.parametrize("impl", IMPLS + ["copy"])
@pytest.mark.parametrize("mode", _bench.MODES)
def test_cross_entropy_integer_labels(benchmark, sample, mode, impl):
    """Softmax cross-entropy of logits against integer labels at (4096, 32768) float32:
    fastloss's cross_entropy (the same kernel as sparse_categorical_crossentropy with
    from_logits=True) beside NumPy, PyTorch and JAX/Optax, and the copy of the logits."""
    rows, classes = CROSS_ENTROPY_SHAPE
    t, p, out = sample(rows * classes, row=classes)
    benchmark.group = f"cross_entropy {mode} {rows}x{classes}"
    if impl == "copy":
        fn, nbytes = _bench.copy_call(p)
    else:
        fn = _bench.calls("cross_entropy", mode, t, p, out, TORCH, JAX).get(impl)
        nbytes = _bench.moved_bytes(mode, _bench.arguments("cross_entropy", t, p))
    benchmark.extra_info.update(loss="cross_entropy", mode=mode, impl=impl, bytes=nbytes,
                                n=rows * classes, shape=list(CROSS_ENTROPY_SHAPE))
    benchmark(fn)


@pytest.mark.parametrize("impl", ["fastloss", "numpy"])
@pytest.mark.parametrize("name", list(fastloss.LOSSES))
def test_small_batch_call_overhead(benchmark, sample, name, impl):
    """value_and_grad on a (32, 10) batch: what a call costs beyond its arithmetic
    (argument checks, dispatch), against NumPy's own expression of the loss."""
    t, p, out = sample(320, row=10)
    fn = _bench.calls(name, "value_and_grad", t, p, out, {}, {}).get(impl)
    if fn is None:
        pytest.skip(f"no {impl} version of {name}")
    benchmark.group = f"{name} value_and_grad (32, 10)"
    benchmark.extra_info.update(loss=name, mode="value_and_grad", impl=impl, n=320,
                                shape=[32, 10])
    benchmark(fn)


@pytest.mark.parametrize("out", ["buffer", "y_pred"])
def test_in_place_gradient(benchmark, sample, out):
    """mean_squared_error.value_and_grad at 1e7 float32 with ``out=`` a separate buffer
    and with ``out=y_pred``, which goes through a temporary gradient and a copy (README,
    Determinism): the price of writing in place."""
    t, p, buffer = sample(10**7)
    q = p.copy()  # (overwritten by its gradient on every call: the sample stays intact)
    target = buffer if out == "buffer" else q
    benchmark.group = "mean_squared_error value_and_grad out= n=1e7"
    benchmark.extra_info.update(loss="mean_squared_error", mode="value_and_grad", out=out,
                                n=10**7)
    benchmark(lambda: fastloss.mean_squared_error.value_and_grad(t, q, out=target))

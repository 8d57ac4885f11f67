"""Every CUDA kernel, once: each loss's value, gradient, fused call (and grad_hess) on the CUDA path
(Numba's simulator on machines without a GPU) on tiny inputs, equal to the CPU kernels'
results to rounding; and a check that these calls reach every CUDA kernel there is.

The full CUDA matrix (every test of every family on the CUDA backend) is opt-in
(``FASTLOSS_TEST_CUDA_MATRIX=1``, or a real GPU with ``FASTLOSS_TEST_GPU=1``): under the
simulator a call costs 0.1-0.5 s, and the kernels' math is shared with the CPU's."""

import numpy as np
import pytest

import fastloss as fl
from fastloss._bench import arguments
from fastloss.launch import Launcher

pytestmark = pytest.mark.cudasim

SHORT, LONG = (2, 6), (2, 64)  # LONG: rows split into chunks (pointwise_cuda.MIN_SPLIT_ROW)


def smoke_cases():
    """(id, name, options, reduction, shape): every loss with its defaults, every option
    that picks another element (from_logits), an unreduced call of each loss, and long
    rows (the kernels that add up a row's chunks)."""
    cases = []
    for name, loss in fl.LOSSES.items():
        cases.append((name, name, {}, "default", SHORT))
        if "from_logits" in loss.spec.defaults:
            cases.append((f"{name}-from_logits", name, {"from_logits": True}, "default", SHORT))
        if "none" in loss.spec.reductions:
            cases.append((f"{name}-none", name, {}, "none", SHORT))
    cases.append(("mean_squared_error-long-rows", "mean_squared_error", {}, "none", LONG))
    cases.append(("dice-long-groups", "dice", {"axis": 1}, "none", LONG))
    return cases


CASES = smoke_cases()


def run_all(name, options, reduction, shape):
    loss = fl.LOSSES[name]
    rng = np.random.default_rng(0)
    args = arguments(name, rng.uniform(0.05, 0.95, shape), rng.uniform(0.05, 0.95, shape))
    kw = dict(options, reduction=reduction)
    results = [loss(*args, **kw), loss.grad(*args, **kw), *loss.value_and_grad(*args, **kw)]
    if getattr(loss.family, "second_derivatives", False) and loss.family.has_grad_hess(
            loss.family.element_for(loss.check_options(options))):
        results += loss.grad_hess(*args, **kw)
    return results


def flat(results):
    out = []
    for r in results:
        out += [np.asarray(x) for x in (r if isinstance(r, tuple) else (r,))]
    return out


@pytest.mark.parametrize("name, options, reduction, shape", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_cuda_kernels_match_the_cpu(name, options, reduction, shape):
    with fl.backend("cpu"):
        expected = flat(run_all(name, options, reduction, shape))
    with fl.backend("cuda"):
        got = flat(run_all(name, options, reduction, shape))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_the_smoke_cases_reach_every_cuda_kernel(monkeypatch):
    """Every kernel of generated_cuda (element x mode), overlap_cuda, pairwise_cuda and
    ctc_cuda is launched by some case above (else a kernel could go untested in CI)."""
    from fastloss.kernels import (ctc_cuda, generated_cuda, overlap_cuda, pairwise_cuda,
                                  pointwise_cuda)

    launched = set()

    def recording(self, kernel, blocks, *args, threads=None):
        # (only recorded: the test above runs them; the results here are never read)
        launched.add(kernel if isinstance(kernel, str) else _name(kernel))
    monkeypatch.setattr(Launcher, "launch", recording)
    with fl.backend("cuda"), np.errstate(all="ignore"):
        for _, name, options, reduction, shape in CASES:
            run_all(name, options, reduction, shape)
    every = set().union(*map(_kernels, (generated_cuda, overlap_cuda, pairwise_cuda,
                                        pointwise_cuda, ctc_cuda)))
    assert len(every) > 120  # (the look-up below finds the kernels at all)
    missing = every - launched
    assert not missing, sorted(missing)


def _name(kernel):
    return getattr(kernel, "__name__", None) or kernel.py_func.__name__


def _kernels(module):
    """The names of the kernels (not device functions) a CUDA module defines: Numba's
    dispatchers on a GPU, the simulator's fake kernels without one."""
    found = set()
    for name, k in vars(module).items():
        fn = getattr(k, "fn", None) or getattr(k, "py_func", None)
        if fn is None or getattr(fn, "__module__", None) != module.__name__:
            continue
        device = getattr(k, "_device", None)
        if device is None:
            device = getattr(k, "targetoptions", {}).get("device", False)
        if not device:
            found.add(name)
    return found

"""The NumPy objectives of benchmarks/grad_hess.py (written from the formulas, the focal
one differentiated by hand) agree with fastloss's grad_hess: so the benchmark compares
like with like, and the focal loss's second derivative has a reference of its own."""

import numpy as np
import pytest

import grad_hess


@pytest.mark.parametrize("label", list(grad_hess.CASES))
def test_numpy_objectives_agree_with_grad_hess(label):
    loss, options, reference = grad_hess.CASES[label]
    rng = np.random.default_rng(1)
    t = (rng.random(5000) < 0.3).astype(np.float64)
    p = 3 * rng.standard_normal(5000)
    g, h = loss.grad_hess(t, p, reduction="none", **options)
    g_ref, h_ref = reference(t, p)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(h, h_ref, rtol=1e-9, atol=1e-13)


def test_the_benchmark_runs(capsys):
    grad_hess.main(["--n", "1000", "--repeat", "1"])
    out = capsys.readouterr().out
    assert all(label in out for label in grad_hess.CASES)

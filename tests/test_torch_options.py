"""PyTorch's kl_div (log_target, "batchmean") and binary_cross_entropy_with_logits's
pos_weight, against float64 references from the formulas and finite differences."""

import numpy as np
import pytest

import fastloss as fl
from references import bce_pos_weight_reference, finite_difference_grad, kl_div_reference

RTOL = {np.float32: 2e-5, np.float64: 1e-10}


def check_case(loss, reference, t, x, dtype, **kw):
    go = np.random.default_rng(1).uniform(-1, 1, x.shape) if kw.get("reduction") == "none" else 1.3
    value, grad = loss.value_and_grad(t, x.astype(dtype), grad_output=go, **kw)
    np.testing.assert_allclose(value, reference(t, x, **kw), rtol=RTOL[dtype], atol=1e-12)
    fd = finite_difference_grad(lambda q: np.sum(go * reference(t, q, **kw)), x)
    np.testing.assert_allclose(grad, fd, rtol=RTOL[dtype] * 10, atol=1e-7)
    assert grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(log_target, reduction, dtype, backend):
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(5), 4)
    t[0, 1] = 0.0  # 0 log 0 = 0
    x = np.log(rng.dirichlet(np.ones(5), 4))
    if log_target:
        t = np.log(t + 0.01)
    check_case(fl.kl_div, kl_div_reference, t, x, dtype, reduction=reduction,
               log_target=log_target)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_pos_weight(weighted, reduction, dtype, backend):
    rng = np.random.default_rng(2)
    y = rng.choice([0.0, 1.0, 0.3], (4, 5))
    x = rng.normal(0, 3, (4, 5))
    pos_weight = np.array([0.0, 0.5, 1.0, 2.0, 4.0])  # 0 zeroes the positive term
    kw = dict(pos_weight=pos_weight, reduction=reduction)
    if weighted:
        kw["weight"] = rng.uniform(0.1, 2, (4, 1))

    def reference(t, q, **o):
        return bce_pos_weight_reference(t, q, o["pos_weight"], o.get("weight"), o["reduction"])
    check_case(fl.binary_cross_entropy_with_logits, reference, y, x, dtype, **kw)


def test_option_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="pos_weight of shape \\(4,\\) does not broadcast"):
        fl.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4))
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        fl.kl_div(x, x, reduction="batch")
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        fl.mse_loss(x, x, reduction="batchmean")  # only kl_div has it

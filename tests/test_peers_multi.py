"""The PyTorch-named losses of several arrays against torch.nn.functional itself: values
and the gradient of every input, every reduction, float64 to 1e-7 (and float32 to
rounding).  Not part of the suite's requirements: runs where PyTorch is installed."""

import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional
REDUCTIONS = ["mean", "sum", "none"]
TOL = {np.float64: dict(rtol=1e-7, atol=1e-12), np.float32: dict(rtol=2e-5, atol=1e-6)}


def inputs(name, rng, n=16, d=9):
    def normal(*shape):
        return rng.normal(size=shape or (n, d))
    signs = rng.choice([-1.0, 1.0], n)
    table = {
        "triplet_margin_loss": (normal(), normal(), normal()),
        "triplet_margin_with_distance_loss": (normal(), normal(), normal()),
        "cosine_embedding_loss": (signs, normal(), normal()),
        "margin_ranking_loss": (rng.choice([-1.0, 1.0], (n, d)), normal(), normal()),
        "hinge_embedding_loss": (rng.choice([-1.0, 1.0], (n, d)), normal()),
        "poisson_nll_loss": (rng.uniform(0, 4, (n, d)), rng.uniform(0.1, 2, (n, d))),
        "gaussian_nll_loss": (normal(), normal(), rng.uniform(0.1, 2, (n, d))),
    }
    return table[name]


def torch_distance(kw):
    """fastloss's distance_function and eps as PyTorch's distance_function callable."""
    kw = dict(kw)
    name, eps = kw.pop("distance_function", "euclidean"), kw.pop("eps", None)
    if name == "cosine":
        kw["distance_function"] = lambda x, y: 1 - F.cosine_similarity(
            x, y, dim=-1, eps=1e-8 if eps is None else eps)
    elif eps is not None:
        kw["distance_function"] = lambda x, y: F.pairwise_distance(x, y, eps=eps)
    return kw


def torch_call(name, args, kw):
    """torch's argument order: the predictions first, the target last."""
    if name == "triplet_margin_loss":
        return F.triplet_margin_loss(*args, **kw)
    if name == "triplet_margin_with_distance_loss":
        return F.triplet_margin_with_distance_loss(*args, **torch_distance(kw))
    if name == "gaussian_nll_loss":
        y, mean, var = args
        return F.gaussian_nll_loss(mean, y, var, **kw)
    y, *preds = args
    return getattr(F, name)(*preds, y, **kw)


CASES = [
    ("triplet_margin_loss", {}), ("triplet_margin_loss", {"swap": True, "margin": 2.0}),
    ("triplet_margin_loss", {"p": 1.0}), ("triplet_margin_loss", {"p": 3.0, "eps": 1e-3}),
    ("triplet_margin_with_distance_loss", {}),
    ("triplet_margin_with_distance_loss", {"swap": True, "margin": 2.0, "eps": 1e-3}),
    ("triplet_margin_with_distance_loss", {"distance_function": "cosine"}),
    ("triplet_margin_with_distance_loss", {"distance_function": "cosine", "swap": True,
                                           "margin": 0.5, "eps": 0.1}),
    ("cosine_embedding_loss", {}), ("cosine_embedding_loss", {"margin": 0.2}),
    ("margin_ranking_loss", {}), ("margin_ranking_loss", {"margin": 0.7}),
    ("hinge_embedding_loss", {}), ("hinge_embedding_loss", {"margin": 0.4}),
    ("poisson_nll_loss", {}), ("poisson_nll_loss", {"log_input": False, "full": True}),
    ("poisson_nll_loss", {"full": True}),
    ("gaussian_nll_loss", {}), ("gaussian_nll_loss", {"full": True, "eps": 0.5}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_matches_torch(name, kw, reduction, dtype):
    args = [x.astype(dtype) for x in inputs(name, np.random.default_rng(0))]
    loss = fl.LOSSES[name]
    triplet = name.startswith("triplet_margin")
    positions = range(len(args)) if triplet else range(1, len(args))
    cotangent = np.random.default_rng(1).uniform(0.5, 1.5, (16, 9) if not triplet and name != (
        "cosine_embedding_loss") else (16,)).astype(dtype)
    go = cotangent if reduction == "none" else None
    value, grads = loss.value_and_grad(*args, reduction=reduction, grad_output=go, **kw)
    grads = grads if isinstance(grads, tuple) else (grads,)
    tensors = [torch.tensor(x, requires_grad=k in positions) for k, x in enumerate(args)]
    out = torch_call(name, tensors, dict(kw, reduction=reduction))
    out.backward(torch.tensor(cotangent) if reduction == "none" else None)
    np.testing.assert_allclose(value, out.detach().numpy(), **TOL[dtype])
    for k, g in zip(positions, grads):
        np.testing.assert_allclose(g, tensors[k].grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("var_shape", [(16, 9), (16, 1), (16,), (1, 9)])
def test_gaussian_nll_variance_shapes_and_clamp(var_shape):
    """Homoscedastic variances (their gradient summed over the broadcast axis), and the
    eps clamp, which PyTorch does not differentiate (the gradient passes as if unclamped)."""
    rng = np.random.default_rng(2)
    y, mean = rng.normal(size=(16, 9)), rng.normal(size=(16, 9))
    var = rng.uniform(0.0, 0.2, var_shape)
    for kw in ({}, {"eps": 0.1}):
        value, (g_mean, g_var) = fl.gaussian_nll_loss.value_and_grad(y, mean, var, **kw)
        t_mean = torch.tensor(mean, requires_grad=True)
        t_var = torch.tensor(var, requires_grad=True)
        out = F.gaussian_nll_loss(t_mean, torch.tensor(y), t_var, **kw)
        out.backward()
        np.testing.assert_allclose(value, out.item(), rtol=1e-7)
        np.testing.assert_allclose(g_mean, t_mean.grad.numpy(), rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(g_var, t_var.grad.numpy(), rtol=1e-7, atol=1e-12)


def test_triplet_margin_swap_tie_and_zero_distance():
    """At a tie of the swapped distances PyTorch's minimum splits the gradient; with
    identical vectors the norm's gradient is 0 (eps = 0) as PyTorch masks it."""
    a = np.array([[0.0, 1.0], [1.0, 2.0]])
    p = np.array([[1.0, 1.0], [1.0, 2.0]])
    n = np.array([[0.5, 1.0], [1.0, 2.0]])  # d(a, n) == d(p, n) in the first row
    for kw in ({"swap": True, "eps": 0.0, "margin": 2.0}, {"eps": 0.0, "margin": 1.0}):
        _, grads = fl.triplet_margin_loss.value_and_grad(a, p, n, **kw)
        ts = [torch.tensor(x, requires_grad=True) for x in (a, p, n)]
        F.triplet_margin_loss(*ts, **kw).backward()
        for g, t in zip(grads, ts):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("swap", [False, True])
def test_triplet_cosine_distance_at_norms_below_eps(swap):
    """cosine_similarity clamps each norm below at eps, and its backward differentiates
    the clamped norm as the norm itself (x / |x|; 0 for a zero vector): tiny, zero and
    ordinary rows, against PyTorch's values and gradients."""
    rng = np.random.default_rng(3)
    a, p, n = (rng.normal(size=(6, 4)) for _ in range(3))
    a[0] *= 1e-9       # a norm below eps
    p[1] = 0.0         # a zero vector
    n[2] *= 3e-9
    a[3], p[3] = 2e-9 * p[3], 5e-9 * a[3]  # both below eps
    n[4] = 0.0
    for eps in (None, 1e-3):
        kw = {"distance_function": "cosine", "swap": swap, "eps": eps}
        value, grads = fl.triplet_margin_with_distance_loss.value_and_grad(
            a, p, n, reduction="none", **kw)
        ts = [torch.tensor(x, requires_grad=True) for x in (a, p, n)]
        out = F.triplet_margin_with_distance_loss(*ts, reduction="none", **torch_distance(kw))
        out.backward(torch.ones_like(out))
        np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12, atol=1e-15)
        for g, t in zip(grads, ts):
            expected = t.grad.numpy()
            np.testing.assert_allclose(g, expected, rtol=1e-10,
                                       atol=1e-15 * np.abs(expected).max())

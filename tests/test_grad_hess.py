"""grad_hess: the gradient and the Hessian's diagonal of every pointwise loss and of the
softmax cross-entropies.

The gradient must be ``grad``'s (to the last bit or two); the second derivatives are checked against
central finite differences of ``grad`` itself in float64 (the gradient is checked
against independent references elsewhere), with every reduction, sample weight and
option the loss takes, on the serial and parallel kernels (tests/test_cuda_smoke.py
runs every grad_hess CUDA kernel against the CPU's)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl
import loss_cases

POINTWISE = sorted(n for n, loss in fl.LOSSES.items() if loss.spec.family == "pointwise")
# Zero second derivative almost everywhere, replaced by XGBoost's choice (docs say so).
BOOSTING_CURVATURE = {"mean_absolute_error", "l1_loss", "hinge"}


def finite_difference(call, kwargs, arrays, step):
    """Central difference of loss.grad in y_pred (float64), with its step."""
    loss = fl.LOSSES[call.name]
    t, p = arrays
    h = step * np.maximum(1.0, np.abs(p))
    up = loss.grad(t, p + h, **kwargs)
    down = loss.grad(t, p - h, **kwargs)
    return (up - down) / (2 * h)


def float64_kwargs(call):
    kw = call.kwargs()
    return {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                else v) for k, v in kw.items()}


def test_every_pointwise_loss_is_covered():
    assert set(POINTWISE) <= set(loss_cases.MAKERS)
    assert len(POINTWISE) >= 20


@pytest.mark.parametrize("name", POINTWISE)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_gradient_is_grads_and_second_derivative_matches_differences(name, data):
    call = data.draw(loss_cases.calls(name))
    grad, hess = call.run("grad_hess")
    # grad's gradient, from the same element code; the compiler may fuse its multiply-adds
    # differently beside the second derivative (a last-bit difference, as value_and_grad's)
    expected = call.run("grad")
    eps = np.finfo(call.dtype).eps
    np.testing.assert_allclose(grad, expected, rtol=4 * eps,
                               atol=4 * eps * np.abs(expected).max(initial=0.0))
    assert hess.shape == grad.shape and hess.dtype == grad.dtype
    if call.empty or name in BOOSTING_CURVATURE:
        return
    arrays = call.exact()
    kwargs = float64_kwargs(call)
    with loss_cases.on_backend("serial" if call.backend == "cuda" else call.backend):
        _, exact = fl.LOSSES[name].grad_hess(*arrays, **kwargs)
        fd = finite_difference(call, kwargs, arrays, 1e-6)
        fd2 = finite_difference(call, kwargs, arrays, 2e-6)
    # Elements within a step of a kink or clip bound: the two differences disagree there.
    scale = max(np.nanmax(np.abs(fd), initial=0.0), 1e-300)
    smooth = np.abs(fd - fd2) <= 1e-4 * scale + 1e-6 * np.abs(fd)
    assert smooth.mean() > 0.5, "too few elements away from kinks to check"
    np.testing.assert_allclose(exact[smooth], fd[smooth], rtol=1e-4, atol=1e-5 * scale)
    # the drawn dtype's second derivatives agree with float64's
    tol = 1e-9 if call.dtype == np.float64 else 2e-4
    finite = np.isfinite(exact)
    np.testing.assert_allclose(hess[finite], exact[finite], rtol=tol,
                               atol=tol * np.abs(exact[finite]).max(initial=0.0))


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_boosting_curvature_where_the_second_derivative_vanishes(reduction):
    """absolute error: 1 per element (XGBoost's reg:absoluteerror); hinge: 1 where the
    margin is active, 0 where it is not (binary:hinge)."""
    t = np.array([0.0, 1.0, -2.0, 3.0])
    p = np.array([0.5, 0.0, 1.0, 3.5])
    np.testing.assert_array_equal(fl.l1_loss.grad_hess(t, p, reduction=reduction)[1],
                                  np.ones(4))
    y = np.array([[1.0, -1.0, 1.0, -1.0]])
    x = np.array([[0.2, 0.5, 3.0, -2.0]])
    _, h = fl.hinge.grad_hess(y, x, reduction="sum")
    np.testing.assert_array_equal(h, np.array([[0.25, 0.25, 0.0, 0.0]]))  # (mean over 4)


def test_known_second_derivatives():
    """Closed forms: squared error 2 / n, logistic s (1 - s), Poisson (log input) exp(x)."""
    rng = np.random.default_rng(3)
    t, p = rng.standard_normal(50), rng.standard_normal(50)
    _, h = fl.mse_loss.grad_hess(t, p)
    np.testing.assert_allclose(h, np.full(50, 2 / 50), rtol=1e-15)
    y = (rng.random(50) < 0.5).astype(float)
    _, h = fl.binary_cross_entropy_with_logits.grad_hess(y, p, reduction="sum")
    s = 1 / (1 + np.exp(-p))
    np.testing.assert_allclose(h, s * (1 - s), rtol=1e-13)
    _, h = fl.poisson_nll_loss.grad_hess(np.abs(t), p, reduction="sum")
    np.testing.assert_allclose(h, np.exp(p), rtol=1e-14)


def test_sample_weight_and_grad_output_scale_the_second_derivatives():
    rng = np.random.default_rng(4)
    t, p = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    w = rng.uniform(0.5, 2.0, 6)
    _, plain = fl.log_cosh.grad_hess(t, p, reduction="sum")
    _, weighted = fl.log_cosh.grad_hess(t, p, reduction="sum", sample_weight=w)
    np.testing.assert_allclose(weighted, plain * w[:, None], rtol=1e-14)
    _, scaled = fl.log_cosh.grad_hess(t, p, reduction="sum", grad_output=np.float64(3.0))
    np.testing.assert_allclose(scaled, 3 * plain, rtol=1e-14)


def test_keras_axis_is_moved_back():
    rng = np.random.default_rng(5)
    t = (rng.random((3, 4, 5)) < 0.5).astype(np.float64)
    p = rng.standard_normal((3, 4, 5))
    g, h = fl.binary_crossentropy.grad_hess(t, p, from_logits=True, axis=1, reduction="sum")
    g_last, h_last = fl.binary_crossentropy.grad_hess(
        np.moveaxis(t, 1, -1), np.moveaxis(p, 1, -1), from_logits=True, reduction="sum")
    np.testing.assert_allclose(h, np.moveaxis(h_last, -1, 1), rtol=1e-14)
    np.testing.assert_allclose(g, np.moveaxis(g_last, -1, 1), rtol=1e-14)


def test_unavailable_and_bad_calls_raise():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="grad_hess is not available"):
        fl.cosine_similarity.grad_hess(x, x)
    with pytest.raises(TypeError, match="pair of arrays"):
        fl.mse_loss.grad_hess(x, x, out=np.empty_like(x))
    with pytest.raises(ValueError, match="must not overlap"):
        buffer = np.empty_like(x)
        fl.mse_loss.grad_hess(x, x, out=(buffer, buffer))
    with pytest.raises(ValueError, match="shape"):
        fl.mse_loss.grad_hess(x, x, out=(np.empty_like(x), np.empty(5)))
    with pytest.raises(TypeError, match="unexpected option"):
        fl.huber.grad_hess(x, x, gamma=1.0)


@pytest.mark.parametrize("axis", [-1, 0])
def test_out_receives_both(axis):
    """out=(grad_buffer, hess_buffer), any of them y_pred itself: the same results."""
    rng = np.random.default_rng(6)
    t = (rng.random((5, 7)) < 0.5).astype(np.float32)
    p = rng.standard_normal((5, 7)).astype(np.float32)
    kw = dict(from_logits=True, axis=axis, reduction="sum")
    g, h = fl.binary_focal_crossentropy.grad_hess(t, p, **kw)
    g_out, h_out = np.empty_like(p), np.empty_like(p)
    got = fl.binary_focal_crossentropy.grad_hess(t, p, out=(g_out, h_out), **kw)
    assert np.shares_memory(got[0], g_out) and np.shares_memory(got[1], h_out)
    np.testing.assert_array_equal(g_out, g)
    np.testing.assert_array_equal(h_out, h)
    p_copy = p.copy()
    fl.binary_focal_crossentropy.grad_hess(t, p_copy, out=(g_out, p_copy), **kw)
    np.testing.assert_array_equal(p_copy, h)


# -- the softmax cross-entropies ----------------------------------------------------------

def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


R, C = 4, 5
_LABELS = np.array([0, 3, 4, 1])
_ONE_HOT = np.eye(C)[_LABELS]
# name, arrays (labels, logits -> call arguments), options, targets y (R, C) after
# smoothing, class weights w (C,), poly epsilon, per-row factor of the reduction
SOFTMAX_CASES = {
    "cross_entropy": ("cross_entropy", {"reduction": "sum"}, _ONE_HOT, np.ones(C), 0.0),
    "cross_entropy-weighted-smoothed": (
        "cross_entropy", {"reduction": "none", "weight": np.linspace(0.5, 2, C),
                          "label_smoothing": 0.2},
        0.8 * _ONE_HOT + 0.2 / C, np.linspace(0.5, 2, C), 0.0),
    "cross_entropy-probabilities": (
        "cross_entropy", {"reduction": "sum"}, "dense", np.ones(C), 0.0),
    "sparse_categorical_crossentropy": (
        "sparse_categorical_crossentropy", {"from_logits": True, "reduction": "sum"}, _ONE_HOT,
        np.ones(C), 0.0),
    "categorical_crossentropy-smoothed": (
        "categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1,
                                     "reduction": "sum"},
        0.9 * _ONE_HOT + 0.1 / C, np.ones(C), 0.0),
    "poly_loss_cross_entropy": (
        "poly_loss_cross_entropy", {"epsilon": 1.5, "reduction": "sum"}, _ONE_HOT, np.ones(C),
        1.5),
}


def _softmax_arguments(case, dtype=np.float64, seed=0):
    name, options, y, _, _ = SOFTMAX_CASES[case]
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal((R, C))).astype(dtype)
    if isinstance(y, str):  # probabilities as targets
        target = _softmax(rng.standard_normal((R, C))).astype(dtype)
    elif name in ("categorical_crossentropy", "poly_loss_cross_entropy"):  # dense targets
        target = _ONE_HOT.astype(dtype)
    else:
        target = _LABELS
    return fl.LOSSES[name], target, x, options


@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_second_derivatives(case, backend):
    """The Hessian's diagonal of the softmax cross-entropies: the formula's (class-weighted
    targets' sum times s (1 - s), and the poly term's), written here in NumPy, and central
    differences of grad; the gradient grad's."""
    loss, target, x, options = _softmax_arguments(case)
    _, _, y, w, eps = SOFTMAX_CASES[case]
    if isinstance(y, str):
        y = target
    grad, hess = loss.grad_hess(target, x, **options)
    np.testing.assert_allclose(grad, loss.grad(target, x, **options), rtol=1e-15, atol=1e-16)
    s = _softmax(x)
    swy = (w * y).sum(axis=1, keepdims=True)
    expected = swy * s * (1 - s) - eps * s * (y - (y * s).sum(1, keepdims=True)) * (1 - 2 * s)
    np.testing.assert_allclose(hess, expected, rtol=1e-12, atol=1e-15)
    step = 1e-6
    for i in range(R):
        for j in range(C):
            up, down = x.copy(), x.copy()
            up[i, j] += step
            down[i, j] -= step
            fd = (loss.grad(target, up, **options)[i, j]
                  - loss.grad(target, down, **options)[i, j]) / (2 * step)
            np.testing.assert_allclose(hess[i, j], fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", ["cross_entropy-weighted-smoothed",
                                  "sparse_categorical_crossentropy"])
def test_softmax_grad_hess_float32_weights_and_masks(case):
    loss, target, x, options = _softmax_arguments(case, seed=1)
    g64, h64 = loss.grad_hess(target, x, **options)
    t32 = target.astype(np.float32) if target.dtype.kind == "f" else target
    g32, h32 = loss.grad_hess(t32, x.astype(np.float32), **options)
    assert h32.dtype == np.float32
    np.testing.assert_allclose(h32, h64, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(g32, g64, rtol=2e-6, atol=1e-7)
    if loss.convention == "keras":  # sample weights and a masked class scale both alike
        sw = np.array([1.0, 0.0, 2.0, 0.5])
        g, h = loss.grad_hess(target, x, sample_weight=sw, ignore_class=3, **options)
        kept = (sw * (_LABELS != 3))[:, None]
        np.testing.assert_allclose(h, kept * h64, rtol=1e-15)
        np.testing.assert_allclose(g, kept * g64, rtol=1e-15)
    else:  # ignore_index: the row's gradient and second derivatives 0
        g, h = loss.grad_hess(target, x, ignore_index=3, **options)
        assert not h[1].any() and not g[1].any()
        np.testing.assert_array_equal(h[[0, 2, 3]], h64[[0, 2, 3]])


def test_softmax_grad_hess_class_axis_and_out():
    x = np.random.default_rng(2).standard_normal((C, R))  # classes first (axis=0)
    g, h = fl.sparse_categorical_crossentropy.grad_hess(_LABELS, x, from_logits=True, axis=0)
    s = _softmax(x.T).T
    np.testing.assert_allclose(h, s * (1 - s), rtol=1e-13)
    out = (np.empty_like(x), np.empty_like(x))
    fl.sparse_categorical_crossentropy.grad_hess(_LABELS, x, from_logits=True, axis=0, out=out)
    np.testing.assert_array_equal(out[0], g)
    np.testing.assert_array_equal(out[1], h)
    with pytest.raises(TypeError, match="probs_cross_entropy element has no second"):
        fl.categorical_crossentropy.grad_hess(_ONE_HOT, _softmax(x.T))
    with pytest.raises(TypeError, match="grad_hess is not available for this loss"):
        fl.circle.grad_hess(np.zeros(4), np.zeros((4, 3)))


# -- losses of two prediction arrays ------------------------------------------------------

def _pair_arguments(name, rng, shape=(4, 6)):
    if name == "gaussian_nll_loss":
        return (rng.standard_normal(shape), rng.standard_normal(shape),
                rng.uniform(0.2, 2.0, shape)), {"full": True}
    if name == "gaussian_kl_loss":
        return (rng.standard_normal(shape), rng.uniform(-1, 1, shape)), {}
    y = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (y, rng.standard_normal(shape), rng.standard_normal(shape)), {"margin": 0.3}


def _pair_second_derivatives(name, args):
    """The formulas' second derivatives in both predictions (float64 NumPy)."""
    if name == "gaussian_nll_loss":
        t, a, v = args
        return 1 / v, (a - t) ** 2 / v ** 3 - 0.5 / v ** 2
    if name == "gaussian_kl_loss":
        return np.ones_like(args[0]), 0.5 * np.exp(args[1])
    return np.zeros_like(args[1]), np.zeros_like(args[2])


PAIRS = ["gaussian_nll_loss", "gaussian_kl_loss", "margin_ranking_loss"]


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_pair_second_derivatives(name, reduction, backend):
    """Both predictions' second derivatives: the formulas' (NumPy), and central
    differences of grad (the loss is elementwise, so one step of every element at once
    gives the diagonal); the gradients grad's."""
    loss = fl.LOSSES[name]
    args, options = _pair_arguments(name, np.random.default_rng(5))
    grads, hess = loss.grad_hess(*args, reduction=reduction, **options)
    expected = loss.grad(*args, reduction=reduction, **options)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-15, atol=1e-17)
    scale = 1 / args[-1].size if reduction == "mean" else 1.0
    for h, formula in zip(hess, _pair_second_derivatives(name, args)):
        np.testing.assert_allclose(h, scale * formula, rtol=1e-12, atol=1e-15)
    first = len(args) - 2
    for k in range(2):
        step = 1e-6
        up, down = list(args), list(args)
        up[first + k] = args[first + k] + step
        down[first + k] = args[first + k] - step
        fd = (loss.grad(*up, reduction=reduction, **options)[k]
              - loss.grad(*down, reduction=reduction, **options)[k]) / (2 * step)
        np.testing.assert_allclose(hess[k], fd, rtol=1e-6, atol=1e-9)


def test_pair_grad_hess_broadcast_out_and_float32():
    """A broadcast variance's second derivative sums over its broadcast axis (as its
    gradient does); out=((ga, gb), (ha, hb)) receives all four; float32 as float64."""
    rng = np.random.default_rng(6)
    t, a = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    var = rng.uniform(0.5, 2.0, (5, 1))
    (ga, gb), (ha, hb) = fl.gaussian_nll_loss.grad_hess(t, a, var, reduction="sum")
    assert gb.shape == hb.shape == (5, 1)
    np.testing.assert_allclose(hb[:, 0], ((a - t) ** 2 / var ** 3 - 0.5 / var ** 2).sum(1),
                               rtol=1e-12)
    out = ((np.empty_like(a), np.empty_like(var)), (np.empty_like(a), np.empty_like(var)))
    result = fl.gaussian_nll_loss.grad_hess(t, a, var, reduction="sum", out=out)
    for got, buffer, expected in zip((*result[0], *result[1]), (*out[0], *out[1]),
                                     (ga, gb, ha, hb)):
        assert np.shares_memory(got, buffer)
        np.testing.assert_array_equal(buffer, expected)
    (_, _), (ha32, hb32) = fl.gaussian_nll_loss.grad_hess(
        t.astype(np.float32), a.astype(np.float32), var.astype(np.float32), reduction="sum")
    assert ha32.dtype == np.float32
    np.testing.assert_allclose(ha32, ha, rtol=2e-6)
    np.testing.assert_allclose(hb32, hb, rtol=2e-5)
    with pytest.raises(TypeError, match="tuple of 2 arrays"):
        fl.gaussian_nll_loss.grad_hess(t, a, var, out=(np.empty_like(a), np.empty_like(a)))
    shared, out_rows = np.empty_like(a), np.empty((R, C))
    with pytest.raises(ValueError, match="must not overlap"):
        fl.gaussian_nll_loss.grad_hess(t, a, var.repeat(3, axis=1), out=(
            (np.empty_like(a), shared), (shared, np.empty_like(a))))
    with pytest.raises(ValueError, match="must not overlap"):
        fl.cross_entropy.grad_hess(_LABELS, np.zeros((R, C)), out=(out_rows, out_rows))


EMBEDDING_PAIRS = {
    "contrastive_loss": lambda rng: ((rng.random(5) < 0.5).astype(np.float64),
                                     rng.standard_normal((5, 4)), rng.standard_normal((5, 4)),
                                     {"margin": 2.5}),
    "cosine_embedding_loss": lambda rng: (np.array([1.0, -1.0, 1.0, -1.0, -1.0]),
                                          rng.standard_normal((5, 4)),
                                          rng.standard_normal((5, 4)), {"margin": -0.5}),
}


@pytest.mark.parametrize("name", list(EMBEDDING_PAIRS))
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_embedding_pair_second_derivatives(name, reduction, backend):
    """The Hessian's diagonal of the losses of two embeddings against central differences
    of grad, one feature at a time (a row's features are coupled); gradients grad's."""
    loss = fl.LOSSES[name]
    y, x1, x2, options = EMBEDDING_PAIRS[name](np.random.default_rng(7))
    (g1, g2), (h1, h2) = loss.grad_hess(y, x1, x2, reduction=reduction, **options)
    e1, e2 = loss.grad(y, x1, x2, reduction=reduction, **options)
    np.testing.assert_allclose(g1, e1, rtol=1e-15, atol=1e-17)
    np.testing.assert_allclose(g2, e2, rtol=1e-15, atol=1e-17)
    if name == "contrastive_loss":  # (both margin terms active and inactive are drawn)
        d = np.linalg.norm(x1 - x2 + 1e-6, axis=1)
        assert ((d < 2.5) & (y == 0)).any() and ((d > 2.5) & (y == 0)).any()
    step = 1e-6
    for k, (x, h) in enumerate(((x1, h1), (x2, h2))):
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                up, down = x.copy(), x.copy()
                up[i, j] += step
                down[i, j] -= step
                args_up = (y, up, x2) if k == 0 else (y, x1, up)
                args_down = (y, down, x2) if k == 0 else (y, x1, down)
                fd = (loss.grad(*args_up, reduction=reduction, **options)[k][i, j]
                      - loss.grad(*args_down, reduction=reduction, **options)[k][i, j]) / (
                          2 * step)
                np.testing.assert_allclose(h[i, j], fd, rtol=1e-5, atol=1e-8)


def test_embedding_pair_grad_hess_float32_and_refusals():
    y, x1, x2, options = EMBEDDING_PAIRS["cosine_embedding_loss"](np.random.default_rng(8))
    _, (h1, h2) = fl.cosine_embedding_loss.grad_hess(y, x1, x2, **options)
    _, (f1, f2) = fl.cosine_embedding_loss.grad_hess(y, x1.astype(np.float32),
                                                     x2.astype(np.float32), **options)
    assert f1.dtype == np.float32
    np.testing.assert_allclose(f1, h1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f2, h2, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="two arrays"):
        fl.triplet_margin_loss.grad_hess(x1, x1, x2)

"""The row-wise losses against the real libraries: Keras 3 (JAX backend), torch.nn.functional
and Optax.  Skipped where any is missing (CI has none); see tests/test_peers.py for how to
run it and why the float64 Keras cases lift Keras's float64 -> float32 demotion."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
from keras_peers import jax, jnp, keep_float64, keras, rng_for  # noqa: E402
optax = pytest.importorskip("optax")
import torch.nn.functional as F  # noqa: E402

import fastloss as fl  # noqa: E402

RTOL = {np.float32: 2e-5, np.float64: 1e-7}
ATOL = {np.float32: 1e-7, np.float64: 1e-13}
N, C = 8, 7


def check(actual, expected, dtype, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, peer {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)


def targets(kind, rng, ignore=None):
    if kind == "labels":
        y = rng.integers(0, C, N)
        if ignore is not None:
            y[[1, 4]] = ignore
        return y
    if kind == "one_hot":
        return np.eye(C)[rng.integers(0, C, N)]
    if kind == "binary":
        return rng.integers(0, 2, (N, C)).astype(np.float64)
    if kind == "label_sets":  # class indices padded with -1 (anything valid after it)
        y = rng.integers(-1, C, (N, C))
        for row, k in zip(y, [0, 1, 2, 3, C, 2, 4, C - 1]):
            row[:k] = rng.integers(0, C, k)  # (repeats too)
            row[k:k + 1] = -1
        return y
    return rng.dirichlet(np.ones(C), N)


def predictions(kind, rng):
    if kind == "logits":
        return rng.normal(0, 2, (N, C))
    if kind == "log_probs":
        return np.log(rng.dirichlet(np.ones(C), N))
    return rng.uniform(0.02, 1.0, (N, C))  # scores Keras normalises


# -- Keras 3 ------------------------------------------------------------------------

KERAS = [  # (fastloss name, Keras class, options, targets, predictions)
    ("categorical_crossentropy", "CategoricalCrossentropy", {}, "dist", "probs"),
    ("categorical_crossentropy", "CategoricalCrossentropy",
     {"from_logits": True, "label_smoothing": 0.1}, "one_hot", "logits"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", {}, "labels", "probs"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
     {"from_logits": True}, "labels", "logits"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy",
     {"from_logits": True, "ignore_class": 3}, "labels", "logits"),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", {}, "one_hot", "probs"),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy",
     {"from_logits": True, "alpha": 0.4, "gamma": 1.5, "label_smoothing": 0.05}, "dist", "logits"),
    ("cosine_similarity", "CosineSimilarity", {}, "dist", "logits"),
    ("categorical_hinge", "CategoricalHinge", {}, "one_hot", "logits"),
    ("categorical_generalized_cross_entropy", "CategoricalGeneralizedCrossEntropy",
     {"q": 0.3}, "labels", "probs"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", KERAS, ids=lambda c: f"{c[0]}-{c[2]}")
def test_keras(case, reduction, weighted, dtype, monkeypatch):
    if dtype == np.float64:
        keep_float64(monkeypatch)
    name, cls_name, options, t_kind, p_kind = case
    rng = rng_for(name, options, reduction, weighted, np.dtype(dtype).name)
    t = targets(t_kind, rng, options.get("ignore_class"))
    t = t if t_kind == "labels" else t.astype(dtype)
    p = predictions(p_kind, rng).astype(dtype)
    w = rng.uniform(0.1, 2.0, N) if weighted else None
    kloss = getattr(keras.losses, cls_name)(reduction=reduction, dtype=np.dtype(dtype).name,
                                            **options)
    value = np.asarray(kloss(jnp.asarray(t), jnp.asarray(p), sample_weight=w))
    go = None if value.shape == () else rng.normal(size=value.shape).astype(dtype)

    def scalar(q):
        out = kloss(jnp.asarray(t), q, sample_weight=w)
        return out if go is None else jnp.sum(jnp.asarray(go, out.dtype) * out)
    grad = np.asarray(jax.grad(scalar)(jnp.asarray(p)))
    loss = getattr(fl, name)
    kw = dict(sample_weight=w, reduction=reduction, **options)
    what = f"{name} {options} {reduction} weighted={weighted} {np.dtype(dtype).name}"
    v, g = loss.value_and_grad(t, p, grad_output=go, **kw)
    check(v, value, dtype, what + " value")
    check(g, grad, dtype, what + " grad")


# -- torch.nn.functional -------------------------------------------------------------

WEIGHT = np.linspace(0.3, 2.0, C)
TORCH = [  # (name, torch function, options, targets, predictions)
    ("cross_entropy", F.cross_entropy, {}, "labels", "logits"),
    ("cross_entropy", F.cross_entropy, {"label_smoothing": 0.2, "weight": WEIGHT,
                                        "ignore_index": 2}, "labels", "logits"),
    ("cross_entropy", F.cross_entropy, {"weight": WEIGHT, "label_smoothing": 0.1}, "dist", "logits"),
    ("nll_loss", F.nll_loss, {"weight": WEIGHT, "ignore_index": 0}, "labels", "log_probs"),
    ("multi_margin_loss", F.multi_margin_loss, {}, "labels", "logits"),
    ("multi_margin_loss", F.multi_margin_loss, {"p": 2, "margin": 0.5, "weight": WEIGHT},
     "labels", "logits"),
    ("multilabel_soft_margin_loss", F.multilabel_soft_margin_loss, {"weight": WEIGHT},
     "binary", "logits"),
    ("multilabel_margin_loss", F.multilabel_margin_loss, {}, "label_sets", "logits"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", TORCH, ids=lambda c: f"{c[0]}-{'-'.join(c[2])}-{c[3]}")
def test_torch(case, reduction, dtype):
    name, fn, options, t_kind, p_kind = case
    rng = rng_for(name, sorted(options), t_kind, reduction, np.dtype(dtype).name)
    t = targets(t_kind, rng, options.get("ignore_index"))
    t = t if t_kind in ("labels", "label_sets") else t.astype(dtype)
    p = predictions(p_kind, rng).astype(dtype)
    torch_options = {k: (torch.tensor(v, dtype=getattr(torch, np.dtype(dtype).name))
                         if k == "weight" else v) for k, v in options.items()}
    x = torch.tensor(p, requires_grad=True)
    out = fn(x, torch.tensor(t), reduction=reduction, **torch_options)
    go = None
    if reduction == "none":
        go = rng.normal(size=tuple(out.shape)).astype(dtype)
        out.backward(torch.tensor(go))
    else:
        out.backward()
    loss = getattr(fl, name)
    what = f"{name} {sorted(options)} {reduction} {np.dtype(dtype).name}"
    v, g = loss.value_and_grad(t, p, reduction=reduction, grad_output=go, **options)
    check(v, out.detach().numpy(), dtype, what + " value")
    check(g, x.grad.numpy(), dtype, what + " grad")


# -- Optax ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("epsilon", [2.0, -0.5])
def test_optax_poly_loss(epsilon, dtype):
    rng = rng_for("poly", epsilon, np.dtype(dtype).name)
    t = targets("dist", rng).astype(dtype)
    p = predictions("logits", rng).astype(dtype)
    go = rng.normal(size=N).astype(dtype)
    value = optax.losses.poly_loss_cross_entropy(jnp.asarray(p), jnp.asarray(t), epsilon=epsilon)
    grad = jax.grad(lambda q: jnp.sum(go * optax.losses.poly_loss_cross_entropy(
        q, jnp.asarray(t), epsilon=epsilon)))(jnp.asarray(p))
    v, g = fl.poly_loss_cross_entropy.value_and_grad(t, p, grad_output=go, epsilon=epsilon)
    check(v, np.asarray(value), dtype, "poly value")
    check(g, np.asarray(grad), dtype, "poly grad")


def test_optax_integer_label_cross_entropy():
    rng = rng_for("optax-ce")
    labels = rng.integers(0, C, N)
    p = predictions("logits", rng).astype(np.float32)
    value = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(p), jnp.asarray(labels))
    check(fl.cross_entropy(labels, p, reduction="none"), np.asarray(value), np.float32, "ce")


# -- PyTorch losses with options beyond the element ----------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_torch_kl_div(log_target, reduction, dtype):
    rng = rng_for("kl_div", log_target, reduction, np.dtype(dtype).name)
    t = rng.dirichlet(np.ones(C), N)
    t = (np.log(t) if log_target else t).astype(dtype)
    p = np.log(rng.dirichlet(np.ones(C), N)).astype(dtype)
    x = torch.tensor(p, requires_grad=True)
    out = F.kl_div(x, torch.tensor(t), reduction=reduction, log_target=log_target)
    go = None
    if reduction == "none":
        go = rng.normal(size=(N, C)).astype(dtype)
        out.backward(torch.tensor(go))
    else:
        out.backward()
    v, g = fl.kl_div.value_and_grad(t, p, reduction=reduction, log_target=log_target,
                                    grad_output=go)
    check(v, out.detach().numpy(), dtype, f"kl_div {reduction} value")
    check(g, x.grad.numpy(), dtype, f"kl_div {reduction} grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_torch_bce_with_logits_pos_weight(weighted, reduction, dtype):
    rng = rng_for("pos_weight", weighted, reduction, np.dtype(dtype).name)
    y = rng.integers(0, 2, (N, C)).astype(dtype)
    p = rng.normal(0, 2, (N, C)).astype(dtype)  # moderate logits: PyTorch's float32 form
    pos_weight = np.linspace(0.2, 3.0, C).astype(dtype)
    weight = rng.uniform(0.2, 2.0, (N, 1)).astype(dtype) if weighted else None
    # PyTorch's float32 formula loses digits to cancellation where the loss is small
    # (see test_peers.py); it runs in float64 on the same inputs, rounded for comparison.
    def f64(a):
        return torch.tensor(a, dtype=torch.float64)
    x = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(
        x, f64(y), reduction=reduction, pos_weight=f64(pos_weight),
        weight=None if weight is None else f64(weight))
    go = None
    if reduction == "none":
        go = rng.normal(size=(N, C)).astype(dtype)
        out.backward(f64(go))
    else:
        out.backward()
    v, g = fl.binary_cross_entropy_with_logits.value_and_grad(
        y, p, reduction=reduction, pos_weight=pos_weight, weight=weight, grad_output=go)
    check(v, out.detach().numpy().astype(dtype), dtype, f"pos_weight {reduction} value")
    check(g, x.grad.numpy().astype(dtype), dtype, f"pos_weight {reduction} grad")

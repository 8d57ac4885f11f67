"""fastloss.torch: every PyTorch-named loss against torch.nn.functional in value and
gradient (float64, torch.nn.functional's argument order), gradcheck for a loss of every
family, unreduced losses' cotangents, the Module classes, a model trained with
fastloss.torch equal to one trained with torch.nn.functional, errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
flt = pytest.importorskip("fastloss.torch")

import fastloss as fl  # noqa: E402


def _arguments(name, rng):
    """(positional tensors in F's order, options, indices of the differentiable ones)."""
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def sign(*shape):
        return torch.where(randn(*shape) > 0, 1.0, -1.0).double()
    N, C = 6, 4
    if name in ("cross_entropy", "nll_loss", "multi_margin_loss"):
        x = randn(N, C)
        if name == "nll_loss":
            x = torch.log_softmax(x, dim=1)
        return (x, torch.randint(0, C, (N,), generator=g)), {}, (0,)
    if name == "binary_cross_entropy":
        return (torch.rand(N, C, generator=g, dtype=torch.float64) * 0.9 + 0.05,
                torch.rand(N, C, generator=g, dtype=torch.float64)), {}, (0,)
    if name == "multilabel_margin_loss":  # class indices padded with -1, some repeated
        y = torch.randint(-1, C, (N, C), generator=g)
        for row, k in zip(y, (0, 1, 2, C, 3, 2)):
            row[:k] = torch.randint(0, C, (k,), generator=g)
            row[k:k + 1] = -1
        return (randn(N, C), y), {}, (0,)
    if name in ("binary_cross_entropy_with_logits", "multilabel_soft_margin_loss"):
        return (randn(N, C), (torch.rand(N, C, generator=g) < 0.5).double()), {}, (0,)
    if name in ("soft_margin_loss", "hinge_embedding_loss"):
        return (randn(N, C), sign(N, C)), {}, (0,)
    if name == "kl_div":
        return (torch.log_softmax(randn(N, C), 1), torch.softmax(randn(N, C), 1)), {}, (0,)
    if name == "poisson_nll_loss":
        return (randn(N, C), torch.poisson(torch.full((N, C), 2.0), generator=g).double()), \
            {}, (0,)
    if name in ("margin_ranking_loss", "cosine_embedding_loss"):
        shape = (N,) if name == "margin_ranking_loss" else (N, C)
        return (randn(*shape), randn(*shape), sign(N)), {"margin": 0.1}, (0, 1)
    if name == "gaussian_nll_loss":
        return (randn(N, C), randn(N, C), torch.rand(N, C, generator=g, dtype=torch.float64)
                + 0.1), {}, (0, 2)
    if name == "triplet_margin_loss":
        return (randn(N, C), randn(N, C), randn(N, C)), {"margin": 2.0}, (0, 1, 2)
    if name == "triplet_margin_with_distance_loss":  # (the default distance: PyTorch's None)
        return (randn(N, C), randn(N, C), randn(N, C)), {"margin": 2.0, "swap": True}, (0, 1, 2)
    if name == "ctc_loss":  # (T, N, C) log-probabilities; repeated labels, an empty target
        targets = torch.tensor([[1, 1, 2], [3, 0, 0], [2, 3, 1], [0, 0, 0], [1, 2, 3],
                                [3, 3, 3]])
        return (torch.log_softmax(randn(8, N, C), 2), targets,
                torch.tensor([8, 7, 6, 5, 8, 8]), torch.tensor([2, 1, 3, 0, 3, 3])), {}, (0,)
    return (randn(N, C), randn(N, C)), {}, (0,)  # regression


TORCH_NAMED = sorted(n for n, loss in fl.LOSSES.items()
                     if loss.spec.source == "PyTorch" and hasattr(F, n))


def test_every_pytorch_named_loss_is_covered():
    assert len(TORCH_NAMED) >= 18
    assert set(TORCH_NAMED) <= set(flt.LOSS_FUNCTIONS)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", TORCH_NAMED)
def test_value_and_gradient_equal_torch_functional(name, reduction):
    args, options, differentiable = _arguments(name, np.random.default_rng(len(name)))
    ours = [a.clone().requires_grad_(i in differentiable) for i, a in enumerate(args)]
    theirs = [a.clone().requires_grad_(i in differentiable) for i, a in enumerate(args)]
    value = getattr(flt, name)(*ours, reduction=reduction, **options)
    expected = getattr(F, name)(*theirs, reduction=reduction, **options)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.linspace(-1.0, 2.0, expected.numel(), dtype=torch.float64).reshape(
        expected.shape)
    got = torch.autograd.grad(value, [ours[i] for i in differentiable], cotangent)
    want = torch.autograd.grad(expected, [theirs[i] for i in differentiable], cotangent)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_elementwise_weight_as_torch_functional(name, reduction):
    """PyTorch 2.13's weight of mse_loss, l1_loss and huber_loss: "mean" divides by the
    weights' sum for the first two, by the element count for huber_loss; a weight of
    another shape than the input is refused by both."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64)
    w = torch.rand(5, 4, generator=g, dtype=torch.float64) + 0.25
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    value = getattr(flt, name)(ours, t, weight=w, reduction=reduction)
    expected = getattr(F, name)(theirs, t, weight=w, reduction=reduction)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.linspace(-1.0, 2.0, expected.numel(), dtype=torch.float64).reshape(
        expected.shape)
    (got,) = torch.autograd.grad(value, ours, cotangent)
    (want,) = torch.autograd.grad(expected, theirs, cotangent)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        getattr(F, name)(x, t, weight=w[0])
    with pytest.raises(ValueError, match="weight"):
        getattr(flt, name)(x, t, weight=w[0])


def _fastloss_order_arguments(name, rng):
    """Arguments of a loss that keeps fastloss's order (labels first), from the bench's
    sample data."""
    from fastloss._bench import arguments
    loss = fl.LOSSES[name]
    args = [torch.as_tensor(np.asarray(a)) for a in arguments(
        name, rng.uniform(0.05, 0.95, (6, 4)), rng.uniform(0.05, 0.95, (6, 4)))]
    args = [a.double() if a.dtype.is_floating_point else a for a in args]
    return args, {}, tuple(loss.inputs.index(p) for p in loss.predictions)


# (a loss of every family: pointwise, rows, elements, embeddings, overlap, pairwise,
# sequences: ctc, whose gradient is the derivative, where ctc_loss's is PyTorch's)
@pytest.mark.parametrize("name", ["mse_loss", "cross_entropy", "gaussian_nll_loss",
                                  "triplet_margin_loss", "kl_div", "cosine_embedding_loss",
                                  "dice", "circle", "ntxent", "quadruplet_loss",
                                  "categorical_focal_crossentropy", "multilabel_margin_loss",
                                  "triplet_margin_with_distance_loss", "ctc"])
def test_gradcheck(name):
    rng = np.random.default_rng(1)
    args, options, differentiable = (_arguments(name, rng) if name in TORCH_NAMED
                                     else _fastloss_order_arguments(name, rng))
    if name in ("dice", "circle", "ntxent", "categorical_focal_crossentropy", "ctc"):
        options = {"reduction": "sum_over_batch_size" if fl.LOSSES[name].convention == "keras"
                   else "mean"}

    def f(*diff):
        full = list(args)
        for i, x in zip(differentiable, diff):
            full[i] = x
        return getattr(flt, name)(*full, **options)
    inputs = tuple(args[i].clone().requires_grad_() for i in differentiable)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_keras_and_optax_named_losses_keep_their_order():
    rng = np.random.default_rng(2)
    y, p = rng.random((5, 3)), rng.random((5, 3))
    w = rng.random(5)
    pt = torch.tensor(p, requires_grad=True)
    value = flt.mean_squared_error(torch.tensor(y), pt, sample_weight=torch.tensor(w),
                                   reduction="sum_over_batch_size")
    value.backward()
    expected, grad = fl.mean_squared_error.value_and_grad(y, p, sample_weight=w,
                                                          reduction="sum_over_batch_size")
    assert value.item() == pytest.approx(float(expected), rel=1e-14)
    np.testing.assert_allclose(pt.grad.numpy(), grad, rtol=1e-14)
    assert flt.mean_squared_error(torch.tensor(y), pt).shape == (5,)  # Keras: per sample
    logits = torch.tensor(rng.standard_normal(8), requires_grad=True)
    labels = torch.tensor((rng.random(8) < 0.5).astype(np.float64))
    flt.sigmoid_focal_loss(labels, logits, gamma=2.0).sum().backward()  # (per example)
    np.testing.assert_allclose(logits.grad.numpy(), fl.sigmoid_focal_loss.grad(
        labels.numpy(), logits.detach().numpy(), gamma=2.0), rtol=1e-14)


def test_modules():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (6,))
    module = flt.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")
    assert isinstance(module, torch.nn.Module) and "label_smoothing=0.1" in repr(module)
    torch.testing.assert_close(module(x, y), F.cross_entropy(x, y, label_smoothing=0.1,
                                                             reduction="sum"))
    torch.testing.assert_close(flt.MSELoss()(x, x.detach() * 0.5), F.mse_loss(x, x * 0.5))
    assert flt.Huber(delta=0.5)(torch.zeros(3, 2), torch.ones(3, 2)).dim() == 0  # Keras class
    with pytest.raises(TypeError, match="unexpected option"):
        flt.CrossEntropyLoss(gamma=2.0)


def test_training_equals_torch_functional():
    """A small classifier trained 25 steps with fastloss.torch equals one trained with
    torch.nn.functional (float64)."""
    rng = np.random.default_rng(3)
    X = torch.tensor(rng.standard_normal((64, 5)))
    y = torch.tensor(rng.integers(0, 3, 64))
    models = []
    for loss_fn in (flt.cross_entropy, F.cross_entropy):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                    torch.nn.Linear(8, 3)).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        for _ in range(25):
            opt.zero_grad()
            loss_fn(model(X), y, label_smoothing=0.05).backward()
            opt.step()
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_no_copy_and_errors():
    x = torch.randn(4, 3, requires_grad=True)
    value = flt.l1_loss(x, torch.zeros(4, 3))
    assert value.dtype == torch.float32
    value.backward()
    torch.testing.assert_close(x.grad, torch.sign(x.detach()) / 12)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        flt.mse_loss(np.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="class index"):
        flt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 5]))
    with pytest.raises(TypeError):
        flt.mse_loss(torch.zeros(3), torch.zeros(3), size_average=True)
    with pytest.raises(TypeError, match="float16"):
        flt.mse_loss(torch.zeros(3, dtype=torch.float16), torch.zeros(3, dtype=torch.float16))
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(flt.cross_entropy(x, torch.tensor([0, 1, 2, 0])), x,
                            create_graph=True)


def test_torch_compile_traces_the_loss_without_graph_breaks():
    """fullgraph=True fails on any graph break; the compiled function's value and
    gradients equal eager's (a reduced and an unreduced loss, a module with a weight)."""
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (8,))
    w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)

    def step(x, y):
        unreduced = flt.mean_squared_error(torch.zeros_like(x), x)  # Keras: per sample
        return flt.cross_entropy(x, y, weight=w, label_smoothing=0.1) * 2 + (
            unreduced * torch.arange(8.0, dtype=x.dtype)).sum()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    value = compiled(x, y)
    (grad,) = torch.autograd.grad(value, x)
    expected = step(x, y)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-14, atol=1e-14)


def test_bench_framework_times_every_loss_torch_has(tmp_path, capsys, monkeypatch):
    """``bench --framework torch``: a row for every loss with a torch.nn.functional version,
    the adapter agreeing with it; an adapter that disagrees makes the command fail."""
    import json

    from fastloss import _bench_frameworks
    from fastloss.__main__ import main
    from fastloss._bench import torch_functions

    out = tmp_path / "frameworks.json"
    assert main(["bench", "--framework", "torch", "--shape", "6x10", "--repeat", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["loss"] for r in rows} == set(torch_functions())
    assert all(r["agree"] and r["adapter_s"] > 0 and r["own_s"] > 0 for r in rows)
    assert "cross_entropy" in capsys.readouterr().out

    adapters = _bench_frameworks.torch_adapters
    monkeypatch.setattr(_bench_frameworks, "torch_adapters", lambda names: {
        name: (lambda *a, f=f: 1.001 * f(*a)) for name, f in adapters(names).items()})
    assert main(["bench", "--framework", "torch", "--shape", "6x10", "--repeat", "1",
                 "--loss", "mse_loss"]) == 1
    assert "NO" in capsys.readouterr().out

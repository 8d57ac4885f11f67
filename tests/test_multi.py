"""Losses of several arrays (metric learning, likelihoods with a variance) against the
float64 references of tests/multi_references.py, on every backend: values, and the
gradient of every prediction input against finite differences of the reference."""

import numpy as np
import pytest

import fastloss as fl
import multi_references as ref
from references import finite_difference_grad

RTOL = {np.float32: 3e-5, np.float64: 1e-10}
GRAD_RTOL = {np.float32: 3e-5, np.float64: 1e-7}
TORCH_REDUCTIONS = ["mean", "sum", "none"]
N, D = 4, 5


def normal(rng, shape=(N, D)):
    return rng.normal(size=shape)


def signs(rng, shape=(N,)):
    return rng.choice([-1.0, 1.0], shape)


# (loss, options, inputs from a generator, reference): every option that changes the math.
CASES = [
    ("triplet_margin_loss", {}, lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin),
    ("triplet_margin_loss", {"margin": 2.5, "swap": True},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin),
    ("triplet_margin_loss", {"p": 1.0, "eps": 0.0, "margin": 3.0},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin),
    ("triplet_margin_loss", {"p": 3.0, "margin": 2.0},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin),
    ("quadruplet_loss", {}, lambda r: tuple(normal(r) * 0.4 for _ in range(4)), ref.quadruplet),
    ("quadruplet_loss", {"alpha1": 0.2, "alpha2": 2.0},
     lambda r: tuple(normal(r) * 0.4 for _ in range(4)), ref.quadruplet),
    ("contrastive_loss", {}, lambda r: (r.choice([0.0, 1.0], N), normal(r) * 0.3, normal(r) * 0.3),
     ref.contrastive),
    ("contrastive_loss", {"margin": 3.0, "eps": 0.0},
     lambda r: (r.choice([0.0, 1.0], N), normal(r), normal(r)), ref.contrastive),
    ("cosine_embedding_loss", {}, lambda r: (signs(r), normal(r), normal(r)), ref.cosine_embedding),
    ("cosine_embedding_loss", {"margin": -0.3},
     lambda r: (np.array([1.0, -1.0, 0.0, -1.0]), normal(r), normal(r)), ref.cosine_embedding),
    ("margin_ranking_loss", {}, lambda r: (signs(r, (N, D)), normal(r), normal(r)),
     ref.margin_ranking),
    ("margin_ranking_loss", {"margin": 0.5}, lambda r: (signs(r, (N, 1)), normal(r), normal(r)),
     ref.margin_ranking),
    ("hinge_embedding_loss", {}, lambda r: (signs(r, (N, D)), normal(r)), ref.hinge_embedding),
    ("hinge_embedding_loss", {"margin": 0.3},
     lambda r: (r.choice([-1.0, 1.0, 0.0], (N, D)), normal(r)), ref.hinge_embedding),
    ("poisson_nll_loss", {}, lambda r: (r.uniform(0, 3, (N, D)), normal(r)), ref.poisson_nll),
    ("poisson_nll_loss", {"log_input": False, "full": True},
     lambda r: (r.uniform(0, 3, (N, D)), r.uniform(0.2, 2, (N, D))), ref.poisson_nll),
    ("gaussian_nll_loss", {}, lambda r: (normal(r), normal(r), r.uniform(0.2, 2, (N, D))),
     ref.gaussian_nll),
    ("gaussian_nll_loss", {"full": True, "eps": 1e-3},
     lambda r: (normal(r), normal(r), r.uniform(0.2, 2, (N, 1))), ref.gaussian_nll),
    ("gaussian_nll_loss", {}, lambda r: (normal(r), normal(r), r.uniform(0.2, 2, (N,))),
     ref.gaussian_nll),
    ("gaussian_kl_loss", {}, lambda r: (normal(r), normal(r)), ref.gaussian_kl),
    ("triplet_margin_with_distance_loss", {}, lambda r: (normal(r), normal(r), normal(r)),
     ref.triplet_margin_distance),
    ("triplet_margin_with_distance_loss", {"swap": True, "eps": 0.0, "margin": 2.5},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin_distance),
    ("triplet_margin_with_distance_loss", {"distance_function": "cosine"},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin_distance),
    ("triplet_margin_with_distance_loss",
     {"distance_function": "cosine", "swap": True, "margin": 0.5, "eps": 0.1},
     lambda r: (normal(r), normal(r), normal(r)), ref.triplet_margin_distance),
]


def case_id(case):
    name, options, _, _ = case
    return "-".join([name] + [f"{k}={v}" for k, v in options.items()])


def gradient_positions(name, nargs):
    return range(nargs - len(fl.LOSSES[name].predictions), nargs)


def reduce(values, reduction):
    return {"none": values, "sum": np.sum(values), "mean": np.mean(values)}[reduction]


def reference_grads(reference, inputs, options, positions, reduction, grad_output=None):
    """The vector-Jacobian product of the float64 reference for each prediction input."""
    grads = []
    for k in positions:
        def f(x, k=k):
            args = list(inputs)
            args[k] = x
            values = reference(*args, **options)
            if grad_output is not None:
                values = values * grad_output
            return reduce(values, "sum" if reduction == "none" else reduction)
        grads.append(finite_difference_grad(f, inputs[k]))
    return grads


def as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", TORCH_REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(backend, case, reduction, dtype):
    name, options, make, reference = case
    inputs = make(np.random.default_rng(3))
    args = [x.astype(dtype) for x in inputs]
    value, grads = fl.LOSSES[name].value_and_grad(*args, reduction=reduction, **options)
    exact = [x.astype(dtype).astype(np.float64) for x in inputs]  # what the kernel saw
    expected = reduce(reference(*exact, **options), reduction)
    assert np.asarray(value).dtype == dtype
    np.testing.assert_allclose(value, expected, rtol=RTOL[dtype], atol=1e-12)
    positions = gradient_positions(name, len(inputs))
    expected_grads = reference_grads(reference, exact, options, positions, reduction)
    grads = as_tuple(grads)
    assert len(grads) == len(expected_grads)
    for k, got, want in zip(positions, grads, expected_grads):
        assert got.dtype == dtype and got.shape == inputs[k].shape
        np.testing.assert_allclose(got, want, rtol=GRAD_RTOL[dtype], atol=1e-8)


@pytest.mark.parametrize("case", CASES[::2], ids=case_id)
def test_value_grad_and_fused_agree(case):
    name, options, make, _ = case
    inputs = make(np.random.default_rng(4))
    loss = fl.LOSSES[name]
    for reduction in TORCH_REDUCTIONS:
        value, grads = loss.value_and_grad(*inputs, reduction=reduction, **options)
        np.testing.assert_allclose(loss(*inputs, reduction=reduction, **options), value,
                                   rtol=1e-14, atol=1e-300)
        for got, fused in zip(as_tuple(loss.grad(*inputs, reduction=reduction, **options)),
                              as_tuple(grads)):
            np.testing.assert_allclose(got, fused, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("case", [CASES[1], CASES[6], CASES[11], CASES[17], CASES[-1]],
                         ids=case_id)
def test_grad_output_is_the_cotangent(backend, case):
    name, options, make, reference = case
    rng = np.random.default_rng(5)
    inputs = make(rng)
    loss = fl.LOSSES[name]
    values = reference(*inputs, **options)
    cotangent = rng.uniform(-1, 1, values.shape)
    positions = gradient_positions(name, len(inputs))
    expected = reference_grads(reference, inputs, options, positions, "none", cotangent)
    got = as_tuple(loss.grad(*inputs, reduction="none", grad_output=cotangent, **options))
    for g, want in zip(got, expected):
        np.testing.assert_allclose(g, want, rtol=1e-7, atol=1e-9)
    scaled = as_tuple(loss.grad(*inputs, reduction="sum", grad_output=2.5, **options))
    for g, plain in zip(scaled, as_tuple(loss.grad(*inputs, reduction="sum", **options))):
        np.testing.assert_allclose(g, 2.5 * plain, rtol=1e-14)


def test_out_receives_every_gradient():
    rng = np.random.default_rng(6)
    a, p, n = normal(rng), normal(rng), normal(rng)
    outs = tuple(np.empty_like(a) for _ in range(3))
    value, grads = fl.triplet_margin_loss.value_and_grad(a, p, n, out=outs)
    assert all(g is o or np.shares_memory(g, o) for g, o in zip(grads, outs))
    expected = fl.triplet_margin_loss.grad(a, p, n)
    for o, e in zip(outs, expected):
        np.testing.assert_array_equal(o, e)
    var = rng.uniform(0.5, 1, (N, 1))  # broadcast: its gradient summed over the features
    var_out = np.empty_like(var)
    _, (_, g_var) = fl.gaussian_nll_loss.value_and_grad(a, p, var, out=(np.empty_like(p), var_out))
    assert g_var.shape == (N, 1)
    np.testing.assert_array_equal(var_out, g_var)
    with pytest.raises(ValueError, match="out must have positive's shape"):
        fl.triplet_margin_loss.grad(a, p, n, out=(outs[0], np.empty((2, 2)), outs[2]))
    with pytest.raises(TypeError, match="out must be a tuple of 3 arrays"):
        fl.triplet_margin_loss.grad(a, p, n, out=outs[0])


@pytest.mark.parametrize("name, make", [
    ("triplet_margin_loss", lambda n: (np.ones((n, 3)),) * 3),
    ("triplet_margin_with_distance_loss", lambda n: (np.ones((n, 3)),) * 3),
    ("contrastive_loss", lambda n: (np.ones(n), np.ones((n, 3)), np.ones((n, 3)))),
    ("cosine_embedding_loss", lambda n: (np.ones(n), np.ones((n, 3)), np.ones((n, 3)))),
    ("quadruplet_loss", lambda n: (np.ones((n, 3)),) * 4),
    ("margin_ranking_loss", lambda n: (np.ones(n), np.ones(n), np.ones(n))),
    ("gaussian_kl_loss", lambda n: (np.ones(n), np.ones(n))),
])
def test_empty_batch_and_batch_of_one(backend, name, make):
    """PyTorch: the mean of nothing is NaN, the sum 0; a batch of one is just a batch."""
    loss = fl.LOSSES[name]
    assert np.isnan(loss(*make(0)))
    assert loss(*make(0), reduction="sum") == 0
    assert loss(*make(0), reduction="none").shape[0] == 0
    grads = as_tuple(loss.grad(*make(0)))
    assert all(g.shape[0] == 0 for g in grads)
    one = make(1)
    value, grads = loss.value_and_grad(*one)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in as_tuple(grads))
    np.testing.assert_allclose(value, loss(*make(3)), rtol=1e-12)


def test_identical_and_zero_vectors_give_finite_gradients(backend):
    """Zero distances and zero-norm vectors: no NaN (eps inside the distance as PyTorch's
    pairwise_distance; 1e-12 on each squared norm as cosine_embedding_loss)."""
    x = np.ones((2, 4))
    zero = np.zeros((2, 4))
    y = np.array([0.0, 1.0])
    for loss, args, kw in [(fl.triplet_margin_loss, (x, x, x), {}),
                           (fl.triplet_margin_loss, (x, x, x), {"eps": 0.0, "swap": True}),
                           (fl.triplet_margin_loss, (x, x, x), {"eps": 0.0, "p": 3.0}),
                           (fl.triplet_margin_with_distance_loss, (x, x, x), {"swap": True}),
                           (fl.triplet_margin_with_distance_loss, (zero, x, zero),
                            {"distance_function": "cosine", "swap": True}),
                           (fl.triplet_margin_with_distance_loss, (zero, zero, zero),
                            {"distance_function": "cosine"}),
                           (fl.contrastive_loss, (y, x, x), {}),
                           (fl.contrastive_loss, (y, x, x), {"eps": 0.0}),
                           (fl.cosine_embedding_loss, (np.array([1.0, -1.0]), zero, x), {}),
                           (fl.quadruplet_loss, (x, x, x, x), {})]:
        value, grads = loss.value_and_grad(*args, **kw)
        assert np.isfinite(value), (loss, kw)
        assert all(np.isfinite(g).all() for g in grads), (loss, kw)


def test_rows_split_across_a_cuda_block():
    """Rows of at least 64 features take a CUDA block each (the lanes' reductions)."""
    rng = np.random.default_rng(7)
    a, p, n = (normal(rng, (3, 70)) for _ in range(3))
    y = signs(rng, (3,))
    for loss, args, kw in [(fl.triplet_margin_loss, (a, p, n), {"swap": True, "p": 1.5}),
                           (fl.cosine_embedding_loss, (y, a, p), {}),
                           (fl.contrastive_loss, ((y + 1) / 2, a * 0.1, p * 0.1), {}),
                           (fl.quadruplet_loss, (a, p, n, a + p), {}),
                           (fl.triplet_margin_with_distance_loss, (a, p, n), {"swap": True}),
                           (fl.triplet_margin_with_distance_loss, (a, p, n),
                            {"distance_function": "cosine", "swap": True, "margin": 2.0})]:
        cpu_value, cpu_grads = loss.value_and_grad(*args, reduction="none", **kw)
        with fl.backend("cuda"):
            value, grads = loss.value_and_grad(*args, reduction="none", **kw)
        np.testing.assert_allclose(value, cpu_value, rtol=1e-12)
        for g, c in zip(grads, cpu_grads):
            np.testing.assert_allclose(g, c, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sample_weight", [None, 0.5, "per_sample"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight",
                                       "none"])
def test_keras_triplet_loss_on_stacked_embeddings(backend, reduction, sample_weight):
    rng = np.random.default_rng(8)
    stacked = normal(rng, (N, 3 * D)) * 0.5
    w = rng.uniform(0.2, 2, N) if sample_weight == "per_sample" else sample_weight
    values = ref.stacked_triplet(None, stacked, alpha=0.5)
    weighted = values * (1.0 if w is None else w)
    divisor = {"sum_over_batch_size": N, "sum": 1,
               "mean_with_sample_weight": N if w is None else np.sum(w)}  # (Keras: sum of the weights given)
    expected = weighted if reduction == "none" else weighted.sum() / divisor[reduction]
    y_true = np.zeros(N)  # unused, as in the Keras tutorials
    value, grad = fl.triplet_loss.value_and_grad(y_true, stacked, sample_weight=w,
                                                 reduction=reduction, alpha=0.5)
    np.testing.assert_allclose(value, expected, rtol=1e-12)

    def total(x):
        v = ref.stacked_triplet(None, x, alpha=0.5) * (1.0 if w is None else w)
        return v.sum() if reduction in ("none", "sum") else v.sum() / divisor[reduction]
    np.testing.assert_allclose(grad, finite_difference_grad(total, stacked), rtol=1e-7, atol=1e-9)


BAD = [
    (lambda: fl.triplet_margin_loss(np.ones((2, 3)), np.ones((2, 3))), TypeError,
     r"takes 3 arrays \(anchor, positive, negative\), got 2"),
    (lambda: fl.triplet_margin_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4))),
     ValueError, r"negative of shape \(2, 4\) must have anchor's shape \(2, 3\)"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.ones(3), margin=0.0), ValueError,
     "margin must be positive"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.ones(3), p=-1.0), ValueError,
     "p must be positive"),
    (lambda: fl.triplet_margin_loss(1.0, 1.0, 1.0), ValueError, "must have a feature axis"),
    (lambda: fl.triplet_margin_loss(np.ones((2, 0)), np.ones((2, 0)), np.ones((2, 0))),
     ValueError, "has no features"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.ones(3), sample_weight=1.0),
     TypeError, "takes no sample_weight"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.ones(3), reduction="avg"),
     ValueError, "Invalid value for argument `reduction`"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.ones(3), gamma=1.0), TypeError,
     "unexpected option 'gamma'"),
    (lambda: fl.triplet_margin_loss(np.ones(3), np.ones(3), np.array(["a", "b", "c"])),
     TypeError, "negative must hold real numbers"),
    (lambda: fl.contrastive_loss(np.ones(3), np.ones((2, 3)), np.ones((2, 3))), ValueError,
     r"y_true of shape \(3,\) must hold one label per row"),
    (lambda: fl.margin_ranking_loss(np.ones(3), np.ones(4), np.ones(4)), ValueError,
     "do not broadcast together"),
    (lambda: fl.gaussian_nll_loss(np.ones((2, 3)), np.ones((2, 3)), -np.ones((2, 3))), ValueError,
     "var has negative entries"),
    (lambda: fl.gaussian_nll_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 2))), ValueError,
     r"var of shape \(3, 2\) must have y_pred's shape"),
    (lambda: fl.triplet_loss(np.zeros(2), np.ones((2, 7))), ValueError,
     "must split into 3 equal parts"),
    (lambda: fl.triplet_margin_with_distance_loss(np.ones(3), np.ones(3), np.ones(3),
                                                  distance_function="manhattan"), ValueError,
     r"distance_function must be one of \('euclidean', 'cosine'\), got 'manhattan'"),
    (lambda: fl.triplet_margin_with_distance_loss(np.ones(3), np.ones(3), np.ones(3),
                                                  distance_function=None), TypeError,
     "distance_function must be a string"),
    (lambda: fl.triplet_margin_with_distance_loss(np.ones(3), np.ones(3), np.ones(3), eps=-1.0),
     ValueError, "eps must be nonnegative"),
    (lambda: fl.triplet_margin_with_distance_loss(np.ones((2, 3)), np.ones((2, 3)),
                                                  np.ones((3, 3)), distance_function="cosine"),
     ValueError, r"negative of shape \(3, 3\) must have anchor's shape \(2, 3\)"),
]


@pytest.mark.parametrize("call, error, match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_gaussian_nll_negative_variance_gives_nan_without_the_check(monkeypatch):
    """On CuPy inputs (where a check would wait for the device) a negative variance
    gives NaN, never a silently clamped value: the kernels, with the check taken away."""
    monkeypatch.setattr(fl.gaussian_nll_loss.family, "check_inputs", None)
    var = np.array([1.0, -1.0, 1.0])
    for target in ("cpu", "cuda"):
        with fl.backend(target):
            values = fl.gaussian_nll_loss(np.zeros(3), np.zeros(3), var, reduction="none")
        assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()

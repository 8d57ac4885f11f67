"""Row-wise losses (cross-entropies, focal, cosine, hinge, margins) against the float64
references of tests/row_references.py, on every backend, with gradients checked by
finite differences of the reference."""

import numpy as np
import pytest

import fastloss as fl
from fastloss import _config
from fastloss.losses import by_family
from references import finite_difference_grad
from row_references import ROW_LOSSES, reference

RTOL = {np.float32: 2e-5, np.float64: 1e-10}
KERAS_REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none"]
TORCH_REDUCTIONS = ["mean", "sum", "none"]
R, C = 5, 6
CLASS_WEIGHT = np.linspace(0.5, 2.0, C)

# (loss, options, targets, predictions): every option that changes the math.
CASES = [
    ("categorical_crossentropy", {"from_logits": True}, "distribution", "logits"),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.2}, "one_hot", "logits"),
    ("categorical_crossentropy", {}, "distribution", "probs"),
    ("categorical_crossentropy", {"label_smoothing": 0.1}, "one_hot", "unnormalised"),
    ("sparse_categorical_crossentropy", {"from_logits": True}, "labels", "logits"),
    ("sparse_categorical_crossentropy", {}, "labels", "unnormalised"),
    ("sparse_categorical_crossentropy", {"from_logits": True, "ignore_class": 2}, "labels", "logits"),
    ("sparse_categorical_crossentropy", {"ignore_class": 0}, "labels", "probs"),
    ("categorical_focal_crossentropy", {}, "one_hot", "probs"),
    ("categorical_focal_crossentropy", {"from_logits": True}, "distribution", "logits"),
    ("categorical_focal_crossentropy", {"alpha": 0.5, "gamma": 1.5, "label_smoothing": 0.1},
     "distribution", "unnormalised"),
    ("categorical_focal_crossentropy", {"gamma": 0.0, "from_logits": True}, "one_hot", "logits"),
    ("cosine_similarity", {}, "any", "logits"),
    ("categorical_hinge", {}, "one_hot", "logits"),
    ("categorical_hinge", {}, "distribution", "logits"),
    ("categorical_generalized_cross_entropy", {}, "labels", "probs"),
    ("categorical_generalized_cross_entropy", {"q": 0.8}, "labels", "probs"),
    ("cross_entropy", {}, "labels", "logits"),
    ("cross_entropy", {"label_smoothing": 0.15}, "labels", "logits"),
    ("cross_entropy", {"weight": CLASS_WEIGHT}, "labels", "logits"),
    ("cross_entropy", {"weight": CLASS_WEIGHT, "label_smoothing": 0.1, "ignore_index": 3},
     "labels", "logits"),
    ("cross_entropy", {}, "distribution", "logits"),
    ("cross_entropy", {"weight": CLASS_WEIGHT, "label_smoothing": 0.2}, "distribution", "logits"),
    ("nll_loss", {}, "labels", "log_probs"),
    ("nll_loss", {"weight": CLASS_WEIGHT, "ignore_index": 1}, "labels", "log_probs"),
    ("multi_margin_loss", {}, "labels", "logits"),
    ("multi_margin_loss", {"p": 2, "margin": 0.7, "weight": CLASS_WEIGHT}, "labels", "logits"),
    ("multilabel_soft_margin_loss", {}, "binary", "logits"),
    ("multilabel_soft_margin_loss", {"weight": CLASS_WEIGHT}, "soft", "logits"),
    ("multilabel_margin_loss", {}, "label_sets", "logits"),
    ("poly_loss_cross_entropy", {}, "distribution", "logits"),
    ("poly_loss_cross_entropy", {"epsilon": -0.5}, "one_hot", "logits"),
]


def case_id(case):
    name, options, targets, _ = case
    return "-".join([name, targets] + [k if k == "weight" else f"{k}={v}" for k, v in options.items()])


def make_targets(kind, shape, rng):
    rows, classes = shape[:-1], shape[-1]
    if kind == "labels":
        return rng.integers(0, classes, rows)
    if kind == "one_hot":
        return np.eye(classes)[rng.integers(0, classes, rows)]
    if kind == "distribution":
        return rng.dirichlet(np.ones(classes), rows)
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    if kind == "soft":
        return rng.uniform(0, 1, shape)
    if kind == "label_sets":  # rows of class indices padded with -1 (anything valid after it)
        t = rng.integers(-1, classes, shape)
        for row, k in zip(t.reshape(-1, classes), rng.permutation(classes + 1)):
            row[:k] = rng.integers(0, classes, k)  # (repeats too; no targets to all)
            row[k:k + 1] = -1
        return t
    return rng.standard_normal(shape)


def make_predictions(kind, shape, rng):
    if kind == "logits":
        return rng.standard_normal(shape) * 2
    if kind == "log_probs":
        return np.log(rng.dirichlet(np.ones(shape[-1]), shape[:-1]))
    if kind == "probs":
        return rng.dirichlet(np.ones(shape[-1]), shape[:-1])
    return rng.uniform(0.05, 2.0, shape)  # unnormalised positive scores


def split(name, options):
    """(options for fastloss, options for the reference)."""
    ref = {k: v for k, v in options.items() if k not in ("ignore_class", "ignore_index")}
    ignore = options.get("ignore_class", options.get("ignore_index"))
    return options, dict(ref, ignore=ignore)


def check(actual, expected, dtype, atol=0.0):
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)


def sample_weights(kind, rng):
    return {"none": None, "scalar": 0.7, "rows": rng.uniform(0, 2, R)}[kind]


def run_case(case, dtype, reduction, weights, seed=0):
    name, options, targets, preds = case
    rng = np.random.default_rng(seed)
    t = make_targets(targets, (R, C), rng)
    p = make_predictions(preds, (R, C), rng)
    if targets == "labels":
        t[1] = options.get("ignore_class", options.get("ignore_index", t[1]))
    kw, ref_kw = split(name, options)
    sw = sample_weights(weights, rng)
    extra = {} if sw is None else {"sample_weight": sw}
    loss = getattr(fl, name)
    expected = reference(name, t, p, reduction=reduction, **extra, **ref_kw)
    pd = p.astype(dtype)
    value = loss(t, pd, reduction=reduction, **extra, **kw)
    check(value, expected, dtype, atol=1e-12)

    unreduced = np.ndim(expected) > 0
    go = rng.uniform(-1, 1, np.shape(expected)) if unreduced else 1.3

    def scalar_reference(q):
        return np.sum(go * reference(name, t, q, reduction=reduction, **extra, **ref_kw))
    expected_grad = finite_difference_grad(scalar_reference, p, h=1e-5)
    grad = loss.grad(t, pd, reduction=reduction, grad_output=go, **extra, **kw)
    assert grad.shape == p.shape
    check(grad, expected_grad, dtype, atol=1e-7 if dtype == np.float64 else 1e-6)
    fused_value, fused_grad = loss.value_and_grad(t, pd, reduction=reduction, grad_output=go,
                                                  **extra, **kw)
    # A row's gradient depends on row sums, which LLVM may vectorise differently in the
    # fused and the gradient-only kernel: equal up to a few ulp, not bitwise.
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(fused_value, value, rtol=4 * eps)
    np.testing.assert_allclose(fused_grad, grad, rtol=16 * eps, atol=16 * eps * np.abs(grad).max())


KERAS_CASES = [c for c in CASES if ROW_LOSSES[c[0]][0] == "keras"]
TORCH_CASES = [c for c in CASES if ROW_LOSSES[c[0]][0] != "keras"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", KERAS_CASES, ids=case_id)
def test_keras_every_reduction_and_weight(case, dtype, backend):
    if backend == "cuda":  # the simulator is slow: one reduction per weight form
        combos = [("sum_over_batch_size", "rows"), ("none", "scalar"), ("sum", "none")]
    else:
        combos = [(r, w) for r in KERAS_REDUCTIONS for w in ("none", "scalar", "rows")]
    for reduction, weights in combos:
        run_case(case, dtype, reduction, weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_torch_every_reduction(case, dtype, backend):
    for reduction in (["mean", "none"] if backend == "cuda" else TORCH_REDUCTIONS):
        run_case(case, dtype, reduction, "none")


@pytest.mark.parametrize("case", [c for c in CASES if c[2] != "labels"][:1]
                         + [CASES[4], CASES[12], CASES[18]], ids=case_id)
def test_long_rows_on_every_backend(case, backend):
    """Rows longer than a softmax block and than the CUDA split threshold, with logits
    that grow along the row (the one-pass softmax must rescale what it stored)."""
    name, options, targets, _ = case
    rng = np.random.default_rng(4)
    shape = (3, 2500 if backend != "cuda" else 300)
    t = make_targets(targets, shape, rng)
    p = rng.standard_normal(shape) + np.linspace(-80, 80, shape[1])
    kw, ref_kw = split(name, options)
    loss = getattr(fl, name)
    value, grad = loss.value_and_grad(t, p, **kw)
    check(value, reference(name, t, p, **ref_kw), np.float64)
    # central differences of the reference at a few places along each row
    h = 1e-5
    for col in (0, 1, shape[1] // 2, shape[1] - 2, shape[1] - 1):
        for row in range(shape[0]):
            q = p.copy()
            q[row, col] += h
            up = np.sum(reference(name, t, q, **ref_kw))  # (grad: of the sum of the values)
            q[row, col] -= 2 * h
            down = np.sum(reference(name, t, q, **ref_kw))
            np.testing.assert_allclose(grad[row, col], (up - down) / (2 * h), rtol=1e-5, atol=1e-9)
    assert np.all(np.isfinite(grad))


def test_keras_axis_moves_the_class_axis():
    rng = np.random.default_rng(5)
    t = rng.dirichlet(np.ones(4), (3, 5)).transpose(0, 2, 1)  # classes on axis 1
    p = rng.standard_normal((3, 4, 5))
    for name in ("categorical_crossentropy", "cosine_similarity"):
        loss = getattr(fl, name)
        kw = {"from_logits": True} if name == "categorical_crossentropy" else {}
        value, grad = loss.value_and_grad(t, p, axis=1, **kw)
        check(value, reference(name, t, p, axis=1, **kw), np.float64)
        fd = finite_difference_grad(lambda q: np.sum(reference(name, t, q, axis=1, **kw)), p)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)
    labels = rng.integers(0, 4, (3, 5))
    value = fl.sparse_categorical_crossentropy(labels, p, from_logits=True, axis=1)
    check(value, reference("sparse_categorical_crossentropy", labels, p, axis=1,
                           from_logits=True), np.float64)


def test_torch_class_axis_is_dim_1():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 3, 4))
    y = rng.integers(0, 5, (2, 3, 4))
    value, grad = fl.cross_entropy.value_and_grad(y, x, label_smoothing=0.1)
    check(value, reference("cross_entropy", y, x, label_smoothing=0.1), np.float64)
    fd = finite_difference_grad(lambda q: reference("cross_entropy", y, q, label_smoothing=0.1), x)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)
    one = fl.cross_entropy(np.int64(2), x[0, :, 0, 0])  # a single sample: input (C,)
    check(one, -np.log(np.exp(x[0, 2, 0, 0]) / np.exp(x[0, :, 0, 0]).sum()), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_exact_and_finite(dtype, backend):
    """|logit| up to 1e4: log-sum-exp stays exact, gradients finite (no exp overflow)."""
    rng = np.random.default_rng(7)
    x = rng.choice([-1e4, -3e3, 0.0, 5.0, 3e3, 1e4], (4, 6)).astype(dtype)
    labels = np.array([0, 1, 4, 5])
    for name, kw in [("sparse_categorical_crossentropy", {"from_logits": True}),
                     ("cross_entropy", {"label_smoothing": 0.1}),
                     ("categorical_crossentropy", {"from_logits": True})]:
        t = labels if name != "categorical_crossentropy" else np.eye(6)[labels]
        value, grad = getattr(fl, name).value_and_grad(t, x, **kw)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
        expected = reference(name, t, x.astype(np.float64), **kw)
        np.testing.assert_allclose(value, expected, rtol=RTOL[dtype])


def test_all_ignored_batches():
    x = np.random.default_rng(8).standard_normal((3, 4))
    # Keras: every row masked -> 0 for every reduction, zero gradient
    for reduction in KERAS_REDUCTIONS:
        value, grad = fl.sparse_categorical_crossentropy.value_and_grad(
            [1, 1, 1], x, from_logits=True, ignore_class=1, reduction=reduction)
        assert np.all(value == 0) and np.all(grad == 0)
    # PyTorch: the mean over no target is NaN (0 / 0); the sum is 0; gradients are 0
    value, grad = fl.cross_entropy.value_and_grad(np.array([-100, -100, -100]), x)
    assert np.isnan(value) and np.all(grad == 0)
    assert fl.nll_loss(np.array([2, 2, 2]), x, ignore_index=2, reduction="sum") == 0


def test_single_class_rows():
    x = np.random.default_rng(9).standard_normal((4, 1))
    with pytest.warns(SyntaxWarning, match="num_classes > 1"):  # (as Keras warns)
        value, grad = fl.categorical_crossentropy.value_and_grad(np.ones((4, 1)), x,
                                                                 from_logits=True)
    assert np.all(value == 0) and np.all(grad == 0)
    value, grad = fl.cross_entropy.value_and_grad(np.zeros(4, np.int64), x)
    assert value == 0 and np.all(grad == 0)


@pytest.mark.parametrize("bad", [6, -5, 100])
def test_labels_out_of_range_raise(bad):
    x = np.zeros((3, 6))
    for name, kw in [("sparse_categorical_crossentropy", {}), ("cross_entropy", {}),
                     ("nll_loss", {}), ("multi_margin_loss", {}),
                     ("categorical_generalized_cross_entropy", {})]:
        with pytest.raises(ValueError, match=r"y_true\[2\] = .* not a class index in \[0, 6\)"):
            getattr(fl, name)(np.array([0, 1, bad]), x, **kw)


def test_labels_errors_name_the_problem():
    x = np.zeros((3, 6))
    with pytest.raises(ValueError, match=r"shape \(4,\).*shape \(3, 6\)"):
        fl.sparse_categorical_crossentropy(np.zeros(4, np.int64), x)
    with pytest.raises(TypeError, match="integer class indices"):
        fl.cross_entropy(np.zeros(3), x)
    with pytest.raises(ValueError, match="non-finite"):
        fl.sparse_categorical_crossentropy(np.array([0.0, np.nan, 1.0]), x)
    with pytest.raises(ValueError, match=r"y_true of shape \(3, 5\) and y_pred of shape "
                                         r"\(3, 6\) must have the same shape"):
        fl.categorical_crossentropy(np.zeros((3, 5)), x)
    with pytest.raises(ValueError, match="weight must have one entry per class"):
        fl.cross_entropy(np.zeros(3, np.int64), x, weight=np.ones(5))
    with pytest.raises(ValueError, match="p must be one of"):
        fl.multi_margin_loss(np.zeros(3, np.int64), x, p=3)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        fl.categorical_generalized_cross_entropy(np.zeros(3, np.int64), x, q=1.0)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fl.categorical_crossentropy(np.zeros((3, 6)), x, axis=2)
    with pytest.raises(ValueError, match="has no classes"):
        fl.cross_entropy(np.zeros(3, np.int64), np.zeros((3, 0)))
    # the ignored value is allowed, out of range or not
    assert np.isfinite(fl.sparse_categorical_crossentropy([0, -1, 2], x + 1, ignore_class=-1)).all()


def test_division_by_zero_gives_nan_like_keras():
    """Probabilities that sum to 0: Keras divides 0 by 0 and returns NaN; so does fastloss
    (no ZeroDivisionError)."""
    value, grad = fl.categorical_crossentropy.value_and_grad(np.eye(3), np.zeros((3, 3)))
    assert np.all(np.isnan(value)) and np.all(np.isnan(grad))


def test_keras_float_labels_are_truncated_like_keras():
    x = np.random.default_rng(10).standard_normal((3, 4))
    a = fl.sparse_categorical_crossentropy(np.array([1.0, 2.0, 3.0]), x, from_logits=True)
    b = fl.sparse_categorical_crossentropy(np.array([1, 2, 3]), x, from_logits=True)
    np.testing.assert_array_equal(a, b)


def test_every_row_loss_is_exported():
    rows = by_family("rows")
    assert set(rows) == set(ROW_LOSSES)
    for name, loss in rows.items():
        assert getattr(fl, name) is loss


def test_row_value_and_grad_are_bitwise_repeatable():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 3000)).astype(np.float32)
    y = rng.integers(0, 3000, 64)
    a = fl.cross_entropy.value_and_grad(y, x)
    b = fl.cross_entropy.value_and_grad(y, x)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_multilabel_margin_targets_end_at_the_first_minus_one():
    """PyTorch's multilabel targets: the indices before a row's first -1 (what follows is
    checked but not read); a repeated index counts twice; a row without targets gives 0."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(4, 5)) * 2
    loss = fl.multilabel_margin_loss
    y = np.array([[0, 3, -1, 4, 2], [-1, 0, 1, 2, 3], [1, 1, -1, -1, -1], [2, 4, 0, 1, 3]])
    same = np.array([[0, 3, -1, -1, -1], [-1, -1, -1, -1, -1], [1, 1, -1, 0, 0],
                     [2, 4, 0, 1, 3]])
    value, grad = loss.value_and_grad(y, x, reduction="none")
    check(value, reference("multilabel_margin_loss", y, x, reduction="none"), np.float64)
    same_value, same_grad = loss.value_and_grad(same, x, reduction="none")
    np.testing.assert_array_equal(value, same_value)
    np.testing.assert_array_equal(grad, same_grad)
    assert value[1] == 0 and np.all(grad[1] == 0) and value[3] == 0 and np.all(grad[3] == 0)
    once = loss.value_and_grad(np.array([1, -1, -1, -1, -1]), x[2], reduction="sum")
    np.testing.assert_allclose(value[2], 2 * once[0], rtol=1e-15)
    np.testing.assert_allclose(grad[2], 2 * once[1], rtol=1e-15)
    for dtype in (np.int8, np.uint8, np.int32, np.uint64):  # (no -1 in an unsigned dtype)
        full = np.array([[2, 4, 0, 1, 3]], dtype)
        np.testing.assert_array_equal(loss(full, x[3:]), 0.0)


def test_multilabel_margin_bad_targets_raise_before_any_kernel():
    x = np.zeros((3, 4))
    loss = fl.multilabel_margin_loss
    for bad in (4, -2, 2 ** 40):
        y = np.array([[0, -1, 3, 3], [1, 2, bad, -1], [0, 0, 0, 0]])
        with pytest.raises(ValueError, match=rf"y_true\[1, 2\] = {bad} is not a class index "
                                             r"in \[0, 4\) nor the padding -1"):
            loss.value_and_grad(y, x)
    with pytest.raises(ValueError, match=r"y_true\[3\] = 9"):  # (after the first -1 too)
        loss(np.array([0, -1, 1, 9]), x[0])
    with pytest.raises(ValueError, match=r"y_true of shape \(3,\) must hold class indices of "
                                         r"y_pred's shape \(3, 4\)"):
        loss(np.zeros(3, np.int64), x)
    with pytest.raises(ValueError, match=r"y_pred must have shape \(C,\) or \(N, C\)"):
        loss(np.zeros((3, 4, 2), np.int64), np.zeros((3, 4, 2)))
    with pytest.raises(TypeError, match="integer class indices.*float64"):
        loss(np.zeros((3, 4)), x)
    with pytest.raises(TypeError, match="booleans"):
        loss(np.zeros((3, 4), bool), x)


@pytest.mark.parametrize("threshold", [0, 1 << 62])  # the multi-threaded check, NumPy's
def test_multilabel_margin_range_check_finds_any_bad_entry(monkeypatch, threshold):
    """Large int64 targets are range-checked in one multi-threaded pass: a bad entry
    anywhere (first, last, inside, after a row's -1) raises, naming it; good ones pass."""
    monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", threshold)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 7))
    good = np.where(rng.random((300, 7)) < 0.5, rng.integers(0, 7, (300, 7)), -1)
    value = fl.multilabel_margin_loss(good, x, reduction="none")
    check(value, reference("multilabel_margin_loss", good, x, reduction="none"), np.float64)
    for where, bad in (((0, 0), 7), ((299, 6), -2), ((150, 3), 2 ** 40), ((77, 5), -9)):
        y = good.copy()
        y[where] = bad
        with pytest.raises(ValueError, match=rf"y_true\[{where[0]}, {where[1]}\] = {bad} "):
            fl.multilabel_margin_loss(y, x)


def test_multilabel_margin_float32_rows_beyond_exact_counts_raise(monkeypatch):
    """float32 counts of active terms are exact up to FLOAT32_COUNT_LIMIT classes a row;
    longer float32 rows raise (the limit lowered here to keep the arrays small), float64
    ones are computed."""
    from fastloss.families import rows

    monkeypatch.setattr(rows, "FLOAT32_COUNT_LIMIT", 4)
    y = np.array([[0, 2, -1, -1, -1], [4, -1, -1, -1, -1]])
    x = np.linspace(-1.0, 1.0, 10).reshape(2, 5)
    with pytest.raises(ValueError, match=r"float32 rows of more than 4 classes \(got 5\)"):
        fl.multilabel_margin_loss(y, x.astype(np.float32))
    check(fl.multilabel_margin_loss(y, x, reduction="none"),
          reference("multilabel_margin_loss", y, x, reduction="none"), np.float64)
    y4, x4 = np.array([[0, 2, -1, -1], [3, -1, -1, -1]]), x[:, :4]
    check(fl.multilabel_margin_loss(y4, x4.astype(np.float32), reduction="none"),
          reference("multilabel_margin_loss", y4, x4, reduction="none"), np.float32)


def test_multilabel_margin_long_rows_on_a_cuda_block():
    """Rows of at least 64 classes take a CUDA block each: every lane visits every target,
    the lanes' sums are the block's."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(3, 70))
    y = np.full((3, 70), -1)
    y[0, :5] = [3, 69, 3, 0, 40]
    y[2] = rng.permutation(70)
    y[2, 10] = -1  # (ten targets)
    cpu = fl.multilabel_margin_loss.value_and_grad(y, x, reduction="none")
    check(cpu[0], reference("multilabel_margin_loss", y, x, reduction="none"), np.float64)
    with fl.backend("cuda"):
        got = fl.multilabel_margin_loss.value_and_grad(y, x, reduction="none")
    np.testing.assert_allclose(got[0], cpu[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], cpu[1], rtol=1e-12, atol=1e-15)

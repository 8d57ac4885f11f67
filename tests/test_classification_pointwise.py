"""Binary classification losses (Keras 3, torch.nn.functional, Optax) against the float64
references of tests/references.py, on every backend.

The CUDA simulator costs about half a second a call, so the CUDA backend runs fewer
reductions per case than the CPU ones; every element function still runs on it in both
dtypes, at ordinary and at extreme inputs.
"""

import numpy as np
import pytest

import fastloss as fl
from fastloss import _config
from references import (CLASSIFICATION, EPS, classification_grad, classification_value,
                        finite_difference_grad)

RTOL = {np.float32: 2e-5, np.float64: 1e-10}
KERAS_REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none"]
TORCH_REDUCTIONS = ["mean", "sum", "none"]
SHAPE = (4, 5)

# (loss, options, labels, predictions): every option that changes the math.
KERAS_CASES = [
    ("binary_crossentropy", {}, "soft", "probs"),
    ("binary_crossentropy", {"label_smoothing": 0.2}, "binary", "probs"),
    ("binary_crossentropy", {"from_logits": True}, "soft", "logits"),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.2}, "binary", "logits"),
    ("binary_focal_crossentropy", {}, "binary", "probs"),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5,
                                   "label_smoothing": 0.1}, "soft", "probs"),
    ("binary_focal_crossentropy", {"gamma": 0.0, "apply_class_balancing": True}, "binary", "probs"),
    ("binary_focal_crossentropy", {"from_logits": True}, "binary", "logits"),
    ("binary_focal_crossentropy", {"from_logits": True, "apply_class_balancing": True,
                                   "alpha": 0.4, "gamma": 0.5, "label_smoothing": 0.1},
     "soft", "logits"),
    ("hinge", {}, "plus_minus", "scores"),
    ("hinge", {}, "binary", "scores"),
    ("squared_hinge", {}, "plus_minus", "scores"),
    ("squared_hinge", {}, "binary", "scores"),
    ("kl_divergence", {}, "distribution", "distribution"),
]
TORCH_CASES = [
    ("binary_cross_entropy", {}, "soft", "probs"),
    ("binary_cross_entropy_with_logits", {}, "soft", "logits"),
    ("soft_margin_loss", {}, "plus_minus", "logits"),
    ("sigmoid_focal_loss", {}, "binary", "logits"),
    ("sigmoid_focal_loss", {"alpha": 0.25, "gamma": 1.5}, "soft", "logits"),
    ("sigmoid_focal_loss", {"alpha": 0.6, "gamma": 3.0}, "binary", "logits"),
]


def case_id(case):
    name, options, labels, _ = case
    return "-".join([name, labels] + [f"{k}={v}" for k, v in options.items()])


def make_labels(kind, shape, rng):
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    if kind == "soft":
        return rng.choice([0.0, 1.0, 0.25, 0.7], shape)
    if kind == "plus_minus":
        return rng.choice([-1.0, 1.0], shape)
    return rng.uniform(0.05, 1.0, shape)  # distribution


def make_predictions(kind, shape, rng):
    if kind == "probs":  # away from the clip bounds: float32 and float64 clip alike there
        return rng.uniform(0.02, 0.98, shape)
    if kind == "logits":
        return rng.normal(0.0, 3.0, shape)
    if kind == "scores":
        return rng.normal(0.0, 1.5, shape)
    return rng.uniform(0.05, 1.0, shape)


def data(case, dtype, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    t = make_labels(case[2], shape, rng)
    p = make_predictions(case[3], shape, rng)
    return t.astype(dtype), p.astype(dtype)


def sample_weight(form, rng):
    return {"none": None, "scalar": 0.7, "per_sample": rng.uniform(0.1, 2.0, SHAPE[0]),
            "column": rng.uniform(0.1, 2.0, (SHAPE[0], 1))}[form]


def check(actual, expected, dtype, atol=1e-12):
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)


def check_grad(actual, expected, dtype):
    """Gradients: relative to the gradient's scale (a few elements are near zero)."""
    assert actual.dtype == dtype and actual.shape == np.shape(expected)
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale * 1e-2)


def assert_same_up_to_summation_order(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=2 * np.finfo(a.dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", KERAS_CASES, ids=case_id)
def test_keras_value_grad(case, dtype, backend):
    name, options, _, _ = case
    loss = getattr(fl, name)
    t, p = data(case, dtype)
    rng = np.random.default_rng(1)
    forms = ["none", "scalar", "per_sample", "column", "per_sample"]
    pairs = list(zip(KERAS_REDUCTIONS, forms))
    if backend == "cuda":
        pairs = [pairs[0], pairs[3], pairs[4]]  # sum_over_batch_size, weighted mean, none
    for reduction, form in pairs:
        kw = dict(sample_weight=sample_weight(form, rng), reduction=reduction, **options)
        expected = classification_value(name, t, p, **kw)
        grad_output = rng.uniform(-1, 1, np.shape(expected)) if reduction == "none" else 1.7
        value, grad = loss.value_and_grad(t, p, grad_output=grad_output, **kw)
        check(value, expected, dtype)
        check_grad(grad, classification_grad(name, t, p, grad_output=grad_output, **kw), dtype)
    # The value-only and gradient-only kernels agree with the fused one.
    kw = dict(sample_weight=sample_weight("per_sample", rng), **options)
    value, grad = loss.value_and_grad(t, p, **kw)
    assert_same_up_to_summation_order(loss(t, p, **kw), value)
    np.testing.assert_array_equal(loss.grad(t, p, **kw), grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_torch_and_optax_value_grad(case, dtype, backend):
    name, options, _, _ = case
    loss = getattr(fl, name)
    t, p = data(case, dtype)
    rng = np.random.default_rng(2)
    reductions = TORCH_REDUCTIONS if backend != "cuda" else ["mean", "none"]
    for reduction in reductions:
        kw = dict(reduction=reduction, **options)
        expected = classification_value(name, t, p, **kw)
        grad_output = rng.uniform(-1, 1, p.shape) if reduction == "none" else None
        value, grad = loss.value_and_grad(t, p, grad_output=grad_output, **kw)
        check(value, expected, dtype)
        check_grad(grad, classification_grad(name, t, p, grad_output=grad_output, **kw), dtype)
    # default reduction: "mean" for PyTorch's, elementwise ("none") for Optax's
    value, grad = loss.value_and_grad(t, p, **options)
    assert np.shape(value) == (p.shape if name == "sigmoid_focal_loss" else ())
    check(value, classification_value(name, t, p, **options), dtype)
    np.testing.assert_array_equal(loss.grad(t, p, **options), grad)


@pytest.mark.parametrize("case", KERAS_CASES + TORCH_CASES, ids=case_id)
def test_references_agree_with_finite_differences(case):
    """The analytic reference gradients (used above) are those of the reference values."""
    name = case[0]
    t, p = data(case, np.float64, shape=(3, 4), seed=3)
    for reduction in ("sum", "none"):
        go = np.random.default_rng(4).uniform(-1, 1, np.shape(
            classification_value(name, t, p, reduction=reduction, **case[1])))
        numeric = finite_difference_grad(
            lambda q: np.sum(go * classification_value(name, t, q, reduction=reduction,
                                                       **case[1])), p)
        analytic = classification_grad(name, t, p, reduction=reduction, grad_output=go,
                                       **case[1])
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", KERAS_CASES + TORCH_CASES, ids=case_id)
def test_kernel_gradient_matches_finite_differences_of_the_kernel(case):
    name, options = case[0], case[1]
    loss = getattr(fl, name)
    t, p = data(case, np.float64, shape=(3, 4), seed=5)
    kw = dict(reduction="sum", **options)
    numeric = finite_difference_grad(lambda q: loss(t, q, **kw), p)
    np.testing.assert_allclose(loss.grad(t, p, **kw), numeric, rtol=1e-6, atol=1e-8)


# -- extreme inputs ---------------------------------------------------------------------

LOGITS = np.array([1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 17.0, -17.0, 1e-3, 0.0])
LOGIT_LOSSES = [
    ("binary_crossentropy", {"from_logits": True}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("binary_focal_crossentropy", {"from_logits": True}),
    ("binary_focal_crossentropy", {"from_logits": True, "gamma": 0.5,
                                   "apply_class_balancing": True}),
    ("binary_cross_entropy_with_logits", {}),
    ("soft_margin_loss", {}),
    ("sigmoid_focal_loss", {}),
    ("sigmoid_focal_loss", {"alpha": 0.25, "gamma": 0.5}),
]
PROBS = np.array([0.0, 1.0, 1e-30, 1e-9, EPS, 1 - 1e-9, 0.5, 0.9999, 1e-4, 0.3])
PROB_LOSSES = [
    ("binary_crossentropy", {}),
    ("binary_focal_crossentropy", {}),
    ("binary_focal_crossentropy", {"gamma": 0.5, "label_smoothing": 0.1}),
    ("binary_focal_crossentropy", {"gamma": 0.0}),
    ("binary_cross_entropy", {}),
    ("kl_divergence", {}),
]


def extreme_inputs(values, labels):
    """Every value against every label, as rows of the labels' length."""
    p = np.repeat(values, len(labels)).reshape(-1, len(labels))
    t = np.tile(labels, (len(values), 1))
    return t, p


def keras_clip_bounds(name, dtype):
    """Keras clips to [1e-7, 1 - 1e-7] in the input's dtype: in float32 the upper bound is
    float32(1 - 1e-7) = 1 - 1.19e-7, which -log(1 - p) at a clipped p shows."""
    if name not in ("binary_crossentropy", "binary_focal_crossentropy"):
        return {}
    bounds = {"lo": float(dtype(EPS)), "hi": float(dtype(1 - EPS))}
    return dict(bounds, dtype=dtype) if name == "binary_focal_crossentropy" else bounds


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_give_finite_values_and_gradients(dtype, backend):
    """|logit| up to 1e4 in float32: finite, and the float64 reference's values and
    gradients to the dtype's precision: saturated, never cancelled (float32 results
    below 1e-20 may come from subnormal intermediates, and are only checked to 1e-20)."""
    tiny = 1e-20 if dtype == np.float32 else float(np.finfo(dtype).tiny)
    for name, options in LOGIT_LOSSES:
        labels = [-1.0, 1.0] if name == "soft_margin_loss" else [0.0, 1.0, 0.5]
        t, p = extreme_inputs(LOGITS, labels)
        loss = getattr(fl, name)
        kw = dict(reduction="none", **options)
        value, grad = loss.value_and_grad(t.astype(dtype), p.astype(dtype), **kw)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), (name, options)
        ref = dict(kw, **keras_clip_bounds(name, dtype))
        np.testing.assert_allclose(value, classification_value(name, t, p, **ref),
                                   rtol=RTOL[dtype] * 5, atol=tiny, err_msg=f"{name} {options}")
        np.testing.assert_allclose(grad, classification_grad(name, t, p, **ref),
                                   rtol=RTOL[dtype] * 5, atol=tiny, err_msg=f"{name} {options}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_at_and_beyond_the_clip_bounds(dtype, backend):
    """Probabilities 0, 1, and next to the clip bounds: finite values and gradients, and
    the reference's in float64 (in float32 the bound 1 - 1e-7 itself rounds)."""
    for name, options in PROB_LOSSES:
        t, p = extreme_inputs(PROBS, [0.0, 1.0, 0.5])
        loss = getattr(fl, name)
        kw = dict(reduction="none" if name != "kl_divergence" else "sum", **options)
        value, grad = loss.value_and_grad(t.astype(dtype), p.astype(dtype), **kw)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), (name, options)
        if dtype == np.float64:
            np.testing.assert_allclose(value, classification_value(name, t, p, **kw),
                                       rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(grad, classification_grad(name, t, p, **kw),
                                       rtol=1e-12, atol=1e-300, err_msg=f"{name} {options}")


def test_clip_bounds_and_kinks_take_half_the_gradient(backend):
    """At an exact clip bound or hinge kink the gradient is half the one-sided one (JAX's
    convention for clip and maximum, which Keras's default backends share)."""
    one_side = (1 - 0.3) / (1 - EPS) - 0.3 / EPS  # d bce / dp inside, y = 0.3, p = 1e-7
    g = fl.binary_crossentropy.grad([[0.3]], [[EPS]], reduction="sum")
    np.testing.assert_allclose(g, [[0.5 * one_side]], rtol=1e-12)
    assert fl.binary_crossentropy.grad([[0.3]], [[EPS / 2]], reduction="sum")[0, 0] == 0.0
    g = fl.kl_divergence.grad([[0.4, 0.6]], [[1.0, 2.0]], reduction="sum")
    np.testing.assert_allclose(g, [[-0.5 * 0.4, 0.0]], rtol=1e-12)
    g = fl.hinge.grad([[-1.0, 1.0, 1.0]], [[-1.0, 1.0, 0.5]], reduction="sum")
    np.testing.assert_allclose(g, [[0.5 / 3, -0.5 / 3, -1 / 3]], rtol=1e-12)
    g = fl.squared_hinge.grad([[1.0]], [[1.0]], reduction="sum")
    assert g[0, 0] == 0.0


def test_torch_binary_cross_entropy_clamps_the_log(backend):
    """PyTorch: log clamped at -100; its backward (p - t) / max(p (1 - p), 1e-12)."""
    t = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.0, 1.0, 1e-50, 0.5])
    value, grad = fl.binary_cross_entropy.value_and_grad(t, p, reduction="none")
    np.testing.assert_allclose(value, [100.0, 100.0, 100.0, np.log(2)], rtol=1e-12)
    eps = float(np.float32(1e-12))  # PyTorch's EPSILON is a float constant, in any dtype
    np.testing.assert_allclose(grad, [-1 / eps, 1 / eps, -1 / eps, 2.0], rtol=1e-12)
    # outside [0, 1]: a ValueError naming y_pred, as PyTorch raises; NaN still propagates
    for bad in ([0.5, 1.5], [-0.5, 0.5], [np.nan, 1.5]):
        with pytest.raises(ValueError, match="y_pred"):
            fl.binary_cross_entropy([1.0, 0.0], bad)
    value, grad = fl.binary_cross_entropy.value_and_grad([1.0, 0.0], [np.nan, 0.5],
                                                         reduction="none")
    assert np.isnan(value[0]) and np.isnan(grad[0]) and np.isfinite(value[1])


# -- hinge labels -----------------------------------------------------------------------

def test_hinge_converts_binary_labels_only_when_all_are_zero_or_one(backend):
    p = np.array([[0.3, -0.8, 1.5], [-0.2, 0.9, -1.7]])
    binary = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    plus_minus = 2 * binary - 1
    for loss in (fl.hinge, fl.squared_hinge):
        # 0/1 labels give the same loss and gradient as the -1/1 labels they stand for
        v01, g01 = loss.value_and_grad(binary, p, reduction="none")
        vpm, gpm = loss.value_and_grad(plus_minus, p, reduction="none")
        np.testing.assert_array_equal(v01, vpm)
        np.testing.assert_array_equal(g01, gpm)
        # one label that is neither 0 nor 1: nothing is converted
        mixed = binary.copy()
        mixed[1, 2] = 0.5
        vm, gm = loss.value_and_grad(mixed, p, reduction="none")
        m = np.maximum(1 - mixed * p, 0)
        expected = (m if loss is fl.hinge else m ** 2).mean(axis=-1)
        np.testing.assert_allclose(vm, expected, rtol=1e-12)
        # all -1/1 labels are left alone, and the caller's array is never modified
        labels = binary.astype(np.float64)
        loss(labels, p)
        np.testing.assert_array_equal(labels, binary)
    # integer and bool labels are converted too
    np.testing.assert_array_equal(fl.hinge(binary.astype(np.int8), p, reduction="none"),
                                  fl.hinge(plus_minus, p, reduction="none"))
    np.testing.assert_array_equal(fl.hinge(binary.astype(bool), p, reduction="none"),
                                  fl.hinge(plus_minus, p, reduction="none"))


@pytest.mark.parametrize("threshold", [0, 1 << 62], ids=["one-pass test", "numpy test"])
def test_hinge_label_test_finds_any_label_other_than_zero_or_one(monkeypatch, threshold):
    """Large labels are tested in one multi-threaded pass (kernels.pointwise.zeros_and_ones,
    from PARALLEL_THRESHOLD elements on): one label other than 0 or 1 anywhere (first,
    last, inside a later block, NaN) leaves every label as given; labels all 0 or 1 are
    read as -1 and 1."""
    monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", threshold)
    rng = np.random.default_rng(3)
    p = rng.standard_normal((30, 1000))
    binary = (rng.random((30, 1000)) < 0.5).astype(np.float64)
    for loss, power in ((fl.hinge, 1), (fl.squared_hinge, 2)):
        np.testing.assert_array_equal(loss(binary, p, reduction="none"),
                                      loss(2 * binary - 1, p, reduction="none"))
        for where, label in (((0, 0), 0.5), ((29, 999), -1.0), ((17, 345), 2.0),
                             ((3, 3), np.nan)):
            mixed = binary.copy()
            mixed[where] = label
            expected = (np.maximum(1 - mixed * p, 0) ** power).mean(axis=-1)
            np.testing.assert_allclose(loss(mixed, p, reduction="none"), expected,
                                       rtol=1e-12)


# -- API: aliases, classes, options -------------------------------------------------------

def test_aliases_classes_and_defaults():
    assert fl.bce is fl.BCE is fl.binary_crossentropy
    assert fl.kld is fl.KLD is fl.kl_divergence
    t, p = data(KERAS_CASES[2], np.float64)
    bce = fl.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, reduction="sum")
    assert bce(t, p) == fl.binary_crossentropy(t, p, from_logits=True, label_smoothing=0.1,
                                               reduction="sum")
    assert bce.get_config() == {"name": "binary_crossentropy", "reduction": "sum",
                                "from_logits": True, "label_smoothing": 0.1, "axis": -1}
    focal = fl.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3)
    assert focal(t, p) == fl.binary_focal_crossentropy(t, p, apply_class_balancing=True, alpha=0.3,
                                                       reduction="sum_over_batch_size")
    for cls, fn in [("Hinge", "hinge"), ("SquaredHinge", "squared_hinge"),
                    ("KLDivergence", "kl_divergence"), ("BCELoss", "binary_cross_entropy"),
                    ("BCEWithLogitsLoss", "binary_cross_entropy_with_logits"),
                    ("SoftMarginLoss", "soft_margin_loss")]:
        assert fl.get(cls).loss is getattr(fl, fn)
    assert fl.binary_cross_entropy.default_reduction == "mean"
    assert fl.sigmoid_focal_loss.default_reduction == "none"
    # Keras: the function returns per-sample losses, the class reduces
    assert fl.binary_focal_crossentropy.default_reduction == "none"
    assert fl.BinaryFocalCrossentropy().reduction == "sum_over_batch_size"


@pytest.mark.parametrize("name, options, error", [
    ("binary_crossentropy", {"label_smoothing": 1.5}, ValueError),
    ("binary_crossentropy", {"from_logits": 1}, TypeError),
    ("binary_focal_crossentropy", {"alpha": -0.1}, ValueError),
    ("binary_focal_crossentropy", {"gamma": -1.0}, ValueError),
    ("binary_focal_crossentropy", {"axis": 0.5}, TypeError),
    ("binary_crossentropy", {"axis": 1}, ValueError),
    ("binary_cross_entropy", {"weight": np.ones(2)}, ValueError),
    ("soft_margin_loss", {"weight": np.ones(3)}, TypeError),
    ("binary_cross_entropy_with_logits", {"pos_weight": np.ones(2)}, ValueError),
    ("sigmoid_focal_loss", {"alpha": 2.0}, ValueError),
    ("sigmoid_focal_loss", {"gamma": float("nan")}, ValueError),
])
def test_bad_options(name, options, error):
    with pytest.raises(error, match=next(iter(options))):
        getattr(fl, name)(np.ones(3), np.full(3, 0.5), **options)


def test_optax_alpha_none_is_unweighted():
    t, p = data(TORCH_CASES[3], np.float64)
    unweighted = fl.sigmoid_focal_loss(t, p, alpha=None)
    np.testing.assert_array_equal(unweighted, fl.sigmoid_focal_loss(t, p))
    weighted = fl.sigmoid_focal_loss(t, p, alpha=0.25)
    np.testing.assert_allclose(weighted, unweighted * np.where(t == 1, 0.25, 0.75), rtol=1e-14)


def test_nan_propagates_to_its_value_and_gradient(backend):
    for name, options, labels, predictions in KERAS_CASES + TORCH_CASES:
        t, p = data((name, options, labels, predictions), np.float64, shape=(2, 3), seed=6)
        p[0, 1] = np.nan
        loss = getattr(fl, name)
        value, grad = loss.value_and_grad(t, p, reduction="none", **options)
        bad = np.zeros(p.shape, bool)
        bad[0, 1] = True
        nan_values = bad.any(axis=-1) if CLASSIFICATION[name][1] == "keras" else bad
        np.testing.assert_array_equal(np.isnan(value), nan_values, err_msg=f"{name} {options}")
        np.testing.assert_array_equal(np.isnan(grad), bad, err_msg=f"{name} {options}")


# -- PyTorch's weight -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_torch_weight_rescales_each_element(name, backend):
    """weight broadcasts to y_pred and multiplies each element's loss; "mean" still
    divides by the number of elements."""
    case = next(c for c in TORCH_CASES if c[0] == name)
    t, p = data(case, np.float64)
    rng = np.random.default_rng(8)
    values, grads = CLASSIFICATION[name][0](t, p)
    reductions = TORCH_REDUCTIONS if backend != "cuda" else ["mean", "none"]
    for w in (rng.uniform(0, 2, SHAPE), rng.uniform(0, 2, SHAPE[-1]),
              rng.uniform(0, 2, (SHAPE[0], 1)), 0.3):
        wb = np.broadcast_to(w, SHAPE)
        for reduction in reductions:
            go = rng.uniform(-1, 1, SHAPE) if reduction == "none" else 1.7
            value, grad = getattr(fl, name).value_and_grad(t, p, weight=w, reduction=reduction,
                                                          grad_output=go)
            expected = {"none": wb * values, "sum": np.sum(wb * values),
                        "mean": np.mean(wb * values)}[reduction]
            np.testing.assert_allclose(value, expected, rtol=1e-12)
            scale = 1 / p.size if reduction == "mean" else 1.0
            np.testing.assert_allclose(grad, wb * grads * go * scale, rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match=r"weight of shape \(4,\)"):
        getattr(fl, name)(t, p, weight=np.ones(4))
    # the Keras-style class takes it at construction, as torch.nn's does
    cls = fl.BCELoss if name == "binary_cross_entropy" else fl.BCEWithLogitsLoss
    np.testing.assert_allclose(cls(weight=wb, reduction="sum")(t, p), np.sum(wb * values),
                               rtol=1e-12)


def test_torch_weight_gradient_matches_finite_differences():
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        case = next(c for c in TORCH_CASES if c[0] == name)
        t, p = data(case, np.float64, shape=(3, 4), seed=9)
        w = np.random.default_rng(9).uniform(0, 2, 4)
        loss = getattr(fl, name)
        numeric = finite_difference_grad(lambda q: loss(t, q, weight=w), p)
        np.testing.assert_allclose(loss.grad(t, p, weight=w), numeric, rtol=1e-6, atol=1e-8)


# -- Keras's axis -----------------------------------------------------------------------

AXIS_LOSSES = [("binary_crossentropy", {}, "soft", "probs"),
               ("binary_crossentropy", {"from_logits": True}, "soft", "logits"),
               ("binary_focal_crossentropy", {"gamma": 1.5, "from_logits": True}, "binary",
                "logits")]


@pytest.mark.parametrize("shape, axis", [((4, 5), 0), ((3, 4, 5), 0), ((3, 4, 5), 1),
                                         ((3, 4, 5), -2), ((3, 4, 5), 2)])
def test_keras_axis_reduces_that_axis(shape, axis, backend):
    """The mean over ``axis``: the reference moves it last (np.moveaxis) and reduces as
    usual; the gradient has y_pred's layout, also when written into out= or y_pred."""
    rng = np.random.default_rng(10)
    values_shape = tuple(np.delete(shape, axis))
    for case in AXIS_LOSSES:
        name, options = case[0], dict(case[1], axis=axis)
        t, p = data(case, np.float64, shape=shape)
        tm, pm = np.moveaxis(t, axis, -1), np.moveaxis(p, axis, -1)
        ref_options = case[1]
        for reduction, w in (("none", None), ("sum", rng.uniform(0.1, 2, values_shape)),
                             ("sum_over_batch_size", 0.5)):
            expected = classification_value(name, tm, pm, sample_weight=w, reduction=reduction,
                                            **ref_options)
            go = rng.uniform(-1, 1, np.shape(expected)) if reduction == "none" else 1.3
            expected_grad = np.moveaxis(classification_grad(
                name, tm, pm, sample_weight=w, reduction=reduction, grad_output=go,
                **ref_options), -1, axis)
            kw = dict(sample_weight=w, reduction=reduction, **options)
            value, grad = getattr(fl, name).value_and_grad(t, p, grad_output=go, **kw)
            assert np.shape(value) == np.shape(expected)
            np.testing.assert_allclose(value, expected, rtol=1e-12)
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-300)
            q = p.copy()
            getattr(fl, name).grad(t, q, grad_output=go, out=q, **kw)
            np.testing.assert_array_equal(q, grad)
    with pytest.raises(ValueError, match="axis"):
        fl.binary_crossentropy(t, p, axis=len(shape))


# -- a 1-D y_pred with an array of sample weights ------------------------------------------

def test_keras_scalar_loss_times_an_array_of_weights(backend):
    """Keras broadcasts a 1-D y_pred's scalar loss L against the weights: "none" L * w
    (w's shape), "sum" L * sum(w), "sum_over_batch_size" L * mean(w),
    "mean_with_sample_weight" L (0 when the weights sum to 0); a (0,) result as it is."""
    rng = np.random.default_rng(11)
    for case in (KERAS_CASES[0], KERAS_CASES[7], KERAS_CASES[-1]):
        name, options = case[0], case[1]
        t, p = data(case, np.float64, shape=(6,))
        for w in (rng.uniform(0.1, 2, 6), rng.uniform(0.1, 2, (6, 1)),
                  rng.uniform(0.1, 2, (2, 3)), np.zeros(4), np.zeros(0), np.ones(1)):
            for reduction in KERAS_REDUCTIONS:
                kw = dict(sample_weight=w, reduction=reduction, **options)
                expected = classification_value(name, t, p, **kw)
                go = rng.uniform(-1, 1, np.shape(expected)) if reduction == "none" else 1.3
                value, grad = getattr(fl, name).value_and_grad(t, p, grad_output=go, **kw)
                what = f"{name} w{w.shape} {reduction}"
                assert np.shape(value) == np.shape(expected), what
                np.testing.assert_allclose(value, expected, rtol=1e-12, err_msg=what)
                np.testing.assert_allclose(grad, classification_grad(name, t, p, grad_output=go,
                                                                     **kw),
                                           rtol=1e-12, atol=1e-300, err_msg=what)

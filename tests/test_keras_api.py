"""Keras's API as Keras's own loss tests exercise it: functions return per-sample losses
and classes reduce; Tversky as Keras main defines it; the shapes Keras refuses are
refused; classes take name and dtype and round-trip through get_config/from_config.
Expected numbers are written here from the formulas, in float64 NumPy."""

import warnings

import numpy as np
import pytest

import fastloss as fl

KERAS_NAMES = sorted(n for n, loss in fl.LOSSES.items() if loss.convention == "keras")
CLASS_NAMES = sorted(fl.CLASSES)


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_keras_functions_are_unreduced_and_classes_reduce(name):
    loss = fl.LOSSES[name]
    assert loss.default_reduction == "none"
    assert loss.spec.class_reduction == "sum_over_batch_size"
    if loss.spec.class_name:
        assert fl.CLASSES[loss.spec.class_name]().reduction == "sum_over_batch_size"


def test_other_conventions_keep_their_defaults():
    for name, loss in fl.LOSSES.items():
        if loss.convention != "keras":
            assert loss.spec.class_reduction == loss.default_reduction
    assert fl.mse_loss(np.ones(3), np.zeros(3)).shape == ()
    assert fl.cross_entropy(np.array([0, 1]), np.zeros((2, 3))).shape == ()


def test_mean_squared_error_function_returns_per_sample_losses():
    """Keras's test_base_function_reduction: y_true (3,) against y_pred (3, 1)."""
    y_true, y_pred = np.array([4.0, 8.0, 12.0]), np.array([[3.0], [0.0], [1.0]])
    values = fl.mean_squared_error(y_true, y_pred)
    np.testing.assert_array_equal(values, [1.0, 64.0, 121.0])
    assert fl.MeanSquaredError()(y_true, y_pred) == pytest.approx(186.0 / 3)
    assert fl.mean_squared_error(y_true, y_pred, reduction="sum") == 186.0


def test_function_gradient_is_of_the_summed_per_sample_losses():
    rng = np.random.default_rng(0)
    t, p = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(fl.mean_squared_error.grad(t, p), 2 * (p - t) / 5, rtol=1e-13)
    np.testing.assert_allclose(fl.MeanSquaredError().grad(t, p), 2 * (p - t) / 20, rtol=1e-13)


def test_circle_function_gives_one_loss_per_sample():
    rng = np.random.default_rng(1)
    labels, e = rng.integers(0, 3, 6), rng.standard_normal((6, 4))
    values = fl.circle(labels, e)
    assert values.shape == (6,)
    assert fl.Circle()(labels, e) == pytest.approx(values.mean(), rel=1e-12)


def _tversky(t, p, alpha, beta, axis=None):
    tp = np.sum(t * p, axis=axis)
    fp = np.sum((1 - t) * p, axis=axis)
    fn = np.sum(t * (1 - p), axis=axis)
    return 1 - tp / (tp + alpha * fp + beta * fn + 1e-7)


def test_tversky_weighs_false_positives_by_alpha_as_keras_main():
    t = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    p = np.array([[0.9, 0.2, 0.7, 0.1], [0.3, 0.8, 0.4, 0.6]])
    for alpha, beta in ((0.2, 0.8), (0.8, 0.2), (0.5, 0.5)):
        np.testing.assert_allclose(fl.tversky(t, p, alpha=alpha, beta=beta),
                                   _tversky(t, p, alpha, beta), rtol=1e-12)
        np.testing.assert_allclose(fl.tversky(t, p, alpha=alpha, beta=beta, axis=1),
                                   _tversky(t, p, alpha, beta, axis=1), rtol=1e-12)
    # one false positive and no false negative: only alpha counts
    t1, p1 = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert fl.tversky(t1, p1, alpha=0.0, beta=1.0) == pytest.approx(0.0, abs=1e-6)
    assert fl.tversky(t1, p1, alpha=1.0, beta=0.0) == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("name, kw", [
    ("binary_crossentropy", {}), ("binary_crossentropy", {"from_logits": True}),
    ("binary_focal_crossentropy", {}), ("categorical_crossentropy", {})])
def test_binary_and_categorical_crossentropies_refuse_other_shapes(name, kw):
    """Keras's test_shape_mismatch: class indices (3, 1) given for y_pred (3, 3)."""
    y_true = np.array([[0.0], [1.0], [1.0]])
    y_pred = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]])
    with pytest.raises(ValueError, match=r"y_true of shape \(3, 1\) and y_pred of shape "
                                         r"\(3, 3\) must have the same shape"):
        fl.LOSSES[name](y_true, y_pred, **kw)


def test_keras_binary_crossentropy_still_squeezes_a_trailing_axis_as_keras():
    y_true, y_pred = np.array([0.0, 1.0, 1.0]), np.array([[0.2], [0.7], [0.9]])
    expected = -np.log([0.8, 0.7, 0.9])
    np.testing.assert_allclose(fl.binary_crossentropy(y_true, y_pred), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "categorical_focal_crossentropy"])
def test_one_class_predictions_warn_as_keras(name):
    with pytest.warns(SyntaxWarning, match=r"expected y_pred.shape to be \(batch_size, "
                                           r"num_classes\) with num_classes > 1"):
        fl.LOSSES[name](np.ones((2, 1)), np.full((2, 1), 0.5))
    with pytest.warns(SyntaxWarning):
        fl.LOSSES[name](np.ones((2, 1, 4)), np.ones((2, 1, 4)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.LOSSES[name](np.eye(2), np.full((2, 2), 0.5))


def test_bad_reduction_names_the_argument_as_keras():
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`.*'abc'"):
        fl.Hinge(reduction="abc")


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_classes_round_trip_through_config(class_name):
    cls = fl.CLASSES[class_name]
    loss = cls.loss
    obj = cls(name="custom", dtype="float32")
    config = obj.get_config()
    assert config["name"] == "custom" and config["dtype"] == "float32"
    assert config["reduction"] == loss.spec.class_reduction
    for option in loss.options:  # every option, defaults included
        assert config[option.name] == option.default
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    assert "dtype" not in cls().get_config()  # (as Keras's configs, for the default)


def test_class_dtype_computes_in_it():
    t = np.array([[1, 9, 2], [-5, -2, 6]])
    p = np.array([[4, 8, 12], [8, 1, 3]], dtype=np.float32)
    expected = np.mean((p.astype(np.float64) - t) ** 2)
    for dtype in ("float64", "float32", "float16"):
        value = fl.MeanSquaredError(dtype=dtype)(t, p)
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_allclose(value, expected, rtol=1e-3 if dtype == "float16" else 1e-6)
    value, grad = fl.MeanSquaredError(dtype="float64").value_and_grad(t, p)
    assert value.dtype == grad.dtype == np.float64
    np.testing.assert_allclose(grad, 2 * (p - t) / 6, rtol=1e-15)


@pytest.mark.parametrize("dtype", ["int32", "complex64", "bool", "nonsense"])
def test_class_dtype_refuses_what_fastloss_cannot_compute(dtype):
    with pytest.raises(ValueError, match="dtype"):
        fl.MeanSquaredError(dtype=dtype)


def test_class_bfloat16_computes_in_float32_or_says_what_it_needs():
    t, p = np.ones((2, 3)), np.zeros((2, 3), np.float32)
    try:
        import ml_dtypes
    except ImportError:
        with pytest.raises(ValueError, match="ml_dtypes"):
            fl.MeanSquaredError(dtype="bfloat16")
    else:
        value = fl.MeanSquaredError(dtype="bfloat16")(t, p)
        assert value.dtype == np.dtype(ml_dtypes.bfloat16) and float(value) == 1.0

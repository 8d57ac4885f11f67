"""fl.xgboost_objective / fl.lightgbm_objective in real XGBoost and LightGBM training:
native and scikit-learn interfaces, with sample weights.  Where a library has the same
objective built in (squared error, logistic) the models equal the built-in's; where it
does not (focal, Poisson on a log rate) they equal models trained with an objective
written here in NumPy from the formulas."""

import numpy as np
import pytest

import fastloss as fl

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
pytest.importorskip("sklearn")

N, ROUNDS = 600, 8
# No regularisation or minimum hessian: a constant factor in (grad, hess) then leaves the
# trees alone, and the built-in objectives' trees are reproducible exactly.
XGB = dict(max_depth=3, eta=0.3, reg_lambda=0.0, min_child_weight=0.0, base_score=0.0,
           nthread=1)
LGB = dict(num_leaves=7, learning_rate=0.3, lambda_l2=0.0, min_sum_hessian_in_leaf=0.0,
           min_data_in_leaf=5, boost_from_average=False, verbose=-1, num_threads=1)


def data(kind, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 4))
    signal = 2 * X[:, 0] + np.sin(3 * X[:, 1])
    y = {"regression": signal + 0.2 * rng.standard_normal(N),
         "binary": (signal + rng.standard_normal(N) > 0).astype(np.float64),
         "counts": rng.poisson(np.exp(0.5 * signal / 3)).astype(np.float64)}[kind]
    return X, y, rng.uniform(0.5, 2.0, N)


def numpy_focal(gamma):
    def objective(y, margin):
        s = 1 / (1 + np.exp(-margin))
        c = 1 - s
        ce = np.logaddexp(0, -margin) + (1 - y) * margin
        q = y * c + (1 - y) * s
        sign, sc = 1 - 2 * y, s * c
        f, f1, f2 = q ** gamma, gamma * q ** (gamma - 1), gamma * (gamma - 1) * q ** (gamma - 2)
        grad = (s - y) * f + ce * f1 * sign * sc
        hess = sc * f + 2 * (s - y) * f1 * sign * sc + ce * (
            f2 * (sign * sc) ** 2 + f1 * sign * sc * (c - s))
        return grad, hess
    return objective


def numpy_poisson(y, log_rate):
    e = np.exp(log_rate)
    return e - y, e


def weighted(objective):
    def native(preds, data):
        g, h = objective(data.get_label(), preds)
        w = data.get_weight()
        return (g * w, h * w) if w is not None and np.size(w) else (g, h)
    return native


CASES = {  # kind, fastloss objective maker (library -> objective), built-in or NumPy
    "squared error": ("regression", lambda make: make("huber", delta=1e30),
                      {"xgboost": "reg:squarederror", "lightgbm": "regression"}),
    "logistic": ("binary", lambda make: make(fl.binary_cross_entropy_with_logits),
                 {"xgboost": "binary:logistic", "lightgbm": "binary"}),
    "focal": ("binary", lambda make: make("sigmoid_focal_loss", gamma=2.0), numpy_focal(2.0)),
    "poisson": ("counts", lambda make: make("poisson_nll_loss", log_input=True),
                numpy_poisson),
}


def xgb_native(X, y, w, objective):
    d = xgb.DMatrix(X, label=y, weight=w, base_margin=np.zeros(len(y)))
    if isinstance(objective, str):
        booster = xgb.train({**XGB, "objective": objective}, d, ROUNDS)
    else:
        booster = xgb.train(XGB, d, ROUNDS, obj=objective)
    return booster.predict(d, output_margin=True)


def lgb_native(X, y, w, objective):
    booster = lgb.train({**LGB, "objective": objective}, lgb.Dataset(X, label=y, weight=w),
                        ROUNDS)
    return booster.predict(X, raw_score=True)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_native_training_equals_the_reference_objective(case, library):
    kind, make, reference = CASES[case]
    X, y, w = data(kind)
    ours = make(fl.xgboost_objective if library == "xgboost" else fl.lightgbm_objective)
    theirs = reference[library] if isinstance(reference, dict) else weighted(reference)
    train = xgb_native if library == "xgboost" else lgb_native
    got, expected = train(X, y, w, ours), train(X, y, w, theirs)
    assert np.std(got) > 0.1  # (the model learned something)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["squared error", "logistic"])
def test_scikit_learn_estimators_with_sample_weights(case):
    kind, make, builtin = CASES[case]
    X, y, w = data(kind, seed=1)
    xgb_model = xgb.XGBClassifier if kind == "binary" else xgb.XGBRegressor
    lgb_model = lgb.LGBMClassifier if kind == "binary" else lgb.LGBMRegressor
    margins = []
    for objective in (builtin["xgboost"], make(fl.xgboost_objective)):
        model = xgb_model(n_estimators=ROUNDS, objective=objective, **XGB)
        model.fit(X, y, sample_weight=w, base_margin=np.zeros(N))
        margins.append(model.predict(X, output_margin=True, base_margin=np.zeros(N)))
    np.testing.assert_allclose(margins[0], margins[1], rtol=1e-5, atol=1e-5)
    margins = []
    for objective in (builtin["lightgbm"], make(fl.lightgbm_objective)):
        model = lgb_model(n_estimators=ROUNDS, objective=objective, **LGB)
        model.fit(X, y, sample_weight=w)
        margins.append(model.predict(X, raw_score=True))
    np.testing.assert_allclose(margins[0], margins[1], rtol=1e-5, atol=1e-5)


def test_objective_values_and_forms():
    """The three call forms give the same (grad, hess); weights multiply both; a
    Keras-style loss object carries its options."""
    rng = np.random.default_rng(2)
    y = (rng.random(50) < 0.4).astype(np.float64)
    m = rng.standard_normal(50)
    w = rng.uniform(0.5, 2.0, 50)
    objective = fl.xgboost_objective(fl.BinaryFocalCrossentropy(gamma=3.0, from_logits=True))
    g, h = objective(y, m)
    g_direct, h_direct = fl.binary_focal_crossentropy.grad_hess(
        y[:, None], m[:, None], gamma=3.0, from_logits=True, reduction="none")
    np.testing.assert_array_equal(g, g_direct[:, 0])
    np.testing.assert_array_equal(h, h_direct[:, 0])
    gw, hw = objective(y, m, sample_weight=w)
    np.testing.assert_allclose(gw, g * w, rtol=1e-15)
    np.testing.assert_allclose(hw, h * w, rtol=1e-15)
    d = xgb.DMatrix(np.zeros((50, 1)), label=y, weight=w)
    gn, hn = objective(m, d)
    np.testing.assert_allclose(gn, g * w, rtol=1e-6)  # (DMatrix keeps float32 labels)
    np.testing.assert_allclose(hn, h * w, rtol=1e-6)
    assert "binary_focal_crossentropy" in repr(objective)


def test_bad_objectives_raise():
    with pytest.raises(TypeError, match="no second derivative"):
        fl.xgboost_objective("nll_loss")
    with pytest.raises(TypeError, match="from_logits=True"):
        fl.xgboost_objective("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="class indices"):
        fl.xgboost_objective("cross_entropy")(np.array([0.0, 3.0]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(samples, classes\)"):
        fl.xgboost_objective("cross_entropy")(np.array([0.0, 1.0, 1.0]), np.zeros(4))
    with pytest.raises(TypeError, match="unexpected option"):
        fl.lightgbm_objective("huber", gamma=1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        fl.xgboost_objective("no_such_loss")
    with pytest.raises(ValueError, match="labels for"):
        fl.xgboost_objective("huber")(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="sample weights"):
        fl.lightgbm_objective("huber")(np.zeros(4), np.zeros(4), np.ones(3))


def test_user_defined_loss_as_an_xgboost_objective(tmp_path, monkeypatch):
    """A loss of one's own (define_loss: an asymmetric squared error) trains XGBoost and
    LightGBM models equal to ones trained with its objective written in NumPy."""
    pytest.importorskip("sympy")
    from fastloss import math as fm
    monkeypatch.setenv("FASTLOSS_CACHE_DIR", str(tmp_path))
    asymmetric = fl.define_loss(
        "under_forecast_penalty",
        lambda t, p, over, under: fm.where(p > t, over, under) * (p - t) ** 2,
        options={"over": 1.0, "under": 4.0}, convention="torch")

    def numpy_asymmetric(y, p):
        k = np.where(p > y, 1.0, 3.0)
        return 2 * k * (p - y), 2 * k

    X, y, w = data("regression", seed=2)
    got = xgb_native(X, y, w, fl.xgboost_objective(asymmetric, under=3.0))
    expected = xgb_native(X, y, w, weighted(numpy_asymmetric))
    assert np.std(got) > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    got = lgb_native(X, y, w, fl.lightgbm_objective("under_forecast_penalty", under=3.0))
    np.testing.assert_allclose(got, lgb_native(X, y, w, weighted(numpy_asymmetric)),
                               rtol=1e-5, atol=1e-5)


K = 3


def numpy_softmax(y, margins):
    """Softmax cross-entropy's per-sample gradient and Hessian diagonal, from the formula."""
    e = np.exp(margins - margins.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    return s - np.eye(margins.shape[1])[y.astype(int)], s * (1 - s)


def multiclass_data(seed=3):
    X, y, w = data("regression", seed)
    return X, np.digitize(y, np.quantile(y, [1 / 3, 2 / 3])).astype(np.float64), w


@pytest.mark.parametrize("make", [
    lambda make: make("cross_entropy"),
    lambda make: make("sparse_categorical_crossentropy", from_logits=True),
    lambda make: make(fl.CategoricalCrossentropy(from_logits=True)),
], ids=["cross_entropy", "sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_multiclass_softmax_with_sample_weights(make):
    """Multi-class models (native interfaces, sample weights) trained with a softmax
    cross-entropy objective equal models trained with the NumPy softmax objective."""
    X, y, w = multiclass_data()

    def native_numpy(preds, data):
        g, h = numpy_softmax(data.get_label(), preds)
        return g * data.get_weight()[:, None], h * data.get_weight()[:, None]

    def xgb_margins(objective):
        d = xgb.DMatrix(X, label=y, weight=w, base_margin=np.zeros((N, K)))
        booster = xgb.train({**XGB, "num_class": K, "disable_default_eval_metric": 1}, d,
                            ROUNDS, obj=objective)
        return booster.predict(d, output_margin=True)

    def lgb_margins(objective):
        booster = lgb.train({**LGB, "objective": objective, "num_class": K},
                            lgb.Dataset(X, label=y, weight=w), ROUNDS)
        return booster.predict(X, raw_score=True)

    got = xgb_margins(make(fl.xgboost_objective))
    assert got.shape == (N, K) and np.std(got) > 0.1
    np.testing.assert_allclose(got, xgb_margins(native_numpy), rtol=1e-5, atol=1e-5)
    got = lgb_margins(make(fl.lightgbm_objective))
    np.testing.assert_allclose(got, lgb_margins(native_numpy), rtol=1e-5, atol=1e-5)


def test_multiclass_scikit_learn_estimators():
    X, y, w = multiclass_data(seed=4)
    margins = []
    for objective in (fl.xgboost_objective("cross_entropy"),
                      lambda y, p, sample_weight=None: tuple(
                          a * sample_weight[:, None] for a in numpy_softmax(y, p))):
        model = xgb.XGBClassifier(n_estimators=ROUNDS, objective=objective, **XGB)
        model.fit(X, y, sample_weight=w, base_margin=np.zeros((N, K)))
        margins.append(model.predict(X, output_margin=True, base_margin=np.zeros((N, K))))
    np.testing.assert_allclose(margins[0], margins[1], rtol=1e-5, atol=1e-5)
    margins = []
    for objective in (fl.lightgbm_objective("cross_entropy"),
                      lambda y, p, weight: tuple(a * weight[:, None]
                                                 for a in numpy_softmax(y, p))):
        model = lgb.LGBMClassifier(n_estimators=ROUNDS, objective=objective, **LGB)
        model.fit(X, y, sample_weight=w)
        margins.append(model.predict(X, raw_score=True))
    assert margins[0].shape == (N, K)
    np.testing.assert_allclose(margins[0], margins[1], rtol=1e-5, atol=1e-5)

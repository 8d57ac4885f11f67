"""Float64 NumPy references, written from the formulas and the source libraries' docs.

Nothing here calls fastloss.  Each pointwise loss is (elementwise value, elementwise
derivative in y_pred); the Keras and PyTorch reductions are written out as those
libraries define them.
"""

import numpy as np

EPS = 1e-7


def _sign(x):
    return np.sign(x)


def mse(t, p, **_):
    return (p - t) ** 2, 2 * (p - t)


def mae(t, p, **_):
    return np.abs(p - t), _sign(p - t)


def mape(t, p, **_):
    den = np.maximum(np.abs(t), EPS)
    return 100 * np.abs((t - p) / den), -100 * _sign(t - p) / den


def msle(t, p, **_):
    d = np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)
    return d ** 2, np.where(p > EPS, 2 * d / (np.maximum(p, EPS) + 1), 0.0)


def huber(t, p, delta=1.0):
    e = p - t
    value = np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * np.abs(e) - 0.5 * delta ** 2)
    grad = np.where(np.abs(e) <= delta, e, delta * _sign(e))
    return value, grad


def log_cosh(t, p, **_):
    e = p - t
    return np.logaddexp(e, -e) - np.log(2.0), np.tanh(e)


def poisson(t, p, **_):
    return p - t * np.log(p + EPS), 1 - t / (p + EPS)


def smooth_l1(t, p, beta=1.0):
    e = p - t
    if beta == 0:
        return np.abs(e), _sign(e)
    small = np.abs(e) < beta
    return (np.where(small, 0.5 * e ** 2 / beta, np.abs(e) - 0.5 * beta),
            np.where(small, e / beta, _sign(e)))


def torch_huber(t, p, delta=1.0):
    e = p - t
    small = np.abs(e) < delta
    return (np.where(small, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta)),
            np.where(small, e, delta * _sign(e)))


# name -> (elementwise reference, convention, option name or None)
POINTWISE = {
    "mean_squared_error": (mse, "keras", None),
    "mean_absolute_error": (mae, "keras", None),
    "mean_absolute_percentage_error": (mape, "keras", None),
    "mean_squared_logarithmic_error": (msle, "keras", None),
    "huber": (huber, "keras", "delta"),
    "log_cosh": (log_cosh, "keras", None),
    "poisson": (poisson, "keras", None),
    "l1_loss": (mae, "torch", None),
    "mse_loss": (mse, "torch", None),
    "smooth_l1_loss": (smooth_l1, "torch", "beta"),
    "huber_loss": (torch_huber, "torch", "delta"),
}


def keras_same_rank(a, b):
    """keras.src.losses.loss.squeeze_or_expand_to_same_rank, on arrays."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        if b.ndim == 1:
            b = b[..., None]
        else:
            a = a[..., 0]
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        if a.ndim == 1:
            a = a[..., None]
        else:
            b = b[..., 0]
    return a, b


def keras_loss(elementwise, t, p, sample_weight=None, reduction="none", **opt):
    """Keras 3's LossFunctionWrapper + reduce_weighted_values, in float64."""
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    t, p = keras_same_rank(t, p)
    values = elementwise(np.broadcast_to(t, p.shape), p, **opt)[0].mean(axis=-1)
    return keras_reduce(values, sample_weight, reduction)


def keras_reduce(values, sample_weight, reduction):
    """Keras 3's reduce_weighted_values of per-sample values, in float64."""
    values = np.asarray(values, np.float64)
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, np.float64)
        values, w = keras_same_rank(values, w)
        values = values * w
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    divisor = w.sum() if (reduction == "mean_with_sample_weight" and w is not None) else values.size
    return 0.0 if divisor == 0 else total / divisor


def torch_loss(elementwise, t, p, reduction="mean", **opt):
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    values = elementwise(np.broadcast_to(t, p.shape), p, **opt)[0]
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


def reference_value(name, t, p, **kwargs):
    elementwise, convention, _ = POINTWISE[name]
    fn = keras_loss if convention == "keras" else torch_loss
    return fn(elementwise, t, p, **kwargs)


def finite_difference_grad(f, p, h=1e-6):
    """4th-order central differences of a scalar function of p (float64)."""
    p = np.array(p, np.float64)
    grad = np.empty_like(p)
    flat, gflat = p.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        x0 = flat[i]
        vals = []
        for k in (-2, -1, 1, 2):
            flat[i] = x0 + k * h
            vals.append(float(f(p)))
        flat[i] = x0
        gflat[i] = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)
    return grad


# -- Binary classification ---------------------------------------------------------------
# Elementwise (value, d value / d y_pred) in float64.  At an exact clip bound or max() kink
# the gradient is half the one-sided one (JAX's convention for clip and maximum).

HI = 1 - EPS


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _clip_slope(x, lo, hi):
    """d clip(x, lo, hi) / dx, 1/2 at the bounds."""
    return np.where((x > lo) & (x < hi), 1.0, np.where((x == lo) | (x == hi), 0.5, 0.0))


def _smooth(t, label_smoothing):
    return t * (1 - label_smoothing) + 0.5 * label_smoothing


def keras_bce(t, p, from_logits=False, label_smoothing=0.0, lo=EPS, hi=HI):
    """keras.losses.binary_crossentropy (ops.binary_crossentropy of the JAX backend).
    lo, hi: the clip bounds (in float32, Keras's 1 - 1e-7 is float32(1 - 1e-7))."""
    y = _smooth(t, label_smoothing)
    if from_logits:
        return (-y * _log_sigmoid(p) - (1 - y) * _log_sigmoid(-p),
                (1 - y) * _sigmoid(p) - y * _sigmoid(-p))
    pc = np.clip(p, lo, hi)
    value = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    return value, ((1 - y) / (1 - pc) - y / pc) * _clip_slope(p, lo, hi)


def _focal_weight(q, gamma):
    """(q**gamma, d q**gamma / dq), with 0**0 = 1 and the derivative 0 at q = 0 (gamma != 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(q > 0, q ** gamma, 1.0 if gamma == 0 else 0.0)
        df = np.where(q > 0, gamma * q ** (gamma - 1), 1.0 if gamma == 1 else 0.0)
    return f, df


def keras_binary_focal(t, p, apply_class_balancing=False, alpha=0.25, gamma=2.0,
                       from_logits=False, label_smoothing=0.0, lo=EPS, hi=HI, dtype=None):
    """keras.losses.binary_focal_crossentropy: with from_logits, the formula on
    p = sigmoid(y_pred) (its crossentropy clipped too), times sigmoid' = p (1 - p).  lo, hi:
    the clip bounds; dtype: the one Keras rounds p, 1 - p, 1 - lo and 1 - hi to (float32
    Keras: log(1 - clip(p)), 1 - sigmoid(x) rounded where sigmoid(x) nears 1)."""
    y = _smooth(t, label_smoothing)
    prob = p
    if from_logits and dtype is None:
        prob = _sigmoid(p)
    elif from_logits:  # Keras: 1 / (1 + exp(-x)) in the input's dtype (1 at x = 17 in float32)
        with np.errstate(over="ignore"):
            x = np.asarray(p).astype(dtype)
            prob = (dtype(1) / (dtype(1) + np.exp(-x))).astype(np.float64)
    comp = 1 - prob if dtype is None else (1 - prob).astype(dtype).astype(np.float64)
    clo, chi = (1 - hi, 1 - lo) if dtype is None else (float(dtype(1 - hi)), float(dtype(1 - lo)))
    pc, cc = np.clip(prob, lo, hi), np.clip(comp, clo, chi)  # cc = 1 - clip(prob)
    bce = -(y * np.log(pc) + (1 - y) * np.log(cc))
    dbce = ((1 - y) / cc - y / pc) * _clip_slope(prob, lo, hi)
    q = y * comp + (1 - y) * prob  # 1 - p_t, of the unclipped probability
    f, df = _focal_weight(q, gamma)
    w = y * alpha + (1 - y) * (1 - alpha) if apply_class_balancing else 1.0
    value = w * f * bce
    grad = w * (df * (1 - 2 * y) * bce + f * dbce)
    return value, (grad * prob * comp if from_logits else grad)


def hinge_labels(t):
    """keras convert_binary_labels_to_hinge."""
    return 2 * t - 1 if np.all((t == 0) | (t == 1)) else t


def keras_hinge(t, p):
    t = hinge_labels(t)
    m = 1 - t * p
    return np.maximum(m, 0), -t * np.where(m > 0, 1.0, np.where(m == 0, 0.5, 0.0))


def keras_squared_hinge(t, p):
    t = hinge_labels(t)
    m = np.maximum(1 - t * p, 0)
    return m ** 2, -2 * t * m


def keras_kl_divergence(t, p):
    tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
    return tc * np.log(tc / pc), -tc / pc * _clip_slope(p, EPS, 1)


def torch_bce(t, p):
    """torch.nn.functional.binary_cross_entropy and its backward formula."""
    with np.errstate(divide="ignore"):
        value = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
    eps = float(np.float32(1e-12))  # PyTorch's EPSILON is a float, in every dtype
    return value, (p - t) / np.maximum(p * (1 - p), eps)


def torch_bce_logits(t, p):
    return (-(t * _log_sigmoid(p) + (1 - t) * _log_sigmoid(-p)),
            (1 - t) * _sigmoid(p) - t * _sigmoid(-p))


def torch_soft_margin(t, p):
    return np.logaddexp(0.0, -t * p), -t * _sigmoid(-t * p)


def optax_sigmoid_focal(t, p, alpha=None, gamma=2.0):
    """optax.losses.sigmoid_focal_loss(logits=p, labels=t)."""
    ce, dce = torch_bce_logits(t, p)
    s, c = _sigmoid(p), _sigmoid(-p)
    q = t * c + (1 - t) * s
    f, df = _focal_weight(q, gamma)
    w = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    return w * ce * f, w * (dce * f + ce * df * (1 - 2 * t) * s * c)


def kl_div_reference(t, x, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div(x, t) with its reductions, "batchmean" included."""
    values = np.exp(t) * (t - x) if log_target else (
        np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0) - t * x)
    if reduction == "none":
        return values
    if reduction == "batchmean":
        return values.sum() / x.shape[0]
    return values.sum() if reduction == "sum" else values.mean()


def bce_pos_weight_reference(y, x, pos_weight, weight=None, reduction="mean"):
    """torch.nn.functional.binary_cross_entropy_with_logits with weight and pos_weight."""
    values = -(pos_weight * y * -np.logaddexp(0, -x) + (1 - y) * -np.logaddexp(0, x))
    if weight is not None:
        values = values * weight
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


# name -> (elementwise reference, convention, how the last axis is reduced (Keras))
CLASSIFICATION = {
    "binary_crossentropy": (keras_bce, "keras", "mean"),
    "binary_focal_crossentropy": (keras_binary_focal, "keras", "mean"),
    "hinge": (keras_hinge, "keras", "mean"),
    "squared_hinge": (keras_squared_hinge, "keras", "mean"),
    "kl_divergence": (keras_kl_divergence, "keras", "sum"),
    "binary_cross_entropy": (torch_bce, "torch", None),
    "binary_cross_entropy_with_logits": (torch_bce_logits, "torch", None),
    "soft_margin_loss": (torch_soft_margin, "torch", None),
    "sigmoid_focal_loss": (optax_sigmoid_focal, "torch", None),
}


def _keras_reduce(values, sample_weight, reduction):
    """Keras 3's sample weighting and reduce_weighted_values on per-sample values."""
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, np.float64)
        values, w = keras_same_rank(values, w)
        values = values * w
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    divisor = w.sum() if (reduction == "mean_with_sample_weight" and w is not None) else values.size
    return 0.0 if divisor == 0 else total / divisor


def classification_value(name, t, p, sample_weight=None, reduction=None, **opt):
    """The reduced value of a classification loss, as its library defines it (float64).
    reduction=None means the library's default ("sum_over_batch_size", torch's "mean",
    Optax's elementwise "none")."""
    elementwise, convention, rows = CLASSIFICATION[name]
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    if convention == "keras":
        t, p = keras_same_rank(t, p)
        values = elementwise(np.broadcast_to(t, p.shape), p, **opt)[0]
        values = values.mean(axis=-1) if rows == "mean" else values.sum(axis=-1)
        return _keras_reduce(values, sample_weight, reduction or "sum_over_batch_size")
    values = elementwise(np.broadcast_to(t, p.shape), p, **opt)[0]
    reduction = reduction or ("none" if name == "sigmoid_focal_loss" else "mean")
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


def classification_grad(name, t, p, sample_weight=None, reduction=None, grad_output=None,
                        **opt):
    """The vector-Jacobian product of classification_value from the analytic elementwise
    derivative (exact at kinks and clip bounds, where finite differences are not)."""
    elementwise, convention, rows = CLASSIFICATION[name]
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    go = 1.0 if grad_output is None else np.asarray(grad_output, np.float64)
    if convention == "keras":
        t2, p2 = keras_same_rank(t, p)
        g = elementwise(np.broadcast_to(t2, p2.shape), p2, **opt)[1]
        if rows == "mean":
            g = g / p2.shape[-1]
        vjp = _reduction_vjp(p2.shape[:-1], sample_weight, reduction or "sum_over_batch_size", go)
        return (g * vjp[..., None]).reshape(p.shape)
    g = elementwise(np.broadcast_to(t, p.shape), p, **opt)[1]
    reduction = reduction or ("none" if name == "sigmoid_focal_loss" else "mean")
    if reduction == "mean":
        g = g / g.size
    return g * go


def _reduction_vjp(shape, sample_weight, reduction, go):
    """d sum(go * reduce(v)) / d v for per-sample values v of this shape: the Keras
    reduction is linear in v, so unit vectors give its gradient exactly."""
    n = int(np.prod(shape))
    out = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        out[i] = np.sum(go * _keras_reduce(e.reshape(shape), sample_weight, reduction))
    return out.reshape(shape)

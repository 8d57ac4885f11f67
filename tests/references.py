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


def keras_loss(elementwise, t, p, sample_weight=None, reduction="sum_over_batch_size", **opt):
    """Keras 3's LossFunctionWrapper + reduce_weighted_values, in float64."""
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    t, p = keras_same_rank(t, p)
    values = elementwise(np.broadcast_to(t, p.shape), p, **opt)[0].mean(axis=-1)
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

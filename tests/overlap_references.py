"""Float64 NumPy references for the overlap losses (dice, tversky, fbeta_loss), written
from Keras's formulas: per-sample losses over the reduced axes, their analytic gradient,
and Keras's sample weighting and reduction on top.  Nothing here calls fastloss."""

import numpy as np

from references import EPS, keras_reduce

DEFAULTS = {"dice": {}, "tversky": {"alpha": 0.5, "beta": 0.5}, "fbeta_loss": {"beta": 1.0}}


def _options(name, options):
    given = {**DEFAULTS[name], **options}
    return given.get("alpha"), given.get("beta")


def per_sample(name, t, p, axis, **options):
    """Keras's per-sample loss (the sums over axis), written as Keras writes it."""
    alpha, beta = _options(name, options)
    tp = np.sum(t * p, axis=axis)
    fp = np.sum((1 - t) * p, axis=axis)  # false alarms
    fn = np.sum(t * (1 - p), axis=axis)  # missed targets
    if name == "dice":
        return 1 - 2 * tp / (np.sum(t, axis=axis) + np.sum(p, axis=axis) + EPS)
    if name == "tversky":
        # Keras main (Salehi et al.): alpha on the false positives, beta on the false negatives
        return 1 - tp / (tp + alpha * fp + beta * fn + EPS)
    b2 = beta ** 2
    return 1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + EPS)


def per_sample_grad(name, t, p, axis, **options):
    """d per_sample[group of j] / d p_j, by the quotient rule: loss = 1 - N / D."""
    alpha, beta = _options(name, options)
    tp = np.sum(t * p, axis=axis, keepdims=True)
    fp = np.sum((1 - t) * p, axis=axis, keepdims=True)
    fn = np.sum(t * (1 - p), axis=axis, keepdims=True)
    # d tp / d p_j = t_j, d fp / d p_j = 1 - t_j, d fn / d p_j = -t_j
    if name == "dice":
        N, dN = 2 * tp, 2 * t
        D, dD = 2 * tp + fp + fn + EPS, 2 * t + (1 - t) - t
    elif name == "tversky":
        N, dN = tp, t
        D, dD = tp + alpha * fp + beta * fn + EPS, t + alpha * (1 - t) - beta * t
    else:
        b2 = beta ** 2
        N, dN = (1 + b2) * tp, (1 + b2) * t
        D, dD = (1 + b2) * tp + b2 * fn + fp + EPS, (1 + b2) * t - b2 * t + (1 - t)
    return -(dN * D - N * dD) / D ** 2


def reference(name, t, p, axis=None, sample_weight=None, reduction="none",
              **options):
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    return keras_reduce(per_sample(name, t, p, axis, **options), sample_weight, reduction)


def reference_grad(name, t, p, grad_output, axis=None, sample_weight=None,
                   reduction="none", **options):
    """The vector-Jacobian product of ``reference``: the reduction is linear in the
    per-sample losses, so its derivative by each is the reduction of a unit vector."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    losses = per_sample(name, t, p, axis, **options)
    basis = np.eye(losses.size).reshape((losses.size,) + losses.shape)
    d_losses = np.array([np.sum(grad_output * keras_reduce(e, sample_weight, reduction))
                         for e in basis]).reshape(losses.shape)
    axes = tuple(range(p.ndim)) if axis is None else axis
    return np.expand_dims(d_losses, axes) * per_sample_grad(name, t, p, axis, **options)

"""NumPy references and sample data of the overlap and batch-pairwise losses, for the
benchmarks (``python -m fastloss bench``, benchmarks/) and their tests: default options,
written as a NumPy user would.  Not imported by the loss functions themselves."""

import numpy as np

EPSILON = 1e-7  # Keras's backend.epsilon()


# -- overlap (Dice, Tversky, F-beta): sums over every element ----------------------------

def overlap_inputs(n, dtype, rng):
    """(y_true, y_pred) of about n elements: (n // 1000, 1000) targets in {0, 1} as floats,
    predictions in (0, 1)."""
    shape = (max(1, n // 1000), 1000)
    return ((rng.random(shape) < 0.5).astype(dtype),
            rng.uniform(0.05, 0.95, shape).astype(dtype))


def numpy_dice(t, p):
    return 1 - 2 * np.sum(t * p) / (np.sum(t) + np.sum(p) + EPSILON)


def numpy_dice_vg(t, p):
    tp = np.sum(t * p)
    denominator = np.sum(t) + np.sum(p) + EPSILON
    return 1 - 2 * tp / denominator, (2 * tp / denominator - 2 * t) / denominator


def numpy_tversky(t, p, alpha=0.5, beta=0.5):
    tp = np.sum(t * p)
    return 1 - tp / (tp + alpha * np.sum(t * (1 - p)) + beta * np.sum((1 - t) * p) + EPSILON)


def numpy_tversky_vg(t, p, alpha=0.5, beta=0.5):
    tp = np.sum(t * p)
    denominator = tp + alpha * np.sum(t * (1 - p)) + beta * np.sum((1 - t) * p) + EPSILON
    d_denominator = (1 - alpha - beta) * t + beta
    return 1 - tp / denominator, (tp * d_denominator - t * denominator) / denominator ** 2


def numpy_fbeta(t, p, beta=1.0):
    b2 = beta ** 2
    tp = np.sum(t * p)
    return 1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * np.sum(t * (1 - p)) + np.sum((1 - t) * p)
                                + EPSILON)


def numpy_fbeta_vg(t, p, beta=1.0):
    b2 = beta ** 2
    tp = np.sum(t * p)
    denominator = (1 + b2) * tp + b2 * np.sum(t * (1 - p)) + np.sum((1 - t) * p) + EPSILON
    # d denominator / d p_j = (1 + b2) t_j - b2 t_j + (1 - t_j) = 1
    return 1 - (1 + b2) * tp / denominator, (1 + b2) * (tp - t * denominator) / denominator ** 2


OVERLAP_BENCH = {
    "dice": (overlap_inputs, numpy_dice, numpy_dice_vg),
    "tversky": (overlap_inputs, numpy_tversky, numpy_tversky_vg),
    "fbeta_loss": (overlap_inputs, numpy_fbeta, numpy_fbeta_vg),
}


# -- batch-pairwise (circle, ntxent) ---------------------------------------------------

def pairwise_inputs(n, dtype, rng):
    """(labels, embeddings) of about n elements: N = n // 128 rows (2 to 2048) of D = 128
    unit vectors, labels from about N / 4 classes."""
    N = min(2048, max(2, n // 128))
    e = rng.standard_normal((N, 128))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return rng.integers(0, max(1, N // 4), N), e.astype(dtype)


def _masked_lse(x, mask):
    """Row-wise log-sum-exp of x over mask (-inf for an empty row), and exp(x - lse)."""
    x = np.where(mask, x, -np.inf)
    top = x.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(x - top).sum(axis=1, keepdims=True)) + top
    return lse[:, 0], np.where(mask, np.exp(x - np.where(np.isfinite(lse), lse, 0.0)), 0.0)


def _circle_terms(labels, e, gamma=80.0, margin=0.4):
    s = e @ e.T
    d = np.maximum(1 - s, 0)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    pos_weight = np.maximum(margin + d, 0)
    neg_weight = np.maximum(1 + margin - d, 0)
    p, alpha = _masked_lse(-gamma * pos_weight * (margin - d), positive)
    n, beta = _masked_lse(gamma * neg_weight * (1 - margin - d), ~same)
    loss = np.logaddexp(p + n, 0)
    valid = max(np.count_nonzero(loss > 0), 1)
    return loss, valid, s, d, p + n, alpha, beta, pos_weight, neg_weight, margin, gamma


def numpy_circle(labels, e):
    loss, valid = _circle_terms(labels, e)[:2]
    return loss.sum() / valid


def numpy_circle_vg(labels, e):
    loss, valid, s, d, x, alpha, beta, pos_weight, neg_weight, margin, gamma = \
        _circle_terms(labels, e)
    d_pos = -gamma * ((margin + d > 0) * (margin - d) - pos_weight)
    d_neg = -gamma * ((1 + margin - d > 0) * (1 - margin - d) + neg_weight)
    sigma = 1 / (1 + np.exp(-x))
    G = (sigma[:, None] / valid) * (alpha * d_pos + beta * d_neg) * np.where(1 - s > 0, -1.0, 0.0)
    return loss.sum() / valid, (G + G.T) @ e


def _ntxent_terms(labels, e, temperature=0.07):
    norm = np.sqrt(np.maximum((e * e).sum(axis=1), np.finfo(e.dtype).eps))
    u = e / norm[:, None]
    s = u @ u.T / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    x = s - np.where(positive | ~same, s, -np.inf).max(axis=1, keepdims=True)
    negatives = np.where(~same, np.exp(x), 0).sum(axis=1, keepdims=True)
    denominator = np.exp(x) + negatives
    loss = np.where(positive, np.log(denominator) - x, 0).sum() / positive.sum()
    return loss, u, norm, x, positive, same, negatives, denominator, temperature


def numpy_ntxent(labels, e):
    return _ntxent_terms(labels, e)[0]


def numpy_ntxent_vg(labels, e):
    loss, u, norm, x, positive, same, negatives, denominator, temperature = \
        _ntxent_terms(labels, e)
    inv_sum = np.where(positive, 1 / denominator, 0).sum(axis=1, keepdims=True)
    G = np.where(positive, -negatives / denominator, np.where(~same, np.exp(x) * inv_sum, 0))
    G /= positive.sum() * temperature
    g_u = (G + G.T) @ u
    return loss, (g_u - u * (u * g_u).sum(axis=1, keepdims=True)) / norm[:, None]


PAIRWISE_BENCH = {
    "circle": (pairwise_inputs, numpy_circle, numpy_circle_vg),
    "ntxent": (pairwise_inputs, numpy_ntxent, numpy_ntxent_vg),
}

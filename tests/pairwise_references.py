"""Float64 NumPy references for the batch-pairwise losses (Keras's circle, Optax's
ntxent), written from their formulas with the full N x N similarity matrix, and their
analytic gradients.  Nothing here calls fastloss."""

import numpy as np


def half_step(x):
    """d max(x, 0) / dx as JAX has it: 1 above 0, 1/2 at 0, 0 below."""
    return np.where(x > 0, 1.0, np.where(x == 0, 0.5, 0.0))


def masked_logsumexp(x, mask):
    x = np.where(mask, x, -np.inf)
    top = x.max(axis=1, keepdims=True, initial=-np.inf)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - top).sum(axis=1)) + top[:, 0]


def circle_terms(labels, e, ref_labels=None, ref_embeddings=None, gamma=80.0, margin=0.4,
                 remove_diagonal=True):
    """Keras's circle per sample, and d sample_i / d S_ij (S = e @ ref.T)."""
    ref = e if ref_embeddings is None else ref_embeddings
    ref_labels = labels if ref_labels is None else ref_labels
    s = e @ ref.T
    d = np.maximum(1 - s, 0)
    positive = labels[:, None] == ref_labels[None, :]
    negative = ~positive
    if remove_diagonal:
        positive &= ~np.eye(*s.shape, dtype=bool)
    pos_weight, neg_weight = np.maximum(margin + d, 0), np.maximum(1 + margin - d, 0)
    a = -gamma * pos_weight * (margin - d)
    b = gamma * neg_weight * (1 - margin - d)
    p, n = masked_logsumexp(a, positive), masked_logsumexp(b, negative)
    rows = np.logaddexp(p + n, 0)
    dd_ds = -half_step(1 - s)
    da = -gamma * (half_step(margin + d) * (margin - d) - pos_weight) * dd_ds
    db = gamma * (-half_step(1 + margin - d) * (1 - margin - d) - neg_weight) * dd_ds
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = 1 / (1 + np.exp(-(p + n)))
        alpha = np.where(positive, np.exp(a - p[:, None]), 0)
        beta = np.where(negative, np.exp(b - n[:, None]), 0)
    return rows, sigma[:, None] * (alpha * da + beta * db), ref


def keras_weights(rows, sample_weight, reduction):
    """Keras's merged weights (sample_weight times circle's mask rows > 0, which
    "sum_over_batch_size" scales by N / kept) and the reduction's divisor."""
    kept = rows > 0
    if reduction in ("mean", "sum_over_batch_size"):
        mask = np.where(kept, rows.size / kept.sum() if kept.any() else 0.0, 0.0)
    else:
        mask = kept * 1.0
    w = mask if sample_weight is None else np.reshape(sample_weight, (-1,)) * mask
    divisor = {"sum_over_batch_size": rows.size, "mean": rows.size,
               "mean_with_sample_weight": w.sum()}.get(reduction, 1.0)
    return w, divisor


def circle_reference(labels, e, sample_weight=None, reduction="none", **opts):
    rows = circle_terms(labels, e, **opts)[0]
    w, divisor = keras_weights(rows, sample_weight, reduction)
    if reduction == "none":
        return rows * w
    return (rows * w).sum() / divisor if divisor else 0.0


def circle_reference_grad(labels, e, sample_weight=None, reduction="none",
                          grad_output=1.0, **opts):
    rows, drows_ds, ref = circle_terms(labels, e, **opts)
    w, divisor = keras_weights(rows, sample_weight, reduction)
    cotangent = np.asarray(grad_output) * w / divisor if divisor else 0 * w
    G = cotangent[:, None] * drows_ds
    return G @ ref + (G.T @ e if opts.get("ref_embeddings") is None else 0)


def ntxent_terms(labels, e, temperature, eps):
    """Optax's ntxent: (sum of the positive pairs' losses, their number, d sum / d s with
    s = cos / temperature, the unit rows, the norms and the clamp's slopes)."""
    n2 = (e * e).sum(axis=1)
    norm = np.sqrt(np.maximum(n2, eps))
    u = e / norm[:, None]
    s = u @ u.T / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    total, G = 0.0, np.zeros_like(s)
    for i, j in zip(*np.nonzero(positive)):
        columns = np.r_[j, np.flatnonzero(~same[i])]  # the positive and i's negatives
        lse = np.logaddexp.reduce(s[i, columns])
        total += lse - s[i, j]
        G[i, columns] += np.exp(s[i, columns] - lse)
        G[i, j] -= 1
    return total, positive.sum(), G, u, norm, half_step(n2 - eps)


def ntxent_reference(labels, e, temperature=0.07, eps=np.finfo(np.float64).eps):
    total, pairs = ntxent_terms(labels, e, temperature, eps)[:2]
    return total / pairs if pairs else np.nan


def ntxent_reference_grad(labels, e, temperature=0.07, eps=np.finfo(np.float64).eps,
                          grad_output=1.0):
    _, pairs, G, u, norm, slope = ntxent_terms(labels, e, temperature, eps)
    if not pairs:
        return np.zeros_like(e)
    G = G * grad_output / (pairs * temperature)
    g_u = (G + G.T) @ u
    return (g_u - slope[:, None] * u * (u * g_u).sum(axis=1, keepdims=True)) / norm[:, None]

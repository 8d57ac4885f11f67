"""float64 NumPy references for the losses of several arrays (embeddings, likelihoods),
written from their formulas: each returns the unreduced values (one per row for the
losses over rows, one per element for the elementwise ones)."""

import math

import numpy as np


def pairwise_distance(x1, x2, p=2.0, eps=1e-6):
    """PyTorch's pairwise_distance: ||x1 - x2 + eps||_p over the last axis."""
    return (np.abs(x1 - x2 + eps) ** p).sum(-1) ** (1.0 / p)


def triplet_margin(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False):
    d_ap = pairwise_distance(anchor, positive, p, eps)
    d_an = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_an = np.minimum(d_an, pairwise_distance(positive, negative, p, eps))
    return np.maximum(margin + d_ap - d_an, 0.0)


def cosine_distance(x1, x2, eps=1e-8):
    """1 - PyTorch's cosine_similarity over the last axis: each norm clamped below at eps."""
    n1 = np.maximum(np.sqrt((x1 * x1).sum(-1)), eps)
    n2 = np.maximum(np.sqrt((x2 * x2).sum(-1)), eps)
    return 1.0 - (x1 * x2).sum(-1) / (n1 * n2)


def triplet_margin_distance(anchor, positive, negative, distance_function="euclidean",
                            margin=1.0, eps=None, swap=False):
    """PyTorch's triplet_margin_with_distance_loss with pairwise_distance ("euclidean") or
    1 - cosine_similarity ("cosine"), each with its own default eps."""
    if distance_function == "euclidean":
        def distance(x, y):
            return pairwise_distance(x, y, 2.0, 1e-6 if eps is None else eps)
    else:
        def distance(x, y):
            return cosine_distance(x, y, 1e-8 if eps is None else eps)
    d_ap = distance(anchor, positive)
    d_an = distance(anchor, negative)
    if swap:
        d_an = np.minimum(d_an, distance(positive, negative))
    return np.maximum(margin + d_ap - d_an, 0.0)


def _squared(x, y):
    return ((x - y) ** 2).sum(-1)


def quadruplet(anchor, positive, negative1, negative2, alpha1=1.0, alpha2=0.5):
    d_ap = _squared(anchor, positive)
    return (np.maximum(d_ap - _squared(anchor, negative1) + alpha1, 0.0)
            + np.maximum(d_ap - _squared(negative1, negative2) + alpha2, 0.0))


def contrastive(y, x1, x2, margin=1.0, eps=1e-6):
    d = pairwise_distance(x1, x2, 2.0, eps)
    return y * d ** 2 + (1 - y) * np.maximum(margin - d, 0.0) ** 2


def cosine_embedding(y, x1, x2, margin=0.0):
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1 ** 2).sum(-1) + 1e-12) * ((x2 ** 2).sum(-1) + 1e-12))
    return np.where(y == 1, 1 - cos, np.where(y == -1, np.maximum(cos - margin, 0.0), 0.0))


def margin_ranking(y, x1, x2, margin=0.0):
    return np.maximum(-y * (x1 - x2) + margin, 0.0)


def hinge_embedding(y, x, margin=1.0):
    return np.where(y != -1, x, 0.0) + np.where(y != 1, np.maximum(margin - x, 0.0), 0.0)


def poisson_nll(y, x, log_input=True, full=False, eps=1e-8):
    loss = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
    if full:
        safe = np.where(y > 1, y, 2.0)
        loss = loss + np.where(y > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * math.pi * safe), 0)
    return loss


def gaussian_nll(y, mean, var, full=False, eps=1e-6):
    if var.ndim and var.shape == mean.shape[:-1]:
        var = var[..., None]
    v = np.maximum(var, eps)
    loss = 0.5 * (np.log(v) + (mean - y) ** 2 / v)
    return loss + 0.5 * math.log(2 * math.pi) if full else loss


def gaussian_kl(mean, logvar):
    return -0.5 * (1 + logvar - mean ** 2 - np.exp(logvar))


def stacked_triplet(y, stacked, alpha=0.2):
    a, p, n = np.split(stacked, 3, axis=-1)
    return np.maximum(_squared(a, p) - _squared(a, n) + alpha, 0.0)

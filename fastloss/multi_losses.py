"""The table of losses over several prediction arrays (fastloss/_multi.py): metric
learning on rows of embeddings, and likelihoods with a second predicted array.

Adding one: write its tuple element (kernels/row_elements.py) or pair element
(kernels/elements.py), regenerate the kernels (``python -m fastloss.kernels._generate``),
and add a definition here and a reference in tests/multi_references.py.
"""

import numpy as np

from ._loss import Option
from ._multi import MultiLoss

_EPS_DISTANCE = Option("eps", 1e-6)  # PyTorch's pairwise_distance: added to x1 - x2

triplet_margin_loss = MultiLoss(
    "triplet_margin_loss", "triplet_margin", ("anchor", "positive", "negative"),
    (Option("margin", 1.0, "positive"), Option("p", 2.0, "positive"), _EPS_DISTANCE,
     Option("swap", False, "bool")),
    summary="max(margin + d(a, p) - d(a, n), 0), d(x, y) = ||x - y + eps||_p; with swap "
            "d(a, n) is min(d(a, n), d(p, n)) (PyTorch)")
quadruplet_loss = MultiLoss(
    "quadruplet_loss", "quadruplet", ("anchor", "positive", "negative1", "negative2"),
    (Option("alpha1", 1.0), Option("alpha2", 0.5)),
    summary="max(D(a, p) - D(a, n1) + alpha1, 0) + max(D(a, p) - D(n1, n2) + alpha2, 0), "
            "D the squared Euclidean distance; n2 of a class other than a's and n1's")
contrastive_loss = MultiLoss(
    "contrastive_loss", "contrastive", ("y_true", "x1", "x2"),
    (Option("margin", 1.0), _EPS_DISTANCE), labels=True,
    summary="y d**2 + (1 - y) max(margin - d, 0)**2, d = ||x1 - x2 + eps||; label 1 for "
            "similar pairs, 0 for dissimilar")
cosine_embedding_loss = MultiLoss(
    "cosine_embedding_loss", "cosine_embedding", ("y_true", "x1", "x2"),
    Option("margin", 0.0, "any"), labels=True,
    summary="1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1 "
            "(PyTorch)")
margin_ranking_loss = MultiLoss(
    "margin_ranking_loss", "margin_ranking", ("y_true", "x1", "x2"),
    Option("margin", 0.0, "any"), family="elements", labels=True,
    summary="max(0, -y (x1 - x2) + margin), elementwise (PyTorch)")


class _GaussianNLL(MultiLoss):
    """PyTorch's shapes for var: y_pred's shape, that shape with one axis of size 1, or
    without its last axis (one variance per sample); a single number too.  Negative
    variances raise (on the GPU, where that check would wait for the device, they give
    NaN)."""

    def check_inputs(self, named, option_values, xp):
        mean, var = named["y_pred"], named["var"]
        if var.shape != mean.shape and var.ndim > 0:
            if var.shape == mean.shape[:-1]:
                var = var.reshape(var.shape + (1,))
            elif not (var.ndim == mean.ndim and sum(
                    v for m, v in zip(mean.shape, var.shape) if m != v) == 1):
                raise ValueError(f"{self.name}: var of shape {var.shape} must have y_pred's shape "
                                 f"{mean.shape}, that shape with one axis of size 1, or "
                                 f"{mean.shape[:-1]} (one variance per sample)")
        # fmin skips NaN (propagated, not an error) and makes no temporary of var's size
        if xp is np and var.size and np.fmin.reduce(var, axis=None) < 0:
            raise ValueError(f"{self.name}: var has negative entries (variances must be >= 0)")
        return {**named, "var": var}


gaussian_nll_loss = _GaussianNLL(
    "gaussian_nll_loss", "gaussian_nll", ("y_true", "y_pred", "var"),
    (Option("full", False, "bool"), Option("eps", 1e-6, "positive")), family="elements",
    labels=True,
    summary="(log v + (y_pred - y_true)**2 / v) / 2, v = max(var, eps) (+ log(2 pi) / 2 "
            "with full); gradients for y_pred and var (PyTorch)")
gaussian_kl_loss = MultiLoss(
    "gaussian_kl_loss", "gaussian_kl", ("mean", "logvar"), family="elements",
    summary="-(1 + logvar - mean**2 - exp(logvar)) / 2 elementwise: the VAE's KL "
            "divergence of N(mean, exp(logvar)) from N(0, 1); \"mean\" averages over all "
            "elements")

LOSSES = {loss.name: loss for loss in globals().values() if isinstance(loss, MultiLoss)}

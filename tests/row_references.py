"""Float64 NumPy references for the row-wise losses, written from the formulas (Keras 3,
torch.nn.functional and Optax documentation and source), independent of the kernels.

``row_reference(name, t, p, **options)`` -> per-row losses along the last axis (the class
axis moved there), and ``reference(name, t, p, ...)`` adds the reduction of the loss's
convention.  Targets ``t`` are integer labels (one per row), dense arrays of p's shape, or
(multilabel_margin_loss) rows of class indices of p's shape padded with -1.
"""

import numpy as np

from references import keras_same_rank

EPS = 1e-7


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def one_hot(labels, C):
    return (np.asarray(labels)[..., None] == np.arange(C)).astype(np.float64)


def smooth(y, smoothing):
    return y * (1 - smoothing) + smoothing / y.shape[-1]


def keras_probabilities(p):
    return np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0):
    y = smooth(y, label_smoothing)
    log_q = log_softmax(p) if from_logits else np.log(keras_probabilities(p))
    return -(y * log_q).sum(-1)


def categorical_focal_crossentropy(y, p, alpha=0.25, gamma=2.0, from_logits=False,
                                   label_smoothing=0.0):
    y = smooth(y, label_smoothing)
    q = np.exp(log_softmax(p)) if from_logits else p
    q = np.clip(q / q.sum(-1, keepdims=True), EPS, 1 - EPS)
    return (alpha * (1 - q) ** gamma * -y * np.log(q)).sum(-1)


def cosine_similarity(y, p):
    def normalize(x):
        return x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), EPS * EPS))
    return -(normalize(y) * normalize(p)).sum(-1)


def categorical_hinge(y, p):
    pos = (y * p).sum(-1)
    neg = ((1 - y) * p).max(-1)
    return np.maximum(neg - pos + 1, 0)


def torch_cross_entropy(y, x, weight=None, label_smoothing=0.0):
    """Per-row -sum_j w_j y_j log_softmax_j with y smoothed (y dense or one-hot)."""
    w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    return -(w * smooth(y, label_smoothing) * log_softmax(x)).sum(-1)


def multi_margin(labels, x, p=1, margin=1.0, weight=None):
    C = x.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    xy = np.take_along_axis(x, labels[..., None], -1)
    z = np.maximum(margin - xy + x, 0) ** p
    z = np.where(one_hot(labels, C) > 0, 0.0, z)
    return w[labels] * z.sum(-1) / C


def multilabel_soft_margin(y, x, weight=None):
    w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    log_sig = -np.logaddexp(0, -x)
    log_sig_neg = -np.logaddexp(0, x)
    return (w * -(y * log_sig + (1 - y) * log_sig_neg)).mean(-1)


def multilabel_margin(y, x):
    """PyTorch's multilabel_margin_loss per row: the row's targets are its entries of y
    before the first -1 (in that order, a repeated one repeated); the loss sums
    max(0, 1 - (x[j] - x[i])) over the targets j and the classes i not among them, over C."""
    C = x.shape[-1]
    values = np.zeros(x.shape[:-1])
    for row in np.ndindex(*x.shape[:-1]):
        targets = []
        for label in y[row]:
            if label == -1:
                break
            targets.append(int(label))
        others = [i for i in range(C) if i not in targets]
        values[row] = sum(max(0.0, 1.0 - (x[row][j] - x[row][i]))
                          for j in targets for i in others) / C
    return values


def poly_loss(y, x, epsilon=2.0):
    ce = -(y * log_softmax(x)).sum(-1)
    return ce + epsilon * (y * (1 - np.exp(log_softmax(x)))).sum(-1)


# name -> (convention, targets, per-row function of (targets, p, **options))
from multi_references import stacked_triplet  # noqa: E402

ROW_LOSSES = {
    "categorical_crossentropy": ("keras", "dense", categorical_crossentropy),
    "sparse_categorical_crossentropy": (
        "keras", "labels",
        lambda l, p, from_logits=False: categorical_crossentropy(one_hot(l, p.shape[-1]), p,
                                                                 from_logits)),
    "categorical_focal_crossentropy": ("keras", "dense", categorical_focal_crossentropy),
    "cosine_similarity": ("keras", "dense", cosine_similarity),
    "categorical_hinge": ("keras", "dense", categorical_hinge),
    "categorical_generalized_cross_entropy": (
        "keras", "labels",
        lambda l, p, q=0.5: (1 - np.take_along_axis(p, l[..., None], -1)[..., 0] ** q) / q),
    "cross_entropy": (
        "torch", "either",
        lambda y, x, **o: torch_cross_entropy(y if y.shape == x.shape else one_hot(y, x.shape[-1]),
                                              x, **o)),
    "nll_loss": (
        "torch", "labels",
        lambda l, x, weight=None: -(np.ones(x.shape[-1]) if weight is None else weight)[l]
        * np.take_along_axis(x, l[..., None], -1)[..., 0]),
    "multi_margin_loss": ("torch", "labels", multi_margin),
    "multilabel_soft_margin_loss": ("torch", "dense", multilabel_soft_margin),
    "multilabel_margin_loss": ("torch", "label_sets", multilabel_margin),
    "poly_loss_cross_entropy": ("optax", "dense", poly_loss),
    # y_true unused; y_pred = [anchor | positive | negative] (tests/test_multi.py)
    "triplet_loss": ("keras", "unused", lambda t, p, alpha=0.2: stacked_triplet(None, p, alpha)),
}


def reference(name, y_true, y_pred, sample_weight=None, reduction="default", axis=-1,
              ignore=None, **options):
    """The loss in float64 with its convention's reduction.  ``ignore``: the ignored label
    (Keras's ignore_class mask, PyTorch's ignore_index)."""
    convention, targets, fn = ROW_LOSSES[name]
    t, p = y_true, y_pred
    p = np.moveaxis(np.asarray(p, np.float64), axis if convention == "keras" else
                    (1 if np.ndim(p) >= 2 else 0), -1)
    t = np.asarray(t)
    dense = targets == "dense" or (targets == "either" and t.dtype.kind == "f")
    if targets == "label_sets":  # (N, C) or (C,): the class axis is the last
        keep = np.ones(p.shape[:-1], bool)
    elif dense:
        t = np.moveaxis(t.astype(np.float64), axis if convention == "keras" else
                        (1 if t.ndim >= 2 else 0), -1)
        keep = np.ones(p.shape[:-1], bool)
    else:
        keep = np.ones(t.shape, bool) if ignore is None else t != ignore
        t = np.where(keep, t, 0)
    values = np.where(keep, fn(t, p, **options), 0.0)
    if convention == "keras":
        if reduction == "default":  # Keras's functions: the per-sample losses
            reduction = "none"
        w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        # keras.src.losses.loss: apply_mask, then reduce_weighted_values, each of which
        # first squeezes or expands a trailing axis of 1 against the sample weight
        if ignore is not None:
            mask = keep.astype(np.float64)
            if reduction in ("mean", "sum_over_batch_size"):
                mask *= keep.size / keep.sum() if keep.sum() else 0.0
            if w is not None:
                mask, w = keras_same_rank(mask, w)
            w = mask if w is None else w * mask
        if w is not None:
            values, w = keras_same_rank(values, w)
            values = values * w
        if reduction in (None, "none") or values.ndim == 0:
            return values
        if reduction == "sum":
            return values.sum()
        divisor = w.sum() if reduction == "mean_with_sample_weight" and w is not None else values.size
        return 0.0 if divisor == 0 else values.sum() / divisor
    if reduction == "default":
        reduction = "none" if convention == "optax" else "mean"
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if name in ("cross_entropy", "nll_loss") and not dense:
        weight = options.get("weight")
        w = np.ones(p.shape[-1]) if weight is None else np.asarray(weight)
        return values.sum() / w[t[keep]].sum()
    return values.sum() / values.size

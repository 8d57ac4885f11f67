"""Losses' own rewritings of their inputs, applied by their families before the kernels
run: Keras's hinge labels, PyTorch's pos_weight and gaussian_nll_loss's variance."""

from __future__ import annotations

import numpy as np

from . import _config
from ._arrays import Placement, check_broadcasts


def hinge_labels(t, xp):
    """Keras's convert_binary_labels_to_hinge: when every label is 0 or 1 they are read as
    -1 and 1.  Returns (labels, the element's values): on the CPU the kernel converts them
    (``binary_labels``), after one test over the labels (multi-threaded for large ones: a
    converted copy cost three times the loss); on the GPU a converted copy is made on the
    device (its test stays there: no synchronisation)."""
    if xp.__name__ == "numpy":
        flat = t.reshape(-1)  # (contiguous here: a view)
        if flat.size >= _config.PARALLEL_THRESHOLD:
            from .kernels.pointwise import zeros_and_ones
            from .launch import PARALLEL_LOCK

            with PARALLEL_LOCK:
                binary = zeros_and_ones(flat)
        else:
            binary = ((flat == 0) | (flat == 1)).all()
        return t, {"binary_labels": 1.0 if binary else 0.0}
    return xp.where(xp.all((t == 0) | (t == 1)), 2 * t - 1, t), {"binary_labels": 0.0}


def hinge_label_values(values):
    """The hinge elements' ``binary_labels``: 1 where hinge_labels found every label 0 or
    1 (it adds the value to the call's), else 0 (labels as given)."""
    return {"binary_labels": values.get("binary_labels", 0.0)}


def bce_pos_weight(request, options):
    """PyTorch's pos_weight (broadcast along the last axis) scales the positive term:
    (1 - y) sp(x) + pw y sp(-x) = l * bce(y', x) with l = 1 + (pw - 1) y and
    1 - y' = (1 - y) / l, so it runs as the plain loss with labels y' and weight * l.
    Returns (y_true, weight) for the kernel."""
    y_true, y_pred = request.arrays["y_true"], request.arrays["y_pred"]
    pos_weight, weight = options.get("pos_weight"), options.get("weight")
    if pos_weight is None:
        return y_true, weight
    placement: Placement = request.placement
    xp = placement.xp
    p_shape = placement.asarray(y_pred, "y_pred").shape
    pw = placement.asarray(pos_weight, "pos_weight").astype(np.float64)
    y = placement.asarray(y_true, "y_true").astype(np.float64)
    if weight is not None:
        weight = placement.asarray(weight, "weight")
    # (checked before they combine, so that the error names them)
    for name, x in (("pos_weight", pw), ("y_true", y), ("weight", weight)):
        if x is not None:
            check_broadcasts(request.name, name, x.shape, "y_pred", p_shape)
    scale = 1 + (pw - 1) * y
    kept = scale != 0  # (a zero scale zeroes the element whatever y' is)
    y_true = xp.where(kept, 1 - (1 - y) / xp.where(kept, scale, 1.0), 1.0)
    return y_true, (scale if weight is None else weight * scale)


def gaussian_nll_var(name, named, options, xp):
    """PyTorch's shapes for var: y_pred's shape, that shape with one axis of size 1, or
    without its last axis (one variance per sample); a single number too.  Negative
    variances raise (on the GPU, where that check would wait for the device, they give
    NaN)."""
    mean, var = named["y_pred"], named["var"]
    if var.shape != mean.shape and var.ndim > 0:
        if var.shape == mean.shape[:-1]:
            var = var.reshape(var.shape + (1,))
        elif not (var.ndim == mean.ndim and sum(
                v for m, v in zip(mean.shape, var.shape) if m != v) == 1):
            raise ValueError(f"{name}: var of shape {var.shape} must have y_pred's shape "
                             f"{mean.shape}, that shape with one axis of size 1, or "
                             f"{mean.shape[:-1]} (one variance per sample)")
    # fmin skips NaN (propagated, not an error) and makes no temporary of var's size
    if xp is np and var.size and np.fmin.reduce(var, axis=None) < 0:
        raise ValueError(f"{name}: var has negative entries (variances must be >= 0)")
    return {**named, "var": var}

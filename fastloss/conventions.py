"""The conventions' reductions, as plans for the kernels: Keras 3 (a per-sample loss,
``sample_weight``, then "sum_over_batch_size" / "sum" / "mean_with_sample_weight" /
"none") and torch.nn.functional (elementwise or per-row values, "mean" / "sum" /
"none").  A ``Layout`` says how one call maps onto a family kernel: its row length, the
per-row weights and gradient factors, the global factors and how the value is finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _batch
from ._arrays import broadcasts_to, real_array, squeeze_or_expand_to_same_rank


@dataclass
class Layout:
    """How a call maps onto the pointwise kernel: row length C, per-row weight and gradient
    factors, the global factors, the shape of per-row values when the caller wants them and
    the factor turning the kernel's row sums into them."""
    C: int
    weight: object
    coef: object
    gscale: object
    vscale: object
    rows_shape: tuple | None = None
    empty_values: object = None
    row_factor: float = 1.0
    finish: object = None  # (value, dtype) -> the value returned, when the kernel's is not


def cotangent_array(grad_output, xp):
    """grad_output as a float64 array of xp (TypeError naming it when it holds no numbers)."""
    return xp.asarray(real_array(xp, grad_output, "grad_output"), dtype=np.float64)


def scalar_cotangent(name, grad_output, xp):
    if grad_output is None:
        return 1.0
    go = cotangent_array(grad_output, xp)
    if go.size != 1:
        raise ValueError(f"{name}: grad_output of a reduced loss must be a scalar, got shape {go.shape}")
    return go.reshape(())


def row_cotangent(name, grad_output, xp, shape):
    """grad_output for reduction='none': ones, a scalar, or an array of the value's shape."""
    if grad_output is None:
        return None
    go = cotangent_array(grad_output, xp)
    if go.size == 1:
        return go.reshape(())
    if not broadcasts_to(go.shape, shape):
        raise ValueError(f"{name}: grad_output of shape {go.shape} does not match the "
                         f"unreduced loss of shape {tuple(shape)}")
    return xp.ascontiguousarray(xp.broadcast_to(go, shape)).reshape(-1)


def _ones(xp):
    return xp.ones(1, np.float64)


def _as_rows(x, xp):
    """A per-row factor for the kernel: a flat float64 array (size 1 for a scalar)."""
    return xp.asarray(x, dtype=np.float64).reshape(-1)


def keras_layout(name, placement, p_shape, sample_weight, reduction, grad_output, row_div):
    """Keras 3: mean (row_div = C) or sum (row_div = 1) over the last axis, then
    sample_weight, then the reduction."""
    xp = placement.xp
    C = p_shape[-1]
    values_shape = p_shape[:-1]
    weight = None
    if sample_weight is not None:
        w = placement.asarray(sample_weight, "sample_weight")
        # (decided on the whole batch's shape: a chunk of one sample is not a scalar)
        full, w_shape = squeeze_or_expand_to_same_rank(_batch.full_shape(values_shape), w.shape)
        values_shape = (values_shape[0],) + full[1:] if values_shape and full else full
        if values_shape == () and w_shape != ():
            return _scalar_loss_times_weights(name, xp, C, w.reshape(w_shape), reduction,
                                              grad_output, row_div)
        if not broadcasts_to(w_shape, values_shape):
            raise ValueError(f"{name}: sample_weight of shape {w.shape} does not broadcast to the "
                             f"per-sample loss of shape {tuple(p_shape[:-1])}")
        weight = w.reshape(w_shape).astype(np.float64)
    R = math.prod(values_shape)
    # (the whole batch's size: in a chunk's call, weights of the values' rank run along
    # the batch, and a chunk of one sample still has per-sample weights)
    per_row_weight = weight is not None and math.prod(
        _batch.full_shape(weight.shape) if weight.ndim == len(values_shape) else weight.shape
    ) != 1  # (an empty batch: size 0)
    w_rows = (xp.ascontiguousarray(xp.broadcast_to(weight, values_shape)).reshape(-1)
              if per_row_weight else None)
    w_scalar = 1.0 if weight is None or per_row_weight else weight.reshape(())

    if reduction == "none":
        go = row_cotangent(name, grad_output, xp, values_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)
        weight_rows = w_rows if per_row_weight else _as_rows(w_scalar, xp)
        coef = coef * weight_rows

        def empty_values(dtype):
            rows = xp.full(values_shape, np.nan if row_div == 0 else 0.0, dtype)  # mean of nothing
            return rows * xp.asarray(w_scalar if w_rows is None else w_rows.reshape(values_shape),
                                     dtype=dtype), None
        return Layout(C, weight_rows, coef, 1.0 / max(row_div, 1), 1.0, values_shape, empty_values,
                      1.0 / max(row_div, 1))

    if reduction == "sum" or values_shape == ():
        divisor = 1.0  # Keras returns a scalar per-sample loss unreduced
    elif reduction == "mean_with_sample_weight" and weight is not None:
        divisor = _batch.divisor("sample_weight", weight, xp,
                                 along_batch=weight.ndim == len(values_shape) > 0)
    else:
        divisor = float(_batch.full_count(values_shape))
    go = scalar_cotangent(name, grad_output, xp)
    if isinstance(divisor, float):
        inv = 0.0 if divisor == 0 else 1.0 / (max(row_div, 1) * divisor)
    else:  # sum of sample weights, left on the device: divide_no_nan as Keras does
        inv = xp.where(divisor == 0, 0.0, 1.0 / (max(row_div, 1) * xp.where(divisor == 0, 1.0, divisor)))
    keras_empty = values_shape == (0,) or (R == 0)

    def empty_values(dtype):
        if keras_empty or row_div != 0:
            return None, dtype.type(0.0) if xp is np else xp.zeros((), dtype)
        # empty last axis: every sample's mean is NaN, and so is any reduction of them
        return None, dtype.type(np.nan) if xp is np else xp.full((), np.nan, dtype)

    if per_row_weight:
        return Layout(C, w_rows, w_rows, go * inv, inv, None, empty_values)
    # No per-row factors: the whole array is one row, so tasks span rows freely.
    n = R * C
    return Layout(max(n, 1), _ones(xp), _ones(xp), go * w_scalar * inv, w_scalar * inv, None,
                  empty_values)


def _scalar_loss_times_weights(name, xp, C, w, reduction, grad_output, row_div):
    """Keras on a 1-D y_pred with a non-scalar sample_weight: the scalar loss L times the
    weights (Keras broadcasts them), then the reduction of that array: "none" L * w,
    "sum" L * sum(w), "sum_over_batch_size" L * sum(w) / w.size, "mean_with_sample_weight"
    L * sum(w) / sum(w) (0 where a divisor is 0); a result of shape (0,) is returned as it
    is, whatever the reduction (Keras's reduce_values)."""
    w = w.astype(np.float64)
    mean = 1.0 / max(row_div, 1)  # the kernel's row sum -> L
    if reduction == "none" or w.shape == (0,):
        go = (xp.ones((), np.float64) if grad_output is None
              else row_cotangent(name, grad_output, xp, w.shape))
        go = go if go.ndim == 0 else go.reshape(w.shape)
        gscale = xp.sum(go * w) * mean if reduction == "none" else 0.0

        def finish(value, dtype):
            return value * w.astype(dtype)
    else:
        total = xp.sum(w)
        divisor = (total if reduction == "mean_with_sample_weight"
                   else float(w.size) if reduction != "sum" else 1.0)
        factor = divide_no_nan(total, divisor, xp)
        gscale = scalar_cotangent(name, grad_output, xp) * factor * mean

        def finish(value, dtype):
            # (value * total) / divisor, as Keras rounds it; 0 where the divisor is 0
            return divide_no_nan(value * total.astype(dtype), xp.asarray(divisor, dtype), xp)

    def empty_values(dtype):  # an empty last axis: L is the mean of nothing
        return None, dtype.type(np.nan if row_div == 0 else 0.0) if xp is np else xp.full(
            (), np.nan if row_div == 0 else 0.0, dtype)
    return Layout(max(C, 1), _ones(xp), _ones(xp), gscale, mean, None, empty_values,
                  finish=finish)


def divide_no_nan(a, b, xp):
    """a / b, and 0 where b is 0 (Keras's divide_no_nan); stays on the device for CuPy."""
    if xp is np:
        return a / b if b != 0 else np.zeros_like(a)[()]
    return xp.where(b == 0, 0, a / xp.where(b == 0, 1, b))


def torch_layout(name, placement, p_shape, reduction, grad_output, weight=None,
                 weighted_mean=False, exact_weight=None):
    """torch.nn.functional: elementwise values; "mean" over all elements (NaN when empty).
    weight (PyTorch's, broadcast to y_pred's shape) multiplies each element's loss: the
    kernel then runs with rows of one element, each with its weight as row weight;
    weighted_mean: "mean" divides by the weights' sum instead (mse_loss, l1_loss);
    exact_weight: the shape the weight must have, unbroadcast (PyTorch 2.13's mse_loss,
    l1_loss and huber_loss), or None."""
    xp = placement.xp
    n = math.prod(p_shape)
    w_rows = None
    if weight is not None:
        w = placement.asarray(weight, "weight")
        if exact_weight is not None and tuple(w.shape) != tuple(exact_weight):
            raise ValueError(f"{name}: weight of shape {tuple(w.shape)} must have y_pred's "
                             f"shape {tuple(exact_weight)} (PyTorch does not broadcast it)")
        if not broadcasts_to(w.shape, p_shape):
            raise ValueError(f"{name}: weight of shape {tuple(w.shape)} does not broadcast to "
                             f"y_pred of shape {tuple(p_shape)}")
        w_rows = xp.ascontiguousarray(xp.broadcast_to(w.astype(np.float64), p_shape)).reshape(-1)
    if reduction == "none":
        go = row_cotangent(name, grad_output, xp, p_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)
        if w_rows is not None:
            coef = coef * w_rows

        def empty_values(dtype):
            return xp.empty(p_shape, dtype), None
        return Layout(1, _ones(xp) if w_rows is None else w_rows, coef, 1.0, 1.0, p_shape,
                      empty_values)
    go = scalar_cotangent(name, grad_output, xp)
    count = _batch.full_count(p_shape)
    inv = (1.0 / count if count else math.nan) if reduction == "mean" else 1.0
    if reduction == "mean" and weighted_mean and w_rows is not None:
        total = _batch.divisor("weight", w_rows, xp)  # (0 weights: NaN, as PyTorch)
        inv = xp.where(total == 0, math.nan, 1.0 / xp.where(total == 0, 1.0, total))
        inv = float(inv) if xp is np else inv

    def empty_values(dtype):
        v = inv * 0.0 if reduction == "mean" else 0.0
        return None, dtype.type(v) if xp is np else xp.full((), v, dtype)
    if w_rows is not None:
        return Layout(1, w_rows, w_rows, go * inv, inv, None, empty_values)
    return Layout(max(n, 1), _ones(xp), _ones(xp), go * inv, inv, None, empty_values)


def torch_rows_layout(name, xp, values_shape, reduction, grad_output, mean_divisor=None):
    """torch.nn.functional's losses with one value per row (over classes, embeddings):
    "none" gives the rows' values, "sum" their sum, "mean" their sum / mean_divisor
    (default: the number of rows; NaN when it is 0, as PyTorch's mean of nothing)."""
    if reduction == "none":
        go = row_cotangent(name, grad_output, xp, values_shape)
        coef = _ones(xp) if go is None else _as_rows(go, xp)

        def empty_values(dtype):
            return xp.zeros(values_shape, dtype), None
        return Layout(0, _ones(xp), coef, 1.0, 1.0, values_shape, empty_values)
    go = scalar_cotangent(name, grad_output, xp)
    if reduction == "sum":
        inv = 1.0
    else:
        divisor = _batch.full_count(values_shape) if mean_divisor is None else mean_divisor
        inv = 1.0 / divisor if divisor else math.nan

    def empty_values(dtype):
        v = 0.0 if reduction == "sum" else math.nan
        return None, dtype.type(v) if xp is np else xp.full((), v, dtype)
    return Layout(0, _ones(xp), _ones(xp), go * inv, inv, None, empty_values)

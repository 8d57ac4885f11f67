"""The row-wise family: a loss per row of the class axis, reduced inside the kernel
(kernels/row_elements.py): the cross-entropies over classes, cosine similarity,
categorical hinge, PyTorch's losses over classes.

It takes integer labels (checked: a label outside ``[0, C)`` that is not the ignored
value raises), dense targets of the predictions' shape, rows of class indices padded
with -1 (PyTorch's multilabel_margin_loss; handed to the kernel as int64 targets),
the class axis (Keras's ``axis``; PyTorch's dim 1), PyTorch's class ``weight`` and
``ignore_index``, and Keras's ``ignore_class`` mask.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from .. import _batch, _config
from .._arrays import broadcasts_to, compute_dtype, squeeze_or_expand_to_same_rank
from ..conventions import keras_layout, torch_rows_layout
from ..launch import PARALLEL_LOCK, CpuPlan, KernelCall, run_kernel
from ..pipeline import grad_buffer
from . import Family
from .pointwise import plain_arrays

# multilabel_margin_loss's kernel counts a row's active terms in the compute dtype (the
# pass vectorises at full width): float32 counts are exact up to 2**24.
FLOAT32_COUNT_LIMIT = 2**24


class Rows(Family):
    """targets: "labels" (integer class indices), "dense" (an array of y_pred's shape),
    "either" (PyTorch's cross_entropy: floating targets of the input's shape are
    probabilities, anything else class indices), "label_sets" (PyTorch's
    multilabel_margin_loss: integer class indices of y_pred's shape (C) or (N, C), a
    row's targets those before its first -1, handed to the kernel as the int64 targets
    ``t``: ``label_sets``) or "unused" (Keras's signature, the loss reads y_pred only).
    parts: the row splits into this many equal parts.
    ignore: the name of the option holding the ignored label ("ignore_class",
    "ignore_index") or None.  torch_mean: how PyTorch's "mean" divides: "weights" (by the
    summed weight of the non-ignored targets, as cross_entropy/nll_loss) or "rows".
    warn_one_class: warn, as Keras's categorical crossentropies do, when y_pred has a
    single class (every loss is then 0: a binary problem wants a binary loss)."""

    name = "rows"
    second_derivatives = True  # grad_hess, for the elements that have one (softmax)

    def __init__(self, element, kernel_values=None, targets="labels", ignore=None,
                 torch_mean="rows", parts=1, warn_one_class=False):
        super().__init__(element, kernel_values)
        self.warn_one_class = warn_one_class
        self.targets = targets
        self.ignore = ignore
        self.torch_mean = torch_mean
        self.parts = parts

    def value_shape(self, loss, shapes, options):
        p_shape = tuple(shapes["y_pred"])
        axis = self._class_axis(loss.name, loss.convention, options, len(p_shape))
        return p_shape[:axis] + p_shape[axis + 1:]

    def compute(self, request):
        name, placement, xp = request.name, request.placement, request.xp
        loss = request.loss
        options = request.options
        keras = loss.convention == "keras"
        weight = options.get("weight")
        p = placement.asarray(request.arrays["y_pred"], "y_pred")
        if p.ndim == 0:
            raise ValueError(f"{name}: y_pred must have a class axis, got a scalar")
        dtype = compute_dtype(p)
        pred_shape = p.shape
        axis = self._class_axis(name, loss.convention, options, p.ndim)
        p = xp.ascontiguousarray(xp.moveaxis(p, axis, -1), dtype=dtype)
        C = p.shape[-1]
        if C == 0:
            raise ValueError(f"{name}: y_pred of shape {pred_shape} has no classes")
        if C == 1 and self.warn_one_class:
            warnings.warn(f"In loss {name}, expected y_pred.shape to be (batch_size, "
                          f"num_classes) with num_classes > 1. Received: y_pred.shape="
                          f"{pred_shape}. Consider using 'binary_crossentropy' if you only "
                          "have 2 classes.", SyntaxWarning, stacklevel=_caller_level())
        if C % self.parts:
            raise ValueError(f"{name}: the last axis of y_pred (shape {pred_shape}) must "
                             f"split into {self.parts} equal parts")
        values_shape = p.shape[:-1]

        t_raw = placement.asarray(request.arrays["y_true"], "y_true")
        dense = self.targets == "dense" or (
            self.targets == "either" and t_raw.dtype.kind == "f" and t_raw.shape == pred_shape)
        labels = t = None
        valid = None
        if self.targets == "unused":
            t = p.reshape(-1)  # (the row element reads only y_pred)
        elif self.targets == "label_sets":
            t = label_sets(name, t_raw, pred_shape, xp)
            if dtype == np.float32 and C > FLOAT32_COUNT_LIMIT:
                raise ValueError(f"{name}: float32 rows of more than {FLOAT32_COUNT_LIMIT} "
                                 f"classes (got {C}) are not supported, their counts of "
                                 "active terms would round; pass float64 y_pred")
        elif dense:
            ignored = options.get(self.ignore)
            if self.ignore and ignored not in (None, loss.spec.option(self.ignore).default):
                raise ValueError(f"{name}: {self.ignore} applies to class-index targets, "
                                 "not to probabilities")
            if keras:
                t_shape, _ = squeeze_or_expand_to_same_rank(t_raw.shape, pred_shape)
                t_raw = t_raw.reshape(t_shape)
            if t_raw.shape != pred_shape:
                raise ValueError(f"{name}: y_true of shape {t_raw.shape} and y_pred of shape "
                                 f"{pred_shape} must have the same shape")
            t = xp.ascontiguousarray(xp.moveaxis(t_raw, axis, -1), dtype=dtype).reshape(-1)
        else:
            labels, valid = self._labels(name, keras, t_raw, pred_shape, axis, values_shape, C,
                                         options.get(self.ignore), xp)

        cw = None
        if weight is not None:
            cw = placement.asarray(weight, "weight")
            if cw.shape != (C,):
                raise ValueError(f"{name}: weight must have one entry per class, shape "
                                 f"({C},), got shape {cw.shape}")
            cw = xp.ascontiguousarray(cw, dtype=np.float64)

        reduction = request.reduction
        if keras:
            layout = keras_layout(name, placement, p.shape,
                                  self._keras_weights(name, placement, request.sample_weight,
                                                      valid, values_shape, reduction, dtype),
                                  reduction, request.grad_output, 1)
        else:
            divisor = None
            if reduction == "mean" and self.torch_mean == "weights" and labels is not None:
                divisor = float(_batch.divisor("kept", kept_weights(labels, cw, xp), xp))
            layout = torch_rows_layout(name, xp, values_shape, reduction, request.grad_output,
                                       divisor)
        moved = axis != len(pred_shape) - 1
        outputs = buffers = ()
        if request.want_grad:  # (out checked before the kernel runs; it gets the gradient moved back)
            # (grad_hess: the gradient and the second derivatives, each its own buffer)
            buffers = tuple(grad_buffer(request, pred_shape, dtype, index=i)
                            for i in range(2 if request.mode.hess else 1))
            outputs = tuple(xp.empty(p.size, dtype) for _ in buffers) if moved else buffers
        want_value = request.want_value
        if math.prod(values_shape) == 0:
            rows, value = layout.empty_values(dtype)
            for g in outputs:
                g[...] = 0
        else:
            element, o = self.kernel_element(loss, options, dtype)
            if request.mode.hess and not self.has_grad_hess(element):
                raise TypeError(f"{name}: grad_hess is not available with these options (the "
                                f"{element} element has no second derivative; the softmax "
                                "cross-entropies on logits have one)")
            call = KernelCall("rows_hess" if request.mode.hess else "rowwise", element,
                              (p.reshape(-1),), t, o, C,
                              layout.weight, layout.coef, layout.gscale, layout.vscale,
                              want_rows=layout.rows_shape is not None,
                              value=want_value, grads=outputs, labels=labels, class_weight=cw,
                              hess=request.mode.hess)
            value, rows = run_kernel(call, placement)
            if (request.plannable and labels is not None and not moved and cw is None
                    and (valid is None or bool(valid.all()))):
                request.plan = self._plan(request, call, layout, values_shape)
        if layout.rows_shape is not None and want_value:
            value = rows.reshape(layout.rows_shape)
        grads = None
        if outputs:
            if moved:
                for buffer, g in zip(buffers, outputs):
                    buffer.reshape(pred_shape)[...] = xp.moveaxis(g.reshape(p.shape), -1, axis)
            grads = tuple(b.reshape(pred_shape) for b in buffers)
        return (value if want_value else None), grads

    def _plan(self, request, call, layout, values_shape):
        """A plan for calls like this one with integer labels: only the labels' range is
        checked per call (out of range, or ignored, takes the full path, which raises or
        masks)."""
        t, p = request.arrays["y_true"], request.arrays["y_pred"]
        C, dtype = call.C, call.inputs[0].dtype
        ignored = request.options.get(self.ignore)
        if (request.grad_output is not None or t.dtype.kind not in "iu"
                or t.shape != values_shape or not t.flags.c_contiguous
                or not (t.flags.writeable and t.flags.aligned)
                or not plain_arrays((p,), dtype, p.shape)
                or (ignored is not None and 0 <= ignored < C)):
            return None
        cpu = CpuPlan.of(call, layout)
        if cpu is None:
            return None
        mode, shapes = request.mode, (p.shape,)

        def run(arrays, out):
            labels, p = arrays
            if labels.size and not (0 <= labels.min() and labels.max() < C):
                return None
            return cpu.call(mode, None, (p.reshape(-1),), out, shapes,
                            labels.reshape(-1).astype(np.int64, copy=False))
        return run

    # -- pieces ------------------------------------------------------------------------

    @staticmethod
    def _class_axis(name, convention, options, ndim):
        if convention == "torch":
            return 1 if ndim >= 2 else 0  # PyTorch: (N, C, d1, ...) or (C,)
        axis = options.get("axis", -1)
        if not -ndim <= axis < ndim:
            raise ValueError(f"{name}: axis {axis} is out of range for y_pred of rank {ndim}")
        return axis % ndim

    def _labels(self, name, keras, t, pred_shape, axis, values_shape, C, ignore, xp):
        """Flat int64 labels, -1 where ignored, and the mask of the kept ones (or None)."""
        if keras and t.ndim == len(pred_shape) and t.ndim > 0 and t.shape[axis] == 1:
            t = t.reshape(t.shape[:axis] + t.shape[axis + 1:])
        expected = tuple(values_shape)
        if t.shape != expected:
            raise ValueError(f"{name}: y_true of shape {t.shape} must hold one class index "
                             f"per row of y_pred of shape {tuple(pred_shape)}, i.e. have "
                             f"shape {expected}")
        if t.dtype.kind == "b":
            raise TypeError(f"{name}: y_true must hold class indices, got booleans")
        if t.dtype.kind == "f":
            if not keras:
                raise TypeError(f"{name}: y_true must hold integer class indices (or "
                                f"probabilities of y_pred's shape), got dtype {t.dtype}")
            values = xp.trunc(t)  # Keras casts labels to int32: toward zero
        else:
            values = t
        keep = None if ignore is None else t != ignore
        # Checked on the values given, before the cast to int64, so that nothing (NaN, inf,
        # 1e30, a uint64 beyond int64) can wrap into range; NaN fails both comparisons.
        bad = ~((values >= 0) & (values < C))
        if keep is not None:
            bad &= keep
        if bool(bad.any()):
            flat = int(xp.flatnonzero(bad.reshape(-1))[0])
            where = np.unravel_index(flat, expected) if expected else ()
            value = values.reshape(-1)[flat].item()
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            if isinstance(value, float) and not math.isfinite(value):
                shown += " (non-finite)"
            ignored = "" if ignore is None else f" nor the ignored {self.ignore}={ignore}"
            raise ValueError(f"{name}: y_true{list(map(int, where))} = {shown} is not "
                             f"a class index in [0, {C}){ignored}")
        labels = values.astype(np.int64)
        if keep is not None:
            labels = xp.where(keep, labels, -1)
        return xp.ascontiguousarray(labels.reshape(-1)), keep

    @staticmethod
    def _keras_weights(name, placement, sample_weight, keep, values_shape, reduction, dtype):
        """sample_weight with Keras's ignore_class mask merged in (keras apply_mask)."""
        if keep is None:
            return sample_weight
        mask = keep.astype(dtype)
        if reduction in ("mean", "sum_over_batch_size"):
            valid = float(_batch.divisor("valid", keep, placement.xp))
            total = float(_batch.full_count(keep.shape))
            mask = mask * dtype.type(total / valid if valid else 0.0)
        if sample_weight is None:
            return mask
        w = placement.asarray(sample_weight, "sample_weight")
        m_shape, w_shape = squeeze_or_expand_to_same_rank(mask.shape, w.shape)
        if not broadcasts_to(w_shape, m_shape) and not broadcasts_to(m_shape, w_shape):
            raise ValueError(f"{name}: sample_weight of shape {w.shape} does not broadcast "
                             f"to the per-sample loss of shape {tuple(values_shape)}")
        return w.reshape(w_shape).astype(dtype) * mask.reshape(m_shape)


def _index_range(t, xp):
    """(min, max) of the integer array t: one multi-threaded pass for a large int64 NumPy
    array, else two reductions (neither makes a temporary of the input's size)."""
    if (xp is np and t.dtype == np.int64 and t.flags.c_contiguous
            and t.size >= _config.PARALLEL_THRESHOLD):
        from ..kernels.rowwise import index_range

        with PARALLEL_LOCK:
            low, high = index_range(t.reshape(-1))
        return int(low), int(high)
    return int(t.min()), int(t.max())


def label_sets(name, t, pred_shape, xp):
    """PyTorch's multilabel targets as the row element reads them: class indices of
    y_pred's shape, (C) or (N, C), a row's targets being those before its first -1 (what
    follows is checked, not read), flat int64 (the caller's array when it is that
    already: nothing of the input's size is made).  Every entry must lie in [-1, C), as
    PyTorch checks (ValueError naming the first that does not)."""
    if len(pred_shape) > 2:
        raise ValueError(f"{name}: y_pred must have shape (C,) or (N, C), got shape "
                         f"{tuple(pred_shape)}")
    if t.shape != tuple(pred_shape):
        raise ValueError(f"{name}: y_true of shape {t.shape} must hold class indices of "
                         f"y_pred's shape {tuple(pred_shape)} (padded with -1)")
    if t.dtype.kind == "b":
        raise TypeError(f"{name}: y_true must hold class indices, got booleans")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: y_true must hold integer class indices (padded with -1), "
                        f"got dtype {t.dtype}")
    C = pred_shape[-1]
    if t.size:
        low, high = _index_range(t, xp)
        if not (low >= -1 and high < C):
            bad = ~((t >= -1) & (t < C))
            flat = int(xp.flatnonzero(bad.reshape(-1))[0])
            where = np.unravel_index(flat, t.shape)
            raise ValueError(f"{name}: y_true{list(map(int, where))} = "
                             f"{t.reshape(-1)[flat].item()} is not a class index in [0, {C}) "
                             "nor the padding -1")
    return xp.ascontiguousarray(t, dtype=np.int64).reshape(-1)


def _caller_level():
    """The warnings stacklevel of the first frame outside fastloss (the caller's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastloss"):
        frame, level = frame.f_back, level + 1
    return level


def kept_weights(labels, class_weight, xp):
    """Each row's share of PyTorch's weighted "mean": its class's weight (1 without
    weights), 0 for an ignored row (a negative label)."""
    kept = labels >= 0
    if class_weight is None:
        return kept.astype(np.float64)
    return xp.where(kept, class_weight[xp.where(kept, labels, 0)], 0.0)

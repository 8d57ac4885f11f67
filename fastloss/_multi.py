"""Losses of several prediction arrays: metric learning (triplets, pairs, quadruplets)
and likelihoods with a second predicted array (a variance, a log-variance).

``loss(*arrays)`` takes the arrays positionally, labels first where the loss has them
(``margin_ranking_loss(y_true, x1, x2)``, ``triplet_margin_loss(anchor, positive,
negative)``); ``grad`` returns one gradient per prediction array, a tuple in argument
order, and ``out=`` takes a tuple of buffers in the same order.
"""

import math

import numpy as np

from ._arrays import Placement, broadcasts_to, compute_dtype
from ._loss import Loss, torch_layout, torch_rows_layout
from ._run import KernelCall, run


class MultiLoss(Loss):
    """A loss of several arrays with PyTorch's reductions ("mean", "sum", "none").

    inputs: the names of the positional arrays.  labels: the first of them holds labels
    (no gradient).  family: "rows" - every prediction has one shape (..., D) and each
    row of D features gives one loss (a tuple element of kernels/row_elements.py); the
    labels, if any, hold one value per row - or "elements" - elementwise (a pair element
    of kernels/elements.py) over the broadcast shape of all the arrays; the gradient of a
    broadcast prediction is summed back to its shape.
    """

    def __init__(self, name, element, inputs, options=(), summary="", family="rows",
                 labels=False, kernel_values=None):
        super().__init__(name, element, "torch", options, summary, kernel_values=kernel_values)
        self.inputs = tuple(inputs)
        self.family = family
        self.labels = labels
        self.predictions = self.inputs[1:] if labels else self.inputs

    def __call__(self, *arrays, reduction="default", **options):
        return self._compute(arrays, reduction, options, want_value=True, want_grad=False)[0]

    def grad(self, *arrays, reduction="default", grad_output=None, out=None, **options):
        return self._compute(arrays, reduction, options, want_value=False, want_grad=True,
                             grad_output=grad_output, out=out)[1]

    def value_and_grad(self, *arrays, reduction="default", grad_output=None, out=None,
                       **options):
        return self._compute(arrays, reduction, options, want_value=True, want_grad=True,
                             grad_output=grad_output, out=out)

    def check_inputs(self, named, option_values, xp):
        """Loss-specific checks and conversions of the input arrays (a dict by name)."""
        return named

    # -- the computation -------------------------------------------------------------

    def _compute(self, arrays, reduction, options, *, want_value, want_grad, grad_output=None,
                 out=None):
        if "sample_weight" in options:
            raise TypeError(f"{self.name} follows torch.nn.functional and takes no sample_weight")
        if len(arrays) != len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} arrays "
                            f"({', '.join(self.inputs)}), got {len(arrays)}")
        option_values = self.check_options(options)
        reduction = self.check_reduction(reduction)
        outs = self._out_tuple(out)
        placement = Placement({**dict(zip(self.inputs, arrays)), "grad_output": grad_output,
                               **{f"out[{i}]": o for i, o in enumerate(outs or ())}})
        xp = placement.xp
        named = {name: placement.asarray(x, name) for name, x in zip(self.inputs, arrays)}
        shapes = {name: x.shape for name, x in named.items()}  # of the gradients
        named = self.check_inputs(named, option_values, xp)
        dtype = compute_dtype(np.empty(0, np.result_type(*(named[n].dtype
                                                            for n in self.predictions))))
        kernel = (self.element_for(option_values), self.kernel_options(option_values, dtype))
        family = self._rows if self.family == "rows" else self._elements
        value, grads = family(named, dtype, kernel, placement, reduction, grad_output, outs,
                              want_value, want_grad, shapes)
        if grads is not None:
            grads = tuple(g.reshape(shapes[name]) for g, name in zip(grads, self.predictions))
        if grads is not None:
            grads = tuple(placement.result(g) for g in grads)
        return (placement.result(value) if want_value else None), grads

    def _out_tuple(self, out):
        if out is None:
            return None
        if not isinstance(out, (tuple, list)) or len(out) != len(self.predictions):
            raise TypeError(f"{self.name}: out must be a tuple of {len(self.predictions)} arrays "
                            f"(for {', '.join(self.predictions)}), got {type(out).__name__}")
        return tuple(out)

    def _run(self, element_args, C, layout, placement, want_value, grads, family):
        call = KernelCall(*element_args, C, layout.weight, layout.coef, layout.gscale,
                          layout.vscale, want_rows=layout.rows_shape is not None,
                          value=want_value, grad=grads, family=family)
        value, rows, _ = run(call, placement)
        if layout.rows_shape is not None and want_value:
            value = rows.reshape(layout.rows_shape)
        return value

    def _rows(self, named, dtype, kernel, placement, reduction, grad_output, outs, want_value,
              want_grad, shapes):
        xp = placement.xp
        first = self.predictions[0]
        shape = named[first].shape
        for name in self.predictions[1:]:
            if named[name].shape != shape:
                raise ValueError(f"{self.name}: {name} of shape {named[name].shape} must have "
                                 f"{first}'s shape {shape}")
        if len(shape) == 0:
            raise ValueError(f"{self.name}: {first} must have a feature axis, got a scalar")
        if shape[-1] == 0:
            raise ValueError(f"{self.name}: {first} of shape {shape} has no features")
        values_shape = shape[:-1]
        y = None
        if self.labels:
            label_name = self.inputs[0]
            y = named[label_name]
            if not broadcasts_to(y.shape, values_shape):
                raise ValueError(f"{self.name}: {label_name} of shape {y.shape} must hold one "
                                 f"label per row of {first} of shape {shape}, i.e. have shape "
                                 f"{values_shape}")
            y = xp.ascontiguousarray(xp.broadcast_to(y, values_shape), dtype=dtype).reshape(-1)
        preds = tuple(xp.ascontiguousarray(named[n], dtype=dtype).reshape(-1)
                      for n in self.predictions)
        layout = torch_rows_layout(self.name, xp, values_shape, reduction, grad_output)
        grads = None
        if want_grad:
            grads = tuple(self._grad_buffer(out, placement, shape, dtype, name)
                          for out, name in zip(outs or (None,) * len(preds), self.predictions))
        if math.prod(values_shape) == 0:
            value = layout.empty_values(dtype)[1 if layout.rows_shape is None else 0]
        else:
            value = self._run((kernel[0], y, preds, kernel[1]), shape[-1], layout, placement, want_value,
                              grads, "tuple")
        if grads is not None:
            grads = tuple(g.reshape(shape) for g in grads)
        return value, grads

    def _elements(self, named, dtype, kernel, placement, reduction, grad_output, outs, want_value,
                  want_grad, shapes):
        xp = placement.xp
        try:
            shape = np.broadcast_shapes(*(named[n].shape for n in self.inputs))
        except ValueError:
            shapes = ", ".join(f"{n} {named[n].shape}" for n in self.inputs)
            raise ValueError(f"{self.name}: the shapes do not broadcast together: {shapes}") from None

        def full(name):
            x = named[name]
            if x.shape != shape:
                x = xp.broadcast_to(x, shape)
            return xp.ascontiguousarray(x, dtype=dtype).reshape(-1)
        a, b = (full(n) for n in self.predictions)
        t = full(self.inputs[0]) if self.labels else a  # (an element without labels ignores t)
        layout = torch_layout(self.name, placement, shape, reduction, grad_output)
        grads = None
        if want_grad:
            grads = []
            for i, name in enumerate(self.predictions):
                own = named[name].shape == shape == shapes[name]
                out = None if outs is None else outs[i]
                grads.append(self._grad_buffer(out, placement, shape, dtype, name) if own
                             else xp.empty(math.prod(shape), dtype))
            grads = tuple(grads)
        if math.prod(shape) == 0:
            rows, value = layout.empty_values(dtype)
            value = rows if layout.rows_shape is not None else value
        else:
            value = self._run((kernel[0], t, (a, b), kernel[1]), layout.C, layout, placement, want_value,
                              grads, "pair")
        if grads is not None:
            grads = tuple(self._reduce_to(g.reshape(shape), named[name].shape, shapes[name],
                                          name, placement, dtype, None if outs is None else outs[i])
                          for i, (g, name) in enumerate(zip(grads, self.predictions)))
        return value, grads

    def _reduce_to(self, grad, target_shape, given_shape, name, placement, dtype, out):
        """The gradient of an input broadcast to grad's shape: summed over the broadcast
        axes, in the input's given shape."""
        if grad.shape == tuple(target_shape):
            return grad
        extra = grad.ndim - len(target_shape)
        axes = tuple(range(extra)) + tuple(
            extra + i for i, n in enumerate(target_shape) if n == 1 and grad.shape[extra + i] != 1)
        reduced = grad.sum(axis=axes, dtype=dtype).reshape(given_shape)
        if out is None:
            return reduced
        buffer = self._grad_buffer(out, placement, given_shape, dtype, name)
        buffer.reshape(given_shape)[...] = reduced
        return buffer.reshape(given_shape)

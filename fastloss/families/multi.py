"""Families of several prediction arrays, with PyTorch's reductions.

``Embeddings``: every prediction has one shape (..., D) and each row of D features
gives one loss (a tuple element of kernels/row_elements.py: triplets, quadruplets,
pairs of embeddings); the labels, if any, hold one value per row.
``Elements``: elementwise (a pair element of kernels/elements.py: a mean and a
variance, two scores) over the broadcast shape of all the arrays; the gradient of a
broadcast prediction is summed back to its shape.
"""

from __future__ import annotations

import math

import numpy as np

from .._arrays import broadcasts_to, compute_dtype
from ..conventions import torch_layout, torch_rows_layout
from ..launch import CpuPlan, KernelCall, run_kernel
from ..pipeline import grad_buffer
from . import Family
from .pointwise import plain_arrays


class _Multi(Family):
    """check_inputs: ``(name, arrays by input name, options, xp) -> arrays``, a loss's
    own checks and conversions of its arrays."""

    def __init__(self, element, kernel_values=None, check_inputs=None):
        super().__init__(element, kernel_values)
        self.check_inputs = check_inputs

    def compute(self, request):
        loss, placement = request.loss, request.placement
        named = {name: placement.asarray(x, name) for name, x in request.arrays.items()}
        shapes = {name: x.shape for name, x in named.items()}  # of the gradients
        if self.check_inputs is not None:
            named = self.check_inputs(request.name, named, request.options, request.xp)
        dtype = compute_dtype(np.empty(0, np.result_type(*(named[n].dtype
                                                            for n in loss.predictions))))
        kernel = self.kernel_element(loss, request.options, dtype)
        value, grads = self._compute(request, named, dtype, kernel, shapes)
        if grads is not None:
            names = loss.predictions * (2 if request.mode.hess else 1)
            grads = tuple(g.reshape(shapes[name]) for g, name in zip(grads, names))
        return value, grads

    def _run(self, request, family, kernel, targets, inputs, C, layout, grads, plain=False):
        """Runs the kernel; ``plain``: the call's arrays were the caller's own, as they
        are, so a plan can serve calls like it."""
        call = KernelCall(family, kernel[0], inputs, targets, kernel[1], C, layout.weight,
                          layout.coef, layout.gscale, layout.vscale,
                          want_rows=layout.rows_shape is not None, value=request.want_value,
                          grads=grads or (), hess=request.mode.hess)
        value, rows = run_kernel(call, request.placement)
        if (plain and request.plannable and request.grad_output is None
                and self.check_inputs is None):
            request.plan = _plan(request, call, layout)
        if layout.rows_shape is not None and request.want_value:
            value = rows.reshape(layout.rows_shape)
        return value


def _plan(request, call, layout):
    """A plan for calls like this one: the same shapes, dtypes, options and reduction,
    every array the caller's own as the kernel takes it."""
    cpu = CpuPlan.of(call, layout)
    if cpu is None:
        return None
    loss, mode = request.loss, request.mode
    shapes = tuple(np.shape(request.arrays[n]) for n in loss.predictions)
    labelled = len(loss.inputs) > len(loss.predictions)
    no_targets = call.targets is None  # (else labels, or an unlabelled pair element's a)

    def run(arrays, out):
        flat = [a.reshape(-1) for a in arrays]
        return cpu.call(mode, None if no_targets else flat[0],
                        tuple(flat[1:] if labelled else flat), out, shapes)
    return run


class Embeddings(_Multi):
    second_derivatives = True  # grad_hess of the losses of two embeddings
    name = "embeddings"

    def value_shape(self, loss, shapes, options):
        return tuple(shapes[loss.predictions[0]])[:-1]

    def _compute(self, request, named, dtype, kernel, shapes):
        name, xp = request.name, request.xp
        loss = request.loss
        first = loss.predictions[0]
        shape = named[first].shape
        for other in loss.predictions[1:]:
            if named[other].shape != shape:
                raise ValueError(f"{name}: {other} of shape {named[other].shape} must have "
                                 f"{first}'s shape {shape}")
        if len(shape) == 0:
            raise ValueError(f"{name}: {first} must have a feature axis, got a scalar")
        if shape[-1] == 0:
            raise ValueError(f"{name}: {first} of shape {shape} has no features")
        values_shape = shape[:-1]
        y = None
        if len(loss.inputs) > len(loss.predictions):
            label_name = loss.inputs[0]
            y = named[label_name]
            if not broadcasts_to(y.shape, values_shape):
                raise ValueError(f"{name}: {label_name} of shape {y.shape} must hold one "
                                 f"label per row of {first} of shape {shape}, i.e. have shape "
                                 f"{values_shape}")
            y = xp.ascontiguousarray(xp.broadcast_to(y, values_shape), dtype=dtype).reshape(-1)
        preds = tuple(xp.ascontiguousarray(named[n], dtype=dtype).reshape(-1)
                      for n in loss.predictions)
        layout = torch_rows_layout(name, xp, values_shape, request.reduction,
                                   request.grad_output)
        grads = None
        hess = request.mode.hess
        if hess and (len(preds) != 2 or not self.has_grad_hess(kernel[0])):
            raise TypeError(f"{name}: grad_hess is not available (second derivatives exist for "
                            "the embedding losses of two arrays: contrastive_loss, "
                            "cosine_embedding_loss)")
        if request.want_grad:  # (grad_hess: both gradients, then both second derivatives)
            grads = tuple(grad_buffer(request, shape, dtype, i)
                          for i in range(len(preds) * (2 if hess else 1)))
        if math.prod(values_shape) == 0:
            value = layout.empty_values(dtype)[1 if layout.rows_shape is None else 0]
        else:
            plain = request.plannable and plain_arrays(
                [request.arrays[n] for n in loss.predictions], dtype, shape) and (
                y is None or plain_arrays([request.arrays[loss.inputs[0]]], dtype, values_shape))
            value = self._run(request, "tuple", kernel, y, preds, shape[-1], layout, grads,
                              plain)
        return value, grads


class Elements(_Multi):
    name = "elements"
    second_derivatives = True  # grad_hess: both predictions' gradients and second derivatives

    def value_shape(self, loss, shapes, options):
        if self.check_inputs is not None:  # (its reshapes, on zero-strided stand-ins)
            stand_ins = {n: np.broadcast_to(np.zeros(()), tuple(s)) for n, s in shapes.items()}
            shapes = {n: x.shape for n, x in
                      self.check_inputs(loss.name, stand_ins, options, np).items()}
        return tuple(np.broadcast_shapes(*(tuple(shapes[n]) for n in loss.inputs)))

    def _compute(self, request, named, dtype, kernel, shapes):
        name, xp = request.name, request.xp
        loss = request.loss
        try:
            shape = np.broadcast_shapes(*(named[n].shape for n in loss.inputs))
        except ValueError:
            given = ", ".join(f"{n} {named[n].shape}" for n in loss.inputs)
            raise ValueError(f"{name}: the shapes do not broadcast together: {given}") from None

        def full(array_name):
            x = named[array_name]
            if x.shape != shape:
                x = xp.broadcast_to(x, shape)
            return xp.ascontiguousarray(x, dtype=dtype).reshape(-1)
        a, b = (full(n) for n in loss.predictions)
        has_labels = len(loss.inputs) > len(loss.predictions)
        t = full(loss.inputs[0]) if has_labels else a  # (an element without labels ignores t)
        layout = torch_layout(name, request.placement, shape, request.reduction,
                              request.grad_output)
        grads = None
        hess = request.mode.hess
        # (grad_hess: the gradients, then the second derivatives, of both predictions)
        outputs = loss.predictions * (2 if hess else 1)
        if request.want_grad:
            grads = tuple(grad_buffer(request, shape, dtype, i)
                          if named[n].shape == shape == shapes[n]
                          else xp.empty(math.prod(shape), dtype)
                          for i, n in enumerate(outputs))
        if math.prod(shape) == 0:
            rows, value = layout.empty_values(dtype)
            value = rows if layout.rows_shape is not None else value
        else:
            if hess and not self.has_grad_hess(kernel[0]):
                raise TypeError(f"{name}: grad_hess is not available (the {kernel[0]} element "
                                "has no second derivative)")
            plain = request.plannable and plain_arrays(request.arrays.values(), dtype, shape)
            value = self._run(request, "pair_hess" if hess else "pair", kernel, t, (a, b),
                              layout.C, layout, grads, plain)
        if grads is not None:
            grads = tuple(self._reduce_to(request, i, g.reshape(shape), named[n].shape,
                                          shapes[n], dtype)
                          for i, (g, n) in enumerate(zip(grads, outputs)))
        return value, grads

    @staticmethod
    def _reduce_to(request, index, grad, target_shape, given_shape, dtype):
        """The gradient of an input broadcast to grad's shape: summed over the broadcast
        axes, in the input's given shape."""
        if grad.shape == tuple(target_shape):
            return grad
        extra = grad.ndim - len(target_shape)
        axes = tuple(range(extra)) + tuple(
            extra + i for i, n in enumerate(target_shape) if n == 1 and grad.shape[extra + i] != 1)
        reduced = grad.sum(axis=axes, dtype=dtype).reshape(given_shape)
        if request.out is None:
            return reduced
        buffer = grad_buffer(request, given_shape, dtype, index)
        buffer.reshape(given_shape)[...] = reduced
        return buffer.reshape(given_shape)

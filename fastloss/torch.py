"""fastloss for PyTorch: every loss as a differentiable function of torch tensors.

    import fastloss.torch as flt
    loss = flt.cross_entropy(logits, labels, label_smoothing=0.1)  # torch.nn.functional's order
    loss.backward()

The PyTorch-named losses take ``torch.nn.functional``'s arguments in its order
(``cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
label_smoothing=0.0)``, ``margin_ranking_loss(input1, input2, target, ...)``,
``gaussian_nll_loss(input, target, var, ...)``); every other loss keeps fastloss's (and
its source library's) order, labels first (``mean_squared_error(y_true, y_pred,
sample_weight=None)``).  ``torch.nn.Module`` classes under the loss's class name
(``CrossEntropyLoss``, ``MSELoss``, ``Huber``, ...) bind the options and the reduction.

The forward pass runs the fused kernel (value and gradient in one pass) and keeps the
gradient; the backward pass multiplies it by the incoming cotangent when that is a
scalar (the common ``loss.backward()``), and runs the gradient kernel with the cotangent
otherwise (unreduced losses).  CPU tensors reach the kernels without a copy
(``Tensor.numpy()``); CUDA tensors go through DLPack to CuPy and the CUDA kernels, on
PyTorch's current stream (not yet checked on a GPU).  The gradient is not itself
differentiable: a double backward raises.  PyTorch's deprecated ``size_average`` and
``reduce`` are not taken.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from . import CLASSES, LOSSES

__all__ = ["LOSS_FUNCTIONS", "MODULES"]

# fastloss's input names -> the public (torch.nn.functional) names, in F's order, for the
# PyTorch-named losses of each input layout.
_TORCH_ORDER = {
    ("y_true", "y_pred"): (("input", "y_pred"), ("target", "y_true")),
    ("y_true", "x1", "x2"): (("input1", "x1"), ("input2", "x2"), ("target", "y_true")),
    ("y_true", "y_pred", "var"): (("input", "y_pred"), ("target", "y_true"), ("var", "var")),
}


def _public_inputs(loss):
    """(public name, fastloss input name) of the loss's arrays, in the public order."""
    if loss.spec.source == "PyTorch" and loss.inputs in _TORCH_ORDER:
        return _TORCH_ORDER[loss.inputs]
    return tuple((name, name) for name in loss.inputs)


def _to_array(x):
    """A tensor as the kernels take it: a NumPy view of a CPU tensor, a CuPy array (DLPack)
    of a CUDA one; anything else as it is."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach()
    if x.is_cuda:
        import cupy
        return cupy.from_dlpack(x)
    if x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"fastloss.torch: {x.dtype} tensors are not supported; use float32 "
                        "or float64")
    return x.numpy()


def _to_tensor(x, like):
    if x is None:
        return None
    if like.is_cuda:
        return torch.from_dlpack(x)
    return torch.from_numpy(np.asarray(x))


class _FusedLoss(torch.autograd.Function):
    """The value from the fused kernel, the gradient kept for the backward pass."""

    @staticmethod
    def forward(ctx, loss, kwargs, *tensors):
        arrays = [_to_array(t) for t in tensors]
        positions = [loss.inputs.index(p) for p in loss.predictions]
        wanted = [ctx.needs_input_grad[2 + i] for i in positions]
        ctx.loss, ctx.kwargs, ctx.positions = loss, kwargs, positions
        ctx.save_for_backward(*tensors)
        like = tensors[positions[0]]
        if any(wanted):
            value, grads = loss.value_and_grad(*arrays, **kwargs)
            grads = grads if isinstance(grads, tuple) else (grads,)
            ctx.grads = tuple(_to_tensor(g, like) for g in grads)
        else:
            value = loss(*arrays, **kwargs)
            ctx.grads = None
        return _to_tensor(np.asarray(value) if not like.is_cuda else value, like)

    @staticmethod
    def backward(ctx, cotangent):
        loss = ctx.loss
        if torch.is_grad_enabled():  # (create_graph=True: a gradient to differentiate again)
            raise RuntimeError(f"fastloss.torch.{loss.name}: double backward (create_graph=True) "
                               "is not supported: the gradient comes from a fused kernel and is "
                               "not itself differentiable")
        if cotangent.dim() == 0 or ctx.grads is None:
            grads = ctx.grads if ctx.grads is not None else _recompute(ctx, cotangent)
            if cotangent.dim() == 0:
                grads = tuple(g * cotangent.to(g.dtype) for g in grads)
        else:  # an unreduced value's cotangent: the gradient kernel with it
            grads = _recompute(ctx, cotangent)
        result = [None] * len(loss.inputs)
        for position, grad in zip(ctx.positions, grads):
            if ctx.needs_input_grad[2 + position]:
                result[position] = grad
        return (None, None, *result)


def _recompute(ctx, cotangent):
    tensors = ctx.saved_tensors
    arrays = [_to_array(t) for t in tensors]
    kwargs = dict(ctx.kwargs)
    if cotangent.dim() > 0:
        kwargs["grad_output"] = _to_array(cotangent)
    grads = ctx.loss.grad(*arrays, **kwargs)
    like = tensors[ctx.positions[0]]
    return tuple(_to_tensor(g, like) for g in (grads if isinstance(grads, tuple) else (grads,)))


def _function(loss):
    """The torch function of ``loss``: its arrays in the public order, then its options
    and reduction (and sample_weight for a Keras-convention loss) by keyword."""
    public = _public_inputs(loss)
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD) for name, _ in public]
    if loss.spec.takes_sample_weight:
        params.append(P("sample_weight", P.KEYWORD_ONLY, default=None))
    params.append(P("reduction", P.KEYWORD_ONLY, default=loss.spec.default_reduction))
    params += [P(o.name, P.KEYWORD_ONLY, default=o.default) for o in loss.options]
    signature = inspect.Signature(params)

    def fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        tensors = {inner: values.pop(name) for name, inner in public}
        for name, x in tensors.items():
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"fastloss.torch.{loss.name}: {name} must be a torch.Tensor, "
                                f"got {type(x).__name__}")
        options = {k: (_to_array(v) if isinstance(v, torch.Tensor) else v)
                   for k, v in values.items()}
        ordered = [tensors[name] for name in loss.inputs]
        return _FusedLoss.apply(loss, options, *ordered)

    fn.__name__ = fn.__qualname__ = loss.name
    fn.__signature__ = signature
    fn.__doc__ = (f"{loss.name}{signature}: fastloss's {loss.name} on torch tensors, "
                  f"differentiable.\n\n{loss.spec.doc('value')}")
    return fn


def _module(class_name, loss, function):
    """A torch.nn.Module binding the loss's options and reduction."""
    public = _public_inputs(loss)

    def __init__(self, *, reduction=None, **options):
        torch.nn.Module.__init__(self)
        loss.check_options({k: v for k, v in options.items()
                            if not isinstance(v, torch.Tensor)})
        self.reduction = loss.spec.class_reduction if reduction is None else reduction
        self.options = options

    def forward(self, *args, **kwargs):
        return function(*args, reduction=self.reduction, **self.options, **kwargs)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in
                         {"reduction": self.reduction, **self.options}.items())

    return type(class_name, (torch.nn.Module,), {
        "__init__": __init__, "forward": forward, "extra_repr": extra_repr,
        "__doc__": f"{class_name}: fastloss's {loss.name} as a torch.nn.Module; forward("
                   f"{', '.join(name for name, _ in public)}).",
        "__module__": __name__})


LOSS_FUNCTIONS = {name: _function(loss) for name, loss in LOSSES.items()}
MODULES = {name: _module(name, cls.loss, LOSS_FUNCTIONS[cls.loss.name])
           for name, cls in CLASSES.items()}
globals().update(LOSS_FUNCTIONS)
globals().update(MODULES)
__all__ += [*LOSS_FUNCTIONS, *MODULES]

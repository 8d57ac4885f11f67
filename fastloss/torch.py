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
PyTorch's current stream (not yet checked on a GPU).  The losses are ``torch.library``
custom ops, so ``torch.compile`` traces through them without a graph break.  The gradient
is not itself differentiable: a double backward raises.  PyTorch's deprecated ``size_average`` and
``reduce`` are not taken.
"""

from __future__ import annotations

import inspect
import json

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
    ("targets", "log_probs", "input_lengths", "target_lengths"): (
        ("log_probs", "log_probs"), ("targets", "targets"), ("input_lengths", "input_lengths"),
        ("target_lengths", "target_lengths")),
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


def _loss_named(name):
    from .define import DEFINED
    return LOSSES[name] if name in LOSSES else DEFINED[name]


def _call_arguments(name, tensors, options, option_tensors):
    """(loss, its arrays, its keyword arguments) of an op's inputs: scalar options as JSON,
    array options (weight, sample_weight, ...) as tensors named in the JSON's "_arrays"."""
    loss = _loss_named(name)
    kwargs = json.loads(options)
    names = kwargs.pop("_arrays")
    kwargs.update({n: _to_array(t) for n, t in zip(names, option_tensors)})
    return loss, [_to_array(t) for t in tensors], kwargs


def _as_list(grads):
    return list(grads) if isinstance(grads, tuple) else [grads]


# The ops: registered with PyTorch (torch.library) so that torch.compile traces through a
# loss (their fake implementations give the results' shapes from the inputs' shapes,
# Loss.value_shape) and autograd differentiates it (register_autograd below).

@torch.library.custom_op("fastloss::value_and_grad", mutates_args=())
def _value_and_grad(name: str, tensors: list[torch.Tensor], options: str,
                    option_tensors: list[torch.Tensor], want_grad: bool) -> list[torch.Tensor]:
    """[value] or [value, gradient of each prediction] from one fused kernel."""
    loss, arrays, kwargs = _call_arguments(name, tensors, options, option_tensors)
    like = tensors[loss.inputs.index(loss.predictions[0])]
    if not want_grad:
        return [_to_tensor(loss(*arrays, **kwargs), like)]
    value, grads = loss.value_and_grad(*arrays, **kwargs)
    return [_to_tensor(value, like), *(_to_tensor(g, like) for g in _as_list(grads))]


@torch.library.custom_op("fastloss::grad", mutates_args=())
def _grad(name: str, tensors: list[torch.Tensor], options: str,
          option_tensors: list[torch.Tensor], cotangent: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of each prediction for a cotangent of the (unreduced) value."""
    loss, arrays, kwargs = _call_arguments(name, tensors, options, option_tensors)
    like = tensors[loss.inputs.index(loss.predictions[0])]
    grads = loss.grad(*arrays, grad_output=_to_array(cotangent), **kwargs)
    return [_to_tensor(g, like) for g in _as_list(grads)]


def _fake_grads(loss, tensors):
    dtype = torch.promote_types(*(tensors[loss.inputs.index(p)].dtype for p in loss.predictions)) \
        if len(loss.predictions) > 1 else tensors[loss.inputs.index(loss.predictions[0])].dtype
    return dtype, [tensors[loss.inputs.index(p)].new_empty(
        tensors[loss.inputs.index(p)].shape, dtype=dtype) for p in loss.predictions]


@_value_and_grad.register_fake
def _(name, tensors, options, option_tensors, want_grad):
    loss = _loss_named(name)
    kwargs = json.loads(options)
    for array_option in (*kwargs.pop("_arrays"), "sample_weight"):  # (no bearing on shapes)
        kwargs.pop(array_option, None)
    shape = loss.value_shape(*(t.shape for t in tensors), **kwargs)
    dtype, grads = _fake_grads(loss, tensors)
    value = tensors[0].new_empty(shape, dtype=dtype)
    return [value, *grads] if want_grad else [value]


@_grad.register_fake
def _(name, tensors, options, option_tensors, cotangent):
    return _fake_grads(_loss_named(name), tensors)[1]


def _setup_context(ctx, inputs, output):
    name, tensors, options, option_tensors, want_grad = inputs
    ctx.name, ctx.options, ctx.n_tensors = name, options, len(tensors)
    ctx.grads = output[1:]
    ctx.save_for_backward(*tensors, *option_tensors)


def _backward(ctx, output_cotangents):
    loss = _loss_named(ctx.name)
    if torch.is_grad_enabled():  # (create_graph=True: a gradient to differentiate again)
        raise RuntimeError(f"fastloss.torch.{loss.name}: double backward (create_graph=True) "
                           "is not supported: the gradient comes from a fused kernel and is "
                           "not itself differentiable")
    cotangent = output_cotangents[0]
    saved = ctx.saved_tensors
    tensors, option_tensors = list(saved[:ctx.n_tensors]), list(saved[ctx.n_tensors:])
    if cotangent is None:
        return None, [None] * len(tensors), None, None, None
    if cotangent.dim() == 0 and ctx.grads:
        grads = [g * cotangent.to(g.dtype) for g in ctx.grads]
    else:  # an unreduced value's cotangent: the gradient kernel with it
        grads = _grad(ctx.name, tensors, ctx.options, option_tensors, cotangent)
    result = [None] * len(tensors)
    for p, g in zip(loss.predictions, grads):
        result[loss.inputs.index(p)] = g
    return None, result, None, [None] * len(option_tensors), None


torch.library.register_autograd("fastloss::value_and_grad", _backward,
                                setup_context=_setup_context)


@torch.compiler.assume_constant_result  # (torch.compile runs it while tracing: constants in)
def _encode(scalars, array_names):
    """The ops' options argument: the scalar options as JSON, the array options' names."""
    return json.dumps({**dict(scalars), "_arrays": list(array_names)})


def _apply(loss, options, tensors):
    """The loss's value, differentiable in its predictions."""
    scalars = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()
               if not isinstance(v, (torch.Tensor, np.ndarray))}  # (sample_weight=None too)
    arrays = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v))
              for k, v in options.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    encoded = _encode(tuple(scalars.items()), tuple(arrays))
    want_grad = torch.is_grad_enabled() and any(
        tensors[loss.inputs.index(p)].requires_grad for p in loss.predictions)
    return _value_and_grad(loss.name, list(tensors), encoded, list(arrays.values()),
                           want_grad)[0]


def _function(loss):
    """The torch function of ``loss``: its arrays in the public order, then its options
    and reduction (and sample_weight for a Keras-convention loss) by keyword."""
    public = _public_inputs(loss)
    signature = inspect.Signature(loss.spec.parameters(inputs=[name for name, _ in public]))

    def fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        tensors = {inner: values.pop(name) for name, inner in public}
        for name, x in tensors.items():
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"fastloss.torch.{loss.name}: {name} must be a torch.Tensor, "
                                f"got {type(x).__name__}")
        return _apply(loss, values, [tensors[name] for name in loss.inputs])

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

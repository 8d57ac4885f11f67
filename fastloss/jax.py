"""fastloss for JAX: every loss as a differentiable function of JAX arrays.

    import fastloss.jax as flj
    value, grad = jax.jit(jax.value_and_grad(lambda p: flj.cross_entropy(labels, p)))(logits)

Each loss keeps fastloss's argument order (labels first; the Keras- and Optax-named
losses as their libraries order them) and its options and reductions.  It is a
``jax.custom_vjp`` function: the forward pass calls the fused kernel through
``jax.pure_callback`` (value and gradient in one pass, the gradient kept as the
residual), the backward pass scales that gradient by a scalar cotangent, or calls the
gradient kernel with the cotangent of an unreduced value.  It works under ``jit``,
``grad``, ``value_and_grad`` and ``vmap`` (one call per mapped element).  Array options
(``weight``, ``sample_weight``, ...) are constants: no gradient flows into them.  Arrays
on a GPU are refused (the callback runs on the host; the CUDA kernels take CuPy arrays).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import LOSSES

__all__ = ["LOSS_FUNCTIONS"]


def _result_dtype(loss, arrays):
    dtypes = [np.dtype(arrays[loss.inputs.index(p)].dtype) for p in loss.predictions]
    dtype = np.result_type(*dtypes)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _host(x):
    return np.asarray(x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _loss(loss, key, options, *arrays):
    return _forward(loss, key, options, *arrays)[0]


def _forward(loss, key, options, *arrays):
    """(value, (gradients, arrays, options)) from one pure_callback of value_and_grad."""
    scalars = dict(key)
    dtype = _result_dtype(loss, arrays)
    shape = loss.value_shape(*(a.shape for a in arrays), **scalars)
    grads_spec = tuple(jax.ShapeDtypeStruct(arrays[loss.inputs.index(p)].shape, dtype)
                       for p in loss.predictions)

    def host(options, *xs):
        value, grads = loss.value_and_grad(*map(_host, xs), **scalars,
                                           **{k: _host(v) for k, v in options.items()})
        grads = grads if isinstance(grads, tuple) else (grads,)
        return (np.asarray(value, dtype), *(np.asarray(g, dtype) for g in grads))

    out = jax.pure_callback(host, (jax.ShapeDtypeStruct(shape, dtype), *grads_spec), options,
                            *arrays, vmap_method="sequential")
    return out[0], (out[1:], arrays, options)


def _backward(loss, key, residual, cotangent):
    grads, arrays, options = residual
    if cotangent.ndim == 0:
        grads = tuple(g * cotangent.astype(g.dtype) for g in grads)
    else:  # an unreduced value's cotangent: the gradient kernel with it
        scalars = dict(key)

        def host(options, cot, *xs):
            g = loss.grad(*map(_host, xs), grad_output=_host(cot), **scalars,
                          **{k: _host(v) for k, v in options.items()})
            return tuple(np.asarray(x, cot.dtype) for x in (g if isinstance(g, tuple) else (g,)))

        grads = jax.pure_callback(host, tuple(jax.ShapeDtypeStruct(g.shape, g.dtype)
                                              for g in grads),
                                  options, cotangent, *arrays, vmap_method="sequential")
    result = [None] * len(arrays)
    for p, g in zip(loss.predictions, grads):
        result[loss.inputs.index(p)] = g
    # (no cotangent for labels or array options: zeros of their shape, float0 for integers)
    zeros = [_zero_cotangent(a) for a in arrays]
    return (jax.tree_util.tree_map(jnp.zeros_like, options),
            *(g if g is not None else z for g, z in zip(result, zeros)))


def _zero_cotangent(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


_loss.defvjp(_forward, _backward)


def _is_array_option(loss, name):
    return name == "sample_weight" or (name in loss.spec.defaults
                                       and loss.spec.option(name).is_array)


def _function(loss):
    signature = loss.spec.signature()

    def fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        arrays = [jnp.asarray(values.pop(name)) for name in loss.inputs]
        for x in arrays:  # (a traced array's placement is known only when it runs)
            if not isinstance(x, jax.core.Tracer) and any(d.platform != "cpu"
                                                          for d in x.devices()):
                raise TypeError(f"fastloss.jax.{loss.name}: arrays on a GPU are not supported "
                                "(the kernels run through a host callback)")
        options = {k: jnp.asarray(v) for k, v in values.items()
                   if _is_array_option(loss, k) and v is not None}
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                           for k, v in values.items() if not _is_array_option(loss, k)))
        loss.check_options({k: v for k, v in key if k != "reduction"})  # (errors at call time)
        return _loss(loss, key, options, *arrays)

    fn.__name__ = fn.__qualname__ = loss.name
    fn.__signature__ = signature
    fn.__doc__ = (f"{loss.name}{signature}: fastloss's {loss.name} on JAX arrays, "
                  f"differentiable (jax.custom_vjp).\n\n{loss.spec.doc('value')}")
    return fn


LOSS_FUNCTIONS = {name: _function(loss) for name, loss in LOSSES.items()}
globals().update(LOSS_FUNCTIONS)
__all__ += list(LOSS_FUNCTIONS)

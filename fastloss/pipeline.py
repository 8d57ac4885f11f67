"""The one compute path every loss takes: validate -> place -> (family) prepare, plan,
launch -> finish.

``Loss`` is the public object.  Its methods differ only by their ``Mode`` (what to
compute, a row of ``MODES``); the arrays are bound to the spec's input names, the
options and reduction checked, the inputs placed on one device, and the loss's family
(fastloss/families/) turns the arrays into kernel calls and their results back into
the value and the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _config
from . import dask as _dask
from ._arrays import Placement
from .registry import LossSpec


@dataclass(frozen=True)
class Mode:
    """What a call computes: the value, the gradient, or both in one pass."""
    name: str
    value: bool
    grad: bool
    hess: bool = False  # the second derivative beside the gradient (grad_hess)

    def result(self, value, grads):
        if not self.grad:
            return value
        return (value, grads) if self.value else grads


MODES = {m.name: m for m in (Mode("value", True, False), Mode("grad", False, True),
                             Mode("value_and_grad", True, True),
                             Mode("grad_hess", False, True, True))}
VALUE, GRAD, VALUE_AND_GRAD = MODES["value"], MODES["grad"], MODES["value_and_grad"]
GRAD_HESS = MODES["grad_hess"]

@dataclass
class Request:
    """One checked call, as the families receive it.

    arrays: the positional arrays by input name, as given; options: every option's
    checked value (array options as given); reduction: a name the loss accepts;
    out: the gradient buffers, one per prediction (None: fresh ones);
    placement: where the call runs and where its results go."""
    loss: Any
    mode: Mode
    arrays: dict
    options: dict
    reduction: str
    sample_weight: Any
    grad_output: Any
    out: tuple | None
    placement: Placement
    plannable: bool = False  # the family may leave a plan for calls like this one
    plan: Any = None         # plan(arrays, out) -> result, or None to take the full path

    @property
    def name(self):
        return self.loss.name

    @property
    def xp(self):
        return self.placement.xp

    @property
    def want_value(self):
        return self.mode.value

    @property
    def want_grad(self):
        return self.mode.grad

    def out_for(self, index=0):
        return None if self.out is None else self.out[index]


class Loss:
    """A loss: ``loss(*arrays)`` is its value, ``loss.grad(*arrays)`` the gradient (a
    vector-Jacobian product: ``grad_output`` is the cotangent), ``loss.value_and_grad``
    both from one fused pass.  ``help(loss)`` and ``inspect.signature(loss)`` show its
    arrays, options, defaults, reductions, formula and reference."""

    def __init__(self, spec: LossSpec, family):
        self.spec = spec
        self.family = family
        self.name = spec.name
        self.convention = spec.convention
        self.options = spec.options
        self.inputs = spec.inputs
        self.predictions = spec.predictions
        self.default_reduction = spec.default_reduction
        self._scalar_options = tuple(o for o in spec.options if not o.is_array)
        self._array_options = tuple(o.name for o in spec.options if o.is_array)
        self.__doc__ = f"{spec.name}{spec.signature()}\n\n{spec.doc('value')}"
        self.__signature__ = spec.signature()
        self._plans: dict[tuple, Any] = {}
        self.grad = self._method(GRAD)
        self.value_and_grad = self._method(VALUE_AND_GRAD)
        self.grad_hess = self._method(GRAD_HESS)

    def _method(self, mode):
        def method(*arrays, **kwargs):
            return self._compute(mode, arrays, kwargs)
        method.__name__ = mode.name
        method.__qualname__ = f"{self.name}.{mode.name}"
        method.__signature__ = self.spec.signature(grad=True)
        method.__doc__ = f"{self.name}.{mode.name}{method.__signature__}\n\n{self.spec.doc(mode.name)}"
        return method

    def __call__(self, *arrays, **kwargs):
        return self._compute(VALUE, arrays, kwargs)

    def value_shape(self, *shapes, reduction="default", **options):
        """The shape of the value for arrays of these shapes (in the order of the loss's
        inputs), without computing it: () for a reducing reduction."""
        reduction = self.check_reduction(reduction)
        if reduction != "none":
            return ()
        checked = self.check_options(options)
        return self.family.value_shape(self, dict(zip(self.inputs, shapes)), checked)

    def __repr__(self):
        return f"<fastloss.{self.name} ({self.convention})>"

    # -- validate -------------------------------------------------------------------------

    def check_options(self, options):
        """The checked options as a dict, defaults filled in; array options (PyTorch's
        ``weight``, ...) are returned as given and checked against the inputs later."""
        given = dict(options)
        values = {o.name: o.check(given.pop(o.name, o.default), self.name) for o in self.options}
        if given:
            known = ", ".join(repr(o.name) for o in self.options)
            raise TypeError(f"{self.name} got an unexpected option {sorted(given)[0]!r}; "
                            + (f"its options are {known}" if known else "it takes no options"))
        return values

    def check_reduction(self, reduction):
        if isinstance(reduction, str) and reduction == "default":
            return self.default_reduction
        allowed = self.spec.reductions
        # (only strings and None compare: an array would compare elementwise)
        if not isinstance(reduction, (str, type(None))) or reduction not in allowed:
            raise ValueError(f"{self.name}: Invalid value for argument `reduction`: expected "
                             f"one of {tuple(r for r in allowed)}, got {reduction!r}")
        return "none" if reduction is None else reduction

    def _bind(self, arrays, kwargs):
        """The positional arrays by input name (they may be passed by keyword too)."""
        inputs = self.inputs
        if len(arrays) < len(inputs):
            missing = inputs[len(arrays):]
            if all(n in kwargs for n in missing):
                arrays = arrays + tuple(kwargs.pop(n) for n in missing)
        if len(arrays) != len(inputs):
            raise TypeError(f"{self.name} takes {len(inputs)} arrays ({', '.join(inputs)}), "
                            f"got {len(arrays)}")
        return dict(zip(inputs, arrays))

    def _out_tuple(self, out):
        if out is None:
            return None
        if len(self.predictions) == 1:
            return (out,)
        if not isinstance(out, (tuple, list)) or len(out) != len(self.predictions):
            raise TypeError(f"{self.name}: out must be a tuple of {len(self.predictions)} arrays "
                            f"(for {', '.join(self.predictions)}), got {type(out).__name__}")
        return tuple(out)

    # -- the path -------------------------------------------------------------------------

    def __reduce__(self):  # (a Loss travels by name, e.g. to Dask's workers)
        from . import get
        return get, (self.name,)

    def _compute(self, mode, arrays, kwargs):
        key = _plan_key(mode, arrays, kwargs, len(self.inputs))
        if key is None and _dask.involves_dask(arrays, kwargs):
            return _dask.compute(self, mode, arrays, kwargs)
        if key is not None:
            plan = self._plans.get(key)
            if plan is not None:
                result = plan(arrays, kwargs.get("out"))
                if result is not None:
                    return result
        result, plan = self._full_path(mode, arrays, dict(kwargs), key is not None)
        if plan is not None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return result

    def _full_path(self, mode, arrays, kwargs, plannable):
        named = self._bind(arrays, kwargs)
        sample_weight = kwargs.pop("sample_weight", None)
        reduction = kwargs.pop("reduction", "default")
        grad_output = kwargs.pop("grad_output", None) if mode.grad else None
        out = kwargs.pop("out", None) if mode.grad else None
        if mode.hess:
            if not getattr(self.family, "second_derivatives", False):
                raise TypeError(f"{self.name}: grad_hess is not available for this loss "
                                "(second derivatives exist for the pointwise losses, the losses "
                                "of two prediction arrays and the softmax cross-entropies)")
            if out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
                raise TypeError(f"{self.name}: grad_hess's out must be a pair of arrays "
                                f"(gradient, second derivatives), got {type(out).__name__}")
        options = self.check_options(kwargs)
        reduction = self.check_reduction(reduction)
        if sample_weight is not None and not self.spec.takes_sample_weight:
            raise TypeError(f"{self.name} follows {self.spec.source} and takes no sample_weight")
        if mode.hess and out is not None:  # (gradients, then second derivatives)
            outs = (*self._out_tuple(out[0]), *self._out_tuple(out[1]))
        else:
            outs = self._out_tuple(out)
        placed = {**named, "sample_weight": sample_weight, "grad_output": grad_output,
                  **{name: options[name] for name in self._array_options}}
        if outs is not None:
            placed.update({"out" if len(outs) == 1 else f"out[{i}]": o
                           for i, o in enumerate(outs)})
        placement = Placement(placed)
        xp = placement.xp
        if mode.hess and outs is not None and all(isinstance(o, xp.ndarray) for o in outs) and any(
                xp.may_share_memory(x, y) for i, x in enumerate(outs) for y in outs[i + 1:]):
            raise ValueError(f"{self.name}: grad_hess's out buffers must not overlap")
        request = Request(self, mode, named, options, reduction, sample_weight, grad_output,
                          outs, placement, plannable and placement.target == "cpu"
                          and not placement.gpu_inputs and not mode.hess)
        value, grads = self.family.compute(request)
        if mode.value:
            value = placement.result(value)
        if mode.grad:
            grads = tuple(placement.result(g) for g in grads)
            n = len(self.predictions)
            if mode.hess and n > 1:  # ((gradients), (second derivatives))
                grads = (grads[:n], grads[n:])
            elif n == 1 and not mode.hess:
                grads = grads[0]
        return mode.result(value, grads), request.plan


# -- plans ------------------------------------------------------------------------------
# Work that depends only on shapes, dtypes, options and the reduction is done once per
# such combination: a family may leave a plan on a request, which later calls with the
# same key run directly (the arrays' data is all that changes).

_MAX_PLANS = 64  # per loss; the cache is cleared when full
_SCALARS = (int, float, bool, str, type(None))


def _array_key(a):
    return a.shape, a.strides, a.dtype, a.flags.writeable, a.flags.aligned


def _plan_key(mode, arrays, kwargs, n_inputs):
    """The key of a call that a plan could serve: NumPy arrays only, no sample_weight or
    grad_output, scalar options; None for any other call."""
    if len(arrays) != n_inputs:
        return None
    parts = [mode.name, _config.current_backend(), _config.PARALLEL_THRESHOLD]
    for a in arrays:
        if type(a) is not np.ndarray:
            return None
        parts.append(_array_key(a))
    for name, v in kwargs.items():
        if name == "out" and type(v) is np.ndarray:
            parts.append(("out", _array_key(v)))
        elif name == "out" and type(v) is tuple and all(type(o) is np.ndarray for o in v):
            parts.append(("out", tuple(_array_key(o) for o in v)))
        elif type(v) in _SCALARS and (v is None or name not in ("sample_weight", "grad_output",
                                                                "out")):
            parts.append((name, type(v), v))
        else:
            return None
    return tuple(parts)


def grad_buffer(request, shape, dtype, index=0):
    """The buffer that receives prediction ``index``'s gradient (flat): ``out``, checked,
    or a new array."""
    xp = request.xp
    out = request.out_for(index)
    predictions = request.loss.predictions
    # (grad_hess: the second derivatives' buffers follow the gradients', in the same order)
    name = predictions[index % len(predictions)]
    if out is None:
        return xp.empty(int(np.prod(shape, dtype=np.int64)), dtype)
    if not isinstance(out, xp.ndarray):
        raise TypeError(f"{request.name}: out must be a {xp.__name__} array, got "
                        f"{type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{request.name}: out must have {name}'s shape {tuple(shape)} "
                         f"and dtype {dtype}, got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous or (xp is np and not out.flags.writeable):
        raise ValueError(f"{request.name}: out must be a writeable C-contiguous array")
    return out.reshape(-1)

"""Keras-style loss classes: a loss with its options and reduction bound at construction,
named as Keras and PyTorch name theirs (``MeanSquaredError``, ``CrossEntropyLoss``)."""

from __future__ import annotations

import inspect

import numpy as np

from .losses import LOSSES
from .pipeline import Loss


class LossFunction:
    """A configured loss: ``obj(*arrays)`` (Keras-convention losses also take
    ``sample_weight``, positionally after the arrays or by keyword), ``obj.grad(...)``,
    ``obj.value_and_grad(...)``.

    name: the loss's name (default the function's); dtype: the dtype the loss computes in
    and returns, as Keras's ``dtype``: "float32" or "float64" compute in it; "float16" and
    "bfloat16" (the latter with ml_dtypes installed) compute in float32 and return results
    in that dtype; None (default) computes in the predictions' dtype.  ``get_config()``
    gives every option (defaults included), and ``from_config(config)`` rebuilds the
    object from it."""

    loss: Loss

    def __init__(self, reduction="default", name=None, dtype=None, **options):
        loss = self.loss
        loss.check_options(options)
        if isinstance(reduction, str) and reduction == "default":
            reduction = loss.spec.class_reduction
        self.reduction = loss.check_reduction(reduction)
        self.options = {**loss.spec.defaults, **options}
        self.name = name or loss.name
        self.dtype, self._compute_dtype = _loss_dtype(dtype, self.name)

    def _arguments(self, arrays, kwargs):
        if len(arrays) == len(self.loss.inputs) + 1 and self.loss.spec.takes_sample_weight:
            arrays, kwargs = arrays[:-1], {**kwargs, "sample_weight": arrays[-1]}
        if self._compute_dtype is not None:
            arrays = tuple(_as_dtype(x, self._compute_dtype) if name in self.loss.predictions
                           else x for name, x in zip(self.loss.inputs, arrays))
            kwargs = {k: _as_dtype(x, self._compute_dtype) if k in self.loss.predictions
                      else x for k, x in kwargs.items()}
        return arrays, {**kwargs, "reduction": self.reduction, **self.options}

    def _result(self, result):
        """Results in the loss's dtype, where it computes in a wider one."""
        if self.dtype is None or self.dtype == self._compute_dtype:
            return result
        if isinstance(result, tuple):
            return tuple(self._result(r) for r in result)
        return result.astype(self.dtype)

    def __call__(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self._result(self.loss(*arrays, **kwargs))

    def grad(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self._result(self.loss.grad(*arrays, **kwargs))

    def value_and_grad(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self._result(self.loss.value_and_grad(*arrays, **kwargs))

    def get_config(self):
        """Everything the object was made with: name, reduction, every option, and dtype
        when one was given (Keras's configs leave the default dtype out)."""
        dtype = {} if self.dtype is None else {"dtype": self.dtype.name}
        return {"name": self.name, "reduction": self.reduction, **dtype, **self.options}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _loss_dtype(dtype, name):
    """(the results' dtype, the compute dtype) of a class's ``dtype`` argument."""
    if dtype is None:
        return None, None
    if isinstance(dtype, str) and dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError(f"{name}: dtype 'bfloat16' needs the ml_dtypes package "
                             "(fastloss computes it in float32)") from None
        return np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32)
    try:
        result = np.dtype(dtype)
    except TypeError:
        result = None
    if result not in (np.float16, np.float32, np.float64):
        raise ValueError(f"{name}: dtype must be a float dtype (float16, bfloat16, float32, "
                         f"float64), got {dtype!r}")
    return result, np.dtype(np.float32) if result == np.float16 else result


def _as_dtype(x, dtype):
    """An input array in the compute dtype (in its own array library)."""
    return x.astype(dtype, copy=False) if hasattr(x, "astype") else np.asarray(x, dtype)


def loss_class(loss: Loss) -> type[LossFunction]:
    """The class of ``loss``: its docstring, and a constructor signature with its options."""
    spec = loss.spec
    P = inspect.Parameter
    init = inspect.Signature([*spec.parameters(classes=True),
                              P("name", P.KEYWORD_ONLY, default=None),
                              P("dtype", P.KEYWORD_ONLY, default=None)])
    doc = (f"{spec.class_name}(reduction={spec.class_reduction!r}, name=None, dtype=None, "
           "**options): "
           f"{spec.name} with its options and reduction bound.\n\n{spec.doc('value')}")
    return type(str(spec.class_name), (LossFunction,), {
        "loss": loss, "__doc__": doc, "__module__": "fastloss", "__signature__": init})


CLASSES: dict[str, type[LossFunction]] = {
    loss.spec.class_name: loss_class(loss) for loss in LOSSES.values() if loss.spec.class_name}

"""Keras-style loss classes: a loss with its options and reduction bound at construction,
named as Keras and PyTorch name theirs (``MeanSquaredError``, ``CrossEntropyLoss``)."""

from __future__ import annotations

import inspect

from .losses import LOSSES
from .pipeline import Loss


class LossFunction:
    """A configured loss: ``obj(*arrays)`` (Keras-convention losses also take
    ``sample_weight``, positionally after the arrays or by keyword), ``obj.grad(...)``,
    ``obj.value_and_grad(...)``."""

    loss: Loss

    def __init__(self, reduction="default", name=None, **options):
        loss = self.loss
        loss.check_options(options)
        self.reduction = loss.check_reduction(reduction)
        self.options = options
        self.name = name or loss.name

    def _arguments(self, arrays, kwargs):
        if len(arrays) == len(self.loss.inputs) + 1 and self.loss.spec.takes_sample_weight:
            arrays, kwargs = arrays[:-1], {**kwargs, "sample_weight": arrays[-1]}
        return arrays, {**kwargs, "reduction": self.reduction, **self.options}

    def __call__(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self.loss(*arrays, **kwargs)

    def grad(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self.loss.grad(*arrays, **kwargs)

    def value_and_grad(self, *arrays, **kwargs):
        arrays, kwargs = self._arguments(arrays, kwargs)
        return self.loss.value_and_grad(*arrays, **kwargs)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self.options}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def loss_class(loss: Loss) -> type[LossFunction]:
    """The class of ``loss``: its docstring, and a constructor signature with its options."""
    spec = loss.spec
    P = inspect.Parameter
    init = inspect.Signature([*spec.parameters(classes=True),
                              P("name", P.KEYWORD_ONLY, default=None)])
    doc = (f"{spec.class_name}(reduction={spec.default_reduction!r}, name=None, **options): "
           f"{spec.name} with its options and reduction bound.\n\n{spec.doc('value')}")
    return type(str(spec.class_name), (LossFunction,), {
        "loss": loss, "__doc__": doc, "__module__": "fastloss", "__signature__": init})


CLASSES: dict[str, type[LossFunction]] = {
    loss.spec.class_name: loss_class(loss) for loss in LOSSES.values() if loss.spec.class_name}

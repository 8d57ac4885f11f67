"""fastloss: loss functions and their gradients as fused Numba kernels (NumPy on the CPU, CuPy on CUDA).

    import fastloss as fl
    value = fl.mean_squared_error(y_true, y_pred)
    value, grad = fl.huber.value_and_grad(y_true, y_pred, delta=0.5)

Importing compiles nothing: kernels compile on first use (and load from Numba's cache
afterwards); ``python -m fastloss warmup`` compiles them all ahead of time.
"""

from ._classes import CLASSES, LossFunction
from ._config import backend
from ._loss import Loss
from .losses import ALIASES, LOSSES

globals().update(LOSSES)
globals().update(ALIASES)
globals().update(CLASSES)


def get(name):
    """A loss by name or alias (``"mse"``, ``"huber"``, ``"MeanSquaredError"``...)."""
    table = {**LOSSES, **ALIASES, **CLASSES}
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


__version__ = "0.1.0"
__all__ = ["Loss", "LossFunction", "backend", "get", *LOSSES, *ALIASES, *CLASSES]

"""fastloss for Keras 3: loss classes under Keras's names, for ``model.compile(loss=...)``.

    import fastloss.keras as flk
    model.compile(optimizer="adam", loss=flk.SparseCategoricalCrossentropy(from_logits=True))

Each class is a ``keras.losses.Loss``: Keras applies its ``reduction``, ``sample_weight``
and masks to the per-sample losses that fastloss computes (the fused kernel, through
``fastloss.jax`` on the JAX backend and ``fastloss.torch`` on the PyTorch backend, whose
backward passes reuse the gradient of the forward pass).  ``get_config`` / ``from_config``
round-trip every option.  The TensorFlow backend is not supported.
"""

from __future__ import annotations

import keras

from . import CLASSES

__all__ = ["CLASSES_BY_NAME"]


def _backend_function(name):
    backend = keras.backend.backend()
    if backend == "jax":
        from . import jax as frontend
    elif backend == "torch":
        from . import torch as frontend
    else:
        raise RuntimeError(f"fastloss.keras: the {backend!r} backend is not supported; use "
                           "KERAS_BACKEND=jax or torch")
    return frontend.LOSS_FUNCTIONS[name]


def _make(class_name, loss):
    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **options):
        loss.check_options(options)
        keras.losses.Loss.__init__(self, name=name or loss.name, reduction=reduction,
                                   dtype=dtype)
        self.options = {**loss.spec.defaults, **options}

    def call(self, y_true, y_pred):
        return _backend_function(loss.name)(y_true, y_pred, reduction="none", **self.options)

    def get_config(self):
        return {**keras.losses.Loss.get_config(self), **self.options}

    cls = type(class_name, (keras.losses.Loss,), {
        "__init__": __init__, "call": call, "get_config": get_config,
        "__doc__": f"{class_name}: fastloss's {loss.name} as a keras.losses.Loss.\n\n"
                   f"{loss.spec.doc('value')}",
        "__module__": __name__})
    return keras.saving.register_keras_serializable(package="fastloss")(cls)


CLASSES_BY_NAME = {name: _make(name, cls.loss) for name, cls in CLASSES.items()
                   if cls.loss.convention == "keras"}
globals().update(CLASSES_BY_NAME)
__all__ += list(CLASSES_BY_NAME)

"""The kernel families, as the pipeline sees them: each turns a checked ``Request`` into
kernel calls (prepare, plan, launch through fastloss.launch) and their results into
``(value, gradients)`` (finish).  Only what differs between families lives here; the
binding, checks, placement and results are the pipeline's."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

class Family(ABC):
    """A family: its kernel element (a name, or a function of the checked options giving
    one) and ``kernel_values``, a function of the checked options giving the element's
    named options that are not the loss's options of the same name (a renamed option, a
    fixed value, None's stand-in)."""

    name = "family"

    def __init__(self, element=None, kernel_values=None):
        self.element = element
        self.kernel_values = kernel_values

    def element_for(self, values):
        return self.element(values) if callable(self.element) else self.element

    def kernel_element(self, loss, values, dtype):
        """``(element, option tuple)`` for checked options ``values``: the tuple holds the
        element's named options, in its order, in the compute dtype, padded to
        OPTION_SLOTS."""
        from fastloss.kernels.elements import OPTION_SLOTS

        from ..launch import generated_module
        element = self.element_for(values)
        names = generated_module(element).ELEMENT_OPTIONS[element]
        named = values if self.kernel_values is None else {**values,
                                                           **self.kernel_values(values)}
        missing = [n for n in names if n not in named]
        if missing:
            raise AssertionError(f"{loss.name}: element {element} reads {missing}, which are "
                                 "neither its options nor given by kernel_values")
        numbers = [dtype.type(named[n]) for n in names]
        return element, tuple(numbers + [dtype.type(0)] * (OPTION_SLOTS - len(numbers)))

    @abstractmethod
    def value_shape(self, loss, shapes, options):
        """The shape of the unreduced value (reduction "none") for inputs of ``shapes``
        (by input name) and checked ``options``, without computing it."""

    @staticmethod
    def has_grad_hess(element):
        """Whether ``element`` has grad_hess kernels (a second derivative)."""
        from ..launch import generated_module
        return f"{element}_grad_hess_serial" in generated_module(element).KERNEL_ELEMENTS

    @abstractmethod
    def compute(self, request):
        """(value, gradients as a tuple or None) of a checked request, in its array module."""


def as_dtype(value, dtype, xp):
    """A value of the compute dtype: a NumPy scalar, or a 0-d device array."""
    return dtype.type(value) if xp is np else xp.asarray(value, dtype=dtype).reshape(())

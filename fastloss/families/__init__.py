"""The kernel families, as the pipeline sees them: each turns a checked ``Request`` into
kernel calls (prepare, plan, launch through fastloss.launch) and their results into
``(value, gradients)`` (finish).  Only what differs between families lives here; the
binding, checks, placement and results are the pipeline's."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

# Options that choose how the family lays out the data, not numbers an element receives.
_LAYOUT_OPTIONS = frozenset({"axis"})


class Family(ABC):
    """A family: its kernel element (a name, or a function of the checked options giving
    one) and how the options become the element's option tuple (``kernel_values``, a
    function of the checked options; default every numeric option in declaration order)."""

    name = "family"

    def __init__(self, element=None, kernel_values=None):
        self.element = element
        self.kernel_values = kernel_values

    def element_for(self, values):
        return self.element(values) if callable(self.element) else self.element

    def kernel_options(self, loss, values, dtype, skip=()):
        """The element's option tuple in the compute dtype, padded to OPTION_SLOTS."""
        from fastloss.kernels.elements import OPTION_SLOTS
        if self.kernel_values is not None:
            numbers = [float(v) for v in self.kernel_values(values)]
        else:
            numbers = [float(values[o.name]) for o in loss.options
                       if not o.is_array and o.name not in _LAYOUT_OPTIONS and o.name not in skip]
        return tuple(dtype.type(v) for v in numbers + [0.0] * (OPTION_SLOTS - len(numbers)))

    @abstractmethod
    def compute(self, request):
        """(value, gradients as a tuple or None) of a checked request, in its array module."""


def as_dtype(value, dtype, xp):
    """A value of the compute dtype: a NumPy scalar, or a 0-d device array."""
    return dtype.type(value) if xp is np else xp.asarray(value, dtype=dtype).reshape(())

"""A call that sees one chunk of a larger batch (fastloss.dask), and the batch sums that
must come out the same either way.

A Dask chunk's call runs the ordinary in-memory path inside ``chunk_of(...)``: the
conventions then divide by the whole batch's counts (``full_count``) and data-dependent
divisors (``divisor``), not the chunk's, and the launcher records the kernel's float64
block partials (``record_partials``) so that the value is made from every chunk's
partials in order, as one in-memory call makes it from its own.

Sums of weights that a reduction divides by are ``ordered_sum``s: float64 sums added
one value after the other, in order, which a chunked batch continues from chunk to
chunk: the same divisor, bit for bit, however the batch is cut.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass, field

import numpy as np

@dataclass
class ChunkContext:
    """leading: the length of the batch axis (axis 0) of the whole arrays; divisors: the
    whole batch's data-dependent divisors by kind (``divisor``), for the kinds whose
    data is chunked (the others are the chunk's own); total: the value's float64 total
    from every chunk (the combining call: no kernel runs, the value is made from it);
    partials: the block partials of the kernels this chunk ran.  probing: a call that
    stops where its kernel would run (raising ``Probed``), keeping each divisor's block
    sums in ``seen``."""
    leading: int
    divisors: dict = field(default_factory=dict)
    total: float | None = None
    partials: list = field(default_factory=list)
    probing: bool = False
    seen: dict = field(default_factory=dict)
    statistics: object = None  # the whole batch's statistics (the overlap family)


class Probed(Exception):
    """A probing call reached its kernel: everything before it ran (checks, divisors)."""


_CURRENT = contextvars.ContextVar("fastloss_chunk", default=None)


class chunk_of:
    """``with chunk_of(context):`` runs in-memory calls as one chunk of a batch."""

    def __init__(self, context):
        self.context = context

    def __enter__(self):
        self._token = _CURRENT.set(self.context)
        return self.context

    def __exit__(self, *exc):
        _CURRENT.reset(self._token)


def current():
    """The chunk context of the running call, or None (an ordinary call)."""
    return _CURRENT.get()


def full_count(shape):
    """prod(shape), with axis 0 the whole batch's length in a chunk's call."""
    context = _CURRENT.get()
    if context is None or context.leading is None or not shape:
        return math.prod(shape)
    return context.leading * math.prod(shape[1:])


def full_shape(shape):
    """shape, with axis 0 the whole batch's length in a chunk's call."""
    context = _CURRENT.get()
    if context is None or context.leading is None or not shape:
        return tuple(shape)
    return (context.leading,) + tuple(shape[1:])


def full_leading(shape):
    """shape[0], the whole batch's in a chunk's call."""
    context = _CURRENT.get()
    return shape[0] if context is None or context.leading is None else context.leading


def divisor(kind, values, xp=np, along_batch=True):
    """A data-dependent divisor, the ``ordered_sum`` of ``values``: "sample_weight"
    (Keras's "mean_with_sample_weight"), "weight" (PyTorch's weighted "mean"), "kept"
    (PyTorch's class-weighted "mean" over the kept targets), "valid" (Keras's
    ignore_class mask).  In a chunk's call, the whole batch's, when ``values`` run along
    the batch (else a chunk's values are the batch's: a weight broadcast over it)."""
    context = _CURRENT.get()
    if context is not None and along_batch:
        if context.probing:
            context.seen[kind] = values
        elif kind in context.divisors:
            return context.divisors[kind]
    return ordered_sum(values, xp)


def record_partials(partials):
    """Keeps a kernel's block partials, in a chunk's call."""
    context = _CURRENT.get()
    if context is not None:
        context.partials.append(partials)


def injected_total():
    """The value's total from every chunk, in the combining call; else None."""
    context = _CURRENT.get()
    return None if context is None else context.total


def ordered_sum(x, xp=np, start=0.0):
    """start + x[0] + x[1] + ... (flattened), added left to right in float64: a batch cut
    into chunks gives the same sum when each chunk starts from the sum before it.  (On a
    GPU: CuPy's sum, left on the device.)"""
    if xp is not np:
        return xp.asarray(x, dtype=np.float64).sum() + start
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if start != 0.0:
        x = np.concatenate([np.array([start]), x])
    return float(np.add.accumulate(x)[-1]) if x.size else float(start)


def in_order(values):
    """sum(values) added left to right in float64 (0.0 when empty)."""
    return ordered_sum(values)

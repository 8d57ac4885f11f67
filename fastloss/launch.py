"""The one launcher: runs kernels on the CPU or on CUDA, for every family.

On the CPU a kernel is ``{name}_serial`` or ``{name}_parallel`` by the call's work
(``_config.PARALLEL_THRESHOLD``), parallel launches serialised.  On CUDA, CuPy arrays
stay on the device and kernels run on CuPy's current stream, nothing waiting for them;
NumPy arrays (a forced "cuda" backend, as under the simulator) are copied over and the
outputs back.  ``KERNEL_ARGS`` (kernels/arguments.py) is the order of a family kernel's arguments,
the one definition that kernels/_generate.py writes the kernels from.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace

import numpy as np

from . import _batch, _config
from ._arrays import import_cupy, separate_output, writable
from .kernels.arguments import KERNEL_ARGS

# Numba's OpenMP layer spins its idle threads; on a machine where another process holds
# a core, a spinning team turned 0.6 ms calls into 8 ms ones.  Passive waiting (read
# once, when OpenMP starts) avoids that; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Numba's default threading layer aborts when two threads launch parallel kernels at
# once; serialising the (already multi-threaded) parallel launches costs nothing.
PARALLEL_LOCK = threading.Lock()


def call_cpu(kernel, parallel, args):
    """A CPU kernel's call; parallel ones one at a time (PARALLEL_LOCK)."""
    if parallel:
        with PARALLEL_LOCK:
            return kernel(*args)
    return kernel(*args)


def call_generated(kernel, parallel, args):
    """A generated CPU kernel's call on a family's ``args``: a serial kernel runs every
    task, (first task, end) = (0, size of ``partials``, the last argument), and returns
    their value; a parallel one is handed the family's arguments alone."""
    return call_cpu(kernel, parallel, args if parallel else (*args, 0, args[-1].size))


class Launcher:
    """Runs one call's kernels where its placement says.  ``work`` (elements, or
    multiply-adds) picks the serial or the parallel CPU kernel; ``cpu`` and ``cuda`` name
    the kernel modules (in fastloss.kernels) of each target."""

    def __init__(self, placement, work, cpu, cuda):
        self.xp = placement.xp
        self.cuda = placement.target == "cuda"
        if self.cuda:
            from numba import cuda as numba_cuda

            self._numba_cuda = numba_cuda
            self.kernels = _kernel_module(cuda)
            self.on_device = self.xp is not np
            if self.on_device:
                self.stream = numba_cuda.external_stream(
                    import_cupy().cuda.get_current_stream().ptr)
            else:
                self.stream = numba_cuda.default_stream()
        else:
            self.kernels = _kernel_module(cpu)
            self.parallel = work >= _config.PARALLEL_THRESHOLD

    # -- CPU ----------------------------------------------------------------------------

    def cpu(self, name, *args):
        """Runs CPU kernel ``name`` (serial or parallel) and returns what it returns."""
        suffix = "_parallel" if self.parallel else "_serial"
        return call_cpu(getattr(self.kernels, name + suffix), self.parallel, args)

    def generated(self, name, args):
        """Runs generated CPU kernel ``name`` (serial or parallel) on a family's ``args``
        and returns the value it returns."""
        suffix = "_parallel" if self.parallel else "_serial"
        return call_generated(getattr(self.kernels, name + suffix), self.parallel, args)

    # -- CUDA ---------------------------------------------------------------------------

    def device(self, x):
        """An array as a CUDA kernel takes it (host arrays copied over)."""
        if self.on_device:
            if hasattr(x, "__cuda_array_interface__"):
                return self._numba_cuda.as_cuda_array(x, sync=False)
            return x
        if isinstance(x, np.ndarray):
            return self._numba_cuda.to_device(np.ascontiguousarray(x), stream=self.stream)
        return x

    def new(self, shape, dtype):
        """A new device array: CuPy's on the device, Numba's for host inputs."""
        if self.on_device:
            return import_cupy().empty(shape, dtype)
        return self._numba_cuda.device_array(shape, dtype, stream=self.stream)

    def launch(self, kernel, blocks, *args, threads=None):
        """Launches CUDA ``kernel`` (or the kernel module's kernel of that name) on
        ``blocks`` blocks, the arrays among ``args`` converted."""
        if isinstance(kernel, str):
            kernel = getattr(self.kernels, kernel)
        threads = self.kernels.THREADS if threads is None else threads
        kernel[blocks, threads, self.stream](*(self.device(a) for a in args))

    def to_host(self, device_array, host=None):
        """A device result on the host (synchronising): for host inputs forced onto CUDA."""
        result = device_array.copy_to_host(host, stream=self.stream)
        self.stream.synchronize()
        return result

    # -- both ---------------------------------------------------------------------------

    def run(self, name, args, outputs=(), blocks=None):
        """Runs kernel ``name`` on ``args`` on either target; the arrays at positions
        ``outputs`` are written (CUDA, host inputs: copied back)."""
        if not self.cuda:
            self.cpu(name, *args)
            return
        if self.on_device:
            self.launch(name, blocks, *args)
            return
        device = [self.device(a) for a in args]
        self.launch(name, blocks, *device)
        for position in outputs:
            device[position].copy_to_host(args[position], stream=self.stream)
        self.stream.synchronize()


# The kernel modules of losses defined at run time (fastloss.define_loss), by module
# name: a function that imports the module (once).
DEFINED_MODULES = {}


def _kernel_module(name):
    if name in DEFINED_MODULES:
        return DEFINED_MODULES[name]()
    import importlib

    return importlib.import_module(f"fastloss.kernels.{name}")


def generated_modules(element):
    """The names of the (CPU, CUDA) modules holding ``element``'s generated kernels."""
    if f"{element}_cpu" in DEFINED_MODULES:
        return f"{element}_cpu", f"{element}_cuda"
    return "generated_cpu", "generated_cuda"


def generated_module(element):
    """The CPU module of ``element``'s generated kernels (its ELEMENT_OPTIONS and
    KERNEL_ELEMENTS say what they take and which exist)."""
    return _kernel_module(generated_modules(element)[0])


# -- the generic family kernels (kernels/_generate.py) ----------------------------------

@dataclass
class KernelCall:
    """One call of a generated family kernel, prepared by a family.

    family: "pointwise", "pair" (pointwise, two predictions), "pair_hess" (a pair
    element's grad_hess: grads = (ga, gb, ha, hb)), "rowwise", "rows_hess" (a row
    element's grad_hess: grads = (gradient, second derivative)) or "tuple" (rows of
    several inputs).  element: the element function's name.  inputs: the flat
    prediction arrays (compute dtype); targets: the flat labels or targets in the compute
    dtype (int64 class indices for a "label_sets" row loss; or None); labels: int64 class indices per row (rowwise; or None); class_weight:
    float64 per class (rowwise; or None); options: the element's option tuple; C: row
    length; weight / coef: per-row float64 arrays (size 1 for all rows); gscale: the
    global gradient factor, vscale the value's (host floats or 0-d arrays); want_rows:
    return per-row ``weight * sum``; grads: one flat output buffer per input, or ()."""
    family: str
    element: str
    inputs: tuple
    targets: object
    options: tuple
    C: int
    weight: object
    coef: object
    gscale: object
    vscale: object
    want_rows: bool
    value: bool
    grads: tuple = ()
    labels: object = None
    class_weight: object = None
    hess: bool = False  # grads: the gradients, then the second derivatives

    @property
    def mode(self):
        if self.hess:
            return "grad_hess"
        if not self.grads:
            return "value"
        return "value_and_grad" if self.value else "grad"

    @property
    def rows(self):
        return self.inputs[0].size // self.C


TUPLE_SLOTS = 4  # prediction slots of the tuplewise kernels (unused ones are empty arrays)

_BODY = {"pointwise": "pointwise", "pair": "pointwise_pair", "rowwise": "rowwise",
         "tuple": "tuplewise", "rows_hess": "rowwise_grad_hess",
         "pair_hess": "pointwise_pair_hess"}
_PREDICTIONS = ("p", "a", "b", "c", "d")
_GRADIENTS = ("grad", "ga", "gb", "gc", "gd", "hess", "ha", "hb")


def kernel_args(call, rows, grads, partials, gscale, dev, new):
    """The family kernel's arguments, in ``KERNEL_ARGS`` order.  grads: one buffer per
    prediction input (empty ones without a gradient); dev moves an array to where the
    kernel runs, new(n, dtype) makes a buffer there."""
    dtype = call.inputs[0].dtype
    empty = new(0, dtype)
    inputs = list(call.inputs)
    grads = list(grads)
    if call.family == "tuple":  # (four slots; y is the first; grad_hess: ga, gb, ha, hb)
        inputs += [empty] * (TUPLE_SLOTS - len(inputs))
        grads += [empty] * (TUPLE_SLOTS - len(grads))
    named = {"t": call.targets if call.targets is not None else empty,
             "y": call.targets if call.targets is not None else empty,
             "labels": call.labels if call.labels is not None else new(0, np.int64),
             "cw": call.class_weight if call.class_weight is not None else new(0, np.float64),
             "o": call.options, "C": call.C, "weight": call.weight, "coef": call.coef,
             "gscale": gscale, "row_out": rows, "partials": partials}
    names = KERNEL_ARGS[_BODY[call.family]]
    predictions = [n for n in names if n in _PREDICTIONS]
    gradients = [n for n in names if n in _GRADIENTS]
    named.update(zip(predictions, inputs))
    named.update(zip(gradients, grads))
    return tuple(dev(named[n]) if not isinstance(named[n], (int, tuple)) else named[n]
                 for n in names)


def run_kernel(call, placement):
    """Runs ``call`` where ``placement`` says; returns (value scaled by vscale, per-row
    values or None).  A gradient buffer that overlaps an input (``out=y_pred``) is
    replaced by a fresh one, copied into it afterwards: row kernels read a row again
    after writing its gradient, and LLVM's vectorised loops take a scalar path (summing
    in another order) over overlapping arrays.  So results do not depend on where
    ``out`` lies."""
    xp = placement.xp
    chunk = _batch.current()
    if chunk is not None:  # (a Dask chunk's call: fastloss.dask)
        if chunk.probing:
            raise _batch.Probed
        if chunk.total is not None:  # the value from every chunk's partials
            dtype = call.inputs[0].dtype
            if call.want_rows:  # (one row split over the chunks: Keras's 1-D y_pred)
                return None, xp.full(1, chunk.total, dtype)
            value = dtype.type(chunk.total * call.vscale) if xp is np else (
                xp.asarray(chunk.total * call.vscale, dtype=dtype).reshape(()))
            return value, None
    read = (call.targets, *call.inputs, call.labels, call.weight, call.coef, call.class_weight)
    targets = call.grads
    buffers = tuple(separate_output(xp, g, read) for g in targets)
    if any(b is not g for b, g in zip(buffers, targets)):
        call.grads = buffers
    launcher = Launcher(placement, call.inputs[0].size, *generated_modules(call.element))
    value, rows = _run_cuda(call, launcher) if launcher.cuda else _run_cpu(call, launcher)
    for target, buffer in zip(targets, buffers):
        if buffer is not target:
            target[...] = buffer
    return value, rows


def _plan(call, cuda):
    """(blocks or tasks, chunks per row) of the family's task plan."""
    if cuda:
        from fastloss.kernels import pointwise_cuda, rowwise_cuda
        if call.family in ("rowwise", "rows_hess", "tuple"):
            return rowwise_cuda.plan(call.rows, call.C), 0
        return pointwise_cuda.plan(call.rows, call.C)
    from fastloss.kernels import pointwise, rowwise
    plan = rowwise.plan if call.family in ("rowwise", "rows_hess", "tuple") else pointwise.plan
    return plan(call.rows, call.C)[0], 0


def _empty_grads(call, new):
    return tuple(new(0, call.inputs[0].dtype) for _ in call.inputs)


def _run_cpu(call, launcher):
    dtype = call.inputs[0].dtype
    rows = np.empty(call.rows if call.want_rows else 0, dtype)
    partials = np.empty(_plan(call, False)[0])
    args = kernel_args(call, rows, call.grads or _empty_grads(call, np.empty), partials,
                       np.array([call.gscale], np.float64).reshape(1), writable, np.empty)
    total = launcher.generated(f"{call.element}_{call.mode}", args)
    _batch.record_partials(partials)
    value = dtype.type(total * call.vscale) if call.value else None
    return value, (rows if call.want_rows else None)


def _run_cuda(call, launcher):
    from fastloss.kernels.pointwise_cuda import THREADS, finish, rows_from_chunks

    xp = launcher.xp
    dtype = call.inputs[0].dtype
    dev, new = launcher.device, launcher.new

    def scalar(x):
        if isinstance(x, (int, float)):  # a host number: filled on the device, no copy
            return dev(xp.full(1, x, np.float64))
        return dev(xp.asarray(x, dtype=np.float64).reshape(1))

    R = call.rows
    nblocks, chunks_per_row = _plan(call, True)
    rows = new(R if call.want_rows else 0, dtype)
    grads = call.grads if launcher.on_device else tuple(new(g.size, dtype) for g in call.grads)
    partials = new(nblocks, np.float64)
    args = kernel_args(call, rows, grads or _empty_grads(call, new), partials,
                       scalar(call.gscale), dev, new)
    launcher.launch(f"{call.element}_{call.mode}", nblocks, *args, threads=THREADS)
    _batch.record_partials(partials)
    value = None
    if call.value:
        value = new(1, dtype)
        launcher.launch(finish, 1, partials, scalar(call.vscale), value, threads=THREADS)
        if call.want_rows and chunks_per_row > 0:
            launcher.launch(rows_from_chunks, (R + THREADS - 1) // THREADS, partials,
                            chunks_per_row, rows, threads=THREADS)
    if launcher.on_device:
        return (None if value is None else value.reshape(())), (rows if call.want_rows else None)
    launcher.stream.synchronize()
    value = None if value is None else dtype.type(value.copy_to_host()[0])
    rows = rows.copy_to_host()
    for host, device in zip(call.grads, grads):
        host[...] = device.copy_to_host()
    return value, (rows if call.want_rows else None)


# -- plans: a CPU call with its data-independent parts fixed, for small calls -----------

class CpuPlan:
    """A generated CPU kernel's call with everything but the data fixed: the kernel (serial
    or parallel), the option tuple, the per-row factors and scales, the scratch sizes.
    ``run`` then costs little more than the kernel itself.  Made from a ``KernelCall``
    whose scales are host numbers (``of`` returns None otherwise)."""

    def __init__(self, call, rows_shape=None, row_factor=1.0):
        dtype = call.inputs[0].dtype
        self.rows_shape, self.row_factor = rows_shape, dtype.type(row_factor)
        self.family, self.dtype, self.value = call.family, dtype, call.value
        self.parallel = call.inputs[0].size >= _config.PARALLEL_THRESHOLD
        self.kernel = getattr(generated_module(call.element),
                              f"{call.element}_{call.mode}_{'parallel' if self.parallel else 'serial'}")
        self.options, self.C = call.options, call.C
        self.weight, self.coef = writable(call.weight), writable(call.coef)
        self.gscale = np.array([call.gscale], np.float64)
        self.vscale = call.vscale
        self.rows = call.rows if call.want_rows else 0
        self.tasks = _plan(call, False)[0]
        self.empty = np.empty(0, dtype)
        self.no_labels, self.no_weights = np.empty(0, np.int64), np.empty(0, np.float64)
        self.template = call  # (for the other families' argument lists)

    @classmethod
    def of(cls, call, layout):
        """The plan of ``call`` (its ``conventions.Layout`` says how per-row values are
        returned), or None when the call's scales live on a device."""
        if not all(isinstance(s, float) for s in (call.gscale, call.vscale)):
            return None
        if any(x is not None and not isinstance(x, np.ndarray)
               for x in (call.targets, call.labels, call.weight, call.coef, *call.inputs)):
            return None
        return cls(call, layout.rows_shape, layout.row_factor)

    def call(self, mode, targets, inputs, out, shapes, labels=None):
        """A planned call's result, as the loss returns it: ``inputs`` flat, their gradients
        in ``shapes`` written into ``out`` (an array, a tuple of them, or None: new ones)."""
        grads = ()
        if mode.grad:
            outs = (None,) * len(inputs) if out is None else out if type(out) is tuple else (out,)
            grads = tuple(np.empty(x.size, self.dtype) if o is None else o.reshape(-1)
                          for o, x in zip(outs, inputs))
        value, rows = self.run(targets, inputs, grads, labels)
        if self.rows_shape is not None and mode.value:
            value = rows.reshape(self.rows_shape)
            if self.row_factor != 1:
                value *= self.row_factor
        shaped = tuple(g.reshape(s) for g, s in zip(grads, shapes))
        return mode.result(value, shaped if len(shaped) > 1 else shaped[0] if shaped else None)

    def run(self, targets, inputs, grads, labels=None):
        """(value or None, per-row values or None) of the kernel over these arrays (flat,
        contiguous, the planned shapes and dtype); ``grads`` one buffer per input, or ()."""
        read = (targets, labels, *inputs)
        buffers = tuple(separate_output(np, g, read) for g in grads)
        rows = np.empty(self.rows, self.dtype)
        partials = np.empty(self.tasks)
        middle = (self.options, self.C, self.weight, self.coef, self.gscale, rows)
        outputs = buffers or (self.empty,) * len(inputs)
        if self.family == "rowwise":
            args = (self.empty if targets is None else targets,
                    self.no_labels if labels is None else labels, inputs[0], self.no_weights,
                    *middle, outputs[0], partials)
        elif self.family == "pointwise":
            args = (targets, *inputs, *middle, *outputs, partials)
        else:  # (pairs and tuples: their slots as kernel_args lays them out)
            call = replace(self.template, inputs=inputs, targets=targets)
            args = kernel_args(call, rows, outputs, partials, self.gscale, writable, np.empty)
        total = call_generated(self.kernel, self.parallel, args)
        for target, buffer in zip(grads, buffers):
            if buffer is not target:
                target[...] = buffer
        return (self.dtype.type(total * self.vscale) if self.value else None), (
            rows if self.rows else None)

"""Runs a family kernel on the chosen backend.  Kernels are imported (and compiled) lazily."""

import os
import threading
from dataclasses import dataclass, replace

import numpy as np

from . import _config
from ._arrays import import_cupy, separate_output, writable

# Numba's default threading layer aborts when two threads launch parallel kernels at
# once; serialising the (already multi-threaded) parallel launches costs nothing.
_PARALLEL_LOCK = threading.Lock()


@dataclass
class KernelCall:
    """One call of a family kernel, prepared by the front end.

    t, p: flat contiguous inputs in the compute dtype; o: the element function's option
    tuple (compute dtype); C: row length; weight / coef:
    per-row arrays (or size 1) of float64; gscale: the global gradient factor and
    vscale the value factor (host floats, or 0-d arrays of the inputs' module);
    want_rows: return per-row ``weight * sum``; grad: a flat output buffer or None.
    family: "pointwise", "rowwise", "pair" (pointwise with two prediction arrays) or
    "tuple" (rows of several inputs).  For "pair" and "tuple" p and grad are tuples of
    arrays (one per prediction input) and t is the labels (for "tuple" one per row, or
    None).  The row-wise family also takes ``labels`` (int64 per row; t is then None)
    and the class weights ``cw`` (float64, size C, or None).
    """
    element: str
    t: object
    p: object
    o: tuple
    C: int
    weight: object
    coef: object
    gscale: object
    vscale: object
    want_rows: bool
    value: bool
    grad: object = None
    family: str = "pointwise"
    labels: object = None
    cw: object = None

    @property
    def mode(self):
        if self.grad is None:
            return "value"
        return "value_and_grad" if self.value else "grad"

    @property
    def inputs(self):
        """The prediction arrays, a tuple."""
        return self.p if isinstance(self.p, tuple) else (self.p,)

    @property
    def outputs(self):
        """The gradient buffers, a tuple (empty without a gradient)."""
        if self.grad is None:
            return ()
        return self.grad if isinstance(self.grad, tuple) else (self.grad,)

    @property
    def rows(self):
        return self.inputs[0].size // self.C


TUPLE_SLOTS = 4  # inputs of the tuplewise kernels (unused ones are empty arrays)


def _or_empty(x, dtype, new=np.empty):
    return new(0, dtype) if x is None else x


def kernel_args(call, rows, grads, partials, gscale, dev, new):
    """The family kernel's arguments, in kernels/_generate.py's order.  grads: one
    buffer per prediction input (empty ones without a gradient); dev moves an array to
    where the kernel runs, new(n, dtype) makes a buffer there."""
    dtype = call.inputs[0].dtype
    middle = (call.o, call.C, dev(call.weight), dev(call.coef), gscale, dev(rows))
    inputs = tuple(dev(x) for x in call.inputs)
    grads = tuple(dev(g) for g in grads)
    if call.family == "pointwise":
        return (dev(call.t), *inputs, *middle, *grads, dev(partials))
    if call.family == "rowwise":
        return (dev(_or_empty(call.t, dtype, new)), dev(_or_empty(call.labels, np.int64, new)),
                *inputs, dev(_or_empty(call.cw, np.float64, new)), *middle, *grads, dev(partials))
    if call.family == "pair":
        return (dev(call.t), *inputs, *middle, *grads, dev(partials))
    empty = dev(new(0, dtype))
    pad = (empty,) * (TUPLE_SLOTS - len(inputs))
    return (dev(_or_empty(call.t, dtype, new)), *inputs, *pad, *middle, *grads, *pad,
            dev(partials))


def _empty_grads(call, new):
    return tuple(new(0, call.inputs[0].dtype) for _ in call.inputs)


def run_cpu(call):
    """Returns (value scaled by vscale, rows or None, grad or None) as NumPy objects."""
    # Numba's OpenMP layer spins its idle threads; on a machine where another process
    # holds a core, a spinning team turned 0.6 ms calls into 8 ms ones.  Passive waiting
    # (read once, when OpenMP starts) avoids that; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fastloss.kernels import generated_cpu, pointwise, rowwise

    R = call.rows
    parallel = call.inputs[0].size >= _config.PARALLEL_THRESHOLD
    kernel = getattr(generated_cpu, f"{call.element}_{call.mode}_{'parallel' if parallel else 'serial'}")
    dtype = call.inputs[0].dtype
    rows = np.empty(R if call.want_rows else 0, dtype)
    plan = rowwise.plan if call.family in ("rowwise", "tuple") else pointwise.plan
    partials = np.empty(plan(R, call.C)[0])
    args = kernel_args(call, rows, call.outputs or _empty_grads(call, np.empty), partials,
                       np.array([call.gscale], np.float64).reshape(1), writable, np.empty)
    if parallel:
        with _PARALLEL_LOCK:
            total = kernel(*args)
    else:
        total = kernel(*args)
    value = dtype.type(total * call.vscale) if call.value else None
    return value, (rows if call.want_rows else None), call.grad


def run_cuda(call, xp):
    """Same contract as ``run_cpu`` on CUDA; results are arrays of ``xp`` (CuPy, or NumPy
    for host inputs forced onto the device, e.g. under the simulator).  With CuPy, kernels
    run on CuPy's current stream and nothing waits for them."""
    from numba import cuda

    from fastloss.kernels import generated_cuda, rowwise_cuda
    from fastloss.kernels.pointwise_cuda import THREADS, finish, plan, rows_from_chunks

    dtype = call.inputs[0].dtype
    on_device = xp is not np
    if on_device:
        cupy = import_cupy()
        stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)

        def dev(x):
            return cuda.as_cuda_array(x, sync=False)

        def new(n, dt):
            return cupy.empty(n, dt)
    else:
        stream = cuda.default_stream()

        def dev(x):  # host inputs are copied over; device buffers made by new() pass as they are
            if isinstance(x, np.ndarray):
                return cuda.to_device(np.ascontiguousarray(x), stream=stream)
            return x

        def new(n, dt):
            return cuda.device_array(n, dt, stream=stream)

    def scalar(x):
        if isinstance(x, (int, float)):  # a host number: filled on the device, no copy
            return dev(xp.full(1, x, np.float64))
        return dev(xp.asarray(x, dtype=np.float64).reshape(1))

    R = call.rows
    if call.family in ("rowwise", "tuple"):
        nblocks, chunks_per_row = rowwise_cuda.plan(R, call.C), 0
    else:
        nblocks, chunks_per_row = plan(R, call.C)
    rows = new(R if call.want_rows else 0, dtype)
    if on_device:
        grads = call.outputs
    else:
        grads = tuple(new(g.size, dtype) for g in call.outputs)
    partials = new(nblocks, np.float64)
    kernel = getattr(generated_cuda, f"{call.element}_{call.mode}")
    args = kernel_args(call, rows, grads or _empty_grads(call, new), partials,
                       scalar(call.gscale), dev, new)
    kernel[nblocks, THREADS, stream](*args)
    value = None
    if call.value:
        value = new(1, dtype)
        finish[1, THREADS, stream](dev(partials), scalar(call.vscale), dev(value))
        if call.want_rows and chunks_per_row > 0:
            rows_from_chunks[(R + THREADS - 1) // THREADS, THREADS, stream](
                dev(partials), chunks_per_row, dev(rows))
    if not on_device:
        stream.synchronize()
        value = None if value is None else dtype.type(value.copy_to_host()[0])
        rows = rows.copy_to_host()
        for host, device in zip(call.outputs, grads):
            host[...] = device.copy_to_host()
    else:
        value = None if value is None else value.reshape(())
    return value, (rows if call.want_rows else None), call.grad


def run(call, placement):
    """Runs ``call`` where ``placement`` says.  A gradient buffer that overlaps an input
    (``out=y_pred``) is replaced by a fresh one, copied into it afterwards: row kernels
    read a row again after writing its gradient, and LLVM's vectorised loops take a
    scalar path (summing in another order) over overlapping arrays.  So results do not
    depend on where ``out`` lies."""
    xp = placement.xp
    read = (call.t, *call.inputs, call.labels, call.weight, call.coef, call.cw)
    grad, targets = call.grad, call.outputs
    buffers = tuple(separate_output(xp, g, read) for g in targets)
    if any(buffer is not target for buffer, target in zip(buffers, targets)):
        call = replace(call, grad=buffers if isinstance(grad, tuple) else buffers[0])
    value, rows, _ = (run_cuda(call, xp) if placement.target == "cuda" else run_cpu(call))
    for target, buffer in zip(targets, buffers):
        if buffer is not target:
            target[...] = buffer
    return value, rows, grad

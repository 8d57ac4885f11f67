"""Runs a family kernel on the chosen backend.  Kernels are imported (and compiled) lazily."""

import os
import threading
from dataclasses import dataclass

import numpy as np

from . import _config
from ._arrays import import_cupy

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
    The row-wise family also takes ``labels`` (int64 per row; t is then None) and the
    class weights ``cw`` (float64, size C, or None).
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


def _or_empty(x, dtype, new=np.empty):
    return new(0, dtype) if x is None else x


def run_cpu(call):
    """Returns (value scaled by vscale, rows or None, grad or None) as NumPy objects."""
    # Numba's OpenMP layer spins its idle threads; on a machine where another process
    # holds a core, a spinning team turned 0.6 ms calls into 8 ms ones.  Passive waiting
    # (read once, when OpenMP starts) avoids that; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fastloss.kernels import generated_cpu, pointwise, rowwise

    R = call.p.size // call.C
    parallel = call.p.size >= _config.PARALLEL_THRESHOLD
    kernel = getattr(generated_cpu, f"{call.element}_{call.mode}_{'parallel' if parallel else 'serial'}")
    dtype = call.p.dtype
    rows = np.empty(R if call.want_rows else 0, dtype)
    grad = call.grad if call.grad is not None else np.empty(0, dtype)
    tail = (call.o, call.C, call.weight, call.coef, np.array([call.gscale], np.float64).reshape(1),
            rows, grad)
    if call.family == "rowwise":
        args = (_or_empty(call.t, dtype), _or_empty(call.labels, np.int64), call.p,
                _or_empty(call.cw, np.float64), *tail, np.empty(rowwise.plan(R, call.C)[0]))
    else:
        args = (call.t, call.p, *tail, np.empty(pointwise.plan(R, call.C)[0]))
    if parallel:
        with _PARALLEL_LOCK:
            total = kernel(*args)
    else:
        total = kernel(*args)
    value = dtype.type(total * call.vscale) if call.value else None
    return value, (rows if call.want_rows else None), (call.grad if call.grad is not None else None)


def run_cuda(call, xp):
    """Same contract as ``run_cpu`` on CUDA; results are arrays of ``xp`` (CuPy, or NumPy
    for host inputs forced onto the device, e.g. under the simulator).  With CuPy, kernels
    run on CuPy's current stream and nothing waits for them."""
    from numba import cuda

    from fastloss.kernels import generated_cuda, rowwise_cuda
    from fastloss.kernels.pointwise_cuda import THREADS, finish, plan, rows_from_chunks

    dtype = call.p.dtype
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

    R = call.p.size // call.C
    if call.family == "rowwise":
        nblocks, chunks_per_row = rowwise_cuda.plan(R, call.C), 0
    else:
        nblocks, chunks_per_row = plan(R, call.C)
    rows = new(R if call.want_rows else 0, dtype)
    if on_device and call.grad is not None:
        grad = call.grad
    else:
        grad = new(call.p.size if call.grad is not None else 0, dtype)
    partials = new(nblocks, np.float64)
    kernel = getattr(generated_cuda, f"{call.element}_{call.mode}")
    tail = (call.o, call.C, dev(call.weight), dev(call.coef), scalar(call.gscale), dev(rows),
            dev(grad), dev(partials))
    if call.family == "rowwise":
        args = (dev(_or_empty(call.t, dtype, new)), dev(_or_empty(call.labels, np.int64, new)),
                dev(call.p), dev(_or_empty(call.cw, np.float64, new)), *tail)
    else:
        args = (dev(call.t), dev(call.p), *tail)
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
        if call.grad is not None:
            call.grad[...] = grad.copy_to_host()
        grad = call.grad
    else:
        value = None if value is None else value.reshape(())
    return value, (rows if call.want_rows else None), (grad if call.grad is not None else None)


def run(call, placement):
    if placement.target == "cuda":
        return run_cuda(call, placement.xp)
    return run_cpu(call)

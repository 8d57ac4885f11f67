"""The pointwise family on CUDA: the same element functions, the same task idea as the CPU.

One thread block per task.  Layout A (rows of at least ``MIN_SPLIT_ROW`` elements): a
task is a ``CHUNK``-element piece of one row, its threads stride over it.  Layout B
(short rows): a task is ``THREADS`` rows, one thread per row.  Each block reduces its
float64 partials in shared memory by a fixed tree; ``finish`` adds the block partials
in a fixed order.  No warp shuffles, atomics or grid syncs: results are bitwise
repeatable, and everything runs under the CUDA simulator too.
"""

from numba import config, cuda, float64

# finish() is one block by design; Numba's occupancy warning would only be noise.
config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

from . import elements
from .cuda_target import namespace_of, retarget

# Threads per block.  The simulator runs every thread as a Python thread, so it gets
# small blocks; the kernels' code is the same for any power of two.
THREADS = 32 if config.ENABLE_CUDASIM else 256
CHUNK = 16384  # elements per block: 64 per thread amortise the block's tree reduction
MIN_SPLIT_ROW = 64


def plan(R, C):
    """(number of blocks, chunks per row; 0 for layout B) for R rows of C elements."""
    if C >= MIN_SPLIT_ROW:
        chunks_per_row = (C + CHUNK - 1) // CHUNK
        return R * chunks_per_row, chunks_per_row
    return (R + THREADS - 1) // THREADS, 0


_plan = cuda.jit(device=True, inline="always")(plan)

# The element functions and their helpers, compiled for CUDA by kernels/cuda_target.py:
# their names (math, helpers, other elements) resolve among the CUDA versions.
_NAMESPACE = namespace_of(elements)
HELPERS = retarget(elements.HELPERS, _NAMESPACE)
ELEMENTS = retarget(elements.ELEMENTS, _NAMESPACE)
PAIR_ELEMENTS = retarget(elements.PAIR_ELEMENTS, _NAMESPACE)
# (under the functions' own names, ``<element>_hess``; keyed here by element)
_HESS = retarget({fn.__name__: fn for fn in elements.SECOND_DERIVATIVES.values()}, _NAMESPACE)
SECOND_DERIVATIVES = {element: _HESS[fn.__name__]
                      for element, fn in elements.SECOND_DERIVATIVES.items()}


@cuda.jit(device=True, inline="always")
def _block_sum(shared, tid):
    """Fixed-shape tree reduction of ``shared[:THREADS]``; the sum lands in shared[0]."""
    cuda.syncthreads()
    width = THREADS // 2
    while width > 0:
        if tid < width:
            shared[tid] += shared[tid + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit(device=True, inline="always")
def _apply(elem, t, p, o, i, scale, grad, GRAD):
    """Element i's loss; with GRAD its scaled derivative goes to grad[i]."""
    loss, g = elem(t[i], p[i], o)
    if GRAD:
        grad[i] = g * scale
    return loss


@cuda.jit(device=True, inline="always")
def _apply_pair(elem, t, p, o, i, scale, grad, GRAD):
    """``_apply`` for a pair element: p and grad are pairs of arrays."""
    loss, da, db = elem(t[i], p[0][i], p[1][i], o)
    if GRAD:
        grad[0][i] = da * scale
        grad[1][i] = db * scale
    return loss


@cuda.jit(device=True, inline="always")
def pointwise(elem, t, p, o, C, weight, coef, gscale, row_out, grad, partials, VALUE, GRAD):
    """Same arguments and meaning as the CPU ``pointwise``; one block computes one task."""
    _tasks(_apply, elem, t, p, o, C, weight, coef, gscale, row_out, grad, partials, VALUE, GRAD)


@cuda.jit(device=True, inline="always")
def pointwise_pair(elem, t, a, b, o, C, weight, coef, gscale, row_out, ga, gb, partials,
                   VALUE, GRAD):
    """Same arguments and meaning as the CPU ``pointwise_pair``."""
    _tasks(_apply_pair, elem, t, (a, b), o, C, weight, coef, gscale, row_out, (ga, gb),
           partials, VALUE, GRAD)


@cuda.jit(device=True, inline="always")
def _apply_pair_hess(elem, t, p, o, i, scale, grad, GRAD):
    """grad_hess of a pair element: both gradients and second derivatives of element i."""
    da, db, d2a, d2b = elem(t[i], p[0][i], p[1][i], o)
    grad[0][i] = da * scale
    grad[1][i] = db * scale
    grad[2][i] = d2a * scale
    grad[3][i] = d2b * scale
    return 0.0


@cuda.jit(device=True, inline="always")
def pointwise_pair_hess(elem, t, a, b, o, C, weight, coef, gscale, row_out, ga, gb, ha, hb,
                        partials):
    """Same arguments and meaning as the CPU ``pointwise_pair_hess``."""
    _tasks(_apply_pair_hess, elem, t, (a, b), o, C, weight, coef, gscale, row_out,
           (ga, gb, ha, hb), partials, False, True)


@cuda.jit(device=True, inline="always")
def _tasks(apply, elem, t, p, o, C, weight, coef, gscale, row_out, grad, partials, VALUE, GRAD):
    task = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    R = t.size // C
    ntasks, chunks_per_row = _plan(R, C)
    weight_step = 1 if weight.size > 1 else 0
    coef_step = 1 if coef.size > 1 else 0
    T = type(o[0])
    s = 0.0
    # Layout A: the block strides over a chunk of row r; layout B: each thread does row
    # r alone.  One loop serves both, so the element is compiled once.
    if chunks_per_row > 0:
        r = task // chunks_per_row
        first = r * C + (task - r * chunks_per_row) * CHUNK
        start, stop, step = first + tid, min(first + CHUNK, (r + 1) * C), THREADS
    else:
        r = task * THREADS + tid
        start, stop, step = r * C, (r + 1) * C, 1
    if r < R:
        scale = T(coef[r * coef_step] * gscale[0])
        for i in range(start, stop, step):
            s += apply(elem, t, p, o, i, scale, grad, GRAD)
        s *= weight[r * weight_step]
        if chunks_per_row == 0 and row_out.size > 0:
            row_out[r] = s
    if VALUE:
        shared = cuda.shared.array(THREADS, float64)
        shared[tid] = s
        _block_sum(shared, tid)
        if tid == 0:
            partials[task] = shared[0]


@cuda.jit
def finish(partials, vscale, out):
    """out[0] = vscale[0] * sum(partials), in a fixed order; one block of THREADS."""
    tid = cuda.threadIdx.x
    s = 0.0
    for k in range(tid, partials.size, THREADS):
        s += partials[k]
    shared = cuda.shared.array(THREADS, float64)
    shared[tid] = s
    _block_sum(shared, tid)
    if tid == 0:
        out[0] = shared[0] * vscale[0]


@cuda.jit
def rows_from_chunks(partials, chunks_per_row, row_out):
    """Per-row ``weight * sum`` of split rows (layout A) from their chunk partials, in order."""
    r = cuda.grid(1)
    if r < row_out.size:
        s = 0.0
        for k in range(r * chunks_per_row, (r + 1) * chunks_per_row):
            s += partials[k]
        row_out[r] = s

"""Batch-pairwise losses on CUDA: the per-pair math of ``pairwise``, compiled for the GPU.

Pass 1 is one block per row ``i``, its threads the lanes over the row's pairs ``j``;
their online (max, sum) states and counts are merged by shared-memory tree reductions
of a fixed shape.  Pass 2 is one block per output row ``k``: the threads compute the
pair factors ``G_kj (+ G_jk)`` of a tile of ``THREADS`` columns into shared memory, then
each thread adds the tile's ``G * r_j[d]`` for its own ``d``.  No atomics, warp shuffles
or grid syncs: bitwise repeatable, and runnable under the CUDA simulator.
"""

import math

from numba import config, cuda, float64

from . import pairwise
from .cuda_target import namespace_of, retarget
from .pairwise import NTXENT_INV_NORM, NTXENT_NORM_SLOPE

# Threads per block (a power of two).  The simulator runs each thread as a Python thread
# and each synchronisation costs it dearly: it gets blocks of 4, which also lets tiny
# test batches cover the loops over several tiles of columns and chunks of dimensions.
THREADS = 4 if config.ENABLE_CUDASIM else 256


# The device functions of ``pairwise``, compiled for CUDA (kernels/cuda_target.py).
_DEVICE = retarget(pairwise.DEVICE_FUNCTIONS, namespace_of(pairwise))
circle_row = _DEVICE["circle_row"]
circle_finish_row = _DEVICE["circle_finish_row"]
circle_factors = _DEVICE["circle_factors"]
lse_value = _DEVICE["lse_value"]
ntxent_norm = _DEVICE["ntxent_norm"]
ntxent_row_max = _DEVICE["ntxent_row_max"]
ntxent_row_positives = _DEVICE["ntxent_row_positives"]
ntxent_factors = _DEVICE["ntxent_factors"]
ntxent_finish_row = _DEVICE["ntxent_finish_row"]


@cuda.jit(device=True, inline="always")
def _block_sum2(a, b, shared_a, shared_b, tid):
    """The sums of a and b over the block's threads (every thread gets them): two sums
    in one tree, to halve the synchronisations."""
    cuda.syncthreads()  # the previous reduction's result has been read by every thread
    shared_a[tid] = a
    shared_b[tid] = b
    cuda.syncthreads()
    width = THREADS // 2
    while width > 0:
        if tid < width:
            shared_a[tid] += shared_a[tid + width]
            shared_b[tid] += shared_b[tid + width]
        cuda.syncthreads()
        width //= 2
    return shared_a[0], shared_b[0]


@cuda.jit(device=True, inline="always")
def _block_max2(a, b, shared_a, shared_b, tid):
    cuda.syncthreads()
    shared_a[tid] = a
    shared_b[tid] = b
    cuda.syncthreads()
    width = THREADS // 2
    while width > 0:
        if tid < width:
            if shared_a[tid + width] > shared_a[tid]:
                shared_a[tid] = shared_a[tid + width]
            if shared_b[tid + width] > shared_b[tid]:
                shared_b[tid] = shared_b[tid + width]
        cuda.syncthreads()
        width //= 2
    return shared_a[0], shared_b[0]


@cuda.jit(device=True, inline="always")
def _rescaled(m, s, top):
    """An online sum of exp(x - m) as a sum of exp(x - top), top >= m."""
    return s * math.exp(m - top) if s != 0.0 else 0.0


# -- Circle -----------------------------------------------------------------------------

@cuda.jit
def circle_stats(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, stats, rows):
    """Pass 1: one block per row."""
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    shared_a = cuda.shared.array(THREADS, float64)
    shared_b = cuda.shared.array(THREADS, float64)
    pm, ps, nm, ns = circle_row(labels, e, ref_labels, ref, i, tid, THREADS, gamma, margin,
                                remove_diagonal)
    top_p, top_n = _block_max2(pm, nm, shared_a, shared_b, tid)
    ps, ns = _block_sum2(_rescaled(pm, ps, top_p), _rescaled(nm, ns, top_n), shared_a, shared_b,
                         tid)
    pm = top_p
    nm = top_n
    if tid == 0:
        circle_finish_row(lse_value(pm, ps), lse_value(nm, ns), i, stats, rows)


@cuda.jit
def circle_grad(labels, e, ref_labels, ref, gamma, margin, remove_diagonal, self_ref, stats,
                cotangent, grad):
    """Pass 2: one block per output row k."""
    k = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    factors = cuda.shared.array(THREADS, float64)
    D = e.shape[1]
    M = ref.shape[0]
    for d0 in range(0, D, THREADS):
        d = d0 + tid
        acc = 0.0
        for j0 in range(0, M, THREADS):
            j = j0 + tid
            cuda.syncthreads()  # the previous tile has been read
            factors[tid] = 0.0
            if j < M:
                circle_factors(labels, e, ref_labels, ref, k, j, j + 1, gamma, margin,
                               remove_diagonal, self_ref, stats, cotangent, factors, tid)
            cuda.syncthreads()
            if d < D:
                for t in range(min(THREADS, M - j0)):
                    acc += factors[t] * ref[j0 + t, d]
        if d < D:
            grad[k, d] = acc


# -- NT-Xent ----------------------------------------------------------------------------

@cuda.jit
def ntxent_norms(e, eps, stats):
    """Each row's normalisation factor: one thread per row."""
    i = cuda.grid(1)
    if i < e.shape[0]:
        ntxent_norm(e, eps, stats, i)


@cuda.jit
def ntxent_stats(labels, e, temperature, stats, rows):
    """Pass 1 (after ntxent_norms): one block per row."""
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    shared_a = cuda.shared.array(THREADS, float64)
    shared_b = cuda.shared.array(THREADS, float64)
    m, negatives, count = ntxent_row_max(labels, e, stats, i, tid, THREADS, temperature)
    top = _block_max2(m, 0.0, shared_a, shared_b, tid)[0]
    negatives, count = _block_sum2(_rescaled(m, negatives, top), count, shared_a, shared_b, tid)
    m = top
    loss, inv_sum = ntxent_row_positives(labels, e, stats, i, tid, THREADS, temperature, m,
                                         negatives)
    loss, inv_sum = _block_sum2(loss, inv_sum, shared_a, shared_b, tid)
    if tid == 0:
        ntxent_finish_row(m, negatives, count, loss, inv_sum, i, stats, rows)


@cuda.jit
def ntxent_grad(labels, e, temperature, stats, scale, grad):
    """Pass 2: one block per output row k; then the chain rule through the normalisation,
    which needs the whole row's ``<u_k, d loss / d u_k>``.  Gradient values of all but the
    last d-chunk wait in ``grad`` meanwhile (the last one, usually the only one, in a
    register)."""
    k = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    factors = cuda.shared.array(THREADS, float64)
    shared = cuda.shared.array(THREADS, float64)
    N = e.shape[0]
    D = e.shape[1]
    factor = scale[0] / temperature
    inv_k = stats[k, NTXENT_INV_NORM]
    projection = 0.0
    last = 0.0
    for d0 in range(0, D, THREADS):
        d = d0 + tid
        acc = 0.0
        for j0 in range(0, N, THREADS):
            j = j0 + tid
            cuda.syncthreads()  # the previous tile has been read
            factors[tid] = 0.0
            if j < N:
                ntxent_factors(labels, e, stats, k, j, j + 1, temperature, factors, tid)
            cuda.syncthreads()
            if d < D:
                for t in range(min(THREADS, N - j0)):
                    acc += factors[t] * e[j0 + t, d]
        if d < D:
            projection += e[k, d] * inv_k * acc
            if d0 + THREADS < D:
                grad[k, d] = acc
            else:
                last = acc
    along = stats[k, NTXENT_NORM_SLOPE] * _block_sum2(projection, 0.0, factors, shared, tid)[0]
    for d0 in range(0, D, THREADS):
        d = d0 + tid
        if d < D:
            acc = last if d0 + THREADS >= D else float(grad[k, d])
            grad[k, d] = (acc - e[k, d] * inv_k * along) * (factor * inv_k)


"""The whole-array-statistics family on CUDA: the kernels of ``overlap`` for the GPU.

The layout is the pointwise family's (``pointwise_cuda.plan``): groups of at least
``MIN_SPLIT_ROW`` elements are cut into ``CHUNK``-element pieces, one block each, whose
threads stride over the piece and reduce their sums by a fixed shared-memory tree;
``statistics_from_chunks`` then adds each group's pieces in order.  Shorter groups get
one thread each, ``THREADS`` groups a block.  No warp shuffles, atomics or grid syncs:
the sums are bitwise repeatable, and everything runs under the CUDA simulator too.
"""

from numba import cuda, float64

from .pointwise_cuda import CHUNK, THREADS, _block_sum, _plan
from .pointwise_cuda import plan  # noqa: F401  (the number of blocks of these kernels too)


@cuda.jit
def statistics(t, p, C, partials, stats):
    """stats[:, r] = (sum t*p, sum t, sum p) over group r = elements [r*C, (r+1)*C).

    Short groups write ``stats`` directly; split groups write one column of ``partials``
    (float64, shape (3, number of blocks)) per block, for ``statistics_from_chunks``.
    """
    task = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    R = stats.shape[1]
    ntasks, chunks_per_group = _plan(R, C)
    tp = 0.0
    st = 0.0
    sp = 0.0
    if chunks_per_group > 0:
        r = task // chunks_per_group
        start = r * C + (task - r * chunks_per_group) * CHUNK
        stop = min(start + CHUNK, (r + 1) * C)
        for i in range(start + tid, stop, THREADS):
            ti = float64(t[i])  # float64 before the product: exact for float32 inputs
            pi = float64(p[i])
            tp += ti * pi
            st += ti
            sp += pi
        shared_tp = cuda.shared.array(THREADS, float64)
        shared_st = cuda.shared.array(THREADS, float64)
        shared_sp = cuda.shared.array(THREADS, float64)
        shared_tp[tid] = tp
        shared_st[tid] = st
        shared_sp[tid] = sp
        _block_sum(shared_tp, tid)
        _block_sum(shared_st, tid)
        _block_sum(shared_sp, tid)
        if tid == 0:
            partials[0, task] = shared_tp[0]
            partials[1, task] = shared_st[0]
            partials[2, task] = shared_sp[0]
    else:
        r = task * THREADS + tid
        if r < R:
            for i in range(r * C, (r + 1) * C):
                ti = float64(t[i])
                pi = float64(p[i])
                tp += ti * pi
                st += ti
                sp += pi
            stats[0, r] = tp
            stats[1, r] = st
            stats[2, r] = sp


@cuda.jit
def statistics_from_chunks(partials, chunks_per_group, stats):
    """The sums of split groups from their pieces' partials, added in order; a thread a group."""
    r = cuda.grid(1)
    if r < stats.shape[1]:
        for k in range(3):
            s = 0.0
            for task in range(r * chunks_per_group, (r + 1) * chunks_per_group):
                s += partials[k, task]
            stats[k, r] = s


@cuda.jit
def gradient(t, slope, intercept, C, grad):
    """grad_j = slope[r] * t_j + intercept[r] for each element j of group r; the blocks of
    ``statistics``, every thread striding over its block's contiguous elements."""
    task = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    R = slope.size
    ntasks, chunks_per_group = _plan(R, C)
    # float64 coefficients: one rounding, on the store into grad's dtype
    if chunks_per_group > 0:
        r = task // chunks_per_group
        start = r * C + (task - r * chunks_per_group) * CHUNK
        stop = min(start + CHUNK, (r + 1) * C)
        a = slope[r]
        b = intercept[r]
        for i in range(start + tid, stop, THREADS):
            grad[i] = a * float64(t[i]) + b
    else:
        lo = task * THREADS * C
        hi = min(R, (task + 1) * THREADS) * C
        for i in range(lo + tid, hi, THREADS):
            r = i // C
            grad[i] = slope[r] * float64(t[i]) + intercept[r]

"""The row-wise family on CUDA: the row elements of ``row_elements``, compiled for the GPU.

Rows of at least ``MIN_SPLIT_ROW`` classes get one block each, its threads the row's
lanes (``row_sum``/``row_max`` are block-wide tree reductions that every thread calls);
shorter rows get one thread each, ``THREADS`` rows a block.  Block partials are
reduced by a fixed tree and added by ``finish`` in a fixed order: bitwise repeatable.
"""

import math

from numba import cuda, float64

from . import row_elements
from .cuda_target import namespace_of, retarget
from .pointwise_cuda import ELEMENTS, HELPERS, MIN_SPLIT_ROW, THREADS, _block_sum


@cuda.jit(device=True, inline="always")
def _row_sum(x, shared, lane, lanes):
    if lanes == 1:
        return x
    cuda.syncthreads()  # the previous reduction's result has been read by every lane
    shared[lane] = x
    _block_sum(shared, lane)
    return shared[0]


@cuda.jit(device=True, inline="always")
def _row_max(x, shared, lane, lanes):
    if lanes == 1:
        return x
    cuda.syncthreads()
    shared[lane] = x
    cuda.syncthreads()
    width = THREADS // 2
    while width > 0:
        if lane < width:
            other = shared[lane + width]
            if other > shared[lane]:
                shared[lane] = other
        cuda.syncthreads()
        width //= 2
    return shared[0]


@cuda.jit(device=True)
def _class_term(acc, shared, slot, j, v):
    """A lane's class sum adds its terms itself (the CPU stores them: row_elements)."""
    return acc + v


@cuda.jit(device=True)
def _class_total(acc, shared, slot, C, lane, lanes):
    return _row_sum(acc, shared, lane, lanes)


@cuda.jit(device=True)
def _mask_listed(t, k, p, shared):
    """No row-long scratch on CUDA: ``_unlisted`` searches the list."""
    return 0


@cuda.jit(device=True)
def _unlisted(t, k, p, i, shared):
    for m in range(k):
        if t[m] == i:
            return type(p[i])(-math.inf)
    return p[i]


@cuda.jit(device=True)
def _exp_bounded(x):
    """exp saturated at e**88, like the CPU's exp_bounded (the simulator's math.exp would
    raise where the GPU's returns inf)."""
    return math.exp(min(x, type(x)(88.0)))


def _compile_all():
    """CUDA versions of the row helpers and elements, resolving their names (math
    functions, helpers, pointwise elements) among each other's CUDA versions; not inlined
    in Numba's IR (see row_elements)."""
    namespace = namespace_of(row_elements, **HELPERS, **ELEMENTS, exp_bounded=_exp_bounded)
    retarget(row_elements.ROW_HELPERS, namespace, inline=False)
    namespace["row_sum"] = _row_sum
    namespace["row_max"] = _row_max
    namespace["class_term"] = _class_term
    namespace["class_total"] = _class_total
    namespace["mask_listed"] = _mask_listed
    namespace["unlisted"] = _unlisted
    return (retarget(row_elements.ROW_ELEMENTS, namespace, inline=False),
            retarget(row_elements.TUPLE_ELEMENTS, namespace, inline=False),
            retarget(row_elements.ROW_SECOND_DERIVATIVES, namespace, inline=False))


ROW_ELEMENTS, TUPLE_ELEMENTS, ROW_SECOND_DERIVATIVES = _compile_all()


@cuda.jit(device=True, inline="always")
def _row(row_elem, inputs, o, C, coef, gscale, grad, r, lane, lanes, shared, GRAD):
    """One row's loss (every lane gets it), or 0 for an ignored row."""
    T = type(o[0])
    t, labels, p, cw = inputs
    lo = r * C
    hi = lo + C
    dense = t.size > 0
    label = -1 if dense else labels[r]
    g = grad[lo:hi] if GRAD else grad[0:0]
    if label < 0 and not dense:
        if GRAD:
            for j in range(lane, C, lanes):
                g[j] = T(0.0)
        return 0.0
    tr = t[lo:hi] if dense else t[0:0]
    coef_step = 1 if coef.size > 1 else 0
    return float(row_elem(tr, label, p[lo:hi], cw, o, g, T(coef[r * coef_step] * gscale[0]),
                          lane, lanes, shared, GRAD))


@cuda.jit(device=True, inline="always")
def _row_hess(row_elem, inputs, o, C, coef, gscale, grad, r, lane, lanes, shared, GRAD):
    """``_row`` with a gradient and a second-derivative row (both 0 where ignored)."""
    T = type(o[0])
    t, labels, p, cw = inputs
    lo = r * C
    hi = lo + C
    dense = t.size > 0
    label = -1 if dense else labels[r]
    g = grad[0][lo:hi]
    h = grad[1][lo:hi]
    if label < 0 and not dense:
        for j in range(lane, C, lanes):
            g[j] = T(0.0)
            h[j] = T(0.0)
        return 0.0
    tr = t[lo:hi] if dense else t[0:0]
    coef_step = 1 if coef.size > 1 else 0
    return float(row_elem(tr, label, p[lo:hi], cw, o, (g, h), T(coef[r * coef_step] * gscale[0]),
                          lane, lanes, shared, True))


@cuda.jit(device=True, inline="always")
def rowwise_grad_hess(row_elem, t, labels, p, cw, o, C, weight, coef, gscale, row_out, grad, hess,
                      partials):
    """Same arguments and meaning as the CPU ``rowwise_grad_hess``."""
    _rows(_row_hess, row_elem, (t, labels, p, cw), p.size // C, o, C, weight, coef, gscale,
          row_out, (grad, hess), partials, False, True)


@cuda.jit(device=True, inline="always")
def rowwise(row_elem, t, labels, p, cw, o, C, weight, coef, gscale, row_out, grad, partials,
            VALUE, GRAD):
    """Same arguments and meaning as the CPU ``rowwise``; see the module for the layout."""
    _rows(_row, row_elem, (t, labels, p, cw), p.size // C, o, C, weight, coef, gscale, row_out, grad,
          partials, VALUE, GRAD)


@cuda.jit(device=True, inline="always")
def _tuple_row(elem, inputs, o, C, coef, gscale, grad, r, lane, lanes, shared, GRAD):
    """One row's loss for a tuple element (every lane gets it)."""
    T = type(o[0])
    y, a, b, c, d = inputs
    ga, gb, gc, gd = grad
    lo = r * C
    hi = lo + C
    label = y[r] if y.size > 0 else T(0.0)
    rows = (a[lo:hi], b[lo:hi], c[lo:hi], d[lo:hi])
    grads = (ga[lo:hi], gb[lo:hi], gc[lo:hi], gd[lo:hi]) if GRAD else rows
    coef_step = 1 if coef.size > 1 else 0
    return float(elem(label, rows, o, grads, T(coef[r * coef_step] * gscale[0]), lane, lanes,
                      shared, GRAD))


@cuda.jit(device=True, inline="always")
def tuplewise(elem, y, a, b, c, d, o, C, weight, coef, gscale, row_out, ga, gb, gc, gd,
              partials, VALUE, GRAD):
    """Same arguments and meaning as the CPU ``tuplewise``."""
    _rows(_tuple_row, elem, (y, a, b, c, d), a.size // C, o, C, weight, coef, gscale, row_out,
          (ga, gb, gc, gd), partials, VALUE, GRAD)


@cuda.jit(device=True, inline="always")
def _rows(row_loss, elem, inputs, R, o, C, weight, coef, gscale, row_out, grad, partials,
          VALUE, GRAD):
    """The block layout of both row bodies; ``row_loss`` computes one row."""
    tid = cuda.threadIdx.x
    weight_step = 1 if weight.size > 1 else 0
    shared = cuda.shared.array(THREADS, float64)
    if C >= MIN_SPLIT_ROW:
        r = cuda.blockIdx.x
        loss = row_loss(elem, inputs, o, C, coef, gscale, grad, r, tid, THREADS, shared,
                        GRAD) * weight[r * weight_step]
        if VALUE and tid == 0:
            partials[r] = loss
            if row_out.size > 0:
                row_out[r] = loss
    else:
        r = cuda.blockIdx.x * THREADS + tid
        loss = 0.0
        if r < R:
            loss = row_loss(elem, inputs, o, C, coef, gscale, grad, r, 0, 1, shared,
                            GRAD) * weight[r * weight_step]
            if VALUE and row_out.size > 0:
                row_out[r] = loss
        if VALUE:
            cuda.syncthreads()
            shared[tid] = loss
            _block_sum(shared, tid)
            if tid == 0:
                partials[cuda.blockIdx.x] = shared[0]


def plan(R, C):
    """Number of blocks for R rows of C classes."""
    return R if C >= MIN_SPLIT_ROW else (R + THREADS - 1) // THREADS

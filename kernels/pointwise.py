"""The pointwise family on the CPU: one generic body, specialised per loss by its element function.

Data arrive flat, as ``R`` rows of ``C`` elements (Keras reduces the last axis first; a
PyTorch elementwise loss is ``C = 1`` for ``"none"`` or one row otherwise).  The work
is cut into *tasks* that depend only on ``(R, C)``, never on the thread count:

* layout A (``C >= CHUNK``): a task is one chunk of ``CHUNK`` elements of one row;
* layout B (short rows): a task is ``CHUNK // C`` whole rows.

Every task writes one float64 partial sum (weighted by its row's sample weight), the
partials are added in task order, and per-row results of split rows are added from
their chunks in order: so the result is bitwise the same for any number of threads.
"""

import numpy as np
from numba import njit, prange

from .cpu_target import FASTMATH, borrowed, inlined, keep_alive, prefetch, wide_vectors  # noqa: F401

# Elements per task: large enough to amortise a task, small enough to balance threads.
CHUNK = 4096

# Software prefetch: the hardware's stream prefetcher does not run far enough ahead of a
# loop whose body is long (a loss with a log and an exp: ~100 instructions per 16
# elements), which then waits on memory.  The summed loops run in blocks of BLOCK
# elements, each first asking for the inputs' lines AHEAD elements on (measured with
# speed_bars.py, binary_cross_entropy at 1e7: 49% -> 54% of a pass over its memory; a
# loss with no transcendental: no change; these sizes measured best of 64-512 / 256-2048).
BLOCK = 128
AHEAD = 512
LINE_BYTES = 64

def plan(R, C):
    """(number of tasks, rows per task, chunks per row) for R rows of C elements."""
    if C >= CHUNK:
        chunks_per_row = (C + CHUNK - 1) // CHUNK
        return R * chunks_per_row, 0, chunks_per_row
    rows_per_task = CHUNK // max(C, 1)
    return (R + rows_per_task - 1) // rows_per_task, rows_per_task, 0


_plan = njit(plan)


@inlined
def _segment(elem, t, p, o, start, stop, grad_scale, grad, losses, VALUE, GRAD):
    """The element losses of t[start:stop] into ``losses[:stop - start]`` (with VALUE)
    and, with GRAD, their derivatives times ``grad_scale`` into ``grad[start:stop]``.

    The caller sums the losses in float64 afterwards: a float64 sum inside this loop
    made LLVM vectorise the whole loop at the double's width, half the float32 lanes
    (measured: twice the time of every loss with a log or exp).  One call covers a
    whole task, however short its rows: a loop per row of a few elements does not
    vectorise."""
    wide_vectors()
    # Loop over slices from 0: with the raw start/stop of a split row LLVM's vectoriser
    # gave up (measured: twice the time of a copy-speed loop).
    ts, ps = t[start:stop], p[start:stop]
    ls = losses[:ts.size]
    if GRAD:
        gs = grad[start:stop]
        for i in range(ts.size):
            loss, g = elem(ts[i], ps[i], o)
            gs[i] = g * grad_scale
            if VALUE:
                ls[i] = loss
    elif VALUE:
        for i in range(ts.size):
            ls[i] = elem(ts[i], ps[i], o)[0]


@inlined
def _summed_segment(elem, t, p, o, start, stop, grad_scale, grad, GRAD):
    """``_segment`` that adds the losses up in float64 in the same loop and returns the sum
    (for tasks that need no per-row sums): no store of the losses and no second loop,
    which cost the losses without a transcendental a quarter of their speed."""
    wide_vectors()
    total = 0.0
    for first in range(start, stop, BLOCK):
        last = min(first + BLOCK, stop)
        _prefetch_ahead(t, first)
        _prefetch_ahead(p, first)
        ts, ps = t[first:last], p[first:last]
        if GRAD:
            gs = grad[first:last]
            for i in range(ts.size):
                loss, g = elem(ts[i], ps[i], o)
                gs[i] = g * grad_scale
                total += np.float64(loss)
        else:
            for i in range(ts.size):
                total += np.float64(elem(ts[i], ps[i], o)[0])
    return total


@inlined
def _prefetch_ahead(a, first):
    """Prefetch the lines of a[first + AHEAD:first + AHEAD + BLOCK] that a holds."""
    for i in range(first + AHEAD, min(first + AHEAD + BLOCK, a.size), LINE_BYTES // a.itemsize):
        prefetch(a, i)


@inlined
def _summed_pair_segment(elem, t, p, o, start, stop, grad_scale, grad, GRAD):
    """``_summed_segment`` for a pair element."""
    wide_vectors()
    total = 0.0
    for first in range(start, stop, BLOCK):
        last = min(first + BLOCK, stop)
        _prefetch_ahead(t, first)
        _prefetch_ahead(p[0], first)
        _prefetch_ahead(p[1], first)
        ts, a, b = t[first:last], p[0][first:last], p[1][first:last]
        if GRAD:
            ga, gb = grad[0][first:last], grad[1][first:last]
            for i in range(ts.size):
                loss, da, db = elem(ts[i], a[i], b[i], o)
                ga[i] = da * grad_scale
                gb[i] = db * grad_scale
                total += np.float64(loss)
        else:
            for i in range(ts.size):
                total += np.float64(elem(ts[i], a[i], b[i], o)[0])
    return total


@inlined
def _pair_segment(elem, t, p, o, start, stop, grad_scale, grad, losses, VALUE, GRAD):
    """``_segment`` for a pair element: p and grad are pairs of arrays (a, b)."""
    wide_vectors()
    ts, a, b = t[start:stop], p[0][start:stop], p[1][start:stop]
    ls = losses[:ts.size]
    if GRAD:
        ga, gb = grad[0][start:stop], grad[1][start:stop]
        for i in range(ts.size):
            loss, da, db = elem(ts[i], a[i], b[i], o)
            ga[i] = da * grad_scale
            gb[i] = db * grad_scale
            if VALUE:
                ls[i] = loss
    elif VALUE:
        for i in range(ts.size):
            ls[i] = elem(ts[i], a[i], b[i], o)[0]


@inlined
def _pair_hess_segment(elem, t, p, o, start, stop, grad_scale, grad, losses, VALUE, GRAD):
    """``_pair_segment`` of grad_hess: the bound element returns (d/da, d/db, d2/da2,
    d2/db2), written (times grad_scale) into grad = (ga, gb, ha, hb); no value."""
    wide_vectors()
    ts, a, b = t[start:stop], p[0][start:stop], p[1][start:stop]
    ga, gb = grad[0][start:stop], grad[1][start:stop]
    ha, hb = grad[2][start:stop], grad[3][start:stop]
    for i in range(ts.size):
        da, db, d2a, d2b = elem(ts[i], a[i], b[i], o)
        ga[i] = da * grad_scale
        gb[i] = db * grad_scale
        ha[i] = d2a * grad_scale
        hb[i] = d2b * grad_scale


@inlined
def _no_summed_segment(elem, t, p, o, start, stop, grad_scale, grad, GRAD):
    """The summed segment of a body that computes no value (never called)."""
    return 0.0


@inlined
def _sum(losses):
    """sum(losses) in float64 (a slice from 0: see _segment)."""
    wide_vectors()
    s = 0.0
    for i in range(losses.size):
        s += losses[i]
    return s


@inlined
def _rescale(grad, start, stop, scale):
    """grad[start:stop] *= scale (a row's own gradient factor, where rows have one each)."""
    wide_vectors()
    gs = grad[start:stop]
    for i in range(gs.size):
        gs[i] *= scale


@inlined
def _pair_rescale(grad, start, stop, scale):
    _rescale(grad[0], start, stop, scale)
    _rescale(grad[1], start, stop, scale)


@inlined
def pointwise(elem, t, p, o, C, weight, coef, gscale, row_out, grad, partials, first, last,
              VALUE, GRAD):
    """The generic pointwise kernel body: runs tasks ``first .. last - 1`` of ``plan``.

    t, p      flat inputs (compute dtype), ``R * C`` elements
    o         the loss's scalar options (a tuple), in the compute dtype
    weight    per-row weights (size R, or 1 for all rows)
    coef      per-row gradient factor (size R, or 1), multiplied by ``gscale[0]``
    row_out   per-row ``weight * sum`` (size R), or size 0 when not wanted
    grad      gradient output (size R * C), written when GRAD
    partials  one float64 slot per task (``plan``): each task writes its weighted sum
    VALUE, GRAD  compile-time flags: what to compute (a value-less kernel skips the
              loss arithmetic, a gradient-less one writes nothing but partials)
    ``pointwise_total`` then makes the value of the partials.
    """
    _tasks(_segment, _summed_segment, _rescale, elem, borrowed(t), borrowed(p), o, C, weight, coef,
           gscale, row_out, borrowed(grad), partials, first, last, VALUE, GRAD)


@inlined
def pointwise_pair(elem, t, a, b, o, C, weight, coef, gscale, row_out, ga, gb, partials,
                   first, last, VALUE, GRAD):
    """The pointwise body for losses of two prediction arrays ``a`` and ``b`` (a pair
    element returns ``(loss, d/da, d/db)``), writing both gradients ``ga`` and ``gb``."""
    _tasks(_pair_segment, _summed_pair_segment, _pair_rescale, elem, borrowed(t),
           (borrowed(a), borrowed(b)), o, C, weight, coef, gscale, row_out,
           (borrowed(ga), borrowed(gb)), partials, first, last, VALUE, GRAD)


@inlined
def _pair_hess_rescale(grad, start, stop, scale):
    _pair_rescale((grad[0], grad[1]), start, stop, scale)
    _pair_rescale((grad[2], grad[3]), start, stop, scale)


@inlined
def pointwise_pair_hess(elem, t, a, b, o, C, weight, coef, gscale, row_out, ga, gb, ha, hb,
                        partials, first, last):
    """grad_hess of a pair element: gradients ``ga``, ``gb`` and second derivatives
    ``ha``, ``hb`` of both predictions, scaled alike (no value)."""
    _tasks(_pair_hess_segment, _no_summed_segment, _pair_hess_rescale, elem, borrowed(t),
           (borrowed(a), borrowed(b)), o, C, weight, coef, gscale, row_out,
           (borrowed(ga), borrowed(gb), borrowed(ha), borrowed(hb)), partials, first, last, False,
           True)


@njit
def ordered_total(partials, n):
    """sum(partials[:n]) in index order: the fixed order that makes results repeatable."""
    total = 0.0
    for k in range(n):
        total += partials[k]
    return total


@inlined
def _tasks(segment, summed_segment, rescale, elem, t, p, o, C, weight, coef, gscale, row_out,
           grad, partials, first, last, VALUE, GRAD):
    """The task loop of the pointwise bodies: ``summed_segment`` computes (and
    differentiates) a task's elements and adds their losses up at once where the task
    needs one sum (a stretch of one row, or rows sharing a weight and no per-row values);
    otherwise ``segment`` does, and the losses are summed row by row in float64 after;
    ``rescale`` applies per-row gradient factors where rows have their own."""
    wide_vectors()
    weight, coef, gscale = borrowed(weight), borrowed(coef), borrowed(gscale)
    row_out, partials = borrowed(row_out), borrowed(partials)
    R = t.size // C
    _, rows_per_task, chunks_per_row = _plan(R, C)
    weight_step = 1 if weight.size > 1 else 0
    coef_step = 1 if coef.size > 1 else 0
    g0 = gscale[0]
    T = type(o[0])
    want_rows = row_out.size > 0
    buffer = np.empty(min(CHUNK, t.size) if VALUE else 0, t.dtype)  # (a task's elements)
    losses = borrowed(buffer)
    for task in range(first, last):
        # A task is a stretch of one row (layout A) or whole rows (layout B).
        if chunks_per_row > 0:
            first_row = task // chunks_per_row
            last_row = first_row + 1
            start = first_row * C + (task - first_row * chunks_per_row) * CHUNK
            stop = min(start + CHUNK, last_row * C)
        else:
            first_row = task * rows_per_task
            last_row = min(R, first_row + rows_per_task)
            start = first_row * C
            stop = last_row * C
        # One gradient factor for the task, unless its rows have their own: then the
        # raw derivatives (times 1, exact) are rescaled row by row.
        shared = coef_step == 0 or last_row - first_row == 1
        if VALUE and shared and (chunks_per_row > 0 or (weight_step == 0 and not want_rows)):
            partials[task] = summed_segment(
                elem, t, p, o, start, stop, T(coef[first_row * coef_step] * g0), grad,
                GRAD) * weight[first_row * weight_step]
            continue
        segment(elem, t, p, o, start, stop, T(coef[first_row * coef_step] * g0) if shared
                else T(1.0), grad, losses, VALUE, GRAD)
        if GRAD and not shared:
            for r in range(first_row, last_row):
                rescale(grad, r * C, (r + 1) * C, T(coef[r] * g0))
        if VALUE:
            acc = 0.0
            if C == 1:  # one element per row: no inner loop, so this one vectorises
                for i in range(stop - start):
                    s = np.float64(losses[i]) * weight[(first_row + i) * weight_step]
                    if want_rows:
                        row_out[first_row + i] = s
                    acc += s
            else:
                for r in range(first_row, last_row):
                    lo = max(start, r * C) - start
                    hi = min(stop, (r + 1) * C) - start
                    s = _sum(losses[lo:hi]) * weight[r * weight_step]
                    if want_rows and chunks_per_row == 0:
                        row_out[r] = s
                    acc += s
            partials[task] = acc
    keep_alive(buffer)


# The most blocks of consecutive tasks a parallel kernel cuts its tasks into (a block is
# one call of the serial kernel; Numba's static schedule deals them out to the
# threads).  A constant, not the thread count: reading that from compiled code makes
# the kernel uncacheable.  Results never depend on it.
MAX_BLOCKS = 256


@inlined
def task_blocks(ntasks):
    """How many blocks a parallel kernel cuts ``ntasks`` tasks into."""
    return min(ntasks, MAX_BLOCKS)


@inlined
def block_range(ntasks, block, blocks):
    """(first task, end) of block ``block`` of ``blocks``."""
    return ntasks * block // blocks, ntasks * (block + 1) // blocks


@njit(parallel=True, cache=True, nogil=True)
def zeros_and_ones(t):
    """Whether every element of the flat array t is 0 or 1 (Keras's test of hinge labels),
    in one multi-threaded pass whose blocks each stop at their first other value."""
    blocks = max(1, min(MAX_BLOCKS, t.size // CHUNK))
    binary = np.ones(blocks, np.bool_)
    for block in prange(blocks):
        first, last = block_range(t.size, block, blocks)
        for i in range(first, last):
            if t[i] != 0 and t[i] != 1:
                binary[block] = False
                break
    return binary.all()


@inlined
def pointwise_total(C, row_out, partials, VALUE):
    """The value from the tasks' partials, in task order; the per-row values of rows split
    into several tasks (layout A) from their chunks, in order."""
    if not VALUE:
        return 0.0
    chunks_per_row = _plan(row_out.size, C)[2]  # (0 unless rows are split: layout A)
    if row_out.size > 0 and chunks_per_row > 0:
        for r in range(row_out.size):
            row_out[r] = ordered_total(partials[r * chunks_per_row:], chunks_per_row)
    return ordered_total(partials, partials.size)

"""The row-wise family on the CPU: one generic body, specialised per loss by its row element.

Data arrive flat as ``R`` rows of ``C`` classes.  A task is ``max(1, CHUNK // C)``
whole rows (a function of ``(R, C)`` only); each task writes one float64 partial sum,
added in task order, so results are bitwise the same for any number of threads.
"""

import numpy as np
from numba import njit, prange

from .cpu_target import borrowed, keep_alive, wide_vectors
from .pointwise import CHUNK, ordered_total
from .row_elements import SCRATCH_SLOTS


def plan(R, C):
    """(number of tasks, rows per task) for R rows of C elements."""
    rows_per_task = max(1, CHUNK // max(C, 1))
    return (R + rows_per_task - 1) // rows_per_task, rows_per_task


_plan = njit(plan)


@njit(inline="always")
def rowwise(row_elem, t, labels, p, cw, o, C, weight, coef, gscale, row_out, grad, partials,
            first, last, VALUE, GRAD):
    """The generic row-wise kernel body: runs tasks ``first .. last - 1`` of ``plan``.

    t        dense targets, ``R * C`` (size 0 with integer labels; int64 class indices
             for multilabel_margin, whose rows list their targets)
    labels   one class index per row (size 0 with dense targets); a negative label marks
             an ignored row: loss 0, gradient 0
    p        predictions, ``R * C``;  cw  class weights (size C, or 0 for none)
    o, C, weight, coef, gscale, row_out, grad, partials, VALUE, GRAD
             as for the pointwise body (per-row weight and gradient factor, ...)
    ``rows_total`` then makes the value, ``sum_r weight_r * loss_r``, of the partials.
    """
    _rows(_class_row, row_elem, (borrowed(t), borrowed(labels), borrowed(p), borrowed(cw)), p,
          p.size // C, o, C, weight, coef, gscale, row_out, borrowed(grad), partials, first,
          last, VALUE, GRAD)


@njit(inline="always")
def rowwise_grad_hess(row_elem, t, labels, p, cw, o, C, weight, coef, gscale, row_out, grad,
                      hess, partials, first, last):
    """The row body of grad_hess: as ``rowwise`` without a value, the element (a row
    second derivative, bound to take ``(g, h)`` for ``g``) writing the gradient into
    ``grad`` and the Hessian's diagonal into ``hess``."""
    _rows(_class_row_hess, row_elem, (borrowed(t), borrowed(labels), borrowed(p), borrowed(cw)),
          p, p.size // C, o, C, weight, coef, gscale, row_out, (borrowed(grad), borrowed(hess)),
          partials, first, last, False, True)


@njit(inline="always")
def _class_row_hess(row_elem, inputs, o, C, scale, grad, r, shared, GRAD):
    """``_class_row`` with a gradient and a second-derivative row (both 0 where ignored)."""
    t, labels, p, cw = inputs
    T = type(o[0])
    lo = r * C
    hi = lo + C
    dense = t.size > 0
    label = -1 if dense else labels[r]
    g = grad[0][lo:hi]
    h = grad[1][lo:hi]
    if label < 0 and not dense:
        g[:] = T(0.0)
        h[:] = T(0.0)
        return 0.0
    tr = t[lo:hi] if dense else t[0:0]
    return float(row_elem(tr, label, p[lo:hi], cw, o, (g, h), scale, 0, 1, shared, True))


@njit(inline="always")
def _class_row(row_elem, inputs, o, C, scale, grad, r, shared, GRAD):
    """One row's loss for a row element, or 0 for an ignored row."""
    t, labels, p, cw = inputs
    T = type(o[0])
    lo = r * C
    hi = lo + C
    dense = t.size > 0
    label = -1 if dense else labels[r]
    g = grad[lo:hi] if GRAD else grad[0:0]
    if label < 0 and not dense:
        if GRAD:
            g[:] = T(0.0)
        return 0.0
    tr = t[lo:hi] if dense else t[0:0]
    return float(row_elem(tr, label, p[lo:hi], cw, o, g, scale, 0, 1, shared, GRAD))


@njit(inline="always")
def tuplewise(elem, y, a, b, c, d, o, C, weight, coef, gscale, row_out, ga, gb, gc, gd,
              partials, first, last, VALUE, GRAD):
    """The kernel body for rows of several inputs (triplets, pairs, quadruplets).

    a, b, c, d   the prediction arrays, ``R * C`` each (the unused ones size 0)
    y            one label per row in the compute dtype (size 0 when the loss has none)
    ga .. gd     their gradients (written when GRAD; size 0 when unused)
    The rest as for ``rowwise``.  A tuple element is called once per row::

        loss = elem(y_r, (a_r, b_r, c_r, d_r), o, (ga_r, gb_r, gc_r, gd_r), scale,
                    lane, lanes, shared, GRAD)
    """
    _rows(_tuple_row, elem, (borrowed(y), borrowed(a), borrowed(b), borrowed(c), borrowed(d)), a,
          a.size // C, o, C, weight, coef, gscale, row_out,
          (borrowed(ga), borrowed(gb), borrowed(gc), borrowed(gd)), partials, first, last, VALUE,
          GRAD)


@njit(inline="always")
def _tuple_row(elem, inputs, o, C, scale, grad, r, shared, GRAD):
    """One row's loss for a tuple element."""
    y, a, b, c, d = inputs
    ga, gb, gc, gd = grad
    lo = r * C
    hi = lo + C
    label = y[r] if y.size > 0 else type(o[0])(0.0)
    rows = (a[lo:hi], b[lo:hi], c[lo:hi], d[lo:hi])
    grads = (ga[lo:hi], gb[lo:hi], gc[lo:hi], gd[lo:hi]) if GRAD else rows
    return float(elem(label, rows, o, grads, scale, 0, 1, shared, GRAD))


@njit(inline="always")
def _rows(row_loss, elem, inputs, like, R, o, C, weight, coef, gscale, row_out, grad, partials,
          first, last, VALUE, GRAD):
    """The task loop of both row bodies: whole rows per task, one partial per task."""
    wide_vectors()
    weight, coef, gscale = borrowed(weight), borrowed(coef), borrowed(gscale)
    row_out, partials = borrowed(row_out), borrowed(partials)
    _, rows_per_task = _plan(R, C)
    weight_step = 1 if weight.size > 1 else 0
    coef_step = 1 if coef.size > 1 else 0
    want_rows = row_out.size > 0
    T = type(o[0])
    # The elements' scratch rows (SCRATCH_SLOTS), in the inputs' dtype.
    scratch = np.empty((SCRATCH_SLOTS, C), like.dtype)
    shared = borrowed(scratch)
    for task in range(first, last):
        acc = 0.0
        for r in range(task * rows_per_task, min(R, (task + 1) * rows_per_task)):
            loss = row_loss(elem, inputs, o, C, T(coef[r * coef_step] * gscale[0]), grad, r,
                            shared, GRAD)
            if VALUE:
                loss *= weight[r * weight_step]
                if want_rows:
                    row_out[r] = loss
                acc += loss
        if VALUE:
            partials[task] = acc
    keep_alive(scratch)


@njit(inline="always")
def rows_total(C, row_out, partials, VALUE):
    """The value from the tasks' partials, in task order."""
    return ordered_total(partials, partials.size) if VALUE else 0.0


@njit(parallel=True, cache=True, nogil=True)
def index_range(t):
    """(min, max) of a non-empty flat int64 array in one multi-threaded pass (the range
    check of multilabel_margin_loss's targets, as large as its logits: two NumPy
    reductions took longer than the loss).  Exact, so the same on any thread count."""
    blocks = max(1, min(256, t.size // CHUNK))
    lows = np.empty(blocks, np.int64)
    highs = np.empty(blocks, np.int64)
    for block in prange(blocks):
        first, last = t.size * block // blocks, t.size * (block + 1) // blocks
        lo = hi = t[first]
        for i in range(first + 1, last):
            lo = min(lo, t[i])
            hi = max(hi, t[i])
        lows[block] = lo
        highs[block] = hi
    return lows.min(), highs.max()

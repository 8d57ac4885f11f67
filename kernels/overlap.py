"""The whole-array-statistics family on the CPU (Dice, Tversky, F-beta).

Each of these losses is a function of three sums per group, TP = sum t*p, St = sum t and
Sp = sum p, and its gradient is affine in t within a group: d loss / d p_j =
slope_r * t_j + intercept_r.  So there are two kernels, whatever the loss:

* ``statistics``: the three sums of each of ``R`` groups of ``C`` contiguous elements,
  in float64;
* ``gradient``: ``grad_j = slope_r * t_j + intercept_r``, the coefficients computed by
  the front end from the sums.

The work is cut into tasks that depend only on ``(R, C)``, never on the thread count
(as pointwise.py): a long group (``C >= CHUNK``) is split into chunks of ``CHUNK``
elements, one task each, whose partial sums are added in chunk order; short groups go
``CHUNK // C`` whole groups to a task.  So the sums are bitwise the same for any number
of threads, and the serial and parallel kernels agree bitwise.
"""

import numpy as np
from numba import njit, prange

# Elements per task (as pointwise.py; kept here so that this module's cached kernels
# depend on no other file).
CHUNK = 4096

# As pointwise.py: reassociation lets LLVM vectorise the float64 sums (the order is still
# fixed by the compiled code), contraction allows FMA; NaN and inf propagate.
FASTMATH = {"reassoc", "contract"}


def plan(R, C):
    """(number of tasks, groups per task, chunks per group) for R groups of C elements."""
    if C >= CHUNK:
        chunks_per_group = (C + CHUNK - 1) // CHUNK
        return R * chunks_per_group, 0, chunks_per_group
    groups_per_task = CHUNK // max(C, 1)
    return (R + groups_per_task - 1) // groups_per_task, groups_per_task, 0


_plan = njit(inline="always")(plan)


@njit(inline="always")
def _chunk_bounds(task, chunks_per_group, C):
    """(group, start, stop) of a task of a split group."""
    r = task // chunks_per_group
    start = r * C + (task - r * chunks_per_group) * CHUNK
    return r, start, min(start + CHUNK, (r + 1) * C)


@njit(inline="always")
def _sums(t, p, start, stop):
    """(sum t*p, sum t, sum p) over [start, stop), in float64."""
    # Slices from 0 let LLVM vectorise the loop (see pointwise._segment).
    ts, ps = t[start:stop], p[start:stop]
    tp = 0.0
    st = 0.0
    sp = 0.0
    for i in range(ts.size):
        ti = np.float64(ts[i])  # float64 before the product: exact for float32 inputs
        pi = np.float64(ps[i])
        tp += ti * pi
        st += ti
        sp += pi
    return tp, st, sp


@njit(inline="always")
def statistics(t, p, C, stats):
    """stats[:, r] = (sum t*p, sum t, sum p) over group r = elements [r*C, (r+1)*C).

    t, p   flat inputs of R * C elements (the compute dtype)
    stats  float64, shape (3, R)
    """
    R = stats.shape[1]
    ntasks, groups_per_task, chunks_per_group = _plan(R, C)
    partials = np.empty((3, ntasks if chunks_per_group > 0 else 0))
    for task in prange(ntasks):
        if chunks_per_group > 0:
            r, start, stop = _chunk_bounds(task, chunks_per_group, C)
            tp, st, sp = _sums(t, p, start, stop)
            partials[0, task] = tp
            partials[1, task] = st
            partials[2, task] = sp
        else:
            for r in range(task * groups_per_task, min(R, (task + 1) * groups_per_task)):
                tp, st, sp = _sums(t, p, r * C, (r + 1) * C)
                stats[0, r] = tp
                stats[1, r] = st
                stats[2, r] = sp
    if chunks_per_group > 0:  # split groups: their chunks' sums, added in order
        for r in range(R):
            for k in range(3):
                s = 0.0
                for task in range(r * chunks_per_group, (r + 1) * chunks_per_group):
                    s += partials[k, task]
                stats[k, r] = s


@njit(inline="always")
def _affine(t, grad, start, stop, slope, intercept):
    ts, gs = t[start:stop], grad[start:stop]
    for i in range(ts.size):
        # float64 coefficients: one rounding, on the store into grad's dtype
        gs[i] = slope * ts[i] + intercept


@njit(inline="always")
def gradient(t, slope, intercept, C, grad):
    """grad_j = slope[r] * t_j + intercept[r] for each element j of group r.

    t, grad          flat, R * C elements (the compute dtype)
    slope, intercept float64, one per group
    """
    R = slope.size
    ntasks, groups_per_task, chunks_per_group = _plan(R, C)
    for task in prange(ntasks):
        if chunks_per_group > 0:
            r, start, stop = _chunk_bounds(task, chunks_per_group, C)
            _affine(t, grad, start, stop, slope[r], intercept[r])
        else:
            for r in range(task * groups_per_task, min(R, (task + 1) * groups_per_task)):
                _affine(t, grad, r * C, (r + 1) * C, slope[r], intercept[r])


# The kernels the front end calls: module-level, so that Numba's on-disk cache holds them.

@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def statistics_serial(t, p, C, stats):
    statistics(t, p, C, stats)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def statistics_parallel(t, p, C, stats):
    statistics(t, p, C, stats)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gradient_serial(t, slope, intercept, C, grad):
    gradient(t, slope, intercept, C, grad)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gradient_parallel(t, slope, intercept, C, grad):
    gradient(t, slope, intercept, C, grad)

"""The dynamic-programming family (CTC) on CUDA: a block per sequence, the extended
target's positions across its threads.

The recursion's math is ``ctc``'s device functions (``alpha_at``, ``beta_at``, ``lse3``,
``gradient_at``), compiled again for CUDA (kernels/cuda_target.py).  Each frame is one
step of every thread (its positions), then a barrier; the frame's largest log occupancy
and the per-class sums are taken by thread 0 in position order (no atomics: the sums are
repeatable); every thread then writes a share of the frame's gradient row.
"""

import math

from numba import config, cuda, float64

from . import ctc
from .cuda_target import namespace_of, retarget

THREADS = 4 if config.ENABLE_CUDASIM else 128
NEG_INF = -math.inf


@cuda.jit(device=True, inline="always")
def _select(condition, a, b):
    return a if condition else b


_DEVICE = retarget({k: v for k, v in ctc.DEVICE_FUNCTIONS.items() if k != "select"},
                   namespace_of(ctc, select=_select))
lse3 = _DEVICE["lse3"]
alpha_at = _DEVICE["alpha_at"]
beta_at = _DEVICE["beta_at"]
gradient_at = _DEVICE["gradient_at"]
_max = _DEVICE["_max"]


@cuda.jit
def ctc(x, shape, lse, targets, input_lengths, target_lengths, blank, from_logits,
        zero_infinity, want_grad, coef, losses, grad, alpha, rows, labels, classes, scales):
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    stride_t, stride_n, T, C = shape[0], shape[1], shape[2], shape[3]
    Tn = input_lengths[n]
    L = 2 * target_lengths[n] + 1
    skip, frame_lp, scaled = rows[n, 2], rows[n, 3], rows[n, 4]
    seq_labels = labels[n]
    shared = cuda.shared.array(2, float64)  # (nll, the frame's largest log occupancy)
    for s in range(tid, L, THREADS):
        seq_labels[s] = blank if s % 2 == 0 else targets[n, s // 2]
    cuda.syncthreads()
    for s in range(tid, L, THREADS):
        skip[s] = 1.0 if s >= 3 and s % 2 == 1 and seq_labels[s] != seq_labels[s - 2] else 0.0
    if from_logits:
        for t in range(tid, Tn, THREADS):
            base = t * stride_t + n * stride_n
            top = NEG_INF
            for c in range(C):
                top = max(top, float64(x[base + c]))
            total = 0.0
            for c in range(C):
                total += math.exp(float64(x[base + c]) - top)
            lse[n, t] = top + math.log(total)
    cuda.syncthreads()

    for t in range(Tn):
        base = t * stride_t + n * stride_n
        for s in range(tid, L, THREADS):
            frame_lp[s] = float64(x[base + seq_labels[s]]) - lse[n, t]
        cuda.syncthreads()
        for s in range(tid, L, THREADS):
            if t == 0:
                alpha[n, 0, s] = frame_lp[s] if s < 2 else NEG_INF
            else:
                alpha[n, t, s] = alpha_at(alpha[n, t - 1], skip, frame_lp, s)
        cuda.syncthreads()
    if tid == 0:
        last = max(Tn - 1, 0)
        nll = -lse3(alpha[n, last, L - 1], alpha[n, last, L - 2] if L > 1 else NEG_INF, NEG_INF)
        if Tn == 0:
            nll = 0.0 if L == 1 else math.inf
        shared[0] = nll
        losses[n] = 0.0 if nll == math.inf and zero_infinity else nll
    cuda.syncthreads()
    if not want_grad:
        return
    nll = shared[0]
    zeroed = nll == math.inf and zero_infinity
    first_zero = 0 if zeroed else Tn  # (frames past the input's end; every frame when zeroed)
    for i in range(tid, (T - first_zero) * C, THREADS):
        t = first_zero + i // C
        grad[t * stride_t + n * stride_n + i % C] = 0.0
    if zeroed:
        return
    scale = coef[n]
    class_sum = classes[n]
    for t in range(Tn - 1, -1, -1):
        base = t * stride_t + n * stride_n
        for s in range(tid, L, THREADS):
            frame_lp[s] = float64(x[base + seq_labels[s]]) - lse[n, t]
        cuda.syncthreads()
        now = rows[n, t % 2]
        later = rows[n, (t + 1) % 2]
        for s in range(tid, L, THREADS):
            if t == Tn - 1:
                now[s] = frame_lp[s] if s >= L - 2 else NEG_INF
            else:
                now[s] = beta_at(later, skip, frame_lp, s, L)
        cuda.syncthreads()
        for s in range(tid, L, THREADS):
            lp = frame_lp[s]
            scaled[s] = NEG_INF if lp == NEG_INF else alpha[n, t, s] + now[s] - lp
        for c in range(tid, C, THREADS):
            class_sum[c] = 0.0
        cuda.syncthreads()
        if tid == 0:
            top = NEG_INF
            for s in range(L):
                top = _max(top, scaled[s])
            for s in range(L):
                class_sum[seq_labels[s]] += math.exp(scaled[s] - top)
            shared[1] = top
        cuda.syncthreads()
        factor = math.exp(shared[1] + nll)
        for c in range(tid, C, THREADS):
            lp = float64(x[base + c]) - lse[n, t]
            grad[base + c] = gradient_at(lp, class_sum[c], factor, scale)
        cuda.syncthreads()

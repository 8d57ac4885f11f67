"""What a training loop relies on: thread safety, repeatable results, bounded memory."""

import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastloss as fl
import loss_cases
from fastloss import _config
from fastloss._bench import arguments, gradient_positions
from fastloss.losses import LOSSES

NAMES = sorted(LOSSES)
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"  # (set by conftest.py)


def sample_arguments(name, rows, cols, dtype=np.float32, seed=0):
    """Valid arguments for loss ``name`` on (rows, cols) sample data; the losses over all
    pairs of a batch (a cost of rows**2) get a tenth of the rows (at least 8)."""
    rng = np.random.default_rng(seed)
    if LOSSES[name].name in ("circle", "ntxent"):
        rows = max(rows // 10, 8)
    t = rng.uniform(0.05, 0.95, (rows, cols)).astype(dtype)
    p = rng.uniform(0.05, 0.95, (rows, cols)).astype(dtype)
    return arguments(name, t, p)


def value_and_grads(name, args):
    value, grad = LOSSES[name].value_and_grad(*args)
    return np.asarray(value), (grad if isinstance(grad, tuple) else (grad,))


def assert_bitwise_equal(name, got, expected):
    (v1, g1), (v2, g2) = got, expected
    assert v1.tobytes() == v2.tobytes(), name
    assert len(g1) == len(g2) and all(a.tobytes() == b.tobytes() for a, b in zip(g1, g2)), name


def test_eight_threads_calling_every_loss_match_serial_calls():
    """8 threads, each running all losses in its own order, on inputs big enough for the
    parallel kernels (launches from several threads are serialised by the front end: with
    Numba's workqueue layer two at once abort the process) and, under the threshold, the
    serial ones, which release the GIL and really run at once."""
    cases = {}
    for name in NAMES:
        for rows in (16, 512):  # 16 x 256: serial kernels; 512 x 256 = 131072: parallel
            args = sample_arguments(name, rows, 256, seed=rows)
            cases[name, rows] = (args, value_and_grads(name, args))
    assert sum(args[-1].size >= _config.PARALLEL_THRESHOLD for args, _ in cases.values()) >= 45

    def run_all(seed):
        order = list(cases)
        random.Random(seed).shuffle(order)
        return [(key, value_and_grads(key[0], cases[key][0])) for key in order for _ in range(2)]

    with ThreadPoolExecutor(8) as pool:
        for results in pool.map(run_all, range(8)):
            for key, got in results:
                assert_bitwise_equal(key, got, cases[key][1])


def test_cuda_results_bitwise_identical_across_runs():
    """Every loss's value and gradients, twice on the CUDA path (the simulator here; a
    fixed grid and the ordered block sums make a real GPU repeat itself the same way)."""
    digests = []
    with fl.backend("cuda"), loss_cases.quick_simulator(SIMULATOR):
        for _ in range(2):
            digests.append([value_and_grads(name, sample_arguments(name, 12, 6))
                            for name in NAMES])
    for name, first, second in zip(NAMES, *digests):
        assert_bitwise_equal(name, first, second)


def value_and_grads_into(name, args, out):
    """value_and_grad with ``out=`` the buffers ``out`` (one per prediction array):
    (value, out) after checking that the gradients returned are those buffers."""
    loss = LOSSES[name]
    value, grad = loss.value_and_grad(*args, out=out if len(out) > 1 else out[0])
    assert all(np.shares_memory(g, o) for g, o in zip(grad if isinstance(grad, tuple) else (grad,), out))
    return np.asarray(value), out


def in_place_call(name, args):
    """value_and_grad with ``out=`` the prediction arrays themselves (copies of them)."""
    positions = gradient_positions(name, len(args))
    args = [x.copy() if k in positions else x for k, x in enumerate(args)]
    return value_and_grads_into(name, args, tuple(args[k] for k in positions))


@pytest.mark.parametrize("name", NAMES)
def test_in_place_gradients_change_nothing(name):
    """``out=`` the predictions gives bitwise the results of a call without it.  (Row
    kernels read a row again after writing its gradient; vectorised loops over arrays
    that overlap take a scalar path that sums in another order: the gradient goes
    through a temporary.)"""
    for rows, cols in ((4, 33), (64, 300)):
        args = sample_arguments(name, rows, cols, np.float64, seed=rows)
        assert_bitwise_equal(name, in_place_call(name, args), value_and_grads(name, args))


@pytest.mark.parametrize("name", ["mean_squared_error", "huber", "cross_entropy",
                                  "categorical_crossentropy", "gaussian_nll_loss"])
def test_results_do_not_depend_on_where_the_arrays_lie(name):
    """Inputs and ``out=`` side by side in one allocation, at every gap of 0 to 7
    elements (LLVM checks at run time whether a loop's arrays lie too close to vectorise
    it): bitwise the results of separate arrays."""
    args = sample_arguments(name, 16, 37, np.float64, seed=3)
    expected = value_and_grads(name, args)
    positions = gradient_positions(name, len(args))
    arrays = list(args) + [np.empty_like(args[k]) for k in positions]
    for gap in range(8):
        pool = np.empty(sum(a.size + gap for a in arrays))
        placed, start = [], 0
        for a in arrays:
            if a.dtype != pool.dtype:  # (integer labels stay where they are)
                placed.append(a)
                continue
            view = pool[start:start + a.size].reshape(a.shape)
            view[...] = a
            placed.append(view)
            start += a.size + gap
        got = value_and_grads_into(name, placed[:len(args)], tuple(placed[len(args):]))
        assert_bitwise_equal(name, got, expected)


@pytest.mark.parametrize("name", ["mean_squared_error", "cross_entropy", "nll_loss",
                                  "cosine_embedding_loss", "categorical_crossentropy"])
def test_in_place_gradients_on_the_cuda_path(name):
    args = sample_arguments(name, 4, 9)
    with fl.backend("cuda"), loss_cases.quick_simulator(SIMULATOR):
        assert_bitwise_equal(name, in_place_call(name, args), value_and_grads(name, args))


# -- memory ------------------------------------------------------------------------------

SMALL_CONSTANT = 256 << 10  # partial sums, per-row buffers of a batch, Python objects


def result_bytes(result):
    """The bytes of what a call returns: its value (an array for reduction="none") and
    its gradients."""
    parts = result if isinstance(result, tuple) else (result,)
    return sum(result_bytes(r) if isinstance(r, tuple) else np.asarray(r).nbytes for r in parts)


@pytest.mark.parametrize("name", NAMES)
def test_calls_allocate_only_their_results(name):
    """Traced by tracemalloc (NumPy reports its buffers to it): a value or value_and_grad
    call on 4 MiB inputs allocates what it returns (the gradients; the per-element values
    of a loss whose default reduction is "none") plus a small constant - no temporary of
    the input's size.  Kernels allocate only per-task or per-row scratch."""
    args = sample_arguments(name, 1024, 1024)
    loss = LOSSES[name]
    for call in (lambda: loss.value_and_grad(*args), lambda: loss(*args)):
        call()  # compile or load the kernels outside the trace
        tracemalloc.start()
        try:
            result = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        allowed = result_bytes(result) + SMALL_CONSTANT + recursion_bytes(name, args)
        assert peak <= allowed, (name, peak, result_bytes(result))


def recursion_bytes(name, args):
    """CTC's float64 scratch per sequence: alpha, one row of L = 2 S + 1 positions (and two
    zeros) per frame (the O(S) per frame the recursion needs), and a few rows of L, C and
    T."""
    if LOSSES[name].spec.family != "sequences":
        return 0
    targets, x = args[0], args[1]
    N, S = targets.shape
    T, C = (x.shape[0], x.shape[2]) if name == "ctc_loss" else (x.shape[1], x.shape[2])
    L = 2 * S + 1
    return 8 * N * (T * (L + 2) + 3 * T + C + 6 * (L + 2))


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
def test_hinge_with_zero_one_labels_copies_only_the_labels(name):
    """Keras turns 0/1 hinge labels into -1/1: the one documented copy of an input."""
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, (1024, 1024)).astype(np.float32)
    p = rng.uniform(-1, 1, t.shape).astype(np.float32)
    loss = LOSSES[name]
    expected = loss(2 * t - 1, p)
    loss.value_and_grad(t, p)
    tracemalloc.start()
    try:
        value, grad = loss.value_and_grad(t, p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(value, expected)
    assert peak <= grad.nbytes + t.nbytes + SMALL_CONSTANT, peak


LARGE_CROSS_ENTROPY = """
    import numpy as np, fastloss as fl

    def peak_rss():  # VmHWM: the peak resident set since the last reset
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) << 10 for l in f if l.startswith("VmHWM"))

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    rows, classes = 8192, 131072
    fl.cross_entropy.value_and_grad(np.zeros(rows, np.int64), np.zeros((rows, 8), np.float32))
    logits = np.empty((rows, classes), np.float32)
    logits[...] = np.linspace(-20, 20, classes, dtype=np.float32)  # touch every page
    labels = np.arange(rows) * 7 % classes
    reset_peak()
    before = peak_rss()
    value, grad = fl.cross_entropy.value_and_grad(labels, logits)
    grown = peak_rss() - before
    print(grown, grad.nbytes, float(value))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's VmHWM")
def test_cross_entropy_8192_by_131072_needs_only_the_gradient_beyond_its_input():
    """4 GiB of float32 logits (the input, resident before the call): the call's peak
    resident memory grows by the 4 GiB gradient plus a small constant - no temporary of
    the input's size anywhere (front end or kernel)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(LARGE_CROSS_ENTROPY)],
                            capture_output=True, text=True, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-3000:]
    grown, gradient, value = result.stdout.split()
    assert int(grown) <= int(gradient) + (64 << 20), (int(grown) >> 20, int(gradient) >> 20)
    # every row is the same linspace: the loss is its logsumexp - the mean labelled logit
    row = np.linspace(-20, 20, 131072, dtype=np.float32).astype(np.float64)
    labels = np.arange(8192) * 7 % 131072
    expected = row.max() + np.log(np.exp(row - row.max()).sum()) - row[labels].mean()
    assert float(value) == pytest.approx(expected, rel=1e-5)

"""Dispatch settings: the backend override and the serial/parallel threshold, in one place."""

import contextlib
import contextvars
import os

BACKENDS = ("auto", "cpu", "cuda")

# Below this many elements a serial CPU kernel beats the parallel one (waking the
# thread pool costs more than it saves).  Measured with
# `python -m pytest benchmarks/test_bench_threshold.py`; override with FASTLOSS_PARALLEL_THRESHOLD.
PARALLEL_THRESHOLD = int(os.environ.get("FASTLOSS_PARALLEL_THRESHOLD", 1 << 16))


def _check_backend(name):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


_backend = contextvars.ContextVar(
    "fastloss_backend", default=_check_backend(os.environ.get("FASTLOSS_BACKEND", "auto")))


@contextlib.contextmanager
def backend(name):
    """Force a backend inside a ``with`` block: ``"cpu"``, ``"cuda"`` or ``"auto"``.

    ``"cuda"`` on NumPy inputs copies them to the device and the results back (how the
    CUDA kernels are tested under ``NUMBA_ENABLE_CUDASIM=1``); ``"cpu"`` on CuPy inputs
    copies them to the host and the results back to the device.
    """
    token = _backend.set(_check_backend(name))
    try:
        yield
    finally:
        _backend.reset(token)


def current_backend():
    return _backend.get()

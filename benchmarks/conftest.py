"""Shared sample data for the benchmark suite (see fastloss/_bench.py for the references).

Run the suite: ``python -m pytest benchmarks`` (timings), ``python benchmarks/report.py``
(effective GB/s against a copy, fastloss/NumPy ratios), or once as tests with
``--benchmark-disable`` as CI does.
"""

import functools

import pytest

from fastloss import _bench


@functools.lru_cache(maxsize=None)
def _sample(n, dtype, row):
    return _bench.sample(n, dtype, row)


@pytest.fixture(scope="session")
def sample():
    """``sample(n, dtype="float32", row=1000)`` -> (y_true, y_pred, out), made once per
    session: shape ``(n // row, row)``, values in [0.05, 0.95), ``out`` a gradient buffer."""
    def make(n, dtype="float32", row=_bench.ROW):
        return _sample(n, dtype, row)
    return make


"""The serial against the parallel CPU kernel, by size: how PARALLEL_THRESHOLD is chosen.

mean_squared_error value_and_grad (the cheapest loss per element, so the one where
starting threads pays off last) at 2**10 .. 2**20 elements, with the threshold forced
to 0 (always parallel) or beyond any size (always serial).  ``benchmarks/report.py``
prints the crossover: the size from which the parallel kernel wins.
"""

import sys

import pytest

import fastloss
from fastloss import _bench, _config

SIZES = [2**k for k in range(10, 21)]


@pytest.mark.parametrize("kernel", ["serial", "parallel"])
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"2**{n.bit_length() - 1}")
def test_mse_value_and_grad(benchmark, monkeypatch, sample, n, kernel):
    monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", 0 if kernel == "parallel" else sys.maxsize)
    t, p, out = sample(n, row=1024)
    benchmark.group = f"threshold n=2**{n.bit_length() - 1}"
    benchmark.extra_info.update(kernel=kernel, n=n, bytes=_bench.moved_bytes("value_and_grad", (t, p)))
    benchmark(fastloss.mean_squared_error.value_and_grad, t, p, out=out)

"""Start-up cost, each figure from fresh Python processes (the median of several):

* ``import fastloss`` (compiles nothing and imports no Numba);
* a loss's first call with an empty Numba cache (import + compile + run);
* the same first call with a warm cache (a second process: kernels loaded from disk);
* for comparison, ``import numpy``, ``import numba`` alone, and Numba's own floor: import
  Numba and call a one-line ``@njit(cache=True)`` function loaded from a warm cache (what
  any Numba-compiled library's first call pays, whatever it does).

    python benchmarks/startup.py [--loss mean_squared_error] [--repeat 5] [--json PATH]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
import fastloss
t1 = time.perf_counter()
from fastloss import _bench
t, p = np.full((10, 10), 0.5, np.float32), np.full((10, 10), 0.25, np.float32)
args = _bench.arguments({loss!r}, t, p)
t2 = time.perf_counter()
loss = fastloss.LOSSES[{loss!r}]
loss.value_and_grad(*args, **_bench.reduced(loss))
t3 = time.perf_counter()
print(t1 - t0, (t1 - t0) + (t3 - t2))
"""


def seconds(code, env=None):
    """Wall seconds printed by ``code`` run in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True).stdout
    return [float(x) for x in out.split()]


NUMBA_FLOOR = """
import time
t0 = time.perf_counter()
from numba import njit
@njit(cache=True)
def add_one(x):
    return x + 1.0
add_one(1.0)
print(time.perf_counter() - t0)
"""


def numba_floor(repeat):
    """Import Numba and a first call of a trivial cached function, with a warm cache."""
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "floor.py")
        with open(script, "w") as f:
            f.write(NUMBA_FLOOR)
        run = [sys.executable, script]
        subprocess.run(run, check=True, capture_output=True)  # fills the cache
        return statistics.median(
            float(subprocess.run(run, check=True, capture_output=True, text=True).stdout)
            for _ in range(repeat))


def measure(loss, repeat):
    timer = "import time; t0 = time.perf_counter(); import {m}; print(time.perf_counter() - t0)"
    result = {name: statistics.median(seconds(timer.format(m=module))[0] for _ in range(repeat))
              for name, module in (("import numpy", "numpy"), ("import numba", "numba"))}
    result["import numba + first cached @njit call"] = numba_floor(repeat)
    code = FIRST_CALL.format(loss=loss)
    imports, cold, warm = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = {"NUMBA_CACHE_DIR": cache}
            imported, first = seconds(code, env)  # empty cache: compiles
            cold.append(first)
            imported, first = seconds(code, env)  # warm cache: loads
            warm.append(first)
            imports.append(imported)
    result["import fastloss"] = statistics.median(imports)
    result[f"first {loss}.value_and_grad, empty cache"] = statistics.median(cold)
    result[f"first {loss}.value_and_grad, warm cache"] = statistics.median(warm)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="mean_squared_error")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = measure(args.loss, args.repeat)
    for name, s in result.items():
        print(f"{name:52s} {s * 1e3:7.0f} ms" + ("  (import + call)" if name.startswith("first")
                                                      else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A user-defined loss's first call in a new process (kernels cached) against a built-in
loss's, in one run.

    python benchmarks/define_cache.py [--repeat 5]

Each trial is a fresh Python process that imports fastloss, makes the loss (define_loss
for the defined one) and makes one value_and_grad call on (1000, 8) float32 arrays; the
defined loss's module and Numba's cache of its kernels were written by a warm-up process
first, as they are after its first definition on a machine.  Prints the median of each
phase over ``--repeat`` trials and the difference of the first calls (define + call for
the defined loss, call for the built-in one).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TRIAL = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastloss as fl
t1 = time.perf_counter()
y = np.linspace(-1, 1, 8000, dtype=np.float32).reshape(1000, 8)
p = np.cos(y)
if sys.argv[1] == "defined":
    from fastloss import math as fm
    loss = fl.define_loss("bench_asymmetric", lambda t, p, tau: fm.where(p > t, tau, 1.0) * (p - t) ** 2,
                          options={"tau": 2.0})
else:
    loss = fl.huber
t2 = time.perf_counter()
loss.value_and_grad(y, p)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "define": t2 - t1, "call": t3 - t2,
                  "sympy": "sympy" in sys.modules}))
"""


def trial(kind, env):
    out = subprocess.run([sys.executable, "-c", TRIAL, kind], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, FASTLOSS_CACHE_DIR=cache)
        trial("defined", env)  # writes the module and compiles (the first definition)
        trial("builtin", env)  # (the built-in's kernels in Numba's cache too)
        runs = {kind: [trial(kind, env) for _ in range(args.repeat)]
                for kind in ("builtin", "defined")}
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in ("import", "define", "call")}
           for kind, rs in runs.items()}
    for kind, m in med.items():
        print(f"{kind:8s} import {m['import']:.3f} s  define {m['define']:.3f} s  "
              f"first call {m['call']:.3f} s  (SymPy imported: "
              f"{any(r['sympy'] for r in runs[kind])})")
    first_defined = med["defined"]["define"] + med["defined"]["call"]
    print(f"defined loss's define + first call {first_defined:.3f} s vs built-in's first call "
          f"{med['builtin']['call']:.3f} s: {first_defined - med['builtin']['call']:+.3f} s "
          f"(median of {args.repeat} processes each)")


if __name__ == "__main__":
    main()

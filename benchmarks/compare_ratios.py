"""Fails when a loss got slower relative to NumPy: compares two runs of the suite.

    python -m pytest benchmarks --benchmark-json=baseline.json      # once, as the baseline
    python -m pytest benchmarks --benchmark-json=new.json           # later
    python benchmarks/compare_ratios.py baseline.json new.json [--tolerance 0.25]

Absolute times move with the machine and its load, so each run is reduced to ratios
taken within that run: for every loss, mode and size, fastloss's median time / NumPy's
median time in the same run.  A ratio that grew by more than ``--tolerance`` (a
fraction: 0.25 = 25% worse) against the baseline's is a regression; the script lists
them all and exits 1.  Files saved by ``--benchmark-autosave`` (under .benchmarks/) work
the same way.
"""

import argparse
import json
import sys
from collections import defaultdict


def ratios(path, stat="median"):
    """{(loss, mode, n): fastloss time / numpy time} from a pytest-benchmark JSON file."""
    with open(path) as f:
        doc = json.load(f)
    times = defaultdict(dict)
    for bench in doc["benchmarks"]:
        info = bench.get("extra_info", {})
        if "loss" not in info or info.get("impl") not in ("fastloss", "numpy"):
            continue
        key = (info["loss"], info["mode"], info.get("n"))
        times[key][info["impl"]] = bench["stats"][stat]
    return {key: t["fastloss"] / t["numpy"] for key, t in times.items()
            if "fastloss" in t and "numpy" in t}


def regressions(baseline, new, tolerance):
    """[(key, baseline ratio, new ratio)] for the ratios that worsened beyond tolerance."""
    return [(key, baseline[key], new[key]) for key in sorted(baseline, key=str)
            if key in new and new[key] > baseline[key] * (1 + tolerance)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", help="pytest-benchmark JSON of the baseline run")
    parser.add_argument("new", help="pytest-benchmark JSON of the run to check")
    parser.add_argument("--tolerance", type=float, default=0.25,
                        help="allowed growth of a fastloss/NumPy ratio (default 0.25)")
    parser.add_argument("--stat", default="median", choices=("median", "min", "mean"))
    args = parser.parse_args(argv)
    baseline, new = ratios(args.baseline, args.stat), ratios(args.new, args.stat)
    common = set(baseline) & set(new)
    if not common:
        print("no loss has fastloss and NumPy timings in both runs", file=sys.stderr)
        return 2
    worse = regressions(baseline, new, args.tolerance)
    for (loss, mode, n), before, after in worse:
        print(f"REGRESSION {loss} {mode} n={n}: fastloss/NumPy {before:.3f} -> {after:.3f} "
              f"({after / before - 1:+.0%})")
    print(f"{len(common)} ratios compared, {len(worse)} worse by more than "
          f"{args.tolerance:.0%}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())

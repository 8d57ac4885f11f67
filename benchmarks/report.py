"""Turns a pytest-benchmark run of this suite into effective GB/s and ratios.

    python benchmarks/report.py                      # runs the suite, then reports
    python benchmarks/report.py -k mean_squared_error  # extra arguments go to pytest
    python benchmarks/report.py --save results.json  # runs the suite, keeps its JSON
    python benchmarks/report.py --json results.json  # reports a saved --benchmark-json
    python benchmarks/report.py --stat min           # min, not median, of the rounds
    python benchmarks/report.py --bench-json PATH    # README's Markdown table of a
                                                     # `python -m fastloss bench --json PATH`

Effective GB/s = the bytes a call must move / its median time, set against the copy of
the same size from the same run (the limit for a memory-bound kernel); "vs numpy" is
NumPy's time / fastloss's.  The threshold benchmarks give the serial/parallel
crossover.  Compare ratios within one run only, never absolute times across machines.
On a machine shared with other work, parallel kernels wait for busy cores: the median
then shows that contention, the min (``--stat min``) the uncontended cost.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from fastloss._bench import format_time, markdown, print_table, sci

HERE = Path(__file__).resolve().parent


def run_suite(pytest_args, save=None):
    """Runs the suite with --benchmark-json into ``save`` (or a temporary file); returns
    the parsed JSON."""
    if save is None:
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
    else:
        path = save
    try:
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
               "--benchmark-warmup=on",
               f"--benchmark-json={path}", *pytest_args]
        print(" ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd, cwd=HERE.parent)
        if done.returncode != 0:
            sys.exit(done.returncode)
        with open(path) as f:
            return json.load(f)
    finally:
        if save is None:
            os.unlink(path)


def loss_table(benchmarks, stat):
    """Rows of the loss benchmarks: fastloss's GB/s, % of copy, ratio to the others."""
    copy_gbps = {}
    groups = defaultdict(dict)  # (loss, mode, n) -> impl -> (seconds, bytes)
    for b in benchmarks:
        info = b["extra_info"]
        seconds = b["stats"][stat]
        if info.get("impl") == "copy":
            copy_gbps[info["n"]] = info["bytes"] / seconds / 1e9
        elif "loss" in info:
            groups[info["loss"], info["mode"], info["n"]][info["impl"]] = (seconds, info["bytes"])
    others = sorted({impl for g in groups.values() for impl in g} - {"fastloss"})
    rows = []
    for (loss, mode, n), impls in groups.items():
        if "fastloss" not in impls:
            continue
        seconds, nbytes = impls["fastloss"]
        gbps = nbytes / seconds / 1e9
        pct = f"{100 * gbps / copy_gbps[n]:.0f}%" if n in copy_gbps else "-"
        cells = [loss, mode, sci(n), format_time(seconds), f"{gbps:.1f}", pct]
        cells += [f"{impls[o][0] / seconds:.1f}x" if o in impls else "-" for o in others]
        rows.append(cells)
    columns = ["loss", "mode", "n", "time", "GB/s", "% of copy"] + [f"vs {o}" for o in others]
    copies = ", ".join(f"n={sci(n)}: {g:.1f} GB/s" for n, g in sorted(copy_gbps.items()))
    return columns, rows, f"copy (np.copyto) {copies}; vs X = X's time / fastloss's"


def threshold_table(benchmarks, stat):
    """Serial against parallel by size, and the crossover: the smallest size from which
    the parallel kernel wins at every larger size measured."""
    times = defaultdict(dict)
    for b in benchmarks:
        info = b["extra_info"]
        if "kernel" in info:
            times[info["n"]][info["kernel"]] = b["stats"][stat]
    sizes = sorted(n for n, k in times.items() if len(k) == 2)
    rows, crossover = [], None
    for n in sizes:
        ratio = times[n]["serial"] / times[n]["parallel"]
        rows.append([f"2**{n.bit_length() - 1}", f"{n:,}", format_time(times[n]["serial"]),
                     format_time(times[n]["parallel"]), f"{ratio:.2f}x"])
    for n in reversed(sizes):
        if times[n]["parallel"] >= times[n]["serial"]:
            break
        crossover = n
    if crossover is None:
        caption = "the parallel kernel never wins in this range"
    else:
        caption = f"parallel wins from n = {crossover:,} (2**{crossover.bit_length() - 1}) up"
    return ["n", "elements", "serial", "parallel", "serial / parallel"], rows, caption


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments go to pytest (e.g. -k threshold).")
    parser.add_argument("--json", metavar="PATH", help="a saved --benchmark-json file to report")
    parser.add_argument("--save", metavar="PATH", help="keep the run's --benchmark-json here")
    parser.add_argument("--stat", choices=("median", "min", "mean"), default="median",
                        help="which statistic of each benchmark's rounds (default: median)")
    parser.add_argument("--bench-json", metavar="PATH",
                        help="instead: print the Markdown table (every loss, the machine, the "
                             "command) of a `python -m fastloss bench --json PATH` run, as "
                             "README's performance section shows it")
    args, pytest_args = parser.parse_known_args(argv)
    if args.bench_json:
        with open(args.bench_json) as f:
            print(markdown(json.load(f)), end="")
        return 0
    if args.json:
        with open(args.json) as f:
            data = json.load(f)
    else:
        data = run_suite(pytest_args, args.save)
    benchmarks = data["benchmarks"]
    machine = data.get("machine_info", {})
    print(f"{machine.get('cpu', {}).get('brand_raw', '')} "
          f"({machine.get('cpu', {}).get('count', '?')} cores), "
          f"{args.stat} of each benchmark's rounds")
    columns, rows, caption = loss_table(benchmarks, args.stat)
    if rows:
        print_table("fastloss: effective GB/s against a copy from the same run",
                    columns, rows, caption, left=3)
    columns, rows, caption = threshold_table(benchmarks, args.stat)
    if rows:
        print_table("mean_squared_error value_and_grad: serial against parallel kernel",
                    columns, rows, caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m fastloss bench --dask``: a large loss on Dask arrays held by a cluster's
workers, fastloss (one fused kernel call per chunk) against the same loss written as
``dask.array`` expressions, value and gradient computed together, in one run.

Without ``--scheduler`` a ``distributed.LocalCluster`` of worker processes is started
(and closed); with a scheduler's address the same code runs on that cluster.  The
inputs are made and kept in the workers' memory first (``persist``), so both sides are
timed on the same data in memory: each timing persists the value and the gradient and
waits for them, then lets them go.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import numpy as np

# Each loss as dask.array expressions (Keras's semantics on a 1-D y_pred: one mean over
# every element): (value, gradient) of (y_true, y_pred, n).
EXPRESSIONS = {
    "mean_squared_error": lambda t, p, n: (((p - t) ** 2).mean(), (p - t) * (2.0 / n)),
    "mean_absolute_error": lambda t, p, n: (abs(p - t).mean(), _sign(p - t) / n),
    "log_cosh": lambda t, p, n: (_log_cosh(p - t).mean(), _tanh(p - t) / n),
}


def _sign(x):
    import dask.array as da
    return da.sign(x)


def _tanh(x):
    import dask.array as da
    return da.tanh(x)


def _log_cosh(x):
    import dask.array as da
    # (Keras: x + softplus(-2x) - log 2)
    return x + da.logaddexp(0.0, -2.0 * x) - math.log(2.0)


def _forget(client, collections):
    """Releases the results and waits until the scheduler has dropped them (else the same
    keys, asked for again, would be found or caught cancelling)."""
    from dask.core import flatten

    keys = {k for c in collections for k in flatten(c.__dask_keys__())}
    client.cancel(collections)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        left = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in keys
                                                                if k in dask_scheduler.tasks])
        if not left:
            return
        time.sleep(0.01)


def dask_rows(names, size, chunk_mb, dtype, repeat, client, progress=None):
    """A row per loss: the median seconds of fastloss's and the expressions' value and
    gradient over Dask arrays of ``size`` elements in chunks of ``chunk_mb`` MB, timed in
    turn, and whether they agree."""
    import dask
    import dask.array as da
    from distributed import wait

    import fastloss

    progress = progress or (lambda label: None)
    itemsize = np.dtype(dtype).itemsize
    chunk = max(4096, int(chunk_mb * 2 ** 20 // itemsize) // 4096 * 4096)  # (whole blocks)
    progress("inputs")
    # (each chunk of y_true made beside its chunk of y_pred, as a model's predictions are
    # beside their labels: no side pays for moving chunks between workers)
    pairs = da.random.default_rng(0).random((2, size), chunks=(2, chunk),
                                            dtype=np.float32).astype(dtype)
    t, p = client.persist([pairs[0], pairs[1]])
    wait([t, p])
    rows = []
    for name in names:
        loss = fastloss.LOSSES[name]
        steps = {"fastloss": lambda: loss.value_and_grad(t, p, reduction="sum_over_batch_size"),
                 "dask.array": lambda: EXPRESSIONS[name](t, p, size)}
        times = {k: [] for k in steps}
        results = {}
        for round_ in range(repeat + 1):  # (the first round compiles and warms: not timed)
            for key, step in steps.items():
                progress(f"{name}: {key} ({round_}/{repeat})")
                start = time.perf_counter()
                value, grad = client.persist(list(step()))
                wait([value, grad])
                elapsed = time.perf_counter() - start
                if round_:
                    times[key].append(elapsed)
                if round_ == repeat:
                    results[key] = (value, grad)
                else:  # (forgotten: the next round computes them again)
                    _forget(client, [value, grad])
                    del value, grad
        (v1, g1), (v2, g2) = results["fastloss"], results["dask.array"]
        v1, v2, worst = dask.compute(v1, v2, abs(g1 - g2).max())
        rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
        agree = bool(np.isclose(v1, v2, rtol=rtol) and worst <= rtol * float(
            abs(g2).max().compute()))
        _forget(client, [g for pair in results.values() for g in pair])
        del results, g1, g2
        median = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"loss": name, "size": size, "chunk": chunk,
                     "fastloss_s": median["fastloss"], "dask_array_s": median["dask.array"],
                     "speedup": median["dask.array"] / median["fastloss"], "agree": agree,
                     "samples": times})
    return rows


def main(args, names):
    from ._bench import _missing, format_time, print_table

    missing = _missing(("dask", "distributed"))
    if missing:
        print(f"--dask: {' and '.join(missing)} not installed (pip install 'fastloss[dask]')",
              file=sys.stderr)
        return 2
    from distributed import Client, LocalCluster

    unknown = [n for n in names if n not in EXPRESSIONS]
    names = [n for n in names if n in EXPRESSIONS] if args.loss else list(EXPRESSIONS)
    if unknown and args.loss:
        print(f"--dask times {', '.join(EXPRESSIONS)}; skipped: {', '.join(unknown)}",
              file=sys.stderr)
    if not names:
        return 2
    size = int(args.dask_size)
    if args.scheduler:
        client, cluster, where = Client(args.scheduler), None, f"cluster at {args.scheduler}"
    else:
        # (no memory limit by default: the bench times computing, not Dask's spilling and
        # pausing, which at 1e9 on a 24 GB machine moved chunks between the workers)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=args.memory_limit)
        client = Client(cluster)
        where = (f"LocalCluster of {args.workers} worker processes, memory limit "
                 f"{args.memory_limit if args.memory_limit != '0' else 'none'}")
    try:
        rows = dask_rows(names, size, args.chunk_mb, args.dtype, args.repeat, client,
                         lambda label: print(f"{label} ...", file=sys.stderr))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    gbytes = 3 * size * np.dtype(args.dtype).itemsize / 1e9  # (two read, one written)
    table = [[r["loss"], f"{size:.3g}", f"{r['chunk'] * np.dtype(args.dtype).itemsize / 2**20:.0f} MB",
              format_time(r["fastloss_s"]), f"{gbytes / r['fastloss_s']:.1f}",
              format_time(r["dask_array_s"]), f"{r['speedup']:.2f}x",
              "yes" if r["agree"] else "NO"] for r in rows]
    slowest = min(rows, key=lambda r: r["speedup"])
    print_table(f"value and gradient over Dask arrays ({args.dtype}, 1-D, {where}; median of "
                f"{args.repeat})",
                ["loss", "elements", "chunks", "fastloss", "GB/s", "dask.array", "speed-up",
                 "agree"], table,
                f"speed-up = the dask.array expressions' time / fastloss's; slowest: "
                f"{slowest['loss']} {slowest['speedup']:.2f}x; GB/s: two inputs read and the "
                "gradient written, over fastloss's time")
    if args.json:
        import json

        from ._bench import machine_info

        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(("dask", "distributed")), "dask": where,
                       "dtype": args.dtype, "rows": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0 if all(r["agree"] for r in rows) else 1

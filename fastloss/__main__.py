"""The command line: ``python -m fastloss bench``, ``warmup`` and ``table``."""

import argparse
import os
import sys
import time


def warmup(args):
    """Compiles every CPU kernel (serial and parallel, float32 and float64) into Numba's
    on-disk cache by calling each loss on tiny inputs, in ``--jobs`` processes at once
    (each taking the next loss when done: Numba compiles one function at a time per
    process); on a CUDA machine, the GPU kernels too."""
    import fastloss
    from fastloss._bench import call_every_mode, in_processes, warm_cpu

    start = time.perf_counter()
    names = list(fastloss.LOSSES)
    jobs = min(args.jobs or os.cpu_count() or 1, len(names))
    results = in_processes(warm_cpu, names, jobs)
    compiled = sum(r[0] for r in results)
    loaded = sum(r[1] for r in results)
    # (a kernel two losses share is counted once per process that met it; one that no
    # process met is missing from every process's list of kernels met so far)
    missed = sorted(set.intersection(*(set(r[2]) for r in results)))
    print(f"CPU: {compiled + loaded} kernels ({compiled} compiled, {loaded} loaded from "
          f"Numba's cache) in {time.perf_counter() - start:.1f} s, {jobs} process(es)")
    if missed:
        print(f"not reached by any loss (no float32 and float64 versions): {', '.join(missed)}",
              file=sys.stderr)

    if _cuda_available():
        import cupy

        start = time.perf_counter()
        with fastloss.backend("cuda"):
            for dtype in ("float32", "float64"):
                call_every_mode(names, cupy, dtype)
        cupy.cuda.get_current_stream().synchronize()
        print(f"CUDA: kernels compiled in {time.perf_counter() - start:.1f} s")
    return 0


def _cuda_available():
    """A real GPU (not the simulator) with CuPy to hand it arrays."""
    try:
        from numba import config, cuda
    except ImportError:
        return False
    if config.ENABLE_CUDASIM or not cuda.is_available():
        return False
    try:
        import cupy  # noqa: F401
    except ImportError:
        print("CUDA GPU found but CuPy is missing: pip install 'fastloss[cuda]'; "
              "CUDA kernels not compiled", file=sys.stderr)
        return False
    return True


def bench(args):
    from fastloss import _bench

    return _bench.main(args)


def parser():
    from fastloss._bench import PEERS, SIZES, sci

    top = argparse.ArgumentParser(prog="python -m fastloss",
                                  description="fastloss: loss functions as fused Numba kernels.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("bench", help="time every loss against a copy, NumPy (and PyTorch, JAX)",
                       description="Times each loss's value and value_and_grad on sample data; "
                                   "reports effective GB/s against a memory copy measured in the "
                                   "same run, and speed-ups against NumPy (and, with --peers, "
                                   "PyTorch and JAX where installed).")
    b.add_argument("--size", choices=SIZES, default="medium",
                   help="elements: " + ", ".join(f"{k}={sci(v)}" for k, v in SIZES.items())
                        + " (default: medium)")
    b.add_argument("--shape", type=_shape, metavar="RxC",
                   help="sample data of R rows of C elements (classes) instead of --size, "
                        "e.g. 4096x32768")
    b.add_argument("--loss", nargs="+", metavar="NAME", type=_loss_name,
                   help="losses to time, by name or alias (default: all)")
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument("--peers", nargs="*", choices=PEERS, metavar="PEER",
                   help="also time the same losses in PyTorch (torch.nn.functional) and JAX "
                        "(Optax, jax.numpy) where installed; alone: both, else those named "
                        f"({', '.join(PEERS)}); without it only fastloss, NumPy and the copy")
    b.add_argument("--framework", choices=("torch", "jax"),
                   help="instead: time a training step's loss forward + backward through "
                        "fastloss.torch (or fastloss.jax, jitted) against the framework's own "
                        "loss, for each loss it has")
    b.add_argument("--dask", action="store_true",
                   help="instead: time large losses over Dask arrays on a cluster (a "
                        "LocalCluster unless --scheduler), fastloss against the same loss "
                        "written as dask.array expressions")
    b.add_argument("--dask-size", type=float, default=1e9, metavar="N",
                   help="--dask: elements of each array (default: 1e9; the workers hold the "
                        "inputs and a gradient: 12 GB at float32)")
    b.add_argument("--memory-limit", default="0", metavar="LIMIT",
                   help="--dask: the LocalCluster's memory limit per worker, as Dask takes it "
                        "('4GB', 'auto'; default 0: none, so that Dask neither spills nor "
                        "pauses during the timing)")
    b.add_argument("--chunk-mb", type=float, default=64, metavar="MB",
                   help="--dask: chunk size in MB (default: 64)")
    b.add_argument("--workers", type=_positive_int, default=2, metavar="N",
                   help="--dask: worker processes of the LocalCluster (default: 2)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="--dask: a running cluster's scheduler address, e.g. tcp://host:8786")
    b.add_argument("--json", metavar="PATH", help="also write the rows and machine info as JSON")
    b.add_argument("--plot", metavar="PATH",
                   help="also write a PNG bar chart of each loss's %% of the copy's bandwidth "
                        "(needs matplotlib: the 'plot' extra)")
    b.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="processes that compile the kernels ahead of the timing, at once "
                        "(default: one per core; 1: compile while timing)")
    b.add_argument("--repeat", type=_positive_int, default=7, metavar="N",
                   help="timed samples per call; the median is reported (default: 7)")
    b.set_defaults(func=bench)

    w = sub.add_parser("warmup", help="compile every kernel into Numba's cache ahead of time",
                       description="Compiles every CPU kernel (serial and parallel, float32 and "
                                   "float64) and, on a CUDA machine with CuPy, every GPU kernel.")
    w.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="processes that compile at once, each a share of the losses "
                        "(default: one per core)")
    w.set_defaults(func=warmup)

    t = sub.add_parser("table", help="print the README's loss table, from the registry",
                       description="Prints the Markdown table of every loss (its arrays, "
                                   "semantics, options and other names) that README.md holds.")
    t.set_defaults(func=table)
    return top


def table(args):
    import fastloss
    from fastloss.registry import readme_table

    print(readme_table(loss.spec for loss in fastloss.LOSSES.values()))
    return 0


def _loss_name(name):
    """A loss's name from its name, an alias or its class name."""
    import fastloss

    try:
        found = fastloss.get(name)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown loss {name!r}; known: {', '.join(fastloss.LOSSES)}") from None
    return getattr(found, "loss", found).name


def _shape(text):
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLUMNS such as 4096x32768, got {text!r}")
    return int(parts[0]), int(parts[1])


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv=None):
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in bench's --json
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

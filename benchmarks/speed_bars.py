"""The speed bars as ratios measured in one run: each loss against a multi-threaded pass
over the same bytes, cross_entropy against NumPy/PyTorch/JAX, circle/ntxent against a
matrix product.

    python benchmarks/speed_bars.py [--part pointwise rows peers pairs] [--repeat 15]

- pointwise: every pointwise loss's value_and_grad(out=), reduced to one value, at 1e7
  float32 as a % of a prange pass that reads two arrays and writes one (``out = t - p``); beside them the
  same pass with one ``exp`` (or ``log1p``) of fastloss's vectorised math per element,
  the arithmetic floor of a loss that needs one.
- rows: every loss over a class axis at (8192, 1000) float32 as a % of a prange pass
  that reads the logits and writes an array of their size (for cross_entropy with class
  indices, the bytes of the labels are added to the pass's).
- peers: cross_entropy (class indices, mean) value and value_and_grad against NumPy,
  PyTorch and JAX/Optax (when installed) at (256, 10), (1024, 1000), (8192, 1000),
  (2048, 32768): peer time / fastloss time, ">= 1" is at least as fast.
- pairs: circle and ntxent value and value_and_grad at N = 2048, D = 128 as a multiple
  of one N x N x D matrix product (x @ x.T, BLAS).

Prints one line per case and, last, the slowest case of each part.  No thresholds are
asserted: the machines are shared; compare the ratios of one run.
"""

import argparse
import os
import sys

import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastloss  # noqa: E402
from fastloss import _bench  # noqa: E402
from fastloss.kernels._math import exp, log1p  # noqa: E402

POINTWISE_SHAPE = (10_000, 1000)
ROWS_SHAPE = (8192, 1000)
PEER_SHAPES = ((256, 10), (1024, 1000), (8192, 1000), (2048, 32768))
PAIRS = (2048, 128)


@njit(parallel=True, cache=True)
def _pass2to1(a, b, out):
    a, b, out = a.ravel(), b.ravel(), out.ravel()
    for i in prange(out.size):
        out[i] = a[i] - b[i]


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _exp_pass(a, b, out):
    a, b, out = a.ravel(), b.ravel(), out.ravel()
    for i in prange(out.size):
        out[i] = exp(a[i]) - b[i]


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _log1p_pass(a, b, out):
    a, b, out = a.ravel(), b.ravel(), out.ravel()
    for i in prange(out.size):
        out[i] = log1p(a[i]) - b[i]


@njit(parallel=True, cache=True)
def _pass1to1(a, out):
    a, out = a.ravel(), out.ravel()
    for i in prange(out.size):
        out[i] = a[i] * 2


ONLY = None  # --loss: the losses to time (default all)


def family_of(name):
    return type(fastloss.LOSSES[name].family).__name__


def losses_of(family):
    return [n for n in fastloss.LOSSES if family_of(n) == family and (not ONLY or n in ONLY)]


def pointwise(repeat):
    t, p, out = _bench.sample(int(np.prod(POINTWISE_SHAPE)), row=POINTWISE_SHAPE[1])
    scratch = np.empty_like(p)
    fns = {"pass": lambda: _pass2to1(t, p, scratch),
           # the arithmetic floor: the same pass with one exp or log1p per element
           "(pass + one exp)": lambda: _exp_pass(t, p, scratch),
           "(pass + one log1p)": lambda: _log1p_pass(t, p, scratch)}
    names = losses_of("Pointwise")
    for name in names:
        fns[name] = reduced_call(name, t, p, out)
    times = _bench.time_calls(fns, repeat)
    return {name: 100 * times["pass"] / times[name] for name in fns if name != "pass"}, \
        times["pass"]


def reduced_call(name, t, p, out):
    """value_and_grad(out=) reduced to one value, like the pass writing one array: the
    class's reduction, "mean" where that is "none" (sigmoid_focal_loss, whose per-element
    values would be a second array written)."""
    loss = fastloss.LOSSES[name]
    reduction = loss.spec.class_reduction
    args = _bench.arguments(name, t, p)
    return lambda: loss.value_and_grad(*args, out=out,
                                       reduction="mean" if reduction == "none" else reduction)


def rows(repeat):
    t, p, out = _bench.sample(int(np.prod(ROWS_SHAPE)), row=ROWS_SHAPE[1])
    scratch = np.empty_like(p)
    fns = {"pass": lambda: _pass1to1(p, scratch)}
    names = losses_of("Rows")
    for name in names:
        fns[name] = _bench.calls(name, "value_and_grad", t, p, out)["fastloss"]
    times = _bench.time_calls(fns, repeat)
    # the pass moves the logits twice; a loss of dense targets also reads them (a third)
    pct = {}
    for name in names:
        args = _bench.arguments(name, t, p)
        extra = sum(a.nbytes for a in args[:-1]) / (2 * p.nbytes)
        pct[name] = 100 * times["pass"] * (1 + extra) / times[name]
    return pct, times["pass"]


def peers(repeat):
    results = {}
    torch_fns, jax_fns = _bench.torch_functions(), _bench.jax_functions()
    for shape in PEER_SHAPES:
        t, p, out = _bench.sample(int(np.prod(shape)), row=shape[1])
        for mode in _bench.MODES:
            fns = _bench.calls("cross_entropy", mode, t, p, out, torch_fns, jax_fns)
            times = _bench.time_calls(fns, repeat)
            for impl, s in times.items():
                if impl != "fastloss":
                    results[(shape, mode, impl)] = s / times["fastloss"]
            results[(shape, mode, "fastloss ms")] = 1e3 * times["fastloss"]
    return results


def pairs(repeat):
    n, d = PAIRS
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, 64, n)
    fns = {"gemm": lambda: x @ x.T}
    for name in ("circle", "ntxent"):
        loss = fastloss.LOSSES[name]
        out = np.empty_like(x)
        fns[f"{name} value"] = lambda loss=loss: loss(labels, x)
        fns[f"{name} value_and_grad"] = lambda loss=loss, out=out: loss.value_and_grad(
            labels, x, out=out)
    times = _bench.time_calls(fns, repeat)
    return {k: s / times["gemm"] for k, s in times.items() if k != "gemm"}, times["gemm"]


def print_percentages(title, pct):
    """The title, then each case's % of the pass, slowest first."""
    print(title)
    for name, v in sorted(pct.items(), key=lambda kv: kv[1]):
        print(f"  {name:36s} {v:6.1f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", nargs="+", default=["pointwise", "rows", "peers", "pairs"],
                        choices=["pointwise", "rows", "peers", "pairs"])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--loss", nargs="+", help="only these losses (pointwise and rows)")
    args = parser.parse_args(argv)
    global ONLY
    ONLY = args.loss
    summary = []
    if "pointwise" in args.part:
        pct, s = pointwise(args.repeat)
        print_percentages(f"pointwise, {POINTWISE_SHAPE} float32 value_and_grad, % of a 2-in "
                          f"1-out prange pass ({1e3 * s:.2f} ms):", pct)
        losses = {k: v for k, v in pct.items() if not k.startswith("(")}
        worst = min(losses, key=losses.get)
        summary.append(f"slowest pointwise: {worst} {pct[worst]:.1f}% of the pass "
                       f"(the pass with one exp per element: {pct['(pass + one exp)']:.1f}%)")
    if "rows" in args.part:
        pct, s = rows(args.repeat)
        print_percentages(f"rows, {ROWS_SHAPE} float32 value_and_grad, % of a read+write "
                          f"prange pass over the logits ({1e3 * s:.2f} ms):", pct)
        worst = min(pct, key=pct.get)
        summary.append(f"slowest row loss: {worst} {pct[worst]:.1f}% of the pass; " + ", ".join(
            f"{n} {pct[n]:.1f}%" for n in ("cross_entropy", "sparse_categorical_crossentropy")
            if n in pct))
    if "peers" in args.part:
        res = peers(args.repeat)
        print("cross_entropy against peers (peer time / fastloss time):")
        for (shape, mode, impl), v in res.items():
            unit = "" if impl.endswith("ms") else "x"
            print(f"  {str(shape):14s} {mode:15s} {impl:12s} {v:8.2f}{unit}")
        for shape in PEER_SHAPES:
            for mode in _bench.MODES:
                ratios = {impl: v for (s, m, impl), v in res.items()
                          if s == shape and m == mode and impl in ("torch", "jax", "numpy")}
                if ratios:
                    best = min(ratios, key=ratios.get)
                    summary.append(f"cross_entropy {shape} {mode}: {ratios[best]:.2f}x the "
                                   f"fastest peer ({best})")
    if "pairs" in args.part:
        res, s = pairs(args.repeat)
        print(f"circle/ntxent at N, D = {PAIRS}, times one x @ x.T ({1e3 * s:.2f} ms):")
        for k, v in res.items():
            print(f"  {k:28s} {v:6.2f}x")
        summary.append("pairs: " + ", ".join(f"{k} {v:.2f}x" for k, v in res.items()))
    print("\n".join(["", "summary:"] + [f"  {line}" for line in summary]))


if __name__ == "__main__":
    main()

"""grad_hess against the NumPy objective a gradient-boosting user would write, in one run.

    python benchmarks/grad_hess.py [--n 10000000] [--repeat 9] [--classes 10]

Per-sample (reduction="none") gradient and second derivative of squared error, logistic
loss and the sigmoid focal loss (gamma = 2) over float64 margins, as XGBoost and LightGBM
hand them to a custom objective, and the softmax cross-entropy over (n / classes, classes)
margins (multi-class); each against NumPy and against a multi-threaded pass
over the same bytes (two arrays read, two written), with ``out=`` buffers and without.  Prints ratios of the best of
``--repeat`` runs, so the figures of one run compare with each other only.
"""

import argparse
import time

import numpy as np
from numba import njit, prange

import fastloss as fl
from fastloss._bench import (focal_objective, logistic_objective, softmax_objective,
                             squared_error_objective)


@njit(parallel=True, cache=True)
def _pass(t, p, g, h):
    for i in prange(t.size):
        g[i] = t[i] + p[i]
        h[i] = t[i] - p[i]


CASES = {
    "squared error (mse_loss)": (fl.mse_loss, {}, squared_error_objective),
    "logistic (binary_cross_entropy_with_logits)": (
        fl.binary_cross_entropy_with_logits, {}, logistic_objective),
    "focal (sigmoid_focal_loss, gamma 2)": (fl.sigmoid_focal_loss, {"gamma": 2.0},
                                            focal_objective),
}


def best(f, repeat):
    f()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--classes", type=int, default=10,
                        help="classes of the softmax case ((n / classes, classes) margins)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    t = (rng.random(args.n) < 0.3).astype(np.float64)
    p = rng.standard_normal(args.n)
    g, h = np.empty_like(p), np.empty_like(p)
    copy = best(lambda: _pass(t, p, g, h), args.repeat)
    print(f"grad_hess, {args.n:.0e} float64 margins, reduction='none' "
          f"(pass: {1e3 * copy:.2f} ms)")
    print(f"  {'loss':45s} {'out=':>9s} {'new':>9s} {'NumPy':>9s} {'vs NumPy':>12s} "
          f"{'% of pass':>10s}")
    for label, (loss, options, reference) in CASES.items():
        reused = best(lambda: loss.grad_hess(t, p, reduction="none", out=(g, h), **options),
                      args.repeat)
        fresh = best(lambda: loss.grad_hess(t, p, reduction="none", **options), args.repeat)
        theirs = best(lambda: reference(t, p), args.repeat)
        print(f"  {label:45s} {1e3 * reused:7.2f}ms {1e3 * fresh:7.2f}ms {1e3 * theirs:7.2f}ms "
              f"{theirs / fresh:5.1f}-{theirs / reused:4.1f}x {100 * copy / reused:9.0f}%")
    print("  (out=: into buffers a boosting loop reuses; new: two fresh arrays, whose first "
          "touch costs page faults;\n   vs NumPy: the new-array ratio first; % of pass: the "
          "out= time)")
    softmax(rng, args.n // args.classes, args.classes, args.repeat)


def softmax(rng, rows, classes, repeat):
    """Multi-class: cross_entropy's grad_hess over (rows, classes) float64 margins against
    the NumPy softmax objective; the pass reads the margins and writes two arrays."""
    x = rng.standard_normal((rows, classes))
    labels = rng.integers(0, classes, rows)
    g, h = np.empty_like(x), np.empty_like(x)
    flat = x.reshape(-1)
    copy = best(lambda: _pass(flat, flat, g.reshape(-1), h.reshape(-1)), repeat)
    reused = best(lambda: fl.cross_entropy.grad_hess(labels, x, reduction="none", out=(g, h)),
                  repeat)
    fresh = best(lambda: fl.cross_entropy.grad_hess(labels, x, reduction="none"), repeat)
    theirs = best(lambda: softmax_objective(labels, x), repeat)
    print(f"\nsoftmax (cross_entropy), ({rows}, {classes}) float64 margins, reduction='none' "
          f"(pass: {1e3 * copy:.2f} ms)")
    print(f"  {'out=':>9s} {'new':>9s} {'NumPy':>9s} {'vs NumPy':>12s} {'% of pass':>10s}")
    print(f"  {1e3 * reused:7.2f}ms {1e3 * fresh:7.2f}ms {1e3 * theirs:7.2f}ms "
          f"{theirs / fresh:5.1f}-{theirs / reused:4.1f}x {100 * copy / reused:9.0f}%")

if __name__ == "__main__":
    main()

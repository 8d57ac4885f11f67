"""GPU figures: every loss's value_and_grad on CuPy arrays, as GB/s against a device copy
measured in the same run, and against CuPy and PyTorch CUDA expressions of the same loss.

    python benchmarks/gpu_bench.py [--n 100000000] [--json PATH]

Times come from CUDA events (median of repeats after a warm-up call)."""

import argparse
import json
import platform

import numpy as np


def timed(fn, cupy, repeat=20):
    fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def cupy_references(cupy):
    """Value + gradient of a few losses as plain CuPy expressions (what a user writes)."""
    def mse(t, p):
        d = p - t
        return cupy.mean(d * d), (2.0 / d.size) * d

    def mae(t, p):
        d = p - t
        return cupy.mean(cupy.abs(d)), cupy.sign(d) / d.size

    def log_cosh(t, p):
        d = p - t
        return cupy.mean(cupy.logaddexp(d, -d) - np.log(2.0)), cupy.tanh(d) / d.size
    def cross_entropy(labels, x):
        m = x.max(-1, keepdims=True)
        e = cupy.exp(x - m)
        s = e.sum(-1, keepdims=True)
        rows = cupy.arange(len(labels))
        value = cupy.mean(cupy.log(s[:, 0]) + m[:, 0] - x[rows, labels])
        grad = e / s
        grad[rows, labels] -= 1
        return value, grad / len(labels)
    return {"mean_squared_error": mse, "mse_loss": mse, "mean_absolute_error": mae,
            "l1_loss": mae, "log_cosh": log_cosh, "cross_entropy": cross_entropy}


def torch_references():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None, {}

    def fwd_bwd(fn):
        def run(t, p):
            p = p.detach().requires_grad_(True)
            value = fn(p, t)
            value.backward()
            return value, p.grad
        return run
    return torch, {"mean_squared_error": fwd_bwd(F.mse_loss), "mse_loss": fwd_bwd(F.mse_loss),
                   "mean_absolute_error": fwd_bwd(F.l1_loss), "l1_loss": fwd_bwd(F.l1_loss),
                   "smooth_l1_loss": fwd_bwd(F.smooth_l1_loss),
                   "huber_loss": fwd_bwd(F.huber_loss),
                   "cross_entropy": fwd_bwd(F.cross_entropy)}


def main():
    import cupy

    from fastloss._bench import arguments, gradient_positions, moved_bytes, reduced
    from fastloss.losses import LOSSES

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--row", type=int, default=1000, help="row length (classes)")
    parser.add_argument("--loss", nargs="+", help="losses to time (default: all)")
    parser.add_argument("--json")
    args = parser.parse_args()
    n = args.n
    rng = cupy.random.default_rng(0)
    t = rng.uniform(0.05, 0.95, n, dtype=cupy.float32).reshape(-1, args.row)
    p = rng.uniform(0.05, 0.95, n, dtype=cupy.float32).reshape(-1, args.row)
    out = cupy.empty_like(p)
    copy_dst = cupy.empty(2 * n, cupy.float32)
    copy_src = cupy.empty(2 * n, cupy.float32)
    copy_s = timed(lambda: copy_dst.__setitem__(Ellipsis, copy_src), cupy)
    copy_gbs = 2 * copy_src.nbytes / copy_s / 1e9  # read + write
    refs = cupy_references(cupy)
    torch, trefs = torch_references()
    rows = []
    for name, loss in sorted(LOSSES.items()):
        if args.loss and name not in args.loss:
            continue
        a = arguments(name, t, p)  # class indices for the losses over labels, ...
        at = gradient_positions(name, len(a))
        outs = tuple(cupy.empty_like(a[k]) for k in at)
        out = outs if len(outs) > 1 else outs[0]
        value_s = timed(lambda: loss(*a), cupy)
        vg_s = timed(lambda: loss.value_and_grad(*a, out=out, **reduced(loss)), cupy)
        row = {"loss": name, "value_s": value_s, "value_and_grad_s": vg_s,
               "value_gbs": moved_bytes("value", a, at) / value_s / 1e9,
               "value_and_grad_gbs": moved_bytes("value_and_grad", a, at) / vg_s / 1e9}
        row["value_pct_copy"] = 100 * row["value_gbs"] / copy_gbs
        row["value_and_grad_pct_copy"] = 100 * row["value_and_grad_gbs"] / copy_gbs
        if name in refs:
            row["cupy_value_and_grad_s"] = timed(lambda: refs[name](*a), cupy)
            row["speedup_vs_cupy"] = row["cupy_value_and_grad_s"] / vg_s
        if torch is not None and name in trefs:
            tensors = [torch.as_tensor(x, device="cuda") for x in a]
            row["torch_value_and_grad_s"] = timed(lambda: trefs[name](*tensors), cupy)
            row["speedup_vs_torch"] = row["torch_value_and_grad_s"] / vg_s
        rows.append(row)
        print(f"{name:32s} value {row['value_gbs']:7.0f} GB/s ({row['value_pct_copy']:5.1f}% of copy)"
              f"  value_and_grad {row['value_and_grad_gbs']:7.0f} GB/s "
              f"({row['value_and_grad_pct_copy']:5.1f}%)"
              + (f"  x{row['speedup_vs_cupy']:.1f} vs CuPy" if "speedup_vs_cupy" in row else "")
              + (f"  x{row['speedup_vs_torch']:.1f} vs torch" if "speedup_vs_torch" in row else ""),
              flush=True)
    result = {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
              "n": n, "shape": list(p.shape), "dtype": "float32", "copy_gbs": copy_gbs, "host": platform.node(),
              "rows": rows}
    print(f"device {result['device']}: copy {copy_gbs:.0f} GB/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

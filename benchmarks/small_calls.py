"""Small calls, where the Python path costs more than the arithmetic: each fastloss call
beside the same computation in NumPy (and PyTorch's forward + backward when installed),
timed interleaved in one run; the ratios are what to read.

    python benchmarks/small_calls.py [--repeat 15] [--number 2000]

Cases: ``mean_squared_error.value_and_grad(..., out=buffer)`` on a (32, 10) float32
batch against NumPy's expression of the value and gradient, and
``sparse_categorical_crossentropy.value_and_grad(..., from_logits=True)`` (and
``cross_entropy``) on (256, 10) logits against NumPy and PyTorch's
``F.cross_entropy`` forward + backward (with PyTorch's default threads, and with one).
"""

import argparse
import statistics
import timeit

import numpy as np

import fastloss as fl


def numpy_mse_vg(t, p):
    d = p - t
    return np.mean(d * d), d * np.float32(2.0 / d.size)


def numpy_sparse_ce_vg(labels, x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    value = np.mean(np.log(s[:, 0]) - z[rows, labels])
    g = e / s
    g[rows, labels] -= 1
    return value, g / len(labels)


def cases():
    rng = np.random.default_rng(0)
    t = rng.random((32, 10), dtype=np.float32)
    p = rng.random((32, 10), dtype=np.float32)
    out = np.empty_like(p)
    labels = rng.integers(0, 10, 256)
    logits = rng.standard_normal((256, 10)).astype(np.float32)
    found = {
        "mean_squared_error (32, 10) value_and_grad": {
            "fastloss": lambda: fl.mean_squared_error.value_and_grad(
                t, p, out=out, reduction="sum_over_batch_size"),
            "numpy": lambda: numpy_mse_vg(t, p)},
        "sparse_categorical_crossentropy (256, 10) from_logits value_and_grad": {
            "fastloss": lambda: fl.sparse_categorical_crossentropy.value_and_grad(
                labels, logits, from_logits=True, reduction="sum_over_batch_size"),
            "numpy": lambda: numpy_sparse_ce_vg(labels, logits)},
        "cross_entropy (256, 10) value_and_grad": {
            "fastloss": lambda: fl.cross_entropy.value_and_grad(labels, logits),
            "numpy": lambda: numpy_sparse_ce_vg(labels, logits)},
    }
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return found
    tl, tx = torch.from_numpy(labels), torch.from_numpy(logits)

    def torch_ce():
        x = tx.detach().requires_grad_()
        value = F.cross_entropy(x, tl)
        value.backward()
        return value, x.grad
    threads = torch.get_num_threads()

    def torch_ce_one_thread():  # (small calls: PyTorch's thread pool costs more than it saves)
        torch.set_num_threads(1)
        try:
            return torch_ce()
        finally:
            torch.set_num_threads(threads)
    for name in list(found)[1:]:
        found[name]["torch"] = torch_ce
        found[name]["torch-1t"] = torch_ce_one_thread
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args(argv)
    for name, impls in cases().items():
        for fn in impls.values():
            fn()  # compile, warm
        times = {impl: [] for impl in impls}
        for _ in range(args.repeat):  # interleaved: the machine's noise hits every impl
            for impl, fn in impls.items():
                times[impl].append(timeit.timeit(fn, number=args.number) / args.number * 1e6)
        median = {impl: statistics.median(ts) for impl, ts in times.items()}
        print(name)
        for impl, us in median.items():
            ratio = "" if impl == "fastloss" else f"   fastloss / {impl} = {median['fastloss'] / us:.2f}"
            print(f"  {impl:9s} {us:8.2f} us (median of {args.repeat}){ratio}")


if __name__ == "__main__":
    main()

"""``python -m fastloss bench --framework torch|jax``: a training step's loss forward +
backward through fastloss's adapter (``fastloss.torch``, ``fastloss.jax``) against the
framework's own loss, on the bench's sample data, in one run."""

import functools
import sys

import numpy as np

from ._bench import (arguments, format_time, gradient_positions, jax_functions,
                     print_table, reduced, sample, time_calls, torch_functions, _jax_call,
                     _torch_call, _missing)

FRAMEWORKS = {"torch": ("PyTorch", ("torch",)), "jax": ("JAX", ("jax", "optax"))}


def torch_adapters(names):
    """{loss name: f(*arrays)}: fastloss.torch's function of each loss, taking fastloss's
    positional arrays (labels first) and the bench's reduction."""
    import fastloss.torch as flt

    def adapter(name):
        loss = flt.LOSSES[name]
        public = flt._public_inputs(loss)  # (its public name, fastloss's input name)
        fn = flt.LOSS_FUNCTIONS[name]

        def call(*arrays):
            given = dict(zip(loss.inputs, arrays))
            return fn(**{pub: given[inner] for pub, inner in public}, **reduced(loss))
        return call
    return {name: adapter(name) for name in names}


def jax_adapters(names):
    """{loss name: (value, value_and_grad)}: fastloss.jax's function of each loss under
    jit, as ``jax_functions`` builds JAX's own."""
    import fastloss.jax as flj

    return jax_functions({name: functools.partial(flj.LOSS_FUNCTIONS[name],
                                                  **reduced(flj.LOSSES[name]))
                          for name in names})


def _step_calls(framework, name, args, adapters, own):
    """(adapter step, own step): zero-argument callables running loss ``name``'s forward +
    backward, each returning (value, gradients)."""
    positions = gradient_positions(name, len(args))
    if framework == "torch":
        steps = [_torch_call(f, "value_and_grad", args, positions)
                 for f in (adapters[name], own[name])]
    else:
        steps = [_jax_call(f[1], args) for f in (adapters[name], own[name])]
    return steps


def _as_numpy(result):
    """A step's (value, gradients) flattened into a list of float64 NumPy arrays."""
    value, grads = result
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return [np.asarray(getattr(x, "detach", lambda: x)(), dtype=np.float64)
            for x in (value, *grads)]


def agree(a, b, dtype):
    """Whether two steps' values and gradients agree to the dtype's rounding."""
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-9
    xs, ys = _as_numpy(a), _as_numpy(b)
    return len(xs) == len(ys) and all(
        x.shape == y.shape and np.allclose(x, y, rtol=rtol, atol=rtol * max(1.0, np.abs(y).max(initial=0)))
        for x, y in zip(xs, ys))


def framework_rows(framework, names, n, dtype="float32", repeat=7, row=1000, progress=None):
    """A row per loss of ``names`` the framework has its own version of: the median time
    of a forward + backward through fastloss's adapter and through the framework's own
    loss, timed in turn in one run, and whether the two agree."""
    progress = progress or (lambda label: None)
    if framework == "jax" and np.dtype(dtype) == np.float64:
        import jax

        jax.config.update("jax_enable_x64", True)
    own = torch_functions() if framework == "torch" else jax_functions()
    names = [name for name in names if name in own]
    adapters = torch_adapters(names) if framework == "torch" else jax_adapters(names)
    t, p, _ = sample(n, dtype, row)
    rows = []
    for name in names:
        progress(name)
        args = arguments(name, t, p)
        adapter, theirs = _step_calls(framework, name, args, adapters, own)
        times = time_calls({"adapter": adapter, "own": theirs}, repeat)
        rows.append({"loss": name, "shape": list(args[-1].shape), "adapter_s": times["adapter"],
                     "own_s": times["own"], "speedup": times["own"] / times["adapter"],
                     "agree": agree(adapter(), theirs(), dtype)})
    return rows


def main(args, names, n, shape):
    framework = args.framework
    label, modules = FRAMEWORKS[framework]
    missing = _missing(modules)
    if missing:
        print(f"--framework {framework}: {' and '.join(missing)} not installed "
              f"(pip install {' '.join(missing)})", file=sys.stderr)
        return 2
    rows = framework_rows(framework, names, n, args.dtype, args.repeat, shape[1],
                          lambda name: print(f"{name} ...", file=sys.stderr))
    if not rows:
        print(f"--framework {framework}: none of the losses asked for has a {label} version",
              file=sys.stderr)
        return 2
    adapter = "fastloss.torch" if framework == "torch" else "fastloss.jax (jit)"
    own = "torch.nn.functional" if framework == "torch" else "JAX (jit; Optax, jax.numpy)"
    table = [[r["loss"], "x".join(map(str, r["shape"])), format_time(r["adapter_s"]),
              format_time(r["own_s"]), f"{r['speedup']:.2f}x", "yes" if r["agree"] else "NO"]
             for r in rows]
    slowest = min(rows, key=lambda r: r["speedup"])
    print_table(f"a training step's loss forward + backward, {label}: {adapter} against "
                f"{own} (median of repeats, {args.dtype})",
                ["loss", "shape", adapter, own, "speed-up", "agree"], table,
                f"speed-up = {own}'s time / {adapter}'s; slowest: {slowest['loss']} "
                f"{slowest['speedup']:.2f}x; agree: values and gradients to the dtype's rounding")
    if args.json:
        import json

        from ._bench import machine_info

        with open(args.json, "w") as f:
            json.dump({"machine": machine_info((framework,)), "framework": framework,
                       "n": n, "shape": list(shape), "dtype": args.dtype, "rows": rows}, f,
                      indent=2)
        print(f"wrote {args.json}")
    return 0 if all(r["agree"] for r in rows) else 1

"""``python -m fastloss bench``: every loss against a memory copy, NumPy and PyTorch.

Each loss's value and value_and_grad run on sample data; their time becomes an
effective bandwidth (the bytes that must move / time) set against a copy's bandwidth
measured in the same run, and against the same loss written in NumPy (and in
``torch.nn.functional`` when PyTorch is installed).  Only ratios within one run mean
anything: absolute times depend on the machine and on what else runs on it.

The NumPy references (``NUMPY``) and the call builders here are also what the
pytest-benchmark suite in ``benchmarks/`` runs.
"""

import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

SIZES = {"small": 10_000, "medium": 1_000_000, "large": 10_000_000}
MODES = ("value", "value_and_grad")
ROW = 1000  # sample data are (n // ROW, ROW): Keras reduces the last axis first

EPS = 1e-7  # Keras's clipping epsilon
LOG2 = math.log(2.0)  # a Python float, so float32 arithmetic stays float32


# -- NumPy references: the loss as a NumPy user would write it, default options ----------
# value(t, p) -> scalar; value_and_grad(t, p) -> (scalar, d value / d p).  The mean
# over the last axis then over the batch is the mean over all elements.

def mse(t, p):
    return np.mean((p - t) ** 2)


def mse_vg(t, p):
    d = p - t
    return np.mean(d * d), 2 * d / d.size


def mae(t, p):
    return np.mean(np.abs(p - t))


def mae_vg(t, p):
    d = p - t
    return np.mean(np.abs(d)), np.sign(d) / d.size


def mape(t, p):
    return 100 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)))


def mape_vg(t, p):
    scale = 100 / np.maximum(np.abs(t), EPS)
    d = (t - p) * scale
    return np.mean(np.abs(d)), -np.sign(d) * scale / d.size


def msle(t, p):
    return np.mean((np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(t, EPS))) ** 2)


def msle_vg(t, p):
    q = np.maximum(p, EPS)
    d = np.log1p(q) - np.log1p(np.maximum(t, EPS))
    return np.mean(d * d), np.where(p > EPS, 2 * d / (q + 1), 0) / d.size


def huber(t, p):
    """delta = 1 (Keras's huber; torch's huber_loss and smooth_l1_loss agree at 1)."""
    d = p - t
    ad = np.abs(d)
    return np.mean(np.where(ad <= 1, 0.5 * d * d, ad - 0.5))


def huber_vg(t, p):
    d = p - t
    ad = np.abs(d)
    return np.mean(np.where(ad <= 1, 0.5 * d * d, ad - 0.5)), np.clip(d, -1, 1) / d.size


def log_cosh(t, p):
    d = p - t
    return np.mean(np.logaddexp(d, -d)) - LOG2


def log_cosh_vg(t, p):
    d = p - t
    return np.mean(np.logaddexp(d, -d)) - LOG2, np.tanh(d) / d.size


def poisson(t, p):
    return np.mean(p - t * np.log(p + EPS))


def poisson_vg(t, p):
    q = p + EPS
    return np.mean(p - t * np.log(q)), (1 - t / q) / p.size


def _softmax_rows(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(labels, x):
    """Softmax cross-entropy of logits against integer labels, as NumPy users write it."""
    m = x.max(-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(-1)) + m[:, 0]
    return np.mean(lse - x[np.arange(len(labels)), labels])


def cross_entropy_vg(labels, x):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(-1, keepdims=True)
    rows = np.arange(len(labels))
    value = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, labels])
    grad = e / s
    grad[rows, labels] -= 1
    return value, grad / len(labels)


def sparse_cce(labels, p):
    """Keras's sparse_categorical_crossentropy on probabilities (its default)."""
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return np.mean(-np.log(q[np.arange(len(labels)), labels]))


def sparse_cce_vg(labels, p):
    s = p.sum(-1, keepdims=True)
    rows = np.arange(len(labels))
    qy = p[rows, labels] / s[:, 0]
    inside = (qy > EPS) & (qy < 1 - EPS)
    q = np.clip(qy, EPS, 1 - EPS)
    grad = np.broadcast_to((inside / s[:, 0])[:, None], p.shape).copy()
    grad[rows, labels] -= inside / (q * s[:, 0])
    return np.mean(-np.log(q)), grad / len(labels)


def categorical_cce(t, p):
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return np.mean(-(t * np.log(q)).sum(-1))


def categorical_cce_vg(t, p):
    s = p.sum(-1, keepdims=True)
    q = p / s
    inside = (q > EPS) & (q < 1 - EPS)
    qc = np.clip(q, EPS, 1 - EPS)
    value = np.mean(-(t * np.log(qc)).sum(-1))
    grad = ((t * inside).sum(-1, keepdims=True) - t * inside / qc) / s
    return value, grad / p.shape[0]


def _distance(x, y, eps=1e-6):
    """PyTorch's pairwise_distance (p = 2): (||x - y + eps||, x - y + eps)."""
    v = x - y + eps
    return np.sqrt((v * v).sum(-1)), v


def triplet_margin(a, p, n):
    return np.mean(np.maximum(1 + _distance(a, p)[0] - _distance(a, n)[0], 0))


def triplet_margin_vg(a, p, n):
    d_ap, u = _distance(a, p)
    d_an, v = _distance(a, n)
    h = 1 + d_ap - d_an
    active = ((h >= 0) / len(h))[:, None]
    gu, gv = u * (active / d_ap[:, None]), v * (active / d_an[:, None])
    return np.mean(np.maximum(h, 0)), (gu - gv, -gu, gv)


def quadruplet(a, p, n1, n2):
    d_ap = ((a - p) ** 2).sum(-1)
    return np.mean(np.maximum(d_ap - ((a - n1) ** 2).sum(-1) + 1.0, 0)
                   + np.maximum(d_ap - ((n1 - n2) ** 2).sum(-1) + 0.5, 0))


def quadruplet_vg(a, p, n1, n2):
    u, v, w = a - p, a - n1, n1 - n2
    d_ap = (u * u).sum(-1)
    h1, h2 = d_ap - (v * v).sum(-1) + 1.0, d_ap - (w * w).sum(-1) + 0.5
    c1 = (2.0 * (h1 > 0) / len(u))[:, None]
    c2 = (2.0 * (h2 > 0) / len(u))[:, None]
    value = np.mean(np.maximum(h1, 0) + np.maximum(h2, 0))
    return value, ((c1 + c2) * u - c1 * v, -(c1 + c2) * u, c1 * v - c2 * w, c2 * w)


def contrastive(y, x1, x2):
    d = _distance(x1, x2)[0]
    return np.mean(y * d * d + (1 - y) * np.maximum(1 - d, 0) ** 2)


def contrastive_vg(y, x1, x2):
    d, v = _distance(x1, x2)
    h = np.maximum(1 - d, 0)
    c = (2 * (y - (1 - y) * h / d) / len(d))[:, None]
    return np.mean(y * d * d + (1 - y) * h * h), (c * v, -c * v)


def cosine_embedding(y, x1, x2):
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1 * x1).sum(-1) + 1e-12) * ((x2 * x2).sum(-1) + 1e-12))
    return np.mean(np.where(y == 1, 1 - cos, np.maximum(cos, 0)))


def cosine_embedding_vg(y, x1, x2):
    m1, m2 = (x1 * x1).sum(-1) + 1e-12, (x2 * x2).sum(-1) + 1e-12
    den = np.sqrt(m1 * m2)
    cos = (x1 * x2).sum(-1) / den
    dcos = (np.where(y == 1, -1.0, (cos >= 0) * 1.0) / len(y))[:, None]
    value = np.mean(np.where(y == 1, 1 - cos, np.maximum(cos, 0)))
    c, cos = dcos / den[:, None], cos[:, None]
    return value, (c * x2 - dcos * cos * x1 / m1[:, None], c * x1 - dcos * cos * x2 / m2[:, None])


def margin_ranking(y, x1, x2):
    return np.mean(np.maximum(-y * (x1 - x2), 0))


def margin_ranking_vg(y, x1, x2):
    h = -y * (x1 - x2)
    g = -y * (h >= 0) / h.size
    return np.mean(np.maximum(h, 0)), (g, -g)


def hinge_embedding(y, x):
    return np.mean(np.where(y == 1, x, np.maximum(1 - x, 0)))


def hinge_embedding_vg(y, x):
    value = np.mean(np.where(y == 1, x, np.maximum(1 - x, 0)))
    return value, np.where(y == 1, 1.0, -1.0 * (x <= 1)) / x.size


def poisson_nll(y, x):
    return np.mean(np.exp(x) - y * x)


def poisson_nll_vg(y, x):
    e = np.exp(x)
    return np.mean(e - y * x), (e - y) / x.size


def gaussian_nll(y, mean, var):
    v = np.maximum(var, 1e-6)
    return np.mean(0.5 * (np.log(v) + (mean - y) ** 2 / v))


def gaussian_nll_vg(y, mean, var):
    v = np.maximum(var, 1e-6)
    d = mean - y
    dd = d * d / v
    return np.mean(0.5 * (np.log(v) + dd)), (d / v / d.size, 0.5 * (1 - dd) / v / d.size)


def gaussian_kl(mean, logvar):
    return -0.5 * np.mean(1 + logvar - mean * mean - np.exp(logvar))


def gaussian_kl_vg(mean, logvar):
    e = np.exp(logvar)
    return -0.5 * np.mean(1 + logvar - mean * mean - e), (mean / mean.size, 0.5 * (e - 1) / e.size)


def stacked_triplet(y, stacked):
    a, p, n = np.split(stacked, 3, axis=-1)
    return np.mean(np.maximum(((a - p) ** 2).sum(-1) - ((a - n) ** 2).sum(-1) + 0.2, 0))


def stacked_triplet_vg(y, stacked):
    a, p, n = np.split(stacked, 3, axis=-1)
    h = ((a - p) ** 2).sum(-1) - ((a - n) ** 2).sum(-1) + 0.2
    c = (2.0 * (h > 0) / len(h))[:, None]
    return np.mean(np.maximum(h, 0)), np.concatenate([c * (n - p), -c * (a - p), c * (a - n)], -1)


NUMPY = {
    "mean_squared_error": (mse, mse_vg),
    "mean_absolute_error": (mae, mae_vg),
    "mean_absolute_percentage_error": (mape, mape_vg),
    "mean_squared_logarithmic_error": (msle, msle_vg),
    "huber": (huber, huber_vg),
    "log_cosh": (log_cosh, log_cosh_vg),
    "poisson": (poisson, poisson_vg),
    "l1_loss": (mae, mae_vg),
    "mse_loss": (mse, mse_vg),
    "smooth_l1_loss": (huber, huber_vg),
    "huber_loss": (huber, huber_vg),
    "cross_entropy": (cross_entropy, cross_entropy_vg),
    "sparse_categorical_crossentropy": (sparse_cce, sparse_cce_vg),
    "categorical_crossentropy": (categorical_cce, categorical_cce_vg),
    "triplet_margin_loss": (triplet_margin, triplet_margin_vg),
    "quadruplet_loss": (quadruplet, quadruplet_vg),
    "contrastive_loss": (contrastive, contrastive_vg),
    "cosine_embedding_loss": (cosine_embedding, cosine_embedding_vg),
    "margin_ranking_loss": (margin_ranking, margin_ranking_vg),
    "hinge_embedding_loss": (hinge_embedding, hinge_embedding_vg),
    "poisson_nll_loss": (poisson_nll, poisson_nll_vg),
    "gaussian_nll_loss": (gaussian_nll, gaussian_nll_vg),
    "gaussian_kl_loss": (gaussian_kl, gaussian_kl_vg),
    "triplet_loss": (stacked_triplet, stacked_triplet_vg),
}


def _add_family_references():
    """The NumPy versions (and, for the losses over pairs of a batch, the sample data)
    that live beside their loss families."""
    from ._bench_references import OVERLAP_BENCH, PAIRWISE_BENCH
    for bench in (OVERLAP_BENCH, PAIRWISE_BENCH):
        NUMPY.update({name: (value, vg) for name, (_, value, vg) in bench.items()})
    for name, (make_inputs, _, _) in PAIRWISE_BENCH.items():
        # (labels, embeddings): N rows of 128 features (N capped: the cost is N**2)
        SAMPLE_ARRAYS[name] = lambda t, p, make=make_inputs: _on_module_of(
            p, make(t.size, t.dtype, np.random.default_rng(0)))


def _on_module_of(x, arrays):
    """NumPy arrays moved to x's array module (CuPy for the GPU benchmarks)."""
    xp = _module_of(x)
    return tuple(xp.asarray(a) for a in arrays)



def torch_functions():
    """{loss name: f(*arrays)} from torch.nn.functional, taking fastloss's positional
    arrays (labels first), or {} without PyTorch."""
    try:
        import torch.nn.functional as F
    except ImportError:
        return {}
    targets_last = {
        "mean_squared_error": F.mse_loss, "mse_loss": F.mse_loss,
        "mean_absolute_error": F.l1_loss, "l1_loss": F.l1_loss,
        "huber": F.huber_loss, "huber_loss": F.huber_loss,
        "smooth_l1_loss": F.smooth_l1_loss,
        "poisson": lambda p, t: F.poisson_nll_loss(p, t, log_input=False, eps=EPS),
        "cross_entropy": F.cross_entropy,
        "nll_loss": F.nll_loss,
        "multi_margin_loss": F.multi_margin_loss,
        "multilabel_soft_margin_loss": F.multilabel_soft_margin_loss,
        "hinge_embedding_loss": F.hinge_embedding_loss,
        "poisson_nll_loss": F.poisson_nll_loss,
    }
    fns = {name: (lambda t, p, f=f: f(p, t)) for name, f in targets_last.items()}
    fns.update({
        "triplet_margin_loss": F.triplet_margin_loss,
        "cosine_embedding_loss": lambda y, x1, x2: F.cosine_embedding_loss(x1, x2, y),
        "margin_ranking_loss": lambda y, x1, x2: F.margin_ranking_loss(x1, x2, y),
        "gaussian_nll_loss": lambda y, mean, var: F.gaussian_nll_loss(mean, y, var),
    })
    return fns


def jax_functions():
    """{loss name: (value, value_and_grad)} as jitted JAX/Optax functions of (t, p), or
    {} without JAX and Optax."""
    try:
        import jax
        import optax
    except ImportError:
        return {}

    def ce(p, labels):
        return optax.softmax_cross_entropy_with_integer_labels(p, labels).mean()
    grad_of = {"cross_entropy": ce}
    return {name: (jax.jit(lambda t, p, f=f: f(p, t)),
                   jax.jit(lambda t, p, f=f: jax.value_and_grad(f)(p, t)))
            for name, f in grad_of.items()}


# -- sample data and calls ---------------------------------------------------------------

def shape_of(n, row=ROW):
    """The 2-D sample shape for about n elements: (n // row, row)."""
    return max(n // row, 1), min(n, row)


def sample(n, dtype="float32", row=ROW, seed=0):
    """(y_true, y_pred, out) of shape ``shape_of(n, row)``, values in [0.05, 0.95): valid for
    every loss here; ``out`` is a gradient buffer."""
    rng = np.random.default_rng(seed)
    shape = shape_of(n, row)
    t = rng.uniform(0.05, 0.95, shape).astype(dtype)
    p = rng.uniform(0.05, 0.95, shape).astype(dtype)
    return t, p, np.empty_like(p)


def targets_for(loss, t, p):
    """The y_true that ``loss`` takes on sample data: class indices spread over the
    classes (one per row of p) for the losses over integer labels, else ``t``."""
    if getattr(loss.family, "targets", "dense") in ("dense", "unused"):
        return t
    xp = _module_of(p)
    rows = math.prod(p.shape[:-1])
    return xp.asarray((np.arange(rows) * 7919 % p.shape[-1]).reshape(p.shape[:-1]))


def _module_of(x):
    return sys.modules[type(x).__module__.split(".")[0]]  # numpy or cupy


def _signs(x):
    return (2 * (x > 0.5) - 1).astype(x.dtype)


def _mix(x, y, a):
    """Another sample array from two: a x + (1 - a) y (a new array)."""
    return a * x + (1 - a) * y


# The arrays of the losses that take more than (y_true, y_pred), made from the sample
# (t, p): embeddings of p's shape, one label per row, a variance, ...
SAMPLE_ARRAYS = {
    "triplet_margin_loss": lambda t, p: (t, p, _mix(t, p, 0.3)),
    "quadruplet_loss": lambda t, p: (t, p, _mix(t, p, 0.3), _mix(t, p, 0.8)),
    "contrastive_loss": lambda t, p: ((t[..., 0] > 0.5).astype(t.dtype), t, p),
    "cosine_embedding_loss": lambda t, p: (_signs(t[..., 0]), t, p),
    "margin_ranking_loss": lambda t, p: (_signs(t), p, _mix(t, p, 0.5)),
    "hinge_embedding_loss": lambda t, p: (_signs(t), p),
    "gaussian_nll_loss": lambda t, p: (t, p, _mix(t, p, 0.5)),
    # [anchor | positive | negative]: the row cut to a multiple of 3
    "triplet_loss": lambda t, p: (t[..., 0], _module_of(p).ascontiguousarray(
        p[..., :p.shape[-1] // 3 * 3])),
}


def arguments(name, t, p):
    """The positional arrays loss ``name`` takes on sample data (t, p)."""
    import fastloss

    if name in SAMPLE_ARRAYS:
        return SAMPLE_ARRAYS[name](t, p)
    return targets_for(fastloss.LOSSES[name], t, p), p


def reduced(loss):
    """The reduction the bench times: the class's (Keras's reduce to a scalar, as the NumPy,
    PyTorch and JAX versions do; the functions' default returns per-sample losses)."""
    return {"reduction": loss.spec.class_reduction}


def gradient_positions(name, nargs):
    """Which of the positional arrays get a gradient (the predictions: the last ones)."""
    import fastloss

    loss = fastloss.LOSSES[name]
    count = len(loss.predictions)
    return tuple(range(nargs - count, nargs))


def moved_bytes(mode, args, positions=None):
    """The bytes a loss must move: read every array (and write the gradients, of the
    arrays at ``positions``; default the last)."""
    positions = (len(args) - 1,) if positions is None else positions
    written = sum(args[k].nbytes for k in positions) if mode == "value_and_grad" else 0
    return sum(a.nbytes for a in args) + written


def calls(name, mode, t, p, out=None, torch_fns=None, jax_fns=None):
    """Zero-argument callables computing loss ``name`` in ``mode`` on sample data (t, p)
    (``arguments(name, t, p)``), keyed by implementation: "fastloss" (gradients into
    preallocated buffers), "numpy", "torch" and "jax" when there."""
    import fastloss

    loss = fastloss.LOSSES[name]
    args = arguments(name, t, p)
    positions = gradient_positions(name, len(args))
    outs = tuple(np.empty_like(args[k]) for k in positions)
    if out is not None and len(outs) == 1 and out.shape == args[-1].shape:
        outs = (out,)
    out = outs if len(outs) > 1 else outs[0]
    found = {}
    if mode == "value":
        found["fastloss"] = lambda: loss(*args, **reduced(loss))
    else:
        found["fastloss"] = lambda: loss.value_and_grad(*args, out=out, **reduced(loss))
    if name in NUMPY:
        ref = NUMPY[name][mode == "value_and_grad"]
        found["numpy"] = lambda: ref(*args)
    torch_fns = torch_functions() if torch_fns is None else torch_fns
    if name in torch_fns:
        found["torch"] = _torch_call(torch_fns[name], mode, args, positions)
    jax_fns = jax_functions() if jax_fns is None else jax_fns
    if name in jax_fns:
        found["jax"] = _jax_call(jax_fns[name][mode == "value_and_grad"], args)
    return found


def _jax_call(f, args):
    import jax

    on_device = [jax.device_put(a) for a in args]

    def call():
        return jax.block_until_ready(f(*on_device))
    return call


def _torch_call(f, mode, args, positions):
    import torch

    if mode == "value":
        tensors = [torch.from_numpy(a) for a in args]

        def value():
            with torch.no_grad():
                return f(*tensors)
        return value
    tensors = [torch.from_numpy(a).requires_grad_(k in positions) for k, a in enumerate(args)]
    wanted = [tensors[k] for k in positions]

    def value_and_grad():  # forward + backward
        for x in wanted:
            x.grad = None
        v = f(*tensors)
        v.backward()
        return v, [x.grad for x in wanted]
    return value_and_grad


def copy_call(p):
    """The bandwidth reference: np.copyto of an array of p's bytes, and the bytes it moves."""
    src, dst = np.empty_like(p), np.empty_like(p)
    src[...] = p
    return (lambda: np.copyto(dst, src)), 2 * p.nbytes


def time_calls(fns, repeat=7, min_sample_s=2e-3):
    """Median seconds per call of each function in the dict ``fns``.  Each gets a warm-up
    call (which compiles or loads kernels); then they are sampled in turn, ``repeat``
    rounds, so that a change in the machine's load hits them alike and their ratios
    hold.  Fast calls are looped so that a sample lasts about ``min_sample_s``."""
    number = {}
    for key, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        number[key] = max(1, min(100_000, int(min_sample_s / max(once, 1e-9))))
    samples = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number[key]):
                fn()
            samples[key].append((time.perf_counter() - t0) / number[key])
    return {key: statistics.median(s) for key, s in samples.items()}


def machine_info():
    import numba

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": _cpu_model(), "cpu_count": os.cpu_count(),
            "numba_threads": numba.get_num_threads(), "numpy": np.__version__,
            "numba": numba.__version__}
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        pass
    try:
        import torch
        info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    except ImportError:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- the run -----------------------------------------------------------------------------

def _compile_calls(names, n, dtype, row):
    """Makes every fastloss call of ``names`` once on the bench's data (the kernels they
    need are then compiled, or loaded, into Numba's on-disk cache)."""
    key = (n, dtype, row)
    if key not in _COMPILE_SAMPLES:  # (made once per process: it is called per loss)
        _COMPILE_SAMPLES[key] = sample(n, dtype, row)
    t, p, out = _COMPILE_SAMPLES[key]
    for name in names:
        for mode in MODES:
            calls(name, mode, t, p, out)["fastloss"]()
    return len(names)


_COMPILE_SAMPLES = {}


def compile_ahead(names, n, dtype="float32", row=ROW, jobs=None):
    """Compiles the kernels the bench will run in ``jobs`` processes at once (default:
    one per core; each takes the next loss when done) into Numba's on-disk cache, where the
    timing process then finds them.  Numba compiles one function at a time per process,
    so on a cold cache this divides the bench's compile time by the cores."""
    if min(jobs or os.cpu_count() or 1, len(names)) > 1:
        in_processes(_compile_calls, names, jobs, n, dtype, row)


def in_processes(fn, names, jobs=None, *args):
    """``[fn([name], *args) for name in names]``, run in ``jobs`` processes at once
    (default: one per core), each taking the next name as soon as it is done with one, so
    that a share of slow names cannot keep one process busy while the others idle (one
    job: ``[fn(names, *args)]``, run here)."""
    jobs = min(jobs or os.cpu_count() or 1, len(names))
    if jobs <= 1:
        return [fn(names, *args)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, [[name] for name in names],
                             *([a] * len(names) for a in args)))


def call_every_mode(names, xp, dtype):
    """Every mode of each loss in ``names`` on tiny ``xp`` inputs of ``dtype``."""
    import fastloss

    t = xp.asarray(np.linspace(0.05, 0.95, 6).reshape(2, 3), dtype=dtype)
    p = xp.asarray(np.linspace(0.95, 0.05, 6).reshape(2, 3), dtype=dtype)
    for name in names:
        loss = fastloss.LOSSES[name]
        args = arguments(name, t, p)
        loss(*args, **reduced(loss))
        loss.grad(*args, **reduced(loss))
        loss.value_and_grad(*args, **reduced(loss))


def warm_cpu(names):
    """(kernels compiled, kernels loaded from the cache, kernels of this process not yet
    met in both dtypes) by calling every loss of ``names`` on the serial and the parallel
    CPU kernels, in float32 and float64."""
    import fastloss
    from fastloss import _config

    before = count_cpu_kernels()
    saved = _config.PARALLEL_THRESHOLD
    try:
        with fastloss.backend("cpu"):
            for threshold in (sys.maxsize, 0):  # serial kernels, then parallel ones
                _config.PARALLEL_THRESHOLD = threshold
                for dtype in ("float32", "float64"):
                    call_every_mode(names, np, dtype)
    finally:
        _config.PARALLEL_THRESHOLD = saved
    compiled, loaded, missed = count_cpu_kernels()
    return compiled - before[0], loaded - before[1], missed


def count_cpu_kernels():
    """(compiled, loaded from the cache, names of kernels not compiled for both dtypes)
    over the kernel signatures of this process."""
    from fastloss.kernels import generated_cpu

    kernels = {name: getattr(generated_cpu, name) for name in sorted(generated_cpu.KERNEL_ELEMENTS)}
    loaded = sum(len(k.stats.cache_hits) for k in kernels.values())
    compiled = sum(len(k.signatures) for k in kernels.values()) - loaded
    missed = [name for name, k in kernels.items() if len(k.signatures) < 2]
    return compiled, loaded, missed


def bench(names, n, dtype="float32", repeat=7, progress=None, row=ROW):
    """Times every loss in ``names`` in each mode, each implementation in turn with a
    copy of the same data, so the copy is measured throughout the run (its GB/s is the
    median over all rows); returns (copy summary, rows).  ``progress(label)`` is called
    before each row."""
    progress = progress or (lambda label: None)
    t, p, out = sample(n, dtype, row)
    torch_fns, jax_fns = torch_functions(), jax_functions()
    copy, copy_bytes = copy_call(p)
    rows = []
    for name in names:
        for mode in MODES:
            progress(f"{name} {mode}")
            fns = calls(name, mode, t, p, out, torch_fns, jax_fns)
            times = time_calls({**fns, "copy": copy}, repeat)
            args = arguments(name, t, p)
            result = {"loss": name, "mode": mode,
                      "bytes": moved_bytes(mode, args, gradient_positions(name, len(args)))}
            result.update((f"{impl}_s", seconds) for impl, seconds in times.items())
            result["gbps"] = result["bytes"] / result["fastloss_s"] / 1e9
            for impl in [impl for impl in fns if impl != "fastloss"]:
                result[f"speedup_{impl}"] = result[f"{impl}_s"] / result["fastloss_s"]
            rows.append(result)
    copy_s = statistics.median(row["copy_s"] for row in rows)
    copy_gbps = copy_bytes / copy_s / 1e9
    for row in rows:
        row["pct_copy"] = 100 * row["gbps"] / copy_gbps
    return {"bytes": copy_bytes, "time_s": copy_s, "gbps": copy_gbps}, rows


def sci(n):
    """10**7 -> '1e7' (for labels)."""
    mantissa, exponent = f"{n:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def print_table(title, columns, rows, caption=None, left=1):
    """A table with rich when installed, else aligned plain text.  ``columns`` are
    headers; the first ``left`` are left-aligned, the others right-aligned (numbers);
    ``rows`` hold strings."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        print(title)
        for cells in (columns, *rows):
            print("  ".join(c.ljust(w) if i < left else c.rjust(w)
                            for i, (c, w) in enumerate(zip(cells, widths))))
        if caption:
            print(caption)
        return
    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i < left else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # a file or a pipe: don't squeeze the table into 80 columns
        console.width = max(console.width, 160)
    console.print(table)
    if caption:
        console.print(caption)


def report(copy, rows, n, shape, dtype):
    peers = {"numpy": "NumPy", "torch": "torch", "jax": "JAX"}
    has = {impl: any(f"{impl}_s" in r for r in rows) for impl in peers}
    columns = ["loss", "mode", "time", "GB/s", "% of copy"]
    for impl, label in peers.items():
        if has[impl]:
            columns += [f"{label} time", f"vs {label}"]
    table = []
    for r in rows:
        cells = [r["loss"], r["mode"], format_time(r["fastloss_s"]), f"{r['gbps']:.1f}",
                 f"{r['pct_copy']:.0f}%"]
        for impl in peers:
            if has[impl]:
                cells += ([format_time(r[f"{impl}_s"]), f"{r[f'speedup_{impl}']:.1f}x"]
                          if f"{impl}_s" in r else ["-", "-"])
        table.append(cells)
    import numba
    caption = (f"copy (np.copyto, timed beside every row): {copy['gbps']:.1f} GB/s; "
               f"n = {n:,} {dtype} as {shape}; {numba.get_num_threads()} numba threads; "
               f"vs X = X's time / fastloss's time")
    print_table("fastloss bench: median of repeats, effective GB/s = bytes moved / time",
                columns, table, caption, left=2)


def plot(rows, copy, path, subtitle):
    """A PNG bar chart of each loss's % of the copy's bandwidth, value and value_and_grad
    side by side (needs matplotlib: pip install 'fastloss[plot]')."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastloss[plot]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["loss"] for r in rows))
    pct = {(r["loss"], r["mode"]): r["pct_copy"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
    width = 0.4
    for k, mode in enumerate(MODES):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        ax.bar(xs, [pct.get((name, mode), 0.0) for name in names], width, label=mode)
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel(f"% of copy bandwidth ({copy['gbps']:.1f} GB/s)")
    ax.set_title(f"fastloss: effective bandwidth per loss\n{subtitle}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args):
    import fastloss

    names = list(dict.fromkeys(args.loss or fastloss.LOSSES))
    if args.shape:
        shape = args.shape
        n, row = math.prod(shape), shape[1]
    else:
        n, row = SIZES[args.size], ROW
        shape = shape_of(n)
    if args.jobs != 1:
        compile_ahead(names, n, args.dtype, row, args.jobs)
    try:
        from rich.progress import Progress
    except ImportError:
        total, done = len(names) * len(MODES), []

        def progress(label):
            done.append(label)
            print(f"[{len(done)}/{total}] {label}", file=sys.stderr)
        copy, rows = bench(names, n, args.dtype, args.repeat, progress, row)
    else:
        with Progress(transient=True) as bar:
            task = bar.add_task("bench", total=len(names) * len(MODES))
            started = []

            def progress(label):
                if started:
                    bar.advance(task)
                started.append(label)
                bar.update(task, description=label)
            copy, rows = bench(names, n, args.dtype, args.repeat, progress, row)
    report(copy, rows, n, shape, args.dtype)
    if args.plot:
        plot(rows, copy, args.plot, f"n = {n:,} {args.dtype} as {tuple(shape)}")
        print(f"wrote {args.plot}")
    if args.json:
        doc = {"machine": machine_info(),
               "config": {"size": None if args.shape else args.size, "n": n, "shape": list(shape), "dtype": args.dtype,
                          "repeat": args.repeat},
               "copy": copy, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 0


_add_family_references()

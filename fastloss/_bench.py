"""``python -m fastloss bench``: every loss against a memory copy, NumPy and (``--peers``)
PyTorch and JAX.

Each loss's value and value_and_grad run on sample data; their time becomes an
effective bandwidth (the bytes that must move / time) set against a copy's bandwidth
measured in the same run, and against the same loss written in NumPy (and, with
``--peers``, in ``torch.nn.functional`` and JAX/Optax where installed).  Only ratios
within one run mean anything: absolute times depend on the machine and on what else runs
on it.  ``markdown(doc)`` turns the run's ``--json`` into the README's table.

The NumPy references (``NUMPY``) and the call builders here are also what the
pytest-benchmark suite in ``benchmarks/`` runs.
"""

import json
import math
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

SIZES = {"small": 10_000, "medium": 1_000_000, "large": 10_000_000}
MODES = ("value", "value_and_grad")
# grad_hess rows (per-sample gradient and second derivative, reduction "none", into
# buffers) for the losses with a NumPy boosting objective in GRAD_HESS below.
GRAD_HESS_MODE = "grad_hess"
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
    # (the default distance, "euclidean": PyTorch's pairwise_distance, as triplet_margin_loss)
    "triplet_margin_with_distance_loss": (triplet_margin, triplet_margin_vg),
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


# -- the NumPy objectives a gradient-boosting user writes (grad_hess rows) ------------------

def squared_error_objective(t, p):
    return 2.0 * (p - t), np.full_like(p, 2.0)


def logistic_objective(t, p):
    s = 1.0 / (1.0 + np.exp(-p))
    return s - t, s * (1.0 - s)


def focal_objective(t, p, gamma=2.0):
    """Optax's sigmoid_focal_loss (alpha=None), differentiated by hand twice."""
    s = 1.0 / (1.0 + np.exp(-p))
    c = 1.0 - s
    ce = np.logaddexp(0.0, -p) + (1.0 - t) * p  # -t log s - (1 - t) log(1 - s)
    q = t * c + (1.0 - t) * s                   # 1 - p_t
    sc = s * c
    sign = 1.0 - 2.0 * t
    dq, d2q = sign * sc, sign * sc * (c - s)
    dce, d2ce = s - t, sc
    f, f1, f2 = q ** gamma, gamma * q ** (gamma - 1), gamma * (gamma - 1) * q ** (gamma - 2)
    grad = dce * f + ce * f1 * dq
    hess = d2ce * f + 2 * dce * f1 * dq + ce * (f2 * dq * dq + f1 * d2q)
    return grad, hess


def softmax_objective(labels, logits):
    """Multi-class softmax cross-entropy per sample: softmax - one-hot, s (1 - s)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    grad = s.copy()
    grad[np.arange(labels.size), labels] -= 1.0
    return grad, s * (1.0 - s)


GRAD_HESS = {"mse_loss": squared_error_objective,
             "binary_cross_entropy_with_logits": logistic_objective,
             "sigmoid_focal_loss": focal_objective,
             "cross_entropy": softmax_objective}


def modes_of(name):
    """The modes the bench times for loss ``name``."""
    return MODES + ((GRAD_HESS_MODE,) if name in GRAD_HESS else ())


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



# -- peers: the same loss in PyTorch and JAX (python -m fastloss bench --peers) ----------
# A peer is timed only where it computes the number fastloss computes with the bench's
# reduction (``reduced(loss)``: the class's, e.g. "mean" for PyTorch-named losses and
# "sum_over_batch_size" for Keras-named ones) on the bench's sample data, and the gradient
# of the same arrays (``gradient_positions``): checked at rtol 1e-4 in float32, value and
# gradients, by benchmarks/test_bench_losses.py::test_peer_matches (where PyTorch, JAX
# and Optax are installed).  Losses that no framework defines (quadruplet_loss,
# contrastive_loss, gaussian_kl_loss, fbeta_loss, the Keras tutorials' triplet_loss) have
# no peer.

PEERS = {"torch": ("PyTorch", ("torch",)), "jax": ("JAX", ("jax", "optax"))}


def torch_functions():
    """{loss name: f(*arrays)} from torch.nn.functional, taking fastloss's positional
    arrays (labels first), or {} without PyTorch.

    Only the losses whose ``torch.nn.functional`` version returns the same number with the
    bench's reduction.  Not mapped: sigmoid_focal_loss (torchvision.ops, not
    torch.nn.functional), poly_loss_cross_entropy (Optax's), the Keras losses on
    probabilities that PyTorch has no function for (categorical, sparse categorical and
    focal crossentropies: F.cross_entropy takes logits; mean_absolute_percentage_error,
    mean_squared_logarithmic_error, log_cosh, hinge, squared_hinge, categorical_hinge,
    categorical_generalized_cross_entropy, dice, tversky, circle)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}
    targets_last = {  # f(input, target), PyTorch's default reduction "mean"
        "mse_loss": F.mse_loss,
        "l1_loss": F.l1_loss,
        "smooth_l1_loss": F.smooth_l1_loss,
        "huber_loss": F.huber_loss,
        "binary_cross_entropy": F.binary_cross_entropy,
        "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
        "soft_margin_loss": F.soft_margin_loss,
        # input: log-probabilities (the sample's values, as fastloss).  PyTorch's default
        # "mean" (the elementwise mean, fastloss's kl_div) as the sum over the elements:
        # the same number, without the warning that "mean" gives on every call
        "kl_div": lambda x, t: F.kl_div(x, t, reduction="sum") / x.numel(),
        "hinge_embedding_loss": F.hinge_embedding_loss,
        "poisson_nll_loss": F.poisson_nll_loss,
        "cross_entropy": F.cross_entropy,  # integer labels (targets_for)
        "nll_loss": F.nll_loss,  # input: log-probabilities (the sample's values, as fastloss)
        "multi_margin_loss": F.multi_margin_loss,
        "multilabel_soft_margin_loss": F.multilabel_soft_margin_loss,
        "multilabel_margin_loss": F.multilabel_margin_loss,  # int64 targets (_label_sets)
        # Keras-named: "sum_over_batch_size" of the per-row means (rows of equal length)
        # is the mean over every element, PyTorch's "mean"
        "mean_squared_error": F.mse_loss,
        "mean_absolute_error": F.l1_loss,
        "huber": F.huber_loss,  # delta 1 both; |e| = delta gives the same value either side
        "poisson": lambda p, t: F.poisson_nll_loss(p, t, log_input=False, eps=EPS),
        # Keras clips probabilities to [1e-7, 1 - 1e-7], PyTorch clamps the logs at -100:
        # the same number for probabilities inside that range (the sample's: [0.05, 0.95))
        "binary_crossentropy": F.binary_cross_entropy,
        # Keras sums t log(t / p) over the last axis (t and p clipped to [1e-7, 1]) and
        # averages the rows: PyTorch's "batchmean" of log-probabilities
        "kl_divergence": lambda p, t: F.kl_div(torch.log(p), t, reduction="batchmean"),
        # Keras: -cos per row (rows L2-normalised), averaged over the rows
        "cosine_similarity": lambda p, t: -F.cosine_similarity(p, t, dim=-1).mean(),
    }
    fns = {name: (lambda t, p, f=f: f(p, t)) for name, f in targets_last.items()}
    fns.update({
        "triplet_margin_loss": F.triplet_margin_loss,
        "triplet_margin_with_distance_loss": F.triplet_margin_with_distance_loss,
        "cosine_embedding_loss": lambda y, x1, x2: F.cosine_embedding_loss(x1, x2, y),
        "margin_ranking_loss": lambda y, x1, x2: F.margin_ranking_loss(x1, x2, y),
        "gaussian_nll_loss": lambda y, mean, var: F.gaussian_nll_loss(mean, y, var),
        "ctc_loss": lambda targets, log_probs, inputs, lengths: F.ctc_loss(
            log_probs, targets, inputs, lengths),
    })
    return fns


def jax_losses():
    """{loss name: f(*arrays)} in JAX, taking fastloss's positional arrays (labels first)
    and returning the bench's reduction of the loss (per element or per example where that
    is "none"), or {} without JAX and Optax.  Optax's function where Optax has the loss;
    for the Keras-named losses the expression Keras 3's JAX backend evaluates (the loss as
    a Keras-on-JAX user runs it); for PyTorch-named losses without an Optax version a
    one-line jax.numpy expression of PyTorch's formula.  Not mapped: circle (Keras's is
    many lines of masked log-sum-exps), multilabel_margin_loss (its pairs of a target and
    a non-target class are no one-line expression of fixed shapes), and the losses no
    framework defines."""
    try:
        import jax
        import jax.numpy as jnp
        import optax.losses
    except ImportError:
        return {}
    eps = EPS

    def keras_hinge_labels(t):  # Keras: labels all 0 or 1 become -1 or 1
        return jnp.where(jnp.all((t == 0) | (t == 1)), 2 * t - 1, t)

    def keras_bce(t, p):  # per element, probabilities clipped (keras.ops.binary_crossentropy)
        q = jnp.clip(p, eps, 1 - eps)
        return -(t * jnp.log(q) + (1 - t) * jnp.log(1 - q))

    def keras_probabilities(p):  # categorical crossentropies on probabilities
        return jnp.clip(p / jnp.sum(p, -1, keepdims=True), eps, 1 - eps)

    def take(x, labels):  # x[row, labels[row]]
        return jnp.take_along_axis(x, labels[..., None], -1)[..., 0]

    def multi_margin(labels, x):  # PyTorch: sum_{j != y} max(0, 1 - x_y + x_j) / C
        h = jnp.maximum(1 - take(x, labels)[:, None] + x, 0)
        others = jnp.arange(x.shape[-1]) != labels[:, None]
        return jnp.mean(jnp.sum(jnp.where(others, h, 0), -1) / x.shape[-1])

    def cosine_embedding(y, x1, x2):  # PyTorch's: squared norms + 1e-12, then the sqrt
        cos = jnp.sum(x1 * x2, -1) / jnp.sqrt((jnp.sum(x1 * x1, -1) + 1e-12)
                                              * (jnp.sum(x2 * x2, -1) + 1e-12))
        return jnp.mean(jnp.where(y == 1, 1 - cos, jnp.maximum(cos, 0)))

    def categorical_hinge(t, p):
        pos, neg = jnp.sum(t * p, -1), jnp.max((1 - t) * p, -1)
        return jnp.mean(jnp.maximum(neg - pos + 1, 0))

    def categorical_focal(t, p, alpha=0.25, gamma=2.0):
        q = keras_probabilities(p)
        return jnp.mean(jnp.sum(alpha * (1 - q) ** gamma * -t * jnp.log(q), -1))

    def binary_focal(t, p, gamma=2.0):
        p_t = t * p + (1 - t) * (1 - p)
        return jnp.mean((1 - p_t) ** gamma * keras_bce(t, p))

    def kl_keras(t, p):
        t, p = jnp.clip(t, eps, 1), jnp.clip(p, eps, 1)
        return jnp.mean(jnp.sum(t * jnp.log(t / p), -1))

    def tversky(t, p, alpha=0.5, beta=0.5):
        tp = jnp.sum(t * p)
        fp, fn = jnp.sum((1 - t) * p), jnp.sum(t * (1 - p))
        return 1 - tp / (tp + alpha * fp + beta * fn + eps)

    def triplet_margin(a, p, n, margin=1.0, eps=1e-6):
        def distance(x, y):
            return jnp.sqrt(jnp.sum((x - y + eps) ** 2, -1))
        return jnp.mean(jnp.maximum(margin + distance(a, p) - distance(a, n), 0))

    def gaussian_nll(y, mean, var):
        v = jnp.maximum(var, 1e-6)
        return jnp.mean(0.5 * (jnp.log(v) + (mean - y) ** 2 / v))

    def torch_bce(t, p):  # logs clamped at -100
        return -jnp.mean(t * jnp.maximum(jnp.log(p), -100)
                         + (1 - t) * jnp.maximum(jnp.log(1 - p), -100))

    return {
        # Keras-named, "sum_over_batch_size" of the per-row losses
        "mean_squared_error": lambda t, p: jnp.mean(optax.losses.squared_error(p, t)),
        "mean_absolute_error": lambda t, p: jnp.mean(jnp.abs(p - t)),
        "mean_absolute_percentage_error":
            lambda t, p: 100 * jnp.mean(jnp.abs((t - p) / jnp.maximum(jnp.abs(t), eps))),
        "mean_squared_logarithmic_error":
            lambda t, p: jnp.mean((jnp.log(jnp.maximum(p, eps) + 1)
                                   - jnp.log(jnp.maximum(t, eps) + 1)) ** 2),
        "huber": lambda t, p: jnp.mean(optax.losses.huber_loss(p, t, delta=1.0)),
        "log_cosh": lambda t, p: jnp.mean(optax.losses.log_cosh(p, t)),
        "poisson": lambda t, p: jnp.mean(p - t * jnp.log(p + eps)),
        "binary_crossentropy": lambda t, p: jnp.mean(keras_bce(t, p)),
        "binary_focal_crossentropy": binary_focal,
        "hinge": lambda t, p: jnp.mean(optax.losses.hinge_loss(p, keras_hinge_labels(t))),
        "squared_hinge":
            lambda t, p: jnp.mean(jnp.maximum(1 - keras_hinge_labels(t) * p, 0) ** 2),
        "kl_divergence": kl_keras,
        "categorical_crossentropy":
            lambda t, p: jnp.mean(-jnp.sum(t * jnp.log(keras_probabilities(p)), -1)),
        "sparse_categorical_crossentropy":
            lambda y, p: jnp.mean(-take(jnp.log(keras_probabilities(p)), y)),
        "categorical_focal_crossentropy": categorical_focal,
        "cosine_similarity":
            lambda t, p: -jnp.mean(optax.losses.cosine_similarity(p, t, epsilon=1e-12)),
        "categorical_hinge": categorical_hinge,
        "categorical_generalized_cross_entropy":
            lambda y, p, q=0.5: jnp.mean((1 - take(p, y) ** q) / q),
        "dice": lambda t, p: 1 - 2 * jnp.sum(t * p) / (jnp.sum(t) + jnp.sum(p) + eps),
        "tversky": tversky,
        # PyTorch-named, "mean" (sigmoid_focal_loss and poly_loss_cross_entropy: "none")
        "mse_loss": lambda t, p: jnp.mean(optax.losses.squared_error(p, t)),
        "l1_loss": lambda t, p: jnp.mean(jnp.abs(p - t)),
        "smooth_l1_loss": lambda t, p: jnp.mean(optax.losses.huber_loss(p, t, delta=1.0)),
        "huber_loss": lambda t, p: jnp.mean(optax.losses.huber_loss(p, t, delta=1.0)),
        "binary_cross_entropy": torch_bce,
        "binary_cross_entropy_with_logits":
            lambda t, x: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(x, t)),
        "soft_margin_loss": lambda y, x: jnp.mean(jax.nn.softplus(-y * x)),
        # optax sums the class axis; PyTorch's "mean" averages every element
        "kl_div": lambda t, x: jnp.sum(optax.losses.kl_divergence(x, t)) / x.size,
        "sigmoid_focal_loss":
            lambda t, x: optax.losses.sigmoid_focal_loss(x, t, alpha=None, gamma=2.0),
        "hinge_embedding_loss":
            lambda y, x: jnp.mean(jnp.where(y == 1, x, jnp.maximum(1 - x, 0))),
        "poisson_nll_loss": lambda y, x: jnp.mean(jnp.exp(x) - y * x),
        "cross_entropy": lambda y, x: jnp.mean(
            optax.losses.softmax_cross_entropy_with_integer_labels(x, y)),
        "nll_loss": lambda y, x: -jnp.mean(take(x, y)),
        "multi_margin_loss": multi_margin,
        "multilabel_soft_margin_loss":
            lambda t, x: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(x, t)),
        "poly_loss_cross_entropy":
            lambda t, x: optax.losses.poly_loss_cross_entropy(x, t, epsilon=2.0),
        # PyTorch's distance ||a - p + eps||: Optax's triplet_margin_loss takes
        # (sum (a - p)**2 + eps)**0.5, whose gradient differs where a - p ~ eps
        "triplet_margin_loss": triplet_margin,
        "triplet_margin_with_distance_loss": triplet_margin,  # (the default distance)
        "cosine_embedding_loss": cosine_embedding,
        "margin_ranking_loss": lambda y, x1, x2: jnp.mean(jnp.maximum(-y * (x1 - x2), 0)),
        "gaussian_nll_loss": gaussian_nll,
        # Optax-named
        "ntxent": lambda labels, e: optax.losses.ntxent(e, labels, temperature=0.07),
        # Keras's ctc is Optax's algorithm (its JAX backend cites it): labels padded with
        # the blank 0, every frame used; the mean over the batch
        "ctc": lambda labels, x: jnp.mean(optax.ctc_loss(
            x, jnp.zeros(x.shape[:2], x.dtype), labels, (labels == 0).astype(x.dtype))),
    }


def jax_functions(losses=None):
    """{loss name: (value, value_and_grad)} as jitted JAX functions of fastloss's
    positional arrays (of ``losses``, {name: f(*arrays)}; default ``jax_losses()``), or {}
    without JAX and Optax.  value_and_grad
    differentiates the arrays fastloss does (``gradient_positions``); where the bench's
    reduction is "none" it returns the unreduced values and the gradient of their sum
    (fastloss's vector-Jacobian product with ``grad_output`` of ones)."""
    losses = jax_losses() if losses is None else losses
    if not losses:
        return {}
    import jax

    import fastloss

    fns = {}
    for name, f in losses.items():
        loss = fastloss.LOSSES[name]
        positions = gradient_positions(name, len(loss.spec.inputs))
        argnums = positions if len(positions) > 1 else positions[0]
        if reduced(loss)["reduction"] == "none":
            def total(*args, f=f):
                values = f(*args)
                return values.sum(), values
            summed = jax.value_and_grad(total, argnums, has_aux=True)

            def value_and_grad(*args, summed=summed):
                (_, values), grads = summed(*args)
                return values, grads
        else:
            value_and_grad = jax.value_and_grad(f, argnums)
        fns[name] = (jax.jit(f), jax.jit(value_and_grad))
    return fns


def _missing(modules):
    """The modules of ``modules`` that are not installed (found without importing them)."""
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def peer_functions(peers, say=None):
    """{peer: its functions} for each installed peer of ``peers`` ("torch", "jax"):
    ``torch_functions()``, ``jax_functions()``.  A requested peer that is not installed is
    named through ``say`` (default: a line on stderr) and left out."""
    say = say or (lambda line: print(line, file=sys.stderr))
    makers = {"torch": torch_functions, "jax": jax_functions}
    found = {}
    for peer in dict.fromkeys(peers):
        label, modules = PEERS[peer]
        missing = _missing(modules)
        if missing:
            say(f"--peers: {label} is not timed: {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed "
                f"(pip install {' '.join(missing)})")
            continue
        found[peer] = makers[peer]()
    return found


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
    "triplet_margin_with_distance_loss": lambda t, p: (t, p, _mix(t, p, 0.3)),
    "multilabel_margin_loss": lambda t, p: (_label_sets(p), p),
    "quadruplet_loss": lambda t, p: (t, p, _mix(t, p, 0.3), _mix(t, p, 0.8)),
    "contrastive_loss": lambda t, p: ((t[..., 0] > 0.5).astype(t.dtype), t, p),
    "cosine_embedding_loss": lambda t, p: (_signs(t[..., 0]), t, p),
    "margin_ranking_loss": lambda t, p: (_signs(t), p, _mix(t, p, 0.5)),
    "hinge_embedding_loss": lambda t, p: (_signs(t), p),
    "gaussian_nll_loss": lambda t, p: (t, p, _mix(t, p, 0.5)),
    # sequences: each row a sequence of frames of 3 (or 2) classes; targets of up to 3
    # labels (never the blank 0)
    "ctc_loss": lambda t, p: _ctc_arrays(p, keras=False),
    "ctc": lambda t, p: _ctc_arrays(p, keras=True),
    # [anchor | positive | negative]: the row cut to a multiple of 3
    "triplet_loss": lambda t, p: (t[..., 0], _module_of(p).ascontiguousarray(
        p[..., :p.shape[-1] // 3 * 3])),
}


# (T, N, C, S) of the CTC rows of the bench, by size: speech-like (500 frames of 64
# classes, 32 sequences, targets of 100 labels) and OCR/subword-like (1000 frames of
# 1000 classes, 16 sequences, 200 labels)
CTC_SHAPES = ((8_000_000, (1000, 16, 1000, 200)), (500_000, (500, 32, 64, 100)))


def _ctc_arrays(p, keras):
    """CTC's arrays from sample data p (R, C): each row a sequence of T frames of K classes
    (K = 3 or 2, whichever divides C); PyTorch's (targets, log_probs (T, R, K),
    input_lengths, target_lengths) or Keras's (labels (R, S), logits (R, T, K)).  Sample
    data of 5e5 elements and more give CTC_SHAPES' arrays instead (random, seeded)."""
    xp = _module_of(p)
    p = p.reshape(-1, p.shape[-1])  # (the rows of any sample shape)
    N, C = p.shape
    K = 3 if C % 3 == 0 else 2 if C % 2 == 0 else C
    T = C // K
    S = min(T // 2, 3) if K > 1 else 0
    targets = 1 + np.arange(N * S).reshape(N, S) % max(K - 1, 1)
    big = next((shape for size, shape in CTC_SHAPES if p.size >= size), None)
    if big is not None:
        T, N, K, S = big
        rng = np.random.default_rng(0)
        p = xp.asarray(rng.uniform(0.05, 0.95, (N, T * K)).astype(p.dtype))
        targets = rng.integers(1, K, (N, S))
    targets = xp.asarray(targets, dtype=np.int64)
    frames = p.reshape(N, T, K)
    if keras:
        return targets, xp.ascontiguousarray(frames)
    log_probs = xp.log(frames / frames.sum(axis=-1, keepdims=True)).astype(p.dtype)
    return (targets, xp.ascontiguousarray(log_probs.transpose(1, 0, 2)),
            xp.full(N, T, dtype=np.int64), xp.full(N, S, dtype=np.int64))


def _label_sets(p):
    """multilabel_margin_loss's targets for sample data p (R, C): row r lists 1 + r % 3
    classes spread over the classes (at most C), then -1 (int64 of p's shape)."""
    xp = _module_of(p)
    R, C = p.shape
    count = np.minimum(np.arange(R) % 3 + 1, C)[:, None]
    spread = (np.arange(R)[:, None] * 7919 + np.arange(C) * 31) % C
    return xp.asarray(np.where(np.arange(C) < count, spread, -1))


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
    """Which of the positional arrays get a gradient (the predictions)."""
    import fastloss

    loss = fastloss.LOSSES[name]
    return tuple(loss.inputs.index(p) for p in loss.predictions)


def moved_bytes(mode, args, positions=None):
    """The bytes a loss must move: read every array (and write the gradients, of the
    arrays at ``positions``; default the last)."""
    positions = (len(args) - 1,) if positions is None else positions
    written = sum(args[k].nbytes for k in positions) if mode == "value_and_grad" else 0
    if mode == GRAD_HESS_MODE:  # (gradient and second derivative)
        written = 2 * sum(args[k].nbytes for k in positions)
    return sum(a.nbytes for a in args) + written


def calls(name, mode, t, p, out=None, torch_fns=None, jax_fns=None):
    """Zero-argument callables computing loss ``name`` in ``mode`` on sample data (t, p)
    (``arguments(name, t, p)``), keyed by implementation: "fastloss" (gradients into
    preallocated buffers), "numpy" when there, and "torch" and "jax" when the loss is in
    ``torch_fns`` (``torch_functions()``) or ``jax_fns`` (``jax_functions()``); without
    them (the default) no peer."""
    import fastloss

    loss = fastloss.LOSSES[name]
    args = arguments(name, t, p)
    positions = gradient_positions(name, len(args))
    outs = tuple(np.empty_like(args[k]) for k in positions)
    if out is not None and len(outs) == 1 and out.shape == args[-1].shape:
        outs = (out,)
    out = outs if len(outs) > 1 else outs[0]
    found = {}
    if mode == GRAD_HESS_MODE:
        hess = np.empty_like(args[-1])
        found["fastloss"] = lambda: loss.grad_hess(*args, reduction="none", out=(outs[0], hess))
        if name in GRAD_HESS:
            found["numpy"] = lambda: GRAD_HESS[name](*args)
        return found
    if mode == "value":
        found["fastloss"] = lambda: loss(*args, **reduced(loss))
    else:
        found["fastloss"] = lambda: loss.value_and_grad(*args, out=out, **reduced(loss))
    if name in NUMPY:
        ref = NUMPY[name][mode == "value_and_grad"]
        found["numpy"] = lambda: ref(*args)
    if name in (torch_fns or {}):
        found["torch"] = _torch_call(torch_fns[name], mode, args, positions)
    if name in (jax_fns or {}):
        found["jax"] = _jax_call(jax_fns[name][mode == "value_and_grad"], args)
    return found


def _jax_call(f, args):
    import jax

    if not jax.config.jax_enable_x64:  # 32-bit JAX: int64 labels would be cast with a warning
        args = [a.astype(np.int32) if a.dtype == np.int64 else a for a in args]
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
        v.backward(torch.ones_like(v))  # unreduced values: the gradient of their sum
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


def machine_info(peers=("torch", "jax")):
    """The machine and the versions that the figures depend on: processor, logical CPUs
    (``cpu_count``) and physical cores (``cores``, where /proc/cpuinfo tells), Numba's
    threads and threading layer, Python, NumPy, Numba, and of ``peers`` those installed:
    PyTorch (and its threads), JAX, jaxlib and Optax."""
    import numba

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": _cpu_model(), "cpu_count": os.cpu_count(), "cores": _cpu_cores(),
            "numba_threads": numba.get_num_threads(), "numpy": np.__version__,
            "numba": numba.__version__}
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        pass
    if "torch" in peers:
        try:
            import torch
        except ImportError:
            pass
        else:
            info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    if "jax" in peers:
        from importlib import metadata

        for package in ("jax", "jaxlib", "optax"):
            try:
                info[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
    return info


def _cpu_cores():
    """Physical cores (distinct (physical id, core id) pairs of /proc/cpuinfo), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or None


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
        for mode in modes_of(name):
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
    """Every mode of each loss in ``names`` (and grad_hess where it has one) on tiny
    ``xp`` inputs of ``dtype``."""
    import fastloss

    t = xp.asarray(np.linspace(0.05, 0.95, 6).reshape(2, 3), dtype=dtype)
    p = xp.asarray(np.linspace(0.95, 0.05, 6).reshape(2, 3), dtype=dtype)
    for name in names:
        loss = fastloss.LOSSES[name]
        args = arguments(name, t, p)
        # (from_logits picks another element: both are warmed)
        flips = ({}, {"from_logits": True}) if "from_logits" in loss.spec.defaults else ({},)
        for options in flips:
            kw = {**reduced(loss), **options}
            loss(*args, **kw)
            loss.grad(*args, **kw)
            loss.value_and_grad(*args, **kw)
            if loss.spec.family == "pointwise":
                loss.grad_hess(*args, **kw)


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
            for dtype in ("float32", "float64"):
                warm_dask_tiles(names, dtype)
    finally:
        _config.PARALLEL_THRESHOLD = saved
    compiled, loaded, missed = count_cpu_kernels()
    return compiled - before[0], loaded - before[1], missed


def warm_dask_tiles(names, dtype):
    """Compiles the tile kernels that only calls on Dask arrays use (circle's and ntxent's
    pairs of chunks), where Dask is installed."""
    import fastloss

    try:
        import dask.array as da
    except ImportError:
        return
    for name in names:
        loss = fastloss.LOSSES[name]
        if loss.family.name == "pairwise":
            x = da.from_array(np.linspace(-1.0, 1.0, 32, dtype=dtype).reshape(8, 4), chunks=4)
            labels = da.from_array(np.arange(8) % 2, chunks=4)
            for result in loss.value_and_grad(labels, x):
                result.compute(scheduler="sync")


def count_cpu_kernels():
    """(compiled, loaded from the cache, names of kernels not compiled for both dtypes)
    over the kernel signatures of this process."""
    from fastloss.kernels import generated_cpu

    kernels = {name: getattr(generated_cpu, name) for name in sorted(generated_cpu.KERNEL_ELEMENTS)}
    loaded = sum(len(k.stats.cache_hits) for k in kernels.values())
    compiled = sum(len(k.signatures) for k in kernels.values()) - loaded
    missed = [name for name, k in kernels.items() if len(k.signatures) < 2]
    return compiled, loaded, missed


def bench(names, n, dtype="float32", repeat=7, progress=None, row=ROW, peers=()):
    """Times every loss in ``names`` in each mode, each implementation in turn with a
    copy of the same data, so the copy is measured throughout the run (its GB/s is the
    median over all rows); returns (copy summary, rows).  ``progress(label)`` is called
    before each row.  fastloss, NumPy and the copy are always timed; the peers of
    ``peers`` ("torch", "jax") where installed (``peer_functions``; or its result)."""
    progress = progress or (lambda label: None)
    t, p, out = sample(n, dtype, row)
    found = peers if isinstance(peers, dict) else peer_functions(peers)
    if found.get("jax") and np.dtype(dtype) == np.float64:
        import jax

        jax.config.update("jax_enable_x64", True)  # else JAX computes float64 in float32
    torch_fns, jax_fns = found.get("torch", {}), found.get("jax", {})
    copy, copy_bytes = copy_call(p)
    rows = []
    for name in names:
        for mode in modes_of(name):
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
    peers = PEER_LABELS
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


PEER_LABELS = {"numpy": "NumPy", "torch": "PyTorch", "jax": "JAX"}


def command_of(doc):
    """The command that wrote the bench JSON ``doc``: as recorded, else rebuilt from its
    config (JSON written before the command was recorded)."""
    if doc.get("command"):
        return doc["command"]
    config = doc.get("config", {})
    words = ["python -m fastloss bench"]
    if config.get("size"):
        words.append(f"--size {config['size']}")
    elif config.get("shape"):
        words.append("--shape {}x{}".format(*config["shape"]))
    if config.get("dtype", "float32") != "float32":
        words.append(f"--dtype {config['dtype']}")
    if config.get("repeat", 7) != 7:
        words.append(f"--repeat {config['repeat']}")
    rows = doc.get("rows", [])
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    import fastloss

    if set(losses) != set(fastloss.LOSSES):
        words.append("--loss " + " ".join(losses))
    if config.get("peers") or any(f"{impl}_s" in r for r in rows for impl in PEERS):
        words.append("--peers")
    return " ".join(words)


def machine_caption(machine):
    """One line naming the machine and the versions of a bench JSON's ``machine``."""
    cores = machine.get("cores")
    cpus = machine.get("cpu_count", "?")
    hardware = f"{machine.get('processor', 'unknown processor')}, " + (
        f"{cores} cores, {cpus} logical CPUs" if cores else f"{cpus} logical CPUs")
    threads = f"{machine.get('numba_threads', '?')} Numba threads"
    if machine.get("numba_threading_layer"):
        threads += f" ({machine['numba_threading_layer']})"
    versions = [f"Python {machine.get('python', '?')}", f"NumPy {machine.get('numpy', '?')}",
                f"Numba {machine.get('numba', '?')}"]
    if machine.get("torch"):
        versions.append(f"PyTorch {machine['torch']}"
                        + (f" ({machine['torch_threads']} threads)"
                           if machine.get("torch_threads") else ""))
    if machine.get("jax"):
        versions.append(f"JAX {machine['jax']}"
                        + (f" (jaxlib {machine['jaxlib']})" if machine.get("jaxlib") else ""))
    if machine.get("optax"):
        versions.append(f"Optax {machine['optax']}")
    return f"{hardware}; {threads}; {machine.get('platform', '')}; {', '.join(versions)}"


def markdown(doc):
    """The Markdown table of a bench JSON (``python -m fastloss bench --json``) for the
    README: every loss of the run, one row each, with its value and value_and_grad times,
    % of the copy's bandwidth and the ratios to NumPy, PyTorch and JAX (the peers timed in
    the run), under a caption naming the machine, the data and the command."""
    rows = doc["rows"]
    by_loss = {}
    for r in rows:
        by_loss.setdefault(r["loss"], {})[r["mode"]] = r
    impls = [impl for impl in PEER_LABELS if any(f"{impl}_s" in r for r in rows)]
    config = doc.get("config", {})
    shape = tuple(config.get("shape", ()))
    n = config.get("n", math.prod(shape) if shape else 0)
    data = (f"{sci(n)} {config.get('dtype', 'float32')} as {shape}" if config.get("size")
            else f"{shape} {config.get('dtype', 'float32')}")

    def both(modes, cell):  # "value / value_and_grad"
        return " / ".join(cell(modes[mode]) if mode in modes else "-" for mode in MODES)

    lines = [
        f"Machine: {machine_caption(doc.get('machine', {}))}.",
        "",
        (f"`{command_of(doc)}`: {data}, median of {config.get('repeat', '?')} samples per "
         f"call; copy (`np.copyto`, timed beside every row) "
         f"{doc['copy']['gbps']:.1f} GB/s.  Each cell: value / value_and_grad; "
         f"vs X = X's time / fastloss's time (above 1: fastloss is faster); "
         f"% of copy = effective GB/s (every array read once, every gradient written once) "
         f"/ the copy's."),
        "",
    ]
    columns = ["loss", "value", "value_and_grad", "% of copy"]
    columns += [f"vs {PEER_LABELS[impl]}" for impl in impls]
    lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for loss, modes in by_loss.items():
        cells = [loss] + [format_time(modes[mode]["fastloss_s"]) if mode in modes else "-"
                          for mode in MODES]
        cells.append(both(modes, lambda r: f"{r['pct_copy']:.0f}%"))
        for impl in impls:
            if any(f"speedup_{impl}" in r for r in modes.values()):
                cells.append(both(modes, lambda r, impl=impl: f"{r[f'speedup_{impl}']:.1f}x"
                                  if f"speedup_{impl}" in r else "-"))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    if getattr(args, "dask", False):
        from fastloss import _bench_dask

        return _bench_dask.main(args, names if args.loss else [])
    if getattr(args, "framework", None):
        from fastloss import _bench_frameworks

        return _bench_frameworks.main(args, names, n, shape)
    if args.jobs != 1:
        compile_ahead(names, n, args.dtype, row, args.jobs)
    requested = _requested_peers(getattr(args, "peers", None))
    peers = peer_functions(requested)  # names those not installed, before any progress bar
    try:
        from rich.progress import Progress
    except ImportError:
        total, done = sum(len(modes_of(n)) for n in names), []

        def progress(label):
            done.append(label)
            print(f"[{len(done)}/{total}] {label}", file=sys.stderr)
        copy, rows = bench(names, n, args.dtype, args.repeat, progress, row, peers)
    else:
        with Progress(transient=True) as bar:
            task = bar.add_task("bench", total=sum(len(modes_of(n)) for n in names))
            started = []

            def progress(label):
                if started:
                    bar.advance(task)
                started.append(label)
                bar.update(task, description=label)
            copy, rows = bench(names, n, args.dtype, args.repeat, progress, row, peers)
    report(copy, rows, n, shape, args.dtype)
    if args.plot:
        plot(rows, copy, args.plot, f"n = {n:,} {args.dtype} as {tuple(shape)}")
        print(f"wrote {args.plot}")
    if args.json:
        argv = getattr(args, "argv", None)
        doc = {"machine": machine_info(requested),
               "config": {"size": None if args.shape else args.size, "n": n,
                          "shape": list(shape), "dtype": args.dtype, "repeat": args.repeat,
                          "peers": list(peers)},
               "command": None if argv is None else "python -m fastloss " + shlex.join(argv),
               "copy": copy, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def _requested_peers(option):
    """The peers ``--peers`` asks for: none without the option, every peer with it alone,
    else the ones named."""
    if option is None:
        return ()
    return tuple(dict.fromkeys(option or PEERS))


_add_family_references()

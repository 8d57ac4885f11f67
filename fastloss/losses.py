"""The loss table: each loss is its element function (kernels/elements.py) plus a convention.

Adding a pointwise loss: write its element function, regenerate the kernels
(``python -m fastloss.kernels._generate``), and add one line here and a reference in tests.
"""

import math

import numpy as np

from ._arrays import Placement, array_module, check_broadcasts, on_gpu, real_array
from ._loss import TORCH_REDUCTIONS, Loss, Option

_DELTA = Option("delta", 1.0)

# Keras 3 semantics: mean over the last axis, sample_weight, Keras reductions.
mean_squared_error = Loss("mean_squared_error", "squared_error", "keras",
                          summary="mean of (y_pred - y_true)**2 over the last axis")
mean_absolute_error = Loss("mean_absolute_error", "absolute_error", "keras",
                           summary="mean of |y_pred - y_true| over the last axis")
mean_absolute_percentage_error = Loss(
    "mean_absolute_percentage_error", "absolute_percentage_error", "keras",
    summary="100 * mean of |(y_true - y_pred) / max(|y_true|, 1e-7)|")
mean_squared_logarithmic_error = Loss(
    "mean_squared_logarithmic_error", "squared_log_error", "keras",
    summary="mean of (log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2")
huber = Loss("huber", "huber", "keras", _DELTA,
             summary="0.5 e**2 where |e| <= delta, else delta * |e| - 0.5 delta**2; e = y_pred - y_true")
log_cosh = Loss("log_cosh", "log_cosh", "keras", summary="mean of log(cosh(y_pred - y_true))")
poisson = Loss("poisson", "poisson", "keras", summary="mean of y_pred - y_true * log(y_pred + 1e-7)")

# torch.nn.functional semantics: elementwise, reduction "none" | "mean" | "sum".
l1_loss = Loss("l1_loss", "absolute_error", "torch", summary="|input - target|")
mse_loss = Loss("mse_loss", "squared_error", "torch", summary="(input - target)**2")
smooth_l1_loss = Loss("smooth_l1_loss", "smooth_l1", "torch", (Option("beta", 1.0),),
                      summary="0.5 e**2 / beta where |e| < beta, else |e| - 0.5 beta")
huber_loss = Loss("huber_loss", "huber", "torch", Option("delta", 1.0, "positive"),
                  summary="0.5 e**2 where |e| < delta, else delta * (|e| - 0.5 delta)")

ALIASES = {
    "mse": mean_squared_error, "MSE": mean_squared_error,
    "mae": mean_absolute_error, "MAE": mean_absolute_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "logcosh": log_cosh,
}

LOSSES = {loss.name: loss for loss in globals().values() if isinstance(loss, Loss)}


# -- Binary classification ---------------------------------------------------------------

def _hinge_labels(t, xp):
    """Keras's convert_binary_labels_to_hinge: when every label is 0 or 1 they become -1/1
    (a converted copy of the labels).  On the GPU the test stays on the device (no
    synchronisation); on the CPU it runs over blocks, with no mask of the labels' size."""
    if xp.__name__ == "numpy":
        flat = t.reshape(-1)  # (contiguous here: a view)
        block = 1 << 16
        is_binary = all(((b == 0) | (b == 1)).all()
                        for b in (flat[i:i + block] for i in range(0, flat.size, block)))
        return 2 * t - 1 if is_binary else t
    return xp.where(xp.all((t == 0) | (t == 1)), 2 * t - 1, t)


_FROM_LOGITS = Option("from_logits", False, "bool")
_LABEL_SMOOTHING = Option("label_smoothing", 0.0, "probability")
_AXIS = Option("axis", -1, "int")

# Keras 3 semantics.
binary_crossentropy = Loss(
    "binary_crossentropy", lambda v: "bce_logits" if v["from_logits"] else "bce_probs", "keras",
    (_FROM_LOGITS, _LABEL_SMOOTHING, _AXIS), kernel_values=lambda v: (v["label_smoothing"],),
    summary="mean over axis of -(y log p + (1 - y) log(1 - p)); p clipped to "
            "[1e-7, 1 - 1e-7], or sigmoid(y_pred) with from_logits; y = y_true smoothed "
            "towards 0.5")
binary_focal_crossentropy = Loss(
    "binary_focal_crossentropy",
    lambda v: "binary_focal_logits" if v["from_logits"] else "binary_focal_probs", "keras",
    (Option("apply_class_balancing", False, "bool"), Option("alpha", 0.25, "probability"),
     Option("gamma", 2.0), _FROM_LOGITS, _LABEL_SMOOTHING, _AXIS),
    kernel_values=lambda v: (v["apply_class_balancing"], v["alpha"], v["gamma"],
                             v["label_smoothing"]),
    summary="mean over axis of (1 - p_t)**gamma * binary crossentropy, times alpha_t when "
            "apply_class_balancing")
hinge = Loss("hinge", "hinge", "keras", prepare_labels=_hinge_labels,
             summary="mean of max(1 - y_true * y_pred, 0); 0/1 labels become -1/1")
squared_hinge = Loss("squared_hinge", "squared_hinge", "keras", prepare_labels=_hinge_labels,
                     summary="mean of max(1 - y_true * y_pred, 0)**2; 0/1 labels become -1/1")
kl_divergence = Loss("kl_divergence", "kl_divergence", "keras", row_reduction="sum",
                     summary="sum over the last axis of t * log(t / p), t and p clipped to "
                             "[1e-7, 1]")

# torch.nn.functional semantics.
binary_cross_entropy = Loss(
    "binary_cross_entropy", "torch_bce", "torch", pred_range=(0.0, 1.0), takes_weight=True,
    summary="-weight * (t * max(log p, -100) + (1 - t) * max(log(1 - p), -100)); y_pred in "
            "[0, 1]")
class _BCEWithLogits(Loss):
    """PyTorch's pos_weight (broadcast along the last axis) scales the positive term:
    (1 - y) sp(x) + pw y sp(-x) = l * bce(y', x) with l = 1 + (pw - 1) y and
    1 - y' = (1 - y) / l, so it runs as the plain loss with labels y' and weight * l."""

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, **kw):
        options = dict(options)
        pos_weight = options.pop("pos_weight", None)
        if pos_weight is not None:
            placement = Placement({"y_true": y_true, "y_pred": y_pred, "pos_weight": pos_weight,
                                   "weight": options.get("weight")})
            xp = placement.xp
            p_shape = placement.asarray(y_pred, "y_pred").shape
            pw = placement.asarray(pos_weight, "pos_weight").astype(np.float64)
            y = placement.asarray(y_true, "y_true").astype(np.float64)
            weight = options.get("weight")
            if weight is not None:
                weight = placement.asarray(weight, "weight")
            # (checked before they combine, so that the error names them)
            for name, x in (("pos_weight", pw), ("y_true", y), ("weight", weight)):
                if x is not None:
                    check_broadcasts(self.name, name, x.shape, "y_pred", p_shape)
            scale = 1 + (pw - 1) * y
            kept = scale != 0  # (a zero scale zeroes the element whatever y' is)
            y_true = xp.where(kept, 1 - (1 - y) / xp.where(kept, scale, 1.0), 1.0)
            options["weight"] = scale if weight is None else weight * scale
        return super()._compute(y_true, y_pred, sample_weight, reduction, options, **kw)

    def check_options(self, options):
        return super().check_options({k: v for k, v in options.items() if k != "pos_weight"})


binary_cross_entropy_with_logits = _BCEWithLogits(
    "binary_cross_entropy_with_logits", "bce_logits", "torch", takes_weight=True,
    summary="-weight * (pos_weight * t * log sigmoid(x) + (1 - t) * log sigmoid(-x))")
soft_margin_loss = Loss("soft_margin_loss", "soft_margin", "torch",
                        summary="log(1 + exp(-y * x))")


class _KLDiv(Loss):
    """PyTorch's kl_div takes reduction "batchmean" too: the sum over the first axis's
    length (what "mean" means for a KL divergence)."""

    def check_reduction(self, reduction):
        if isinstance(reduction, str) and reduction == "batchmean":
            return reduction
        return super().check_reduction(reduction)

    def _compute(self, y_true, y_pred, sample_weight, reduction, options, *, grad_output=None,
                 **kw):
        if not (isinstance(reduction, str) and reduction == "batchmean"):
            return super()._compute(y_true, y_pred, sample_weight, reduction, options,
                                    grad_output=grad_output, **kw)
        shape = (tuple(y_pred.__cuda_array_interface__["shape"]) if on_gpu(y_pred)
                 else real_array(np, y_pred, "y_pred").shape)
        batch = shape[0] if shape else 1
        inv = 1.0 / batch if batch else math.nan
        go = inv if grad_output is None else (
            real_array(array_module(grad_output), grad_output, "grad_output") * inv)
        value, grad = super()._compute(y_true, y_pred, sample_weight, "sum", options,
                                       grad_output=go, **kw)
        if value is not None:
            value = value * value.dtype.type(inv)
        return value, grad


kl_div = _KLDiv("kl_div", "torch_kl_div", "torch", Option("log_target", False, "bool"),
                summary="target * (log target - input), input a log-probability (or "
                        "exp(target) * (target - input) with log_target); "
                        "reductions also \"batchmean\"")
assert "batchmean" not in TORCH_REDUCTIONS


class _ElementwiseByDefault(Loss):
    """Optax's losses return elementwise values: reduction defaults to "none"."""
    default_reduction = "none"


# Optax semantics: elementwise values (reduction "none" by default; "mean", "sum" too).
sigmoid_focal_loss = _ElementwiseByDefault(
    "sigmoid_focal_loss", "sigmoid_focal", "torch",
    (Option("alpha", None, "probability", allow_none=True), Option("gamma", 2.0)),
    kernel_values=lambda v: (-1.0 if v["alpha"] is None else v["alpha"], v["gamma"]),
    summary="sigmoid crossentropy * (1 - p_t)**gamma, times alpha_t unless alpha is None "
            "(Optax; y_true first)")

hinge_embedding_loss = Loss(
    "hinge_embedding_loss", "hinge_embedding", "torch", Option("margin", 1.0, "any"),
    summary="x where y = 1, max(0, margin - x) where y = -1 (PyTorch)")
poisson_nll_loss = Loss(
    "poisson_nll_loss", "poisson_nll", "torch",
    (Option("log_input", True, "bool"), Option("full", False, "bool"), Option("eps", 1e-8, "positive")),
    summary="exp(x) - y x (log_input), else x - y log(x + eps); + Stirling's term where y > 1 "
            "with full (PyTorch)")

ALIASES.update({
    "bce": binary_crossentropy, "BCE": binary_crossentropy,
    "kld": kl_divergence, "KLD": kl_divergence,
})

LOSSES = {loss.name: loss for loss in globals().values() if isinstance(loss, Loss)}

# The row-wise losses (cross-entropies over classes, ...) have their own table.
from . import _overlap, _pairwise, multi_losses, row_losses  # noqa: E402

LOSSES.update(row_losses.LOSSES)
ALIASES.update(row_losses.ALIASES)
LOSSES.update(multi_losses.LOSSES)
LOSSES.update(_overlap.LOSSES)
LOSSES.update(_pairwise.LOSSES)

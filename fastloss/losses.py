"""The loss table: each loss is its element function (kernels/elements.py) plus a convention.

Adding a pointwise loss: write its element function, regenerate the kernels
(``python -m fastloss.kernels._generate``), and add one line here and a reference in tests.
"""

from ._loss import Loss, Option

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

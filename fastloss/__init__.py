"""fastloss: loss functions and their gradients as fused Numba kernels (NumPy on the CPU, CuPy on CUDA).

    import fastloss as fl
    value = fl.mean_squared_error(y_true, y_pred)
    value, grad = fl.huber.value_and_grad(y_true, y_pred, delta=0.5)

Importing compiles nothing: kernels compile on first use (and load from Numba's cache
afterwards); ``python -m fastloss warmup`` compiles them all ahead of time.
"""

# The exports are spelled out (not generated at import) so that IDEs and type checkers
# see every loss; tests/test_registry.py keeps them equal to the registry.
from ._config import backend
from .boosting import lightgbm_objective, xgboost_objective
from .classes import CLASSES, LossFunction
from .define import define_loss
from .losses import ALIASES, LOSSES
from .losses import (
    mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
    mean_squared_logarithmic_error, huber, log_cosh, poisson, l1_loss, mse_loss,
    smooth_l1_loss, huber_loss, binary_crossentropy, binary_focal_crossentropy, hinge,
    squared_hinge, kl_divergence, binary_cross_entropy,
    binary_cross_entropy_with_logits, soft_margin_loss, kl_div, sigmoid_focal_loss,
    hinge_embedding_loss, poisson_nll_loss, categorical_crossentropy,
    sparse_categorical_crossentropy, categorical_focal_crossentropy, cosine_similarity,
    categorical_hinge, categorical_generalized_cross_entropy, triplet_loss,
    cross_entropy, nll_loss, multi_margin_loss, multilabel_soft_margin_loss,
    multilabel_margin_loss,
    poly_loss_cross_entropy, dice, tversky, fbeta_loss, circle, ntxent,
    triplet_margin_loss, triplet_margin_with_distance_loss, quadruplet_loss,
    contrastive_loss, cosine_embedding_loss,
    margin_ranking_loss, gaussian_nll_loss, gaussian_kl_loss, ctc_loss, ctc,
)
from .pipeline import Loss
from .registry import LossSpec, Option

# Aliases, as Keras names them.
mse = mean_squared_error
MSE = mean_squared_error
mae = mean_absolute_error
MAE = mean_absolute_error
mape = mean_absolute_percentage_error
MAPE = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error
MSLE = mean_squared_logarithmic_error
logcosh = log_cosh
bce = binary_crossentropy
BCE = binary_crossentropy
kld = kl_divergence
KLD = kl_divergence

# Keras-style and PyTorch-style classes.
MeanSquaredError = CLASSES["MeanSquaredError"]
MeanAbsoluteError = CLASSES["MeanAbsoluteError"]
MeanAbsolutePercentageError = CLASSES["MeanAbsolutePercentageError"]
MeanSquaredLogarithmicError = CLASSES["MeanSquaredLogarithmicError"]
Huber = CLASSES["Huber"]
LogCosh = CLASSES["LogCosh"]
Poisson = CLASSES["Poisson"]
L1Loss = CLASSES["L1Loss"]
MSELoss = CLASSES["MSELoss"]
SmoothL1Loss = CLASSES["SmoothL1Loss"]
HuberLoss = CLASSES["HuberLoss"]
BinaryCrossentropy = CLASSES["BinaryCrossentropy"]
BinaryFocalCrossentropy = CLASSES["BinaryFocalCrossentropy"]
Hinge = CLASSES["Hinge"]
SquaredHinge = CLASSES["SquaredHinge"]
KLDivergence = CLASSES["KLDivergence"]
BCELoss = CLASSES["BCELoss"]
BCEWithLogitsLoss = CLASSES["BCEWithLogitsLoss"]
SoftMarginLoss = CLASSES["SoftMarginLoss"]
KLDivLoss = CLASSES["KLDivLoss"]
HingeEmbeddingLoss = CLASSES["HingeEmbeddingLoss"]
PoissonNLLLoss = CLASSES["PoissonNLLLoss"]
CategoricalCrossentropy = CLASSES["CategoricalCrossentropy"]
SparseCategoricalCrossentropy = CLASSES["SparseCategoricalCrossentropy"]
CategoricalFocalCrossentropy = CLASSES["CategoricalFocalCrossentropy"]
CosineSimilarity = CLASSES["CosineSimilarity"]
CategoricalHinge = CLASSES["CategoricalHinge"]
CategoricalGeneralizedCrossEntropy = CLASSES["CategoricalGeneralizedCrossEntropy"]
CrossEntropyLoss = CLASSES["CrossEntropyLoss"]
NLLLoss = CLASSES["NLLLoss"]
MultiMarginLoss = CLASSES["MultiMarginLoss"]
MultiLabelSoftMarginLoss = CLASSES["MultiLabelSoftMarginLoss"]
MultiLabelMarginLoss = CLASSES["MultiLabelMarginLoss"]
Dice = CLASSES["Dice"]
Tversky = CLASSES["Tversky"]
Circle = CLASSES["Circle"]
TripletMarginLoss = CLASSES["TripletMarginLoss"]
TripletMarginWithDistanceLoss = CLASSES["TripletMarginWithDistanceLoss"]
CosineEmbeddingLoss = CLASSES["CosineEmbeddingLoss"]
MarginRankingLoss = CLASSES["MarginRankingLoss"]
GaussianNLLLoss = CLASSES["GaussianNLLLoss"]
CTCLoss = CLASSES["CTCLoss"]
CTC = CLASSES["CTC"]


def get(name: str):
    """A loss by name or alias (``"mse"``, ``"huber"``, ``"MeanSquaredError"``...), or
    one defined with ``define_loss`` in this process."""
    from .define import DEFINED
    table = {**LOSSES, **ALIASES, **CLASSES, **DEFINED}
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


__version__ = "0.1.0"
__all__ = [
    "Loss", "LossFunction", "LossSpec", "Option", "backend", "get", "LOSSES", "ALIASES",
    "CLASSES", "xgboost_objective", "lightgbm_objective", "define_loss",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "poisson", "l1_loss",
    "mse_loss", "smooth_l1_loss", "huber_loss", "binary_crossentropy",
    "binary_focal_crossentropy", "hinge", "squared_hinge", "kl_divergence",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss",
    "kl_div", "sigmoid_focal_loss", "hinge_embedding_loss", "poisson_nll_loss",
    "categorical_crossentropy", "sparse_categorical_crossentropy",
    "categorical_focal_crossentropy", "cosine_similarity", "categorical_hinge",
    "categorical_generalized_cross_entropy", "triplet_loss", "cross_entropy",
    "nll_loss", "multi_margin_loss", "multilabel_soft_margin_loss", "multilabel_margin_loss",
    "poly_loss_cross_entropy", "dice", "tversky", "fbeta_loss", "circle", "ntxent",
    "triplet_margin_loss", "triplet_margin_with_distance_loss", "quadruplet_loss",
    "contrastive_loss",
    "cosine_embedding_loss", "margin_ranking_loss", "gaussian_nll_loss",
    "gaussian_kl_loss", "ctc_loss", "ctc", "mse", "MSE", "mae", "MAE", "mape", "MAPE", "msle", "MSLE",
    "logcosh", "bce", "BCE", "kld", "KLD", "MeanSquaredError", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "Huber", "LogCosh",
    "Poisson", "L1Loss", "MSELoss", "SmoothL1Loss", "HuberLoss", "BinaryCrossentropy",
    "BinaryFocalCrossentropy", "Hinge", "SquaredHinge", "KLDivergence", "BCELoss",
    "BCEWithLogitsLoss", "SoftMarginLoss", "KLDivLoss", "HingeEmbeddingLoss",
    "PoissonNLLLoss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "CategoricalFocalCrossentropy", "CosineSimilarity", "CategoricalHinge",
    "CategoricalGeneralizedCrossEntropy", "CrossEntropyLoss", "NLLLoss",
    "MultiMarginLoss", "MultiLabelSoftMarginLoss", "MultiLabelMarginLoss", "Dice", "Tversky",
    "Circle", "TripletMarginLoss", "TripletMarginWithDistanceLoss", "CosineEmbeddingLoss",
    "MarginRankingLoss", "GaussianNLLLoss",
    "CTCLoss", "CTC",
]

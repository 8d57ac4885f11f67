"""The row-wise loss table: each loss is its row element (kernels/row_elements.py) plus a
convention, its targets and its options.

Adding a row-wise loss: write its row element, regenerate the kernels
(``python -m fastloss.kernels._generate``), and add a definition here and a reference in
tests/references.py.
"""

from ._loss import Option
from ._rows import RowLoss

_FROM_LOGITS = Option("from_logits", False, "bool")
_LABEL_SMOOTHING = Option("label_smoothing", 0.0, "probability")
_AXIS = Option("axis", -1, "int")


def _logits_or_probabilities(values):
    return "softmax_cross_entropy" if values["from_logits"] else "probs_cross_entropy"


# Keras 3 semantics: one loss per row of the class axis, then sample_weight and the
# Keras reductions.
categorical_crossentropy = RowLoss(
    "categorical_crossentropy", _logits_or_probabilities, "keras",
    (_FROM_LOGITS, _LABEL_SMOOTHING, _AXIS), targets="dense",
    kernel_values=lambda v: (v["label_smoothing"], 0.0),
    summary="-sum_j y_j log q_j, q = softmax(y_pred) with from_logits, else y_pred / sum "
            "clipped to [1e-7, 1 - 1e-7]; y = y_true smoothed towards 1/C")
sparse_categorical_crossentropy = RowLoss(
    "sparse_categorical_crossentropy", _logits_or_probabilities, "keras",
    (_FROM_LOGITS, Option("ignore_class", None, "int", allow_none=True), _AXIS),
    ignore="ignore_class", kernel_values=lambda v: (0.0, 0.0),
    summary="-log q_y for integer labels y, q as categorical_crossentropy; rows labelled "
            "ignore_class count as masked (loss 0, left out of the mean)")
categorical_focal_crossentropy = RowLoss(
    "categorical_focal_crossentropy", "focal_cross_entropy", "keras",
    (Option("alpha", 0.25, "any"), Option("gamma", 2.0), _FROM_LOGITS, _LABEL_SMOOTHING, _AXIS),
    targets="dense",
    kernel_values=lambda v: (v["alpha"], v["gamma"], v["label_smoothing"], v["from_logits"]),
    summary="-sum_j alpha (1 - q_j)**gamma y_j log q_j, q clipped as categorical_crossentropy")
cosine_similarity = RowLoss(
    "cosine_similarity", "cosine_similarity", "keras", (_AXIS,), targets="dense",
    summary="-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over the axis")
categorical_hinge = RowLoss(
    "categorical_hinge", "categorical_hinge", "keras", targets="dense",
    summary="max(max_j (1 - y_j) p_j - sum_j y_j p_j + 1, 0)")
categorical_generalized_cross_entropy = RowLoss(
    "categorical_generalized_cross_entropy", "generalized_cross_entropy", "keras",
    (Option("q", 0.5, "open_unit"),),
    summary="(1 - p_y**q) / q for integer labels y and probabilities p")
triplet_loss = RowLoss(
    "triplet_loss", "stacked_triplet", "keras", Option("alpha", 0.2), targets="unused",
    parts=3,
    summary="max(|a - p|**2 - |a - n|**2 + alpha, 0) per sample, y_pred = [a | p | n] "
            "stacked along the last axis (the Keras tutorials' triplet loss; y_true unused)")

# torch.nn.functional semantics: the class axis is dim 1 (or 0 for one sample).
_WEIGHTED_MEAN = "weights"
cross_entropy = RowLoss(
    "cross_entropy", "softmax_cross_entropy", "torch",
    (Option("ignore_index", -100, "int"), _LABEL_SMOOTHING), targets="either",
    ignore="ignore_index", class_weight=True, torch_mean=_WEIGHTED_MEAN,
    kernel_values=lambda v: (v["label_smoothing"], 0.0),
    summary="softmax cross-entropy of logits against class indices (or probabilities of the "
            "input's shape); weight, ignore_index, label_smoothing as PyTorch")
nll_loss = RowLoss(
    "nll_loss", "negative_log_likelihood", "torch", (Option("ignore_index", -100, "int"),),
    ignore="ignore_index", class_weight=True, torch_mean=_WEIGHTED_MEAN,
    summary="-weight[y] * input[y] for class indices y (input: log-probabilities)")
multi_margin_loss = RowLoss(
    "multi_margin_loss", "multi_margin", "torch",
    (Option("p", 1, "int", choices=(1, 2)), Option("margin", 1.0, "any")), class_weight=True,
    summary="sum_{j != y} weight[y] max(0, margin - x_y + x_j)**p / C, p = 1 or 2")
multilabel_soft_margin_loss = RowLoss(
    "multilabel_soft_margin_loss", "multilabel_soft_margin", "torch", targets="dense",
    class_weight=True,
    summary="mean over classes of weight_j * binary crossentropy of logit x_j against y_j")

# Optax semantics (labels first, like every loss here): per-example values by default.
poly_loss_cross_entropy = RowLoss(
    "poly_loss_cross_entropy", "softmax_cross_entropy", "torch",
    (Option("epsilon", 2.0, "any"),), targets="dense", default_reduction="none",
    kernel_values=lambda v: (0.0, v["epsilon"]),
    summary="softmax cross-entropy + epsilon * sum_j y_j (1 - softmax_j) (Poly-1)")

LOSSES = {loss.name: loss for loss in globals().values() if isinstance(loss, RowLoss)}
ALIASES = {}

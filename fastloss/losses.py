"""The loss table: one spec per loss (fastloss.registry) and the family that computes it.

Adding a loss: write its element function (kernels/elements.py or row_elements.py),
regenerate the kernels (``python -m fastloss.kernels._generate``), add its entry here
and a float64 reference in tests/.  CONTRIBUTING.md has a worked example.
"""

from __future__ import annotations

from .families.ctc import Sequences
from .families.multi import Elements, Embeddings
from .families.overlap import Overlap
from .families.pairwise import Circle, NTXent
from .families.pointwise import Pointwise
from .families.rows import Rows
from .pipeline import Loss
from .registry import TORCH_REDUCTIONS, LossSpec, Option
from .transforms import bce_pos_weight, gaussian_nll_var, hinge_label_values, hinge_labels

LOSSES: dict[str, Loss] = {}
ALIASES: dict[str, Loss] = {}


def define(family, name, convention, formula, reference, **spec) -> Loss:
    """A loss from its spec and family, entered in LOSSES and ALIASES."""
    if isinstance(spec.get("options"), Option):
        spec["options"] = (spec["options"],)
    loss = Loss(LossSpec(name, family.name, convention, formula, reference, **spec), family)
    assert name not in LOSSES, name
    LOSSES[name] = loss
    ALIASES.update({alias: loss for alias in loss.spec.aliases})
    return loss


def _keras(function):
    return f"Keras 3 keras.losses.{function}"


def _torch(function):
    return f"PyTorch torch.nn.functional.{function}"


# -- options shared by several losses -----------------------------------------------------

DELTA = Option("delta", 1.0, doc="where the loss turns from quadratic to linear")
FROM_LOGITS = Option("from_logits", False, "bool", "y_pred holds logits, not probabilities")
LABEL_SMOOTHING = Option("label_smoothing", 0.0, "probability",
                         "labels smoothed towards the uniform distribution by this much")
AXIS = Option("axis", -1, "int", "the axis reduced first (the class axis)")
WEIGHT = Option("weight", None, "array", "PyTorch's weight: rescales each element's loss")
CLASS_WEIGHT = Option("weight", None, "array", "PyTorch's weight: one per class")
IGNORE_INDEX = Option("ignore_index", -100, "int", "targets of this class are left out")
EPS_DISTANCE = Option("eps", 1e-6, doc="added to x1 - x2 inside the distance (PyTorch's "
                                       "pairwise_distance)")
OVERLAP_AXIS = Option("axis", None, "axes", "the axes summed over (None: every axis)")

# -- regression (pointwise) -------------------------------------------------------------------

mean_squared_error = define(
    Pointwise("squared_error"), "mean_squared_error", "keras",
    "mean over the last axis of (y_pred - y_true)**2", _keras("mean_squared_error"),
    aliases=("mse", "MSE"), class_name="MeanSquaredError")
mean_absolute_error = define(
    Pointwise("absolute_error"), "mean_absolute_error", "keras",
    "mean over the last axis of |y_pred - y_true|", _keras("mean_absolute_error"),
    aliases=("mae", "MAE"), class_name="MeanAbsoluteError")
mean_absolute_percentage_error = define(
    Pointwise("absolute_percentage_error"), "mean_absolute_percentage_error", "keras",
    "100 * mean of |(y_true - y_pred) / max(|y_true|, 1e-7)|",
    _keras("mean_absolute_percentage_error"), aliases=("mape", "MAPE"),
    class_name="MeanAbsolutePercentageError")
mean_squared_logarithmic_error = define(
    Pointwise("squared_log_error"), "mean_squared_logarithmic_error", "keras",
    "mean of (log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2",
    _keras("mean_squared_logarithmic_error"), aliases=("msle", "MSLE"),
    class_name="MeanSquaredLogarithmicError")
huber = define(
    Pointwise("huber"), "huber", "keras",
    "mean of 0.5 e**2 where |e| <= delta, else delta * |e| - 0.5 delta**2; e = y_pred - y_true",
    _keras("huber"), options=DELTA, class_name="Huber")
log_cosh = define(
    Pointwise("log_cosh"), "log_cosh", "keras", "mean of log(cosh(y_pred - y_true))",
    _keras("log_cosh"), aliases=("logcosh",), class_name="LogCosh")
poisson = define(
    Pointwise("poisson"), "poisson", "keras", "mean of y_pred - y_true * log(y_pred + 1e-7)",
    _keras("poisson"), class_name="Poisson")

l1_loss = define(
    Pointwise("absolute_error", weighted_mean=True), "l1_loss", "torch",
    "weight * |input - target|", _torch("l1_loss"), options=WEIGHT,
    notes="with weight (of y_pred's shape), \"mean\" divides by the weights' sum, as PyTorch",
    class_name="L1Loss")
mse_loss = define(
    Pointwise("squared_error", weighted_mean=True), "mse_loss", "torch",
    "weight * (input - target)**2", _torch("mse_loss"), options=WEIGHT,
    notes="with weight (of y_pred's shape), \"mean\" divides by the weights' sum, as PyTorch",
    class_name="MSELoss")
smooth_l1_loss = define(
    Pointwise("smooth_l1"), "smooth_l1_loss", "torch",
    "0.5 e**2 / beta where |e| < beta, else |e| - 0.5 beta; e = input - target",
    _torch("smooth_l1_loss"), options=Option("beta", 1.0, doc="the quadratic zone's half-width"),
    class_name="SmoothL1Loss")
huber_loss = define(
    Pointwise("huber", exact_weight=True), "huber_loss", "torch",
    "weight * (0.5 e**2 where |e| < delta, else delta * (|e| - 0.5 delta)); "
    "e = input - target", _torch("huber_loss"),
    options=(Option("delta", 1.0, "positive", DELTA.doc), WEIGHT), class_name="HuberLoss")

# -- binary classification (pointwise) ------------------------------------------------------

binary_crossentropy = define(
    Pointwise(lambda v: "bce_logits" if v["from_logits"] else "bce_probs", same_shape=True),
    "binary_crossentropy", "keras",
    "mean over axis of -(y log p + (1 - y) log(1 - p)); p = y_pred clipped to "
    "[1e-7, 1 - 1e-7], or sigmoid(y_pred) with from_logits; y = y_true smoothed towards 0.5",
    _keras("binary_crossentropy"), options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS),
    notes="probabilities clipped to [1e-7, 1 - 1e-7]", aliases=("bce", "BCE"),
    class_name="BinaryCrossentropy")
binary_focal_crossentropy = define(
    Pointwise(lambda v: "binary_focal_logits" if v["from_logits"] else "binary_focal_probs",
              same_shape=True),
    "binary_focal_crossentropy", "keras",
    "mean over axis of (1 - p_t)**gamma * binary crossentropy, times alpha_t with "
    "apply_class_balancing",
    _keras("binary_focal_crossentropy") + "; Lin et al. 2017, Focal Loss for Dense Object "
    "Detection",
    options=(Option("apply_class_balancing", False, "bool", "weigh by alpha_t"),
             Option("alpha", 0.25, "probability", "the positive class's weight"),
             Option("gamma", 2.0, doc="the focusing exponent"),
             FROM_LOGITS, LABEL_SMOOTHING, AXIS),
    notes="the crossentropy clipped as binary_crossentropy's, also from_logits",
    class_name="BinaryFocalCrossentropy")
hinge = define(
    Pointwise("hinge", kernel_values=hinge_label_values, prepare_labels=hinge_labels),
    "hinge", "keras",
    "mean of max(1 - y_true * y_pred, 0)", _keras("hinge"),
    notes="labels that are all 0 or 1 become -1/1", class_name="Hinge")
squared_hinge = define(
    Pointwise("squared_hinge", kernel_values=hinge_label_values, prepare_labels=hinge_labels),
    "squared_hinge", "keras",
    "mean of max(1 - y_true * y_pred, 0)**2", _keras("squared_hinge"),
    notes="labels as hinge's", class_name="SquaredHinge")
kl_divergence = define(
    Pointwise("kl_divergence", row_reduction="sum"), "kl_divergence", "keras",
    "sum over the last axis of t * log(t / p), t and p clipped to [1e-7, 1]",
    _keras("kl_divergence"), notes="sums the last axis; both arrays clipped to [1e-7, 1]",
    aliases=("kld", "KLD"), class_name="KLDivergence")

binary_cross_entropy = define(
    Pointwise("torch_bce", pred_range=(0.0, 1.0)), "binary_cross_entropy", "torch",
    "-weight * (t * max(log p, -100) + (1 - t) * max(log(1 - p), -100)); y_pred in [0, 1]",
    _torch("binary_cross_entropy"), options=WEIGHT,
    notes="log clamped at -100, PyTorch's backward; y_pred outside [0, 1] raises ValueError "
          "(NumPy inputs; on CuPy inputs, where a check would synchronise, it gives NaN)",
    class_name="BCELoss")
binary_cross_entropy_with_logits = define(
    Pointwise("bce_logits", kernel_values=lambda v: {"label_smoothing": 0.0},
              prepare=bce_pos_weight), "binary_cross_entropy_with_logits",
    "torch", "-weight * (pos_weight * t * log sigmoid(x) + (1 - t) * log sigmoid(-x))",
    _torch("binary_cross_entropy_with_logits"),
    options=(WEIGHT, Option("pos_weight", None, "array",
                            "the positive term's weight, broadcast along the last axis")),
    notes="exact for any logit (PyTorch's float32 (1 - t) x - log_sigmoid(x) cancels: 1e-4 "
          "off at |x| = 5)",
    class_name="BCEWithLogitsLoss")
soft_margin_loss = define(
    Pointwise("soft_margin"), "soft_margin_loss", "torch", "log(1 + exp(-y * x))",
    _torch("soft_margin_loss"), notes="as softplus(-y x): finite where PyTorch's exp overflows",
    class_name="SoftMarginLoss")
kl_div = define(
    Pointwise("torch_kl_div"), "kl_div", "torch",
    "target * (log target - input), input a log-probability (or exp(target) * (target - "
    "input) with log_target)", _torch("kl_div"),
    options=Option("log_target", False, "bool", "target holds log-probabilities"),
    notes="0 log 0 = 0; reductions also \"batchmean\" (the sum over the batch size)",
    reductions=TORCH_REDUCTIONS + ("batchmean",), class_name="KLDivLoss")
sigmoid_focal_loss = define(
    Pointwise("sigmoid_focal", kernel_values=lambda v: {
        "alpha": -1.0 if v["alpha"] is None else v["alpha"]}),
    "sigmoid_focal_loss", "torch",
    "sigmoid crossentropy * (1 - p_t)**gamma, times alpha_t unless alpha is None",
    "Optax optax.sigmoid_focal_loss; Lin et al. 2017",
    options=(Option("alpha", None, "probability", "the positive class's weight",
                    allow_none=True),
             Option("gamma", 2.0, doc="the focusing exponent")),
    notes="Optax's argument order made (labels, logits); elementwise values by default "
          "(reduction \"none\"), \"mean\" and \"sum\" too",
    default_reduction="none", source="Optax")
hinge_embedding_loss = define(
    Pointwise("hinge_embedding"), "hinge_embedding_loss", "torch",
    "x where y = 1, max(0, margin - x) where y = -1", _torch("hinge_embedding_loss"),
    options=Option("margin", 1.0, "any"), class_name="HingeEmbeddingLoss")
poisson_nll_loss = define(
    Pointwise("poisson_nll"), "poisson_nll_loss", "torch",
    "exp(x) - y x (log_input), else x - y log(x + eps); + Stirling's term where y > 1 with "
    "full", _torch("poisson_nll_loss"),
    options=(Option("log_input", True, "bool", "input is log(rate)"),
             Option("full", False, "bool", "add Stirling's approximation term"),
             Option("eps", 1e-8, "positive", "added to the rate inside the log")),
    class_name="PoissonNLLLoss")

# -- over classes (rows) --------------------------------------------------------------------


def _logits_or_probabilities(values):
    return "softmax_cross_entropy" if values["from_logits"] else "probs_cross_entropy"


categorical_crossentropy = define(
    Rows(_logits_or_probabilities, kernel_values=lambda v: {"poly_epsilon": 0.0},
         targets="dense", warn_one_class=True),
    "categorical_crossentropy", "keras",
    "-sum_j y_j log q_j, q = softmax(y_pred) with from_logits, else y_pred / sum clipped to "
    "[1e-7, 1 - 1e-7]; y = y_true smoothed towards 1/C", _keras("categorical_crossentropy"),
    options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS),
    notes="one loss per row of the class axis; probabilities divided by their sum and clipped "
          "to [1e-7, 1 - 1e-7], or from_logits",
    class_name="CategoricalCrossentropy")
sparse_categorical_crossentropy = define(
    Rows(_logits_or_probabilities, kernel_values=lambda v: {"label_smoothing": 0.0,
                                                            "poly_epsilon": 0.0},
         ignore="ignore_class"),
    "sparse_categorical_crossentropy", "keras",
    "-log q_y for integer labels y, q as categorical_crossentropy's",
    _keras("sparse_categorical_crossentropy"),
    options=(FROM_LOGITS, Option("ignore_class", None, "int", "rows of this label are masked",
                                 allow_none=True), AXIS),
    notes="integer labels (floats truncated, as Keras casts); ignore_class rows masked as "
          "Keras masks them (loss 0, left out of the mean)",
    class_name="SparseCategoricalCrossentropy")
categorical_focal_crossentropy = define(
    Rows("focal_cross_entropy", targets="dense", warn_one_class=True),
    "categorical_focal_crossentropy", "keras",
    "-sum_j alpha (1 - q_j)**gamma y_j log q_j, q clipped as categorical_crossentropy's",
    _keras("categorical_focal_crossentropy") + "; Lin et al. 2017",
    options=(Option("alpha", 0.25, "any", "the weight of every class"),
             Option("gamma", 2.0, doc="the focusing exponent"), FROM_LOGITS, LABEL_SMOOTHING,
             AXIS),
    notes="probabilities normalised and clipped as categorical_crossentropy's",
    class_name="CategoricalFocalCrossentropy")
cosine_similarity = define(
    Rows("cosine_similarity", targets="dense"), "cosine_similarity", "keras",
    "-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over the axis",
    _keras("cosine_similarity"), options=AXIS,
    notes="-cos of the angle; a zero vector gives 0 and a zero gradient",
    class_name="CosineSimilarity")
categorical_hinge = define(
    Rows("categorical_hinge", targets="dense"), "categorical_hinge", "keras",
    "max(max_j (1 - y_j) p_j - sum_j y_j p_j + 1, 0)", _keras("categorical_hinge"),
    notes="tied maxima share the gradient, as JAX's max does", class_name="CategoricalHinge")
categorical_generalized_cross_entropy = define(
    Rows("generalized_cross_entropy"), "categorical_generalized_cross_entropy", "keras",
    "(1 - p_y**q) / q for integer labels y and probabilities p",
    _keras("categorical_generalized_cross_entropy") + "; Zhang & Sabuncu 2018",
    options=Option("q", 0.5, "open_unit", "the exponent: towards 0 the crossentropy, at 1 MAE"),
    notes="integer labels, probabilities", class_name="CategoricalGeneralizedCrossEntropy")
triplet_loss = define(
    Rows("stacked_triplet", targets="unused", parts=3), "triplet_loss", "keras",
    "max(|a - p|**2 - |a - n|**2 + alpha, 0) per sample, y_pred = [a | p | n] stacked along "
    "the last axis", "the Keras tutorials' triplet loss; Schroff et al. 2015, FaceNet",
    options=Option("alpha", 0.2, doc="the margin"),
    notes="the last axis divisible by 3; squared distances; y_true unused; Keras's "
          "sample_weight and reductions", source="Keras tutorials")

cross_entropy = define(
    Rows("softmax_cross_entropy", kernel_values=lambda v: {"poly_epsilon": 0.0},
         targets="either", ignore="ignore_index", torch_mean="weights"),
    "cross_entropy", "torch",
    "softmax cross-entropy of logits against class indices (or probabilities of the input's "
    "shape)", _torch("cross_entropy"), options=(CLASS_WEIGHT, IGNORE_INDEX, LABEL_SMOOTHING),
    notes="class axis dim 1; ignored targets leave the smoothing term and the weighted mean",
    class_name="CrossEntropyLoss")
nll_loss = define(
    Rows("negative_log_likelihood", ignore="ignore_index", torch_mean="weights"),
    "nll_loss", "torch", "-weight[y] * input[y] for class indices y", _torch("nll_loss"),
    options=(CLASS_WEIGHT, IGNORE_INDEX), notes="input of log-probabilities",
    class_name="NLLLoss")
multi_margin_loss = define(
    Rows("multi_margin", kernel_values=lambda v: {"power": v["p"]}), "multi_margin_loss", "torch",
    "sum_{j != y} weight[y] max(0, margin - x_y + x_j)**p / C", _torch("multi_margin_loss"),
    options=(Option("p", 1, "int", "the exponent", choices=(1, 2)),
             Option("margin", 1.0, "any"), CLASS_WEIGHT),
    class_name="MultiMarginLoss")
multilabel_soft_margin_loss = define(
    Rows("multilabel_soft_margin", targets="dense"), "multilabel_soft_margin_loss", "torch",
    "mean over classes of weight_j * binary crossentropy of logit x_j against y_j",
    _torch("multilabel_soft_margin_loss"), options=CLASS_WEIGHT,
    class_name="MultiLabelSoftMarginLoss")
multilabel_margin_loss = define(
    Rows("multilabel_margin", targets="label_sets"), "multilabel_margin_loss", "torch",
    "sum over the row's target classes j and its other classes i of max(0, 1 - (x_j - x_i)) "
    "/ C, the targets the class indices in y_true before its first -1",
    _torch("multilabel_margin_loss"),
    notes="y_true: integer class indices of y_pred's shape, (C,) or (N, C), padded with -1 "
          "(every entry in [-1, C)); a class listed twice counts twice and a row without "
          "targets gives 0, as in PyTorch; an empty batch's \"mean\" is NaN, as fastloss's "
          "other PyTorch losses (PyTorch's multilabel_margin_loss gives 0)",
    class_name="MultiLabelMarginLoss")
poly_loss_cross_entropy = define(
    Rows("softmax_cross_entropy", targets="dense",
         kernel_values=lambda v: {"label_smoothing": 0.0, "poly_epsilon": v["epsilon"]}),
    "poly_loss_cross_entropy", "torch",
    "softmax cross-entropy + epsilon * sum_j y_j (1 - softmax_j)",
    "Optax optax.poly_loss_cross_entropy; Leng et al. 2022, PolyLoss (Poly-1)",
    options=Option("epsilon", 2.0, "any", "the weight of the first polynomial term"),
    notes="Optax's argument order made (labels, logits); per-example values by default",
    default_reduction="none", source="Optax")

# -- whole-array statistics (overlap) --------------------------------------------------------

dice = define(
    Overlap(lambda v: (2.0, 2.0, 1.0, 1.0)), "dice", "keras",
    "1 - 2 sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + 1e-7), the sums over axis",
    _keras("dice") + "; Milletari et al. 2016, V-Net", options=OVERLAP_AXIS,
    notes="axis None: every axis, one scalar loss", class_name="Dice")
tversky = define(
    Overlap(lambda v: (1.0, 1.0, v["alpha"], v["beta"])), "tversky", "keras",
    "1 - TP / (TP + alpha * FP + beta * FN + 1e-7), TP = sum(y_true * y_pred), "
    "FP = sum((1 - y_true) * y_pred), FN = sum(y_true * (1 - y_pred)), the sums over axis",
    "keras.losses.tversky (Keras main, keras-team/keras#23333); Salehi et al. 2017, "
    "Tversky loss function for image segmentation",
    options=(Option("alpha", 0.5, "any", "the false positives' weight"),
             Option("beta", 0.5, "any", "the false negatives' weight"), OVERLAP_AXIS),
    notes="alpha weighs the false positives and beta the false negatives, as Keras main and "
          "the paper; Keras 3.15 and earlier swap them (their alpha is fastloss's beta)",
    class_name="Tversky")
fbeta_loss = define(
    Overlap(lambda v: (1 + v["beta"] ** 2, 1 + v["beta"] ** 2, 1.0, v["beta"] ** 2)),
    "fbeta_loss", "keras",
    "1 - (1 + beta**2) TP / ((1 + beta**2) TP + beta**2 FN + FP + 1e-7), TP = sum(y_true * "
    "y_pred), FP = sum((1 - y_true) * y_pred), FN = sum(y_true * (1 - y_pred)), over axis",
    "the soft F-beta score (van Rijsbergen 1979) with soft counts",
    options=(Option("beta", 1.0, "nonnegative", "recall's weight relative to precision"),
             OVERLAP_AXIS),
    notes="Keras conventions", source="soft F-beta")

# -- pairs of a batch (pairwise) ------------------------------------------------------------

circle = define(
    Circle(), "circle", "keras",
    "softplus(LSE_pos(-gamma max(margin + d, 0) (margin - d)) + LSE_neg(gamma max(1 + margin "
    "- d, 0) (1 - margin - d))) per sample, d = max(1 - <e_i, e_j>, 0)",
    _keras("circle") + "; Sun et al. 2020, Circle Loss",
    options=(Option("gamma", 80.0, "positive", "the scale"),
             Option("margin", 0.4, "any", "the relaxation"),
             Option("remove_diagonal", True, "bool", "leave each sample's pair with itself out"),
             Option("ref_labels", None, "array", "the reference rows' labels (default y_true)"),
             Option("ref_embeddings", None, "array",
                    "reference embeddings, constants (default y_pred)")),
    notes="integer labels (N,) and embeddings (N, D), L2-normalised by the caller as Keras "
          "expects; over all pairs of the batch, without an N x N matrix; samples with loss 0 "
          "masked as Keras",
    class_name="Circle")
ntxent = define(
    NTXent(), "ntxent", "optax",
    "mean over positive pairs (i, j) of log(exp(s_ij) + sum_neg exp(s_ik)) - s_ij, s the "
    "cosine similarities over the temperature",
    "Optax optax.ntxent; Chen et al. 2020, SimCLR",
    options=Option("temperature", 0.07, "positive"),
    notes="Optax's argument order made (labels, embeddings); one scalar; NaN when no pair "
          "shares a label, as Optax",
    reductions=("mean",))

# -- several prediction arrays (embeddings, elements) ----------------------------------------

triplet_margin_loss = define(
    Embeddings("triplet_margin", kernel_values=lambda v: {"power": v["p"]}),
    "triplet_margin_loss", "torch",
    "max(margin + d(a, p) - d(a, n), 0), d(x, y) = ||x - y + eps||_p; with swap d(a, n) is "
    "min(d(a, n), d(p, n))", _torch("triplet_margin_loss"),
    inputs=("anchor", "positive", "negative"), predictions=("anchor", "positive", "negative"),
    options=(Option("margin", 1.0, "positive"), Option("p", 2.0, "positive", "the norm's order"),
             EPS_DISTANCE, Option("swap", False, "bool", "use the distance swap")),
    class_name="TripletMarginLoss")
triplet_margin_with_distance_loss = define(
    Embeddings("triplet_margin_distance", kernel_values=lambda v: {
        "cosine": 1.0 if v["distance_function"] == "cosine" else 0.0,
        "eps": -1.0 if v["eps"] is None else v["eps"]}),  # (-1: the distance's default)
    "triplet_margin_with_distance_loss", "torch",
    "max(margin + d(a, p) - d(a, n), 0), d(x, y) = ||x - y + eps|| (\"euclidean\", "
    "pairwise_distance) or 1 - sum(x * y) / (max(||x||, eps) max(||y||, eps)) (\"cosine\", "
    "1 - cosine_similarity); with swap d(a, n) is min(d(a, n), d(p, n))",
    _torch("triplet_margin_with_distance_loss"),
    inputs=("anchor", "positive", "negative"), predictions=("anchor", "positive", "negative"),
    options=(Option("distance_function", "euclidean", "str",
                    "the distance by name (PyTorch takes a callable; its default None is "
                    "\"euclidean\")", choices=("euclidean", "cosine")),
             Option("margin", 1.0, "positive"),
             Option("eps", None, "nonnegative",
                    "the distance's eps; None: its PyTorch default, 1e-6 added to x - y "
                    "(euclidean), 1e-8 each norm's lower clamp (cosine)", allow_none=True),
             Option("swap", False, "bool", "use the distance swap")),
    notes="features on the last axis (PyTorch's cosine_similarity reduces dim 1: the same "
          "for (N, D)); as PyTorch's cosine_similarity, the clamped norms are "
          "differentiated as the norms",
    class_name="TripletMarginWithDistanceLoss")
quadruplet_loss = define(
    Embeddings("quadruplet"), "quadruplet_loss", "torch",
    "max(D(a, p) - D(a, n1) + alpha1, 0) + max(D(a, p) - D(n1, n2) + alpha2, 0), D the "
    "squared Euclidean distance", "Chen et al. 2017, Beyond triplet loss",
    inputs=("anchor", "positive", "negative1", "negative2"),
    predictions=("anchor", "positive", "negative1", "negative2"),
    options=(Option("alpha1", 1.0), Option("alpha2", 0.5)),
    notes="n2 of a class other than a's and n1's; PyTorch's reductions",
    source="Chen et al. 2017")
contrastive_loss = define(
    Embeddings("contrastive"), "contrastive_loss", "torch",
    "y d**2 + (1 - y) max(margin - d, 0)**2, d = ||x1 - x2 + eps||",
    "Hadsell, Chopra & LeCun 2006", inputs=("y_true", "x1", "x2"), predictions=("x1", "x2"),
    options=(Option("margin", 1.0), EPS_DISTANCE),
    notes="label 1 for similar pairs, 0 for dissimilar; PyTorch's reductions",
    source="Hadsell et al. 2006")
cosine_embedding_loss = define(
    Embeddings("cosine_embedding"), "cosine_embedding_loss", "torch",
    "1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1",
    _torch("cosine_embedding_loss"), inputs=("y_true", "x1", "x2"), predictions=("x1", "x2"),
    options=Option("margin", 0.0, "any"), notes="labels first; other labels give 0",
    class_name="CosineEmbeddingLoss")
margin_ranking_loss = define(
    Elements("margin_ranking"), "margin_ranking_loss", "torch",
    "max(0, -y (x1 - x2) + margin), elementwise", _torch("margin_ranking_loss"),
    inputs=("y_true", "x1", "x2"), predictions=("x1", "x2"),
    options=Option("margin", 0.0, "any"), notes="labels first; broadcasting",
    class_name="MarginRankingLoss")
gaussian_nll_loss = define(
    Elements("gaussian_nll", check_inputs=gaussian_nll_var), "gaussian_nll_loss", "torch",
    "(log v + (y_pred - y_true)**2 / v) / 2, v = max(var, eps) (+ log(2 pi) / 2 with full)",
    _torch("gaussian_nll_loss"), inputs=("y_true", "y_pred", "var"),
    predictions=("y_pred", "var"),
    options=(Option("full", False, "bool", "add the constant log(2 pi) / 2"),
             Option("eps", 1e-6, "positive", "the variance's lower clamp")),
    notes="var of y_pred's shape, with one axis of size 1, or without the last axis; "
          "gradients for y_pred and var; negative var raises ValueError (NumPy inputs; NaN on "
          "CuPy inputs)",
    class_name="GaussianNLLLoss")
gaussian_kl_loss = define(
    Elements("gaussian_kl"), "gaussian_kl_loss", "torch",
    "-(1 + logvar - mean**2 - exp(logvar)) / 2 elementwise: the KL divergence of "
    "N(mean, exp(logvar)) from N(0, 1)", "Kingma & Welling 2014, Auto-Encoding Variational "
    "Bayes (the VAE's KL term)", inputs=("mean", "logvar"), predictions=("mean", "logvar"),
    notes="the VAE's KL term; \"mean\" averages over all elements; gradients for both",
    source="Kingma & Welling 2014")


# -- sequences (the dynamic-programming family) ----------------------------------------------

ctc_loss = define(
    Sequences("torch"), "ctc_loss", "torch",
    "-log sum over the alignments of the target (blanks between and around its labels, "
    "repeats merged) of prod_t exp(log_probs[t, label at t])", _torch("ctc_loss")
    + "; Graves et al. 2006, Connectionist Temporal Classification",
    inputs=("targets", "log_probs", "input_lengths", "target_lengths"),
    predictions=("log_probs",),
    options=(Option("blank", 0, "int", "the blank label's class"),
             Option("zero_infinity", False, "bool",
                    "impossible alignments give 0 loss and 0 gradients, not inf and NaN")),
    notes="labels first; log_probs (T, N, C) or (T, C); targets padded (N, S) or "
          "concatenated; \"mean\" divides each loss by its target length (at least 1), "
          "then averages; the gradient is PyTorch's (log_probs assumed a log-softmax)",
    class_name="CTCLoss")
ctc = define(
    Sequences("keras"), "ctc", "keras",
    "CTC of the logits' log-softmax against the labels (0, the blank, pads them)",
    _keras("ctc") + "; Graves et al. 2006", options=(),
    notes="y_true (batch, max_length) of labels, 0 the blank and padding; y_pred logits "
          "(batch, T, C), every frame used; inf for an impossible alignment (Keras's JAX "
          "backend gives about 1e5 instead)",
    class_name="CTC")

def by_family(family: str) -> dict[str, Loss]:
    """The losses of one kernel family, by name (for the tests and benchmarks)."""
    return {name: loss for name, loss in LOSSES.items() if loss.spec.family == family}

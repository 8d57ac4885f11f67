"""Keras-style loss classes: a loss with its options and reduction bound at construction."""

from . import losses as _losses
from ._multi import MultiLoss


class LossFunction:
    """A configured loss: ``obj(y_true, y_pred, sample_weight=None)``, ``.grad``, ``.value_and_grad``."""

    loss = None

    def __init__(self, reduction="default", name=None, **options):
        loss = self.loss
        loss.check_options(options)
        self.reduction = loss.check_reduction(reduction)
        self.options = options
        self.name = name or loss.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.loss(y_true, y_pred, sample_weight=sample_weight, reduction=self.reduction,
                         **self.options)

    def grad(self, y_true, y_pred, sample_weight=None, *, grad_output=None, out=None):
        return self.loss.grad(y_true, y_pred, sample_weight=sample_weight, reduction=self.reduction,
                              grad_output=grad_output, out=out, **self.options)

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, grad_output=None, out=None):
        return self.loss.value_and_grad(y_true, y_pred, sample_weight=sample_weight,
                                        reduction=self.reduction, grad_output=grad_output,
                                        out=out, **self.options)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, **self.options}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class MultiLossFunction(LossFunction):
    """A configured loss of several arrays (PyTorch's modules): ``obj(*arrays)``; ``grad``
    returns one gradient per prediction array."""

    def __call__(self, *arrays):
        return self.loss(*arrays, reduction=self.reduction, **self.options)

    def grad(self, *arrays, grad_output=None, out=None):
        return self.loss.grad(*arrays, reduction=self.reduction, grad_output=grad_output,
                              out=out, **self.options)

    def value_and_grad(self, *arrays, grad_output=None, out=None):
        return self.loss.value_and_grad(*arrays, reduction=self.reduction,
                                        grad_output=grad_output, out=out, **self.options)


def _loss_class(class_name, loss):
    base = MultiLossFunction if isinstance(loss, MultiLoss) else LossFunction
    return type(class_name, (base,), {"loss": loss, "__doc__": loss.__doc__})


CLASS_NAMES = {
    "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
    "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
    "Huber": "huber",
    "LogCosh": "log_cosh",
    "Poisson": "poisson",
    "L1Loss": "l1_loss",
    "MSELoss": "mse_loss",
    "SmoothL1Loss": "smooth_l1_loss",
    "HuberLoss": "huber_loss",
    "BinaryCrossentropy": "binary_crossentropy",
    "BinaryFocalCrossentropy": "binary_focal_crossentropy",
    "Hinge": "hinge",
    "SquaredHinge": "squared_hinge",
    "KLDivergence": "kl_divergence",
    "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "SoftMarginLoss": "soft_margin_loss",
    "KLDivLoss": "kl_div",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "CategoricalFocalCrossentropy": "categorical_focal_crossentropy",
    "CosineSimilarity": "cosine_similarity",
    "CategoricalHinge": "categorical_hinge",
    "CategoricalGeneralizedCrossEntropy": "categorical_generalized_cross_entropy",
    "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll_loss",
    "MultiMarginLoss": "multi_margin_loss",
    "MultiLabelSoftMarginLoss": "multilabel_soft_margin_loss",
    "Dice": "dice",
    "Tversky": "tversky",
    "Circle": "circle",
    "HingeEmbeddingLoss": "hinge_embedding_loss",
    "PoissonNLLLoss": "poisson_nll_loss",
    "TripletMarginLoss": "triplet_margin_loss",
    "CosineEmbeddingLoss": "cosine_embedding_loss",
    "MarginRankingLoss": "margin_ranking_loss",
    "GaussianNLLLoss": "gaussian_nll_loss",
}

CLASSES = {cls: _loss_class(cls, _losses.LOSSES[fn]) for cls, fn in CLASS_NAMES.items()
           if fn in _losses.LOSSES}

"""Custom objectives for XGBoost and LightGBM from any loss that has ``grad_hess``.

``fl.xgboost_objective(loss, **options)`` and ``fl.lightgbm_objective(loss, **options)``
return one kind of callable, which takes every form the two libraries call an objective
with (neither library needs to be installed to make one):

* XGBoost's native ``xgb.train(params, dtrain, obj=f)`` and LightGBM 4's
  ``lgb.train({"objective": f, ...}, train_set)``: ``f(preds, data)``, the labels and
  sample weights read from the ``DMatrix`` / ``Dataset``;
* their scikit-learn estimators (``XGBRegressor(objective=f)``,
  ``LGBMClassifier(objective=f)``): ``f(y_true, y_pred)``, and with sample weights
  ``f(y_true, y_pred, sample_weight=w)`` (XGBoost) or ``f(y_true, y_pred, w)`` (LightGBM).

Predictions are raw margins (as both libraries hand a custom objective); the result is
each sample's gradient and second derivative of the loss (``reduction="none"``, each
prediction its own sample, so a Keras loss's mean over a last axis does not divide by
the number of samples), times the sample weight.  Float64 margins are differentiated in
float64, float32 ones in float32.  The softmax cross-entropies (``cross_entropy``,
``sparse_categorical_crossentropy`` / ``categorical_crossentropy`` with
``from_logits=True``) are multi-class objectives: margins of shape (samples, classes), as
XGBoost >= 2 and LightGBM >= 4 pass them (set ``num_class``), labels class indices, the
result (samples, classes).  Other losses over a class axis have no second derivative:
asking for their objective raises ``TypeError``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Objective", "xgboost_objective", "lightgbm_objective"]


class Objective:
    """A loss's per-sample (gradient, second derivative) as a boosting objective: see
    the module's docs for the call forms."""

    def __init__(self, loss, options, library):
        from . import Loss, LossFunction, get

        loss = get(loss) if isinstance(loss, str) else loss
        if isinstance(loss, LossFunction):  # a Keras-style loss object: its options too
            options = {**{k: v for k, v in loss.options.items()
                          if v != loss.loss.spec.defaults.get(k)}, **options}
        loss = getattr(loss, "loss", loss)  # (a Keras-style class or object: its loss)
        if not isinstance(loss, Loss):
            raise TypeError(f"{library}_objective: loss must be a loss name or a fastloss loss, "
                            f"got {type(loss).__name__}")
        if not getattr(loss.family, "second_derivatives", False):
            raise TypeError(f"{library}_objective: {loss.name} has no second derivative "
                            "(grad_hess exists for the pointwise losses, the losses of two "
                            "prediction arrays and the softmax cross-entropies)")
        if len(loss.inputs) != 2:
            raise TypeError(f"{library}_objective: {loss.name} takes {len(loss.inputs)} arrays; "
                            "an objective needs a loss of (labels, predictions)")
        checked = loss.check_options(options)  # (bad options fail here, not in training)
        element = loss.family.element_for(checked)
        if not loss.family.has_grad_hess(element):
            raise TypeError(f"{library}_objective: {loss.name} has no second derivative with "
                            f"these options ({element}); over classes it needs logits "
                            "(from_logits=True)")
        # Losses over a class axis take margins (n, classes) and class indices.
        self.classes = loss.spec.family == "rows"
        self.one_hot = self.classes and loss.family.targets == "dense"
        self.loss, self.options, self.library = loss, dict(options), library
        self.__name__ = f"{loss.name}_objective"

    def __repr__(self):
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"fastloss.{self.library}_objective({self.loss.name!r}{options})"

    def __call__(self, first, second, sample_weight=None):
        if hasattr(second, "get_label"):  # native: (preds, DMatrix or Dataset)
            preds, labels = first, second.get_label()
            sample_weight = second.get_weight()
        else:  # scikit-learn: (y_true, y_pred[, sample_weight])
            labels, preds = first, second
        return self.grad_hess(labels, preds, sample_weight)

    def grad_hess(self, labels, preds, sample_weight=None):
        """(gradient, second derivative) per prediction, shaped like ``preds``."""
        preds = np.asarray(preds)
        if preds.dtype not in (np.float32, np.float64):
            preds = preds.astype(np.float64)
        if self.classes:
            labels, preds = self._class_layout(labels, preds)
            grad, hess = self.loss.grad_hess(labels, preds, reduction="none", **self.options)
        else:
            labels = np.asarray(labels, dtype=preds.dtype)
            if labels.size != preds.size:
                raise ValueError(f"{self.library}_objective: {labels.size} labels for "
                                 f"{preds.size} predictions ({self.loss.name} takes one "
                                 "prediction per label)")
            # every prediction its own sample: (n, 1) for Keras's mean over the last axis
            shape = (-1, 1) if self.loss.convention == "keras" else (-1,)
            grad, hess = self.loss.grad_hess(labels.reshape(shape), preds.reshape(shape),
                                             reduction="none", **self.options)
            grad, hess = grad.reshape(preds.shape), hess.reshape(preds.shape)
        if sample_weight is not None and np.size(sample_weight) > 0:
            weight = np.asarray(sample_weight, dtype=preds.dtype).reshape(-1)
            if weight.size != preds.shape[0]:
                raise ValueError(f"{self.library}_objective: {weight.size} sample weights for "
                                 f"{preds.shape[0]} samples")
            weight = weight.reshape((-1,) + (1,) * (preds.ndim - 1))
            grad *= weight
            hess *= weight
        return grad, hess

    def _class_layout(self, labels, preds):
        """Class indices (or their one-hot rows, for a loss of dense targets) and the
        margins as (samples, classes), as XGBoost >= 2 and LightGBM >= 4 hand them over."""
        labels = np.asarray(labels).reshape(-1)
        if preds.ndim == 1 and labels.size and preds.size % labels.size == 0:
            preds = preds.reshape(labels.size, -1)  # (a flat layout: sample-major)
        if preds.ndim != 2 or preds.shape[0] != labels.size:
            raise ValueError(f"{self.library}_objective: {self.loss.name} needs margins of "
                             f"shape (samples, classes) for {labels.size} labels, got shape "
                             f"{preds.shape} (set num_class in the library's parameters)")
        classes = labels.astype(np.int64)
        if not np.array_equal(classes, labels) or (classes.size and not (
                0 <= classes.min() and classes.max() < preds.shape[1])):
            raise ValueError(f"{self.library}_objective: labels must be class indices in "
                             f"[0, {preds.shape[1]})")
        if self.one_hot:
            return np.eye(preds.shape[1], dtype=preds.dtype)[classes], preds
        return classes, preds


def xgboost_objective(loss, **options) -> Objective:
    """An XGBoost objective (native ``obj=`` or scikit-learn ``objective=``) from a loss
    name or loss, with its options: per-sample gradient and second derivative."""
    return Objective(loss, options, "xgboost")


def lightgbm_objective(loss, **options) -> Objective:
    """A LightGBM objective (``params={"objective": f}`` or scikit-learn ``objective=``)
    from a loss name or loss, with its options."""
    return Objective(loss, options, "lightgbm")

"""One spec per loss: what it is, what it takes, where its math comes from.

Everything a user sees is derived from a ``LossSpec``: the loss's signature (so
``help()``, ``inspect.signature`` and IDEs show its arrays, options, defaults and
reductions), its docstring (formula, reference, conventions), its Keras-style class, the
README's loss table and the loss lists that the tests and the benchmarks iterate over.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KERAS_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None)
TORCH_REDUCTIONS = ("mean", "sum", "none")

# Where each convention's semantics come from (the docstrings and the README say so).
SOURCES = {"keras": "Keras 3", "torch": "PyTorch", "optax": "Optax", "fastloss": "fastloss"}

_RULES = {
    "nonnegative": ">= 0", "positive": "> 0", "any": "finite", "probability": "in [0, 1]",
    "open_unit": "in (0, 1)", "bool": "True or False", "int": "an integer",
    "array": "an array or None", "axes": "None, an integer or a tuple of integers",
    "str": "a string",
}


@dataclass(frozen=True)
class Option:
    """A loss's option: its name (as the source library spells it), default, the rule
    it must obey and what it does.

    Rules: "nonnegative", "positive", "any" (finite), "probability" (in [0, 1]),
    "open_unit" (in (0, 1)), "bool", "int" (an axis, a class index; one of ``choices``
    when given), "str" (a name, one of ``choices``), "axes" (Keras's ``axis`` of the
    overlap losses: None, an integer or a tuple of them) and "array" (an array checked
    against the inputs' shapes by the loss's family: PyTorch's ``weight``, ``pos_weight``,
    circle's reference arrays)."""
    name: str
    default: Any
    rule: str = "nonnegative"
    doc: str = ""
    allow_none: bool = False  # None is a valid value (e.g. Optax's alpha=None)
    choices: tuple = ()

    @property
    def is_array(self) -> bool:
        return self.rule == "array"

    def describe(self) -> str:
        """``name=default`` and the rule, as the docs and the README show it."""
        rule = (f"one of {self.choices}" if self.choices else _RULES[self.rule]
                + (" or None" if self.allow_none and self.rule not in ("array", "axes") else ""))
        return f"{self.name}={self.default!r} ({rule})"

    def check(self, value, loss_name):
        """The value, checked and normalised (TypeError / ValueError naming it)."""
        if value is None and (self.allow_none or self.rule in ("array", "axes")):
            return None
        if self.rule == "array":
            return value  # (checked against the inputs by the family)
        if self.rule == "axes":
            return _check_axes(value, self.name, loss_name)
        if self.rule == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{loss_name}: {self.name} must be True or False, got {value!r}")
            return bool(value)
        if self.rule == "str":
            if not isinstance(value, str):
                raise TypeError(f"{loss_name}: {self.name} must be a string, one of "
                                f"{self.choices}, got {value!r}")
            if value not in self.choices:
                raise ValueError(f"{loss_name}: {self.name} must be one of {self.choices}, "
                                 f"got {value!r}")
            return value
        if self.rule == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{loss_name}: {self.name} must be an integer"
                                + (" or None" if self.allow_none else "") + f", got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"{loss_name}: {self.name} must be one of {self.choices}, "
                                 f"got {value}")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{loss_name}: {self.name} must be a real number, got {value!r}")
        value = float(value)
        bad = (not math.isfinite(value)
               or (self.rule in ("nonnegative", "positive", "probability") and value < 0)
               or (self.rule == "positive" and value == 0)
               or (self.rule == "probability" and value > 1)
               or (self.rule == "open_unit" and not 0 < value < 1))
        if bad:
            rule = {"probability": "in [0, 1] and ", "open_unit": "in (0, 1) and ",
                    "any": ""}.get(self.rule, f"{self.rule} and ")
            raise ValueError(f"{loss_name}: {self.name} must be {rule}finite, got {value}")
        return value


def _check_axes(value, name, loss_name):
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{loss_name}: {name} must be None, an integer or a tuple "
                            f"of integers, got {value!r}")
    axes = tuple(int(v) for v in values)
    return axes if isinstance(value, (tuple, list)) else axes[0]


@dataclass(frozen=True)
class LossSpec:
    """Everything about one loss that is not its kernel.

    family: the kernel family that computes it ("pointwise", "rows", "embeddings",
    "elements", "overlap", "pairwise", "sequences").  convention: whose reductions and shapes it
    follows ("keras", "torch", "optax"); source: whose semantics it has, when not the
    convention's library (an Optax loss with PyTorch-style reductions).  inputs: its positional arrays, in order;
    predictions: those that get a gradient.  formula: the math, one line or a few;
    reference: the paper or library (and version) it matches; notes: its conventions
    beyond the formula.  aliases and class_name: other names it is exported under.
    default_reduction: the function's (Keras's functions return per-sample losses:
    "none"; PyTorch's reduce: "mean"); class_reduction: its class's (Keras's classes
    reduce: "sum_over_batch_size"; elsewhere the function's)."""
    name: str
    family: str
    convention: str
    formula: str
    reference: str
    inputs: tuple = ("y_true", "y_pred")
    predictions: tuple = ("y_pred",)
    options: tuple = ()
    notes: str = ""
    aliases: tuple = ()
    class_name: str | None = None
    default_reduction: str | None = None  # (default: the convention's)
    class_reduction: str | None = None    # (default: the convention's)
    reductions: tuple | None = None       # (default: the convention's)
    source: str = ""                      # whose semantics (default: the convention's)
    defaults: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.default_reduction is None:
            object.__setattr__(self, "default_reduction",
                               "none" if self.convention == "keras" else "mean")
        if self.class_reduction is None:
            object.__setattr__(self, "class_reduction", "sum_over_batch_size"
                               if self.convention == "keras" else self.default_reduction)
        if self.reductions is None:
            object.__setattr__(self, "reductions", KERAS_REDUCTIONS if self.convention == "keras"
                               else TORCH_REDUCTIONS)
        object.__setattr__(self, "defaults", {o.name: o.default for o in self.options})
        if not self.source:
            object.__setattr__(self, "source", SOURCES[self.convention])

    @property
    def takes_sample_weight(self) -> bool:
        return self.convention == "keras"

    def option(self, name) -> Option:
        return next(o for o in self.options if o.name == name)

    # -- derived: signatures and docs ---------------------------------------------------

    def parameters(self, grad=False, classes=False, inputs=None):
        """The call's parameters: the arrays positionally (named ``inputs``, default the
        spec's), then keyword-only sample_weight (Keras), reduction, grad_output/out
        (gradients) and the options."""
        P = inspect.Parameter
        inputs = self.inputs if inputs is None else inputs
        params = [] if classes else [P(n, P.POSITIONAL_OR_KEYWORD) for n in inputs]
        kw = P.KEYWORD_ONLY
        if self.takes_sample_weight and not classes:
            params.append(P("sample_weight", kw, default=None))
        params.append(P("reduction", kw, default=self.class_reduction if classes else "default"))
        if grad:
            params += [P("grad_output", kw, default=None), P("out", kw, default=None)]
        params += [P(o.name, kw, default=o.default) for o in self.options]
        return params

    def signature(self, grad=False):
        return inspect.Signature(self.parameters(grad))

    def doc(self, mode="value"):
        """The docstring of the loss (mode "value") or of its grad / value_and_grad."""
        what = {"value": "The loss", "grad": "The gradient (a vector-Jacobian product) of the loss",
                "value_and_grad": "The loss and its gradient, in one fused pass,",
                "grad_hess": "The gradient and the Hessian's diagonal (each element's second "
                             "derivative), in one fused pass,"}[mode]
        arrays = ", ".join(self.inputs)
        grads = ", ".join(self.predictions)
        lines = [f"{self.name}: {what} over ({arrays}).", "",
                 f"    {self.formula}", ""]
        if self.notes:
            lines += [_wrap(self.notes), ""]
        lines += [f"Semantics: {self.source}. Reference: {self.reference}.", ""]
        lines.append("Options:")
        if self.options:
            lines += [f"    {o.describe()}" + (f": {o.doc}" if o.doc else "") for o in self.options]
        else:
            lines.append("    (none)")
        reductions = ", ".join(repr(r) for r in self.reductions if r is not None)
        lines += ["", f"reduction: one of {reductions}; default {self.default_reduction!r}."]
        if self.class_reduction != self.default_reduction:
            reduced_by = (f"; the class {self.class_name} reduces with "
                          f"{self.class_reduction!r}" if self.class_name else "")
            lines.append(f"(As Keras's functions, unreduced by default: per-sample "
                         f"losses{reduced_by}.)")
        if self.takes_sample_weight:
            lines.append("sample_weight: per-sample weights, broadcast as Keras does.")
        if mode != "value":
            lines += [f"grad_output: the cotangent of the value (default ones); the gradient "
                      f"is with respect to {grads}"
                      + (" (a tuple, in that order)." if len(self.predictions) > 1 else "."),
                      "out: a buffer for the gradient (a tuple of buffers for several "
                      "predictions); it may be an input itself."]
        returns = {"value": "the value (a 0-d scalar, or per-sample values for 'none')",
                   "grad": "the gradient" + ("s" if len(self.predictions) > 1 else ""),
                   "value_and_grad": "(value, gradient)",
                   "grad_hess": "(gradient, second derivatives), the gradient grad's (to the "
                                "last bit: the fused kernel may round a multiply-add "
                                "differently), "
                                "the second derivatives scaled by the same reduction and "
                                "weights (for gradient boosting: XGBoost's and LightGBM's "
                                "(grad, hess)); where a loss's second derivative is zero almost "
                                "everywhere its docs say what is returned"}[mode]
        lines += ["", f"Returns {returns}, in the inputs' array library (NumPy or CuPy)."]
        if mode == "value":
            lines += ["", f"Also {self.name}.grad(...), the gradient as a vector-Jacobian "
                          f"product, and {self.name}.value_and_grad(...), both in one pass"
                          + (f"; {self.name}.grad_hess(...), gradient and second derivatives."
                             if self.family in ("pointwise", "elements") else ".")]
        return "\n".join(lines)

    def table_row(self) -> str:
        """This loss's row of the README's loss table."""
        options = ", ".join(f"`{o.describe()}`" for o in self.options)
        names = [f"`{a}`" for a in self.aliases] + ([f"`{self.class_name}`"] if self.class_name else [])
        semantics = (self.source + (f": {self.notes}" if self.notes else "")).replace("|", "\\|")
        arrays = ", ".join(self.inputs)
        return (f"| `{self.name}` | ({arrays}) | {semantics} | {options} | {', '.join(names)} |"
                .replace("  ", " "))


TABLE_HEADER = ("| loss | arrays | semantics | options | aliases / class |\n"
                "|---|---|---|---|---|")


def readme_table(specs) -> str:
    """The README's loss table, one row per spec (a test keeps the README equal to it)."""
    return "\n".join([TABLE_HEADER, *(spec.table_row() for spec in specs)])


def _wrap(text, width=88):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return "\n".join(lines + [line] if line else lines)

"""Hypothesis strategies for valid calls of every loss in ``fastloss.LOSSES``, each with
its float64 reference (from tests/*references.py; nothing here computes a loss itself).

``calls(name)`` draws a ``Call``: the loss's positional arrays (in the drawn dtype), its
options, a reduction it accepts, a sample_weight where it takes one, and a backend (the
serial or parallel CPU kernel, or CUDA, under the simulator on machines without a GPU).
Shapes include an empty batch, a single element and a long last axis (300); CUDA draws
stay tiny, since the simulator runs Python for every thread.
"""

import contextlib
import math
import os
import sys
import threading
import traceback
from dataclasses import dataclass

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from numba.core import types as numba_types
from numba.np import numpy_support

import fastloss as fl
import multi_references
import overlap_references
import pairwise_references
import references
import row_references
import sequence_references
from fastloss import _config

KERAS_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none")
CANDIDATE_REDUCTIONS = KERAS_REDUCTIONS + ("batchmean",)

# The full CUDA matrix (the backend fixture's "cuda" case, CUDA draws here) is opt-in:
# a CUDA example costs about 0.1 s a call under the simulator, whose kernels share their
# math with the CPU's; tests/test_cuda_smoke.py runs every CUDA kernel in every run.
CUDA_MATRIX = (os.environ.get("FASTLOSS_TEST_CUDA_MATRIX") == "1"
               or os.environ.get("FASTLOSS_TEST_GPU") == "1")
BACKENDS = ("serial", "parallel") * 4 + (("cuda",) if CUDA_MATRIX else ())


def reductions(loss):
    """The reductions ``loss`` accepts, asked of the loss itself."""
    accepted = []
    for reduction in CANDIDATE_REDUCTIONS:
        try:
            loss.check_reduction(reduction)
        except ValueError:
            continue
        accepted.append(reduction)
    return tuple(accepted)


# -- running on a backend --------------------------------------------------------------------

@contextlib.contextmanager
def on_backend(backend):
    """tests/conftest.py's ``backend`` fixture as a context manager (for use inside a
    Hypothesis example): the serial or the parallel CPU kernel, or CUDA."""
    if backend == "cuda":
        with fl.backend("cuda"):
            yield
        return
    before = _config.PARALLEL_THRESHOLD
    _config.PARALLEL_THRESHOLD = 0 if backend == "parallel" else 1 << 62
    try:
        with fl.backend("cpu"):
            yield
    finally:
        _config.PARALLEL_THRESHOLD = before


_SHARED_LOCK = threading.Lock()


def _shared_array(self, shape, dtype, alignment=None):
    """The simulator's FakeCUDAShared.array, its look-up under a lock.  It finds a block's
    shared array by the calling line, or makes and stores one: two threads that both
    find none each make their own, and then do not share it."""
    caller = traceback.extract_stack(sys._getframe(1), limit=1)[0][0:2]
    with _SHARED_LOCK:
        if caller not in self._allocations:
            if isinstance(dtype, numba_types.Type):
                dtype = numpy_support.as_dtype(dtype)
            self._allocations[caller] = np.empty(shape, dtype)
        return self._allocations[caller]


@contextlib.contextmanager
def quick_simulator(simulator):
    """The CUDA simulator runs a block's threads as Python threads that hand the GIL over
    at every switch interval: a short one makes its synchronisations fast (and the race
    in its shared-array look-up likely, hence the lock)."""
    patched = None
    if simulator:
        from numba.cuda.simulator import kernelapi
        patched = kernelapi.FakeCUDAShared.array
        kernelapi.FakeCUDAShared.array = _shared_array
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
        if patched is not None:
            kernelapi.FakeCUDAShared.array = patched


# -- a drawn call ----------------------------------------------------------------------------

@dataclass
class Call:
    """One valid call of a loss and its float64 reference.

    reference(arrays, reduction, sample_weight) -> the float64 value, from the arrays as
    the kernels see them (in the compute dtype) converted to float64.  values_shape: the
    shape of the unreduced value (reduction "none"; Keras squeezes a trailing axis of 1
    against a scalar sample_weight).  gradients: the positions in ``arrays`` of the
    predictions (each gets a gradient, in that order)."""
    name: str
    arrays: tuple
    options: dict
    reduction: str
    reference: object
    values_shape: tuple
    gradients: tuple = None
    # the function whose derivative the gradient is, where that is not the value's
    # (PyTorch's CTC gradient): called like reference
    gradient_reference: object = None
    sample_weight: object = None
    backend: str = "serial"
    dtype: type = np.float64
    seed: int = 0

    def __post_init__(self):
        if self.gradients is None:
            self.gradients = (len(self.arrays) - 1,)

    @property
    def loss(self):
        return fl.LOSSES[self.name]

    @property
    def keras(self):
        return self.loss.convention == "keras"

    @property
    def empty(self):
        return math.prod(self.values_shape) == 0

    def kwargs(self, reduction=None, sample_weight="given", **extra):
        kw = dict(self.options, reduction=self.reduction if reduction is None else reduction)
        weight = self.sample_weight if isinstance(sample_weight, str) else sample_weight
        if weight is not None:
            kw["sample_weight"] = weight
        return {**kw, **extra}

    def run(self, method="__call__", reduction=None, sample_weight="given", **extra):
        """loss(...), loss.grad(...) or loss.value_and_grad(...) on the drawn backend."""
        with on_backend(self.backend):
            return getattr(self.loss, method)(*self.arrays,
                                              **self.kwargs(reduction, sample_weight, **extra))

    def exact(self):
        """The arrays as the kernels see them, in float64."""
        return tuple(np.asarray(x).astype(np.float64) if np.asarray(x).dtype.kind == "f"
                     else np.asarray(x) for x in self.arrays)

    def expected(self, arrays=None):
        """The reference value (at ``arrays``, float64, default the call's own); for an
        empty batch, the documented rule (README: 0 for Keras's reductions and PyTorch's
        "sum", NaN for PyTorch's "mean")."""
        if self.empty:
            if self.reduction == "none":
                return np.zeros(self.values_shape)
            if self.keras or self.reduction == "sum":
                return 0.0
            return math.nan
        arrays = self.exact() if arrays is None else arrays
        return self.reference(arrays, self.reduction, self.sample_weight)

    def differentiated(self, arrays):
        """What the gradient is the derivative of, at ``arrays`` (float64)."""
        if self.gradient_reference is None or self.empty:
            return self.expected(arrays)
        return self.gradient_reference(arrays, self.reduction, self.sample_weight)

    def nan_by_rule(self):
        """Whether the documented value is NaN (the mean of an empty batch)."""
        return self.empty and not self.keras and self.reduction in ("mean", "batchmean")


class Inputs:
    """Draws from Hypothesis and arrays from a NumPy generator it seeds; ``wide`` widens
    the ranges of the values (still finite and valid), for the property that nothing
    valid gives NaN."""

    def __init__(self, draw, backend, dtype, wide):
        self.draw = draw
        self.backend = backend
        self.dtype = dtype
        self.wide = wide
        self.seed = draw(st.integers(0, 2 ** 32 - 1))
        self.rng = np.random.default_rng(self.seed)

    @property
    def cuda(self):
        return self.backend == "cuda"

    def choice(self, values):
        return self.draw(st.sampled_from(values))

    # shapes

    def batch(self, max_ndim=2):
        """A batch shape: none (a single sample), empty, one sample, a few; CUDA: tiny."""
        if self.cuda:
            shapes = [(2,), (), (0,), (1,), (3,)]
        else:
            shapes = [(4,), (), (0,), (1,), (3, 2), (2, 3)]
        return self.choice([s for s in shapes if len(s) <= max_ndim])

    def features(self, multiple=1):
        """A last axis: short, or long (300, as a multiple of ``multiple``)."""
        if self.cuda:
            return multiple * self.choice([3, 1, 2, 4])
        return multiple * self.choice([3, 1, 2, 5, 8, 300 // multiple])

    def shape(self, max_ndim=2, multiple=1):
        """batch + (features,), a few hundred elements at most."""
        features = self.features(multiple)
        batch = self.batch(max_ndim)
        if features > 8 and math.prod(batch) > 2:
            batch = (2,)
        return batch + (features,)

    # values, in the compute dtype

    def cast(self, x):
        return np.asarray(x).astype(self.dtype)

    def real(self, shape, scale=1.0, wide_limit=30.0):
        x = self.rng.normal(0.0, scale, shape)
        if self.wide:
            x = np.clip(x * 10 ** self.rng.uniform(0, 1.5, shape), -wide_limit, wide_limit)
        return self.cast(x)

    def uniform(self, shape, lo, hi):
        return self.cast(self.rng.uniform(lo, hi, shape))

    def probabilities(self, shape):
        """Away from Keras's clip bounds (float32 and float64 clip alike there); wide:
        anywhere in [0, 1], the bounds included."""
        if self.wide:
            edges = np.array([0.0, 1.0, 1e-9, 1 - 1e-9, 1e-7, 0.5])
            x = np.where(self.rng.random(shape) < 0.3, self.rng.choice(edges, shape),
                         self.rng.uniform(0, 1, shape))
            return self.cast(x)
        return self.uniform(shape, 0.02, 0.98)

    def positive(self, shape, lo=0.05, hi=3.0):
        if self.wide:
            return self.cast(self.rng.uniform(0, hi, shape) * 10 ** self.rng.uniform(-2, 1, shape))
        return self.uniform(shape, lo, hi)

    def soft_labels(self, shape):
        return self.cast(self.rng.choice([0.0, 1.0, 0.25, 0.75], shape))

    def binary_labels(self, shape):
        return self.cast(self.rng.integers(0, 2, shape))

    def signs(self, shape):
        return self.cast(self.rng.choice([-1.0, 1.0], shape))

    def class_indices(self, shape, classes):
        return self.rng.integers(0, classes, shape)

    def label_sets(self, shape):
        """PyTorch's multilabel targets: rows of class indices (repeats too) padded with -1,
        any valid entry after the first -1 (which ends the row's targets)."""
        C = shape[-1]
        rows = self.rng.integers(-1, C, shape).reshape(-1, C)
        for row in rows:
            k = self.rng.integers(0, C + 1)  # the number of targets: none to all
            row[:k] = self.rng.integers(0, C, k)
            if k < C:
                row[k] = -1
        return rows.reshape(shape)

    def distributions(self, shape):
        """Rows of probabilities along the last axis."""
        return self.cast(self.rng.dirichlet(np.ones(shape[-1]), shape[:-1]))

    def one_hot(self, shape):
        return self.cast(np.eye(shape[-1])[self.rng.integers(0, shape[-1], shape[:-1])])

    def weights(self, shape):
        """Positive weights exact in float32 (so every compute dtype sees the same ones)."""
        return self.rng.integers(16, 128, shape) / 64.0

    def sample_weight(self, values_shape):
        """Keras's sample_weight: none, a scalar, or one per sample (not for an empty
        batch: test_properties.py's test_empty_batch_with_empty_sample_weight)."""
        forms = ["none", "scalar", "per_sample"] if math.prod(values_shape) else ["none", "scalar"]
        form = self.choice(forms)
        if form == "none":
            return None
        if form == "scalar":
            return 0.75
        return self.weights(values_shape)


def _keras_axis(inputs, shape, shortest=1):
    """Keras's axis option: the last axis, or the first (of rank >= 2, not empty: a mean
    over an empty axis is NaN; at least ``shortest`` long)."""
    return inputs.choice([-1, 0]) if len(shape) >= 2 and shape[0] >= shortest else -1


def _without_axis(shape, axis):
    return tuple(n for i, n in enumerate(shape) if i != axis % len(shape))


def _torch_reduce(values, reduction):
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


# -- the losses ----------------------------------------------------------------------------
# Each maker takes an Inputs and returns the Call's own fields: arrays, options,
# reference, values_shape (and gradients where they are not the last array's).

def _pointwise(name):
    """tests/references.py POINTWISE: Keras's mean over the last axis, or PyTorch's
    elementwise values."""
    _, convention, option = references.POINTWISE[name]
    values = {"delta": [1.0, 0.3, 2.5], "beta": [1.0, 0.0, 0.3, 2.5]}

    def make(inputs):
        shape = inputs.shape()
        p = inputs.real(shape)
        t = inputs.real(shape)
        if name == "mean_absolute_percentage_error":  # |y_true| away from 0
            t = inputs.cast(inputs.rng.choice([-1, 1], shape) * inputs.rng.uniform(0.5, 2, shape))
        elif name in ("mean_squared_logarithmic_error", "poisson"):
            t, p = inputs.positive(shape, 0.0), inputs.positive(shape)
        options = {}
        if option:
            options[option] = inputs.choice(values[option])
        keras = convention == "keras"
        # PyTorch 2.13's elementwise weight (of y_pred's shape); "mean" divides by the
        # weights' sum for mse_loss and l1_loss, by the element count for huber_loss
        weight = (inputs.weights(shape) if name in ("mse_loss", "l1_loss", "huber_loss")
                  and inputs.choice([False, True]) else None)
        element_options = dict(options)

        def reference(arrays, reduction, sample_weight):
            kw = {"sample_weight": sample_weight} if keras else {}
            if weight is None:
                return references.reference_value(name, *arrays, reduction=reduction, **kw,
                                                  **element_options)
            values = weight * references.reference_value(name, *arrays, reduction="none",
                                                         **element_options)
            if reduction != "mean":
                return values if reduction == "none" else values.sum()
            return values.sum() / (values.size if name == "huber_loss" else weight.sum())
        if weight is not None:
            options["weight"] = weight
        return dict(arrays=(t, p), options=options, reference=reference,
                    values_shape=shape[:-1] if keras else shape)
    return make


def _keras_binary(name):
    """tests/references.py CLASSIFICATION, Keras's losses (over the last axis, or ``axis``)."""
    def make(inputs):
        shape = inputs.shape()
        options = {}
        if name in ("binary_crossentropy", "binary_focal_crossentropy"):
            options["from_logits"] = inputs.choice([False, True])
            options["label_smoothing"] = inputs.choice([0.0, 0.1])
            if name == "binary_focal_crossentropy":
                options["apply_class_balancing"] = inputs.choice([False, True])
                options["alpha"] = inputs.choice([0.25, 0.6])
                options["gamma"] = inputs.choice([2.0, 0.0, 0.5])
            t = inputs.choice([inputs.soft_labels, inputs.binary_labels])(shape)
            p = (inputs.real(shape, 3.0) if options["from_logits"]
                 else inputs.probabilities(shape))
        elif name in ("hinge", "squared_hinge"):
            t = inputs.choice([inputs.signs, inputs.binary_labels])(shape)
            p = inputs.real(shape, 1.5)
        else:  # kl_divergence: both clipped to [1e-7, 1]; away from the bounds
            t, p = inputs.uniform(shape, 0.05, 1.0), inputs.uniform(shape, 0.05, 0.95)
        axis = _keras_axis(inputs, shape) if "from_logits" in options else -1
        if axis != -1:
            options["axis"] = axis

        def reference(arrays, reduction, sample_weight):
            t, p = (np.moveaxis(x, axis, -1) for x in arrays)
            kw = {k: v for k, v in options.items() if k != "axis"}
            return references.classification_value(name, t, p, sample_weight, reduction, **kw)
        return dict(arrays=(t, p), options=options, reference=reference,
                    values_shape=_without_axis(shape, axis))
    return make


def _torch_binary(name):
    """PyTorch's (and Optax's) binary losses of tests/references.py and
    tests/multi_references.py: elementwise values."""
    def make(inputs):
        shape = inputs.shape()
        options = {}
        if name == "binary_cross_entropy":
            t, p = inputs.soft_labels(shape), inputs.probabilities(shape)
            options["weight"] = inputs.choice([None, shape[-1:], shape[:-1] + (1,)])
        elif name == "binary_cross_entropy_with_logits":
            t, p = inputs.soft_labels(shape), inputs.real(shape, 3.0)
            options["weight"] = inputs.choice([None, shape[-1:], shape[:-1] + (1,)])
            options["pos_weight"] = inputs.choice([None, shape[-1:]])
        elif name == "soft_margin_loss":
            t, p = inputs.signs(shape), inputs.real(shape, 2.0)
        elif name == "sigmoid_focal_loss":
            t = inputs.choice([inputs.binary_labels, inputs.soft_labels])(shape)
            p = inputs.real(shape, 3.0)
            options["alpha"] = inputs.choice([None, 0.25, 0.6])
            options["gamma"] = inputs.choice([2.0, 0.0, 1.5])
        elif name == "kl_div":
            options["log_target"] = inputs.choice([False, True])
            x = np.log(inputs.rng.uniform(0.05, 1.0, shape))
            t = (np.log(inputs.rng.uniform(0.05, 1.0, shape)) if options["log_target"]
                 else inputs.rng.uniform(0, 1, shape) * (inputs.rng.random(shape) < 0.8))
            t, p = inputs.cast(t), inputs.cast(x)
            if inputs.wide:
                p = inputs.cast(x * inputs.rng.uniform(1, 20, shape))
        elif name == "hinge_embedding_loss":
            t, p = inputs.signs(shape), inputs.real(shape, 1.5)
            options["margin"] = inputs.choice([1.0, -0.5, 0.0, 2.0])
        else:  # poisson_nll_loss
            options["log_input"] = inputs.choice([True, False])
            options["full"] = inputs.choice([False, True])
            options["eps"] = inputs.choice([1e-8, 1e-3])
            t = inputs.uniform(shape, 0, 3)
            p = inputs.real(shape) if options["log_input"] else inputs.positive(shape, 0.2, 2.0)
        for key in ("weight", "pos_weight"):  # drawn as shapes, made exact in float32
            if options.get(key) is not None:
                options[key] = inputs.weights(options[key])

        def reference(arrays, reduction, sample_weight):
            t, p = arrays
            if name == "binary_cross_entropy":
                weight = 1.0 if options["weight"] is None else options["weight"]
                return _torch_reduce(references.torch_bce(t, p)[0] * weight, reduction)
            if name == "binary_cross_entropy_with_logits":
                pos_weight = 1.0 if options["pos_weight"] is None else options["pos_weight"]
                return references.bce_pos_weight_reference(t, p, pos_weight, options["weight"],
                                                           reduction)
            if name == "kl_div":
                return references.kl_div_reference(t, p, reduction, **options)
            if name == "hinge_embedding_loss":
                return _torch_reduce(multi_references.hinge_embedding(t, p, **options), reduction)
            if name == "poisson_nll_loss":
                return _torch_reduce(multi_references.poisson_nll(t, p, **options), reduction)
            return references.classification_value(name, t, p, reduction=reduction, **options)
        return dict(arrays=(t, p), options=options, reference=reference, values_shape=shape)
    return make


def _keras_rows(name):
    """tests/row_references.py, Keras's losses over the class axis (``axis``)."""
    def make(inputs):
        multiple = 3 if name == "triplet_loss" else 1
        shape = inputs.shape(multiple=multiple)
        # cosine_similarity of one-element rows is +-1 whatever they hold: a gradient of
        # rounding noise, of terms of order 1 / |y_pred|, that no tolerance fits
        shortest = 2 if name == "cosine_similarity" else 1
        if shape[-1] < shortest:
            shape = shape[:-1] + (shortest,)
        options = {}
        axis = -1
        if name in ("categorical_crossentropy", "sparse_categorical_crossentropy",
                    "categorical_focal_crossentropy", "cosine_similarity"):
            axis = _keras_axis(inputs, shape, shortest)
            if axis != -1:
                options["axis"] = axis
        moved = shape if axis == -1 else shape[1:] + shape[:1]  # the class axis last
        ignore = None
        if name in ("categorical_crossentropy", "categorical_focal_crossentropy"):
            options["from_logits"] = inputs.choice([True, False])
            options["label_smoothing"] = inputs.choice([0.0, 0.1])
            if name == "categorical_focal_crossentropy":
                options["alpha"] = inputs.choice([0.25, 0.5])
                options["gamma"] = inputs.choice([2.0, 0.0, 1.5])
            t = inputs.choice([inputs.distributions, inputs.one_hot])(moved)
            p = inputs.real(moved, 2.0) if options["from_logits"] else inputs.positive(moved)
        elif name == "sparse_categorical_crossentropy":
            options["from_logits"] = inputs.choice([True, False])
            # (not on an empty batch: test_properties.py's
            # test_empty_batch_with_empty_sample_weight)
            ignore = inputs.choice([None, 0, -1]) if math.prod(moved[:-1]) else None
            options["ignore_class"] = ignore
            t = inputs.class_indices(moved[:-1], moved[-1])
            if ignore is not None and t.size:  # some rows ignored
                t = np.where(inputs.rng.random(t.shape) < 0.3, ignore, t)
            p = inputs.real(moved, 2.0) if options["from_logits"] else inputs.positive(moved)
        elif name == "cosine_similarity":
            t, p = inputs.real(moved), inputs.real(moved)
        elif name == "categorical_hinge":
            t = inputs.choice([inputs.one_hot, inputs.distributions])(moved)
            p = inputs.real(moved, 1.5)
        elif name == "categorical_generalized_cross_entropy":
            options["q"] = inputs.choice([0.5, 0.3, 0.8])
            t = inputs.class_indices(moved[:-1], moved[-1])
            p = inputs.uniform(moved, 0.05, 1.0)
        else:  # triplet_loss: y_pred = [anchor | positive | negative], y_true unused
            options["alpha"] = inputs.choice([0.2, 0.0, 1.0])
            t = np.zeros(moved[:-1])
            p = inputs.real(moved, 0.5)
        if axis != -1:  # back to the drawn layout: the class axis first
            p = np.ascontiguousarray(np.moveaxis(p, -1, 0))
            if t.shape == moved:
                t = np.ascontiguousarray(np.moveaxis(t, -1, 0))
        ref_options = {k: v for k, v in options.items() if k not in ("ignore_class", "axis")}

        def reference(arrays, reduction, sample_weight):
            t, p = arrays
            return row_references.reference(name, t, p, sample_weight=sample_weight,
                                            reduction=reduction, axis=axis, ignore=ignore,
                                            **ref_options)
        return dict(arrays=(t, p), options=options, reference=reference, values_shape=moved[:-1])
    return make


def _torch_rows(name):
    """tests/row_references.py, PyTorch's (and Optax's) losses over classes: the class
    axis is dim 1 ((C,) for one sample; (N, C, d) for cross_entropy and nll_loss)."""
    def make(inputs):
        classes = inputs.features()
        batch = inputs.batch(max_ndim=1)
        shape = batch[:1] + (classes,)
        if name in ("cross_entropy", "nll_loss") and batch and classes <= 8 and not inputs.cuda:
            shape += inputs.choice([(), (2,)])  # PyTorch's (N, C, d)
        if classes > 8 and math.prod(shape) > 600:
            shape = (2,) + shape[1:]
        values_shape = shape[:1] + shape[2:] if len(shape) >= 2 else ()
        moved = values_shape + (classes,)
        options = {}
        ignore = None
        dense = name in ("multilabel_soft_margin_loss", "poly_loss_cross_entropy") or (
            name == "cross_entropy" and inputs.choice([False, True]))
        if name == "cross_entropy":
            options["label_smoothing"] = inputs.choice([0.0, 0.15])
        if name in ("cross_entropy", "nll_loss") and not dense:
            ignore = inputs.choice([-100, 1])
            options["ignore_index"] = ignore
        if name in ("cross_entropy", "nll_loss", "multi_margin_loss",
                    "multilabel_soft_margin_loss"):
            weight = inputs.choice([False, True])
            options["weight"] = inputs.weights(classes) if weight else None
        if name == "multi_margin_loss":
            options["p"] = inputs.choice([1, 2])
            options["margin"] = inputs.choice([1.0, 0.5, 2.0])
        if name == "poly_loss_cross_entropy":
            options["epsilon"] = inputs.choice([2.0, -0.5, 0.0])

        if name == "multilabel_margin_loss":  # class indices of y_pred's shape
            t = inputs.label_sets(moved)
        elif dense:
            make_targets = (inputs.choice([inputs.binary_labels, inputs.soft_labels])
                            if name == "multilabel_soft_margin_loss"
                            else inputs.choice([inputs.distributions, inputs.one_hot]))
            t = make_targets(moved)
        else:
            t = np.asarray(inputs.class_indices(values_shape, classes))
            if ignore is not None and t.size:  # some targets ignored, never all
                t = np.where(inputs.rng.random(t.shape) < 0.3, ignore, t)
                if t.flat[0] == ignore:
                    t.flat[0] = 0
        if name == "nll_loss":
            p = inputs.cast(np.log(inputs.rng.dirichlet(np.ones(classes), values_shape)))
        else:
            p = inputs.real(moved, 2.0)
        if len(shape) == 3:  # classes to dim 1
            p = np.ascontiguousarray(np.moveaxis(p, -1, 1))
            if dense:
                t = np.ascontiguousarray(np.moveaxis(t, -1, 1))
        ref_options = {k: v for k, v in options.items() if k != "ignore_index"}

        def reference(arrays, reduction, sample_weight):
            t, p = arrays
            return row_references.reference(name, t, p, reduction=reduction, ignore=ignore,
                                            **ref_options)
        return dict(arrays=(t, p), options=options, reference=reference,
                    values_shape=values_shape)
    return make


def _multi(name):
    """tests/multi_references.py: losses of several arrays, PyTorch's reductions."""
    reference_function = {
        "triplet_margin_loss": multi_references.triplet_margin,
        "triplet_margin_with_distance_loss": multi_references.triplet_margin_distance,
        "quadruplet_loss": multi_references.quadruplet,
        "contrastive_loss": multi_references.contrastive,
        "cosine_embedding_loss": multi_references.cosine_embedding,
        "margin_ranking_loss": multi_references.margin_ranking,
        "gaussian_nll_loss": multi_references.gaussian_nll,
        "gaussian_kl_loss": multi_references.gaussian_kl,
    }[name]

    def make(inputs):
        shape = inputs.shape()
        rows = fl.LOSSES[name].spec.family == "embeddings"
        values_shape = shape[:-1] if rows else shape
        options = {}
        if name == "triplet_margin_loss":
            options = {"margin": inputs.choice([1.0, 0.5, 2.5]),
                       "p": inputs.choice([2.0, 1.0, 3.0]),
                       "eps": inputs.choice([1e-6, 0.0]), "swap": inputs.choice([False, True])}
            arrays = tuple(inputs.real(shape) for _ in range(3))
        elif name == "triplet_margin_with_distance_loss":
            options = {"distance_function": inputs.choice(["euclidean", "cosine"]),
                       "margin": inputs.choice([1.0, 0.5, 2.5]),
                       "eps": inputs.choice([None, 0.0, 1e-3]),
                       "swap": inputs.choice([False, True])}
            if options["distance_function"] == "cosine" and shape[-1] < 2:
                # the cosine of one-element rows is +-1 whatever they hold: a gradient of
                # rounding noise, of terms of order 1 / |x|, that no tolerance fits
                shape = shape[:-1] + (2,)
                values_shape = shape[:-1]
            arrays = tuple(inputs.real(shape) for _ in range(3))
        elif name == "quadruplet_loss":
            options = {"alpha1": inputs.choice([1.0, 0.0]), "alpha2": inputs.choice([0.5, 2.0])}
            arrays = tuple(inputs.real(shape, 0.4) for _ in range(4))
        elif name == "contrastive_loss":
            options = {"margin": inputs.choice([1.0, 0.0, 3.0]), "eps": inputs.choice([1e-6, 0.0])}
            arrays = (inputs.binary_labels(values_shape), inputs.real(shape, 0.3),
                      inputs.real(shape, 0.3))
        elif name == "cosine_embedding_loss":
            options = {"margin": inputs.choice([0.0, -0.3, 0.5])}
            arrays = (inputs.signs(values_shape), inputs.real(shape), inputs.real(shape))
        elif name == "margin_ranking_loss":
            options = {"margin": inputs.choice([0.0, 0.5])}
            arrays = (inputs.signs(shape), inputs.real(shape), inputs.real(shape))
        elif name == "gaussian_nll_loss":
            options = {"full": inputs.choice([False, True]), "eps": inputs.choice([1e-6, 1e-3])}
            var_shape = inputs.choice([shape, shape[:-1] + (1,), shape[:-1]])
            arrays = (inputs.real(shape), inputs.real(shape), inputs.positive(var_shape, 0.2, 2.0))
        else:  # gaussian_kl_loss
            arrays = (inputs.real(shape), inputs.real(shape, 1.0, wide_limit=20.0))

        def reference(arrays, reduction, sample_weight):
            return _torch_reduce(reference_function(*arrays, **options), reduction)
        predictions = fl.LOSSES[name].predictions
        return dict(arrays=arrays, options=options, reference=reference,
                    values_shape=values_shape,
                    gradients=tuple(range(len(arrays) - len(predictions), len(arrays))))
    return make


def _overlap(name):
    """tests/overlap_references.py: Keras's dice, tversky and F-beta over ``axis``."""
    def make(inputs):
        shape = inputs.shape()
        axis = inputs.choice([None, -1, (0,)] + ([(0, len(shape) - 1)] if len(shape) >= 2 else []))
        options = {"axis": axis}
        if name == "tversky":
            options.update(alpha=inputs.choice([0.5, 0.3]), beta=inputs.choice([0.5, 0.7]))
        elif name == "fbeta_loss":
            options["beta"] = inputs.choice([1.0, 0.5, 2.0])
        t = inputs.choice([inputs.binary_labels, inputs.soft_labels])(shape)
        p = inputs.probabilities(shape)
        reduced = range(len(shape)) if axis is None else [
            a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))]
        values_shape = tuple(n for i, n in enumerate(shape) if i not in reduced)

        def reference(arrays, reduction, sample_weight):
            return overlap_references.reference(name, *arrays, sample_weight=sample_weight,
                                                reduction=reduction, **options)
        return dict(arrays=(t, p), options=options, reference=reference,
                    values_shape=values_shape)
    return make


def _circle(inputs):
    """tests/pairwise_references.py: Keras's circle over the pairs of a batch."""
    N = inputs.choice([3, 0, 1, 2]) if inputs.cuda else inputs.choice([6, 0, 1, 2, 9])
    D = inputs.choice([3, 1, 5])
    labels = inputs.class_indices(N, 3)
    # norms in [0.6, 0.95]: no similarity, the diagonal's included, on the kink at 1
    e = inputs.rng.standard_normal((N, D))
    e = inputs.cast(e / np.linalg.norm(e, axis=1, keepdims=True)
                    * inputs.rng.uniform(0.6, 0.95, (N, 1)))
    options = {"gamma": inputs.choice([80.0, 10.0, 2.5]), "margin": inputs.choice([0.4, 0.25]),
               "remove_diagonal": inputs.choice([True, False])}
    references_form = inputs.choice(["none", "labels", "embeddings"])
    if references_form == "labels":
        options["ref_labels"] = inputs.class_indices(N, 3)
    elif references_form == "embeddings":
        # no more reference rows than rows (test_properties.py's
        # test_circle_gradient_with_more_reference_rows_than_rows)
        M = inputs.choice([max(N, 1), 1])
        r = inputs.rng.standard_normal((M, D))
        options["ref_labels"] = inputs.class_indices(M, 3)
        options["ref_embeddings"] = inputs.cast(r / np.linalg.norm(r, axis=1, keepdims=True) * 0.9)

    def reference(arrays, reduction, sample_weight):
        labels, e = arrays
        exact = {k: (v.astype(np.float64) if k == "ref_embeddings" else v)
                 for k, v in options.items()}
        return pairwise_references.circle_reference(labels, e, sample_weight, reduction, **exact)
    return dict(arrays=(labels, e), options=options, reference=reference, values_shape=(N,))


def _ntxent(inputs):
    """tests/pairwise_references.py: Optax's ntxent; at least one positive pair (without
    one the loss is NaN, as Optax), or an empty batch."""
    N = inputs.choice([3, 0, 2]) if inputs.cuda else inputs.choice([6, 0, 2, 9])
    D = inputs.choice([3, 1, 5])
    labels = inputs.class_indices(N, 3)
    if N:
        labels[1] = labels[0]
    e = inputs.real((N, D))
    options = {"temperature": inputs.choice([0.07, 0.5])}
    eps = np.finfo(inputs.dtype).eps

    def reference(arrays, reduction, sample_weight):
        return pairwise_references.ntxent_reference(*arrays, options["temperature"], eps)
    return dict(arrays=(labels, e), options=options, reference=reference, values_shape=(N,))


def _sequences(name):
    """tests/sequence_references.py: CTC, PyTorch's and Keras's.  Every frame count is at
    least 2 S + 1 for a target of S labels, so every alignment is possible (the tests of
    impossible ones are in tests/test_ctc.py)."""
    keras = name == "ctc"

    def make(inputs):
        rng = inputs.rng
        N = inputs.choice([2, 1]) if inputs.cuda else inputs.choice([2, 0, 1, 3])
        C = inputs.choice([3, 2, 5])
        T = inputs.choice([3, 1]) if inputs.cuda else inputs.choice([5, 1, 2, 8])
        S = inputs.choice([0, 1, 2, 3])
        S = min(S, (T - 1) // 2)
        blank = 0 if keras else inputs.choice([0, C - 1])
        classes = [c for c in range(C) if c != blank]
        target_lengths = rng.integers(0, S + 1, N)
        padded = np.zeros((N, S), np.int64) if keras else np.full((N, S), blank, np.int64)
        for n, length in enumerate(target_lengths):
            padded[n, :length] = rng.choice(classes, length)
        if keras:
            t = padded
            x = inputs.real((N, T, C), 2.0)

            def reference(arrays, reduction, sample_weight):
                return sequence_references.keras_ctc(*arrays, sample_weight, reduction)
            return dict(arrays=(t, x), options={}, reference=reference, values_shape=(N,))
        input_lengths = np.array([rng.integers(min(T, 2 * n + 1), T + 1)
                                  for n in target_lengths], np.int64)
        options = {"blank": blank, "zero_infinity": inputs.choice([False, True])}
        unbatched = N == 1 and inputs.choice([False, True])
        concatenated = inputs.choice([False, True])
        log_probs = sequence_references.log_softmax(inputs.rng.normal(0, 2.0, (T, N, C)))
        if inputs.choice([True, False, True]) is False:  # (PyTorch does not normalise them)
            log_probs = inputs.rng.normal(-1.5, 1.0, (T, N, C))
        log_probs = inputs.cast(log_probs)
        targets = padded
        if concatenated or unbatched:
            targets = np.concatenate([row[:n] for row, n in zip(padded, target_lengths)]
                                     ).astype(np.int64) if N else np.zeros(0, np.int64)
        if unbatched:
            log_probs = np.ascontiguousarray(log_probs[:, 0])
            input_lengths, target_lengths = input_lengths[0], target_lengths[0]
        values_shape = () if unbatched else (N,)

        def reference(arrays, reduction, sample_weight):
            return sequence_references.ctc_loss(*arrays, reduction=reduction, **options)

        def gradient_reference(arrays, reduction, sample_weight):
            return sequence_references.torch_gradient_surrogate(*arrays, reduction=reduction,
                                                                **options)
        return dict(arrays=(targets, log_probs, input_lengths, target_lengths),
                    options=options, reference=reference, values_shape=values_shape,
                    gradients=(1,), gradient_reference=gradient_reference)
    return make


MAKERS = {
    **{name: _pointwise(name) for name in references.POINTWISE},
    **{name: _keras_binary(name) for name in ("binary_crossentropy", "binary_focal_crossentropy",
                                              "hinge", "squared_hinge", "kl_divergence")},
    **{name: _torch_binary(name) for name in (
        "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss",
        "sigmoid_focal_loss", "kl_div", "hinge_embedding_loss", "poisson_nll_loss")},
    **{name: _keras_rows(name) for name, (convention, _, _) in row_references.ROW_LOSSES.items()
       if convention == "keras"},
    **{name: _torch_rows(name) for name, (convention, _, _) in row_references.ROW_LOSSES.items()
       if convention != "keras"},
    **{name: _multi(name) for name in ("triplet_margin_loss",
                                       "triplet_margin_with_distance_loss", "quadruplet_loss",
                                       "contrastive_loss", "cosine_embedding_loss",
                                       "margin_ranking_loss", "gaussian_nll_loss",
                                       "gaussian_kl_loss")},
    **{name: _overlap(name) for name in ("dice", "tversky", "fbeta_loss")},
    "circle": _circle,
    "ntxent": _ntxent,
    "ctc_loss": _sequences("ctc_loss"),
    "ctc": _sequences("ctc"),
}


@st.composite
def calls(draw, name, reduction=None, wide=False):
    """A valid call of loss ``name`` (KeyError for a loss without a maker here).
    reduction: drawn from the loss's own reductions unless given; wide: see Inputs."""
    make = MAKERS[name]
    loss = fl.LOSSES[name]
    backend = draw(st.sampled_from(BACKENDS))
    event(f"backend {backend}")  # (pytest --hypothesis-show-statistics)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if reduction is None:
        reduction = draw(st.sampled_from(reductions(loss)))
    inputs = Inputs(draw, backend, dtype, wide)
    fields = make(inputs)
    call = Call(name=name, reduction=reduction, backend=backend, dtype=dtype, seed=inputs.seed,
                **fields)
    if call.keras:
        call.sample_weight = inputs.sample_weight(call.values_shape)
    return call

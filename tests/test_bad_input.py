"""Bad input gets a clear ValueError/TypeError naming the argument; never a crash.

The matrix: one row per (loss x kind of bad input), built from ``fastloss.LOSSES`` by
per-family makers, so a new loss is covered as soon as it is in the table.  The
families: pointwise (Keras and PyTorch conventions, regression and binary
classification), losses over classes with integer labels or dense targets, losses of
several arrays (rows, elementwise), overlap (Dice, Tversky, F-beta) and batch-pairwise
(circle, NT-Xent).  Errors are checked before any kernel runs (the kernel runners are
replaced by ones that fail), on the CPU and, for one loss per family and convention,
on the CUDA backend (the simulator in CI).  Then an independent probe: generic
malformed calls that every loss must refuse with ValueError or TypeError.

Policies, each following the peer a loss is named after:
- Predictions outside [0, 1]: PyTorch's binary_cross_entropy raises, so does fastloss;
  Keras clips them (binary_crossentropy, kl_divergence: the value is that of the clipped
  input) or normalises them (the categorical crossentropies): accepted.
- Negative weights (Keras's sample_weight, PyTorch's weight): both peers multiply by
  them as given; so does fastloss.  Negative variances in gaussian_nll_loss raise, as
  PyTorch's.
- Integer, bool and float16 predictions are computed in float32 (Keras casts to its
  float32 floatx; PyTorch refuses integer inputs for most losses, the design prefers
  Keras's cast): the result is that of the float32 inputs, in float32.
- Labels: Keras casts float labels to int (truncation); PyTorch wants an integer dtype
  (TypeError); a label outside [0, C), or one that is not finite, raises ValueError
  naming its position, the ignored value excepted.
- NaN reaching an element a loss reads reaches its value and gradient, except where
  the peer itself drops it (listed below with the reason); inf never crashes.
- 0-d arrays: accepted where PyTorch's losses take them (elementwise losses, 0-d
  results for "none") and by Keras's overlap losses (which flatten); refused with
  ValueError where a last, class or feature axis is needed (Keras's mean over the last
  axis of a scalar fails too).
- Read-only, non-contiguous, negative-stride, Fortran-order and big-endian inputs give
  the results of their contiguous native copies; a read-only out= raises.
"""

import contextlib
import importlib.util
import warnings
from dataclasses import dataclass
from unittest import mock

import numpy as np
import pytest

import fastloss as fl
from fastloss.launch import Launcher
from fastloss._bench import arguments

T = np.ones((4, 3))
P = np.full((4, 3), 0.5)


@pytest.mark.parametrize("call, error, words", [
    (lambda: fl.mse(np.ones((4, 2)), P), ValueError, ["y_true", "(4, 2)", "(4, 3)"]),
    (lambda: fl.mse_loss(np.ones(5), np.ones(3)), ValueError, ["y_true", "(5,)"]),
    (lambda: fl.mse(T, np.array([["a"] * 3] * 4)), TypeError, ["y_pred", "dtype"]),
    (lambda: fl.mse(np.array([None] * 3), P[0]), TypeError, ["y_true"]),
    (lambda: fl.mse(T, P + 1j), TypeError, ["y_pred", "complex"]),
    (lambda: fl.mse(T, P, reduction="avg"), ValueError, ["reduction", "avg"]),
    (lambda: fl.mse_loss(T, P, reduction="sum_over_batch_size"), ValueError, ["reduction"]),
    (lambda: fl.mse(T, P, delta=1.0), TypeError, ["delta"]),
    (lambda: fl.huber(T, P, delt=1.0), TypeError, ["delt", "delta"]),
    (lambda: fl.huber(T, P, delta=-1.0), ValueError, ["delta", "-1.0"]),
    (lambda: fl.huber(T, P, delta=float("nan")), ValueError, ["delta"]),
    (lambda: fl.huber(T, P, delta="1"), TypeError, ["delta"]),
    (lambda: fl.huber_loss(T, P, delta=0.0), ValueError, ["delta", "positive"]),
    (lambda: fl.smooth_l1_loss(T, P, beta=-0.5), ValueError, ["beta"]),
    (lambda: fl.mse(T, P, sample_weight=np.ones(3)), ValueError, ["sample_weight", "(3,)"]),
    (lambda: fl.mse(T, P, sample_weight=np.ones((4, 3))), ValueError, ["sample_weight"]),
    (lambda: fl.mse(T, P, sample_weight=["x"] * 4), TypeError, ["sample_weight"]),
    (lambda: fl.mse_loss(T, P, sample_weight=np.ones(4)), TypeError, ["sample_weight"]),
    (lambda: fl.mse.grad(T, P, reduction="sum", grad_output=np.ones(4)), ValueError,
     ["grad_output"]),
    (lambda: fl.mse.grad(T, P, grad_output=np.ones(3)), ValueError, ["grad_output"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((3, 4))), ValueError, ["out", "(4, 3)"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((4, 3), np.float32)), ValueError, ["out", "dtype"]),
    (lambda: fl.mse.grad(T, P, out=np.empty((3, 4)).T), ValueError, ["out", "contiguous"]),
    (lambda: fl.mse.grad(T, P, out=[0.0] * 12), TypeError, ["out"]),
    (lambda: fl.get("nope"), ValueError, ["nope"]),
    (lambda: fl.binary_cross_entropy_with_logits(T[:, :2], P, pos_weight=np.ones(3)),
     ValueError, ["y_true", "(4, 2)", "(4, 3)"]),
    (lambda: fl.binary_cross_entropy_with_logits(T, P, pos_weight=np.ones(3), weight=np.ones(2)),
     ValueError, ["weight", "(2,)"]),
    (lambda: fl.kl_div.grad(T, P, reduction="batchmean", grad_output="x"), TypeError,
     ["grad_output"]),
    (lambda: fl.mse(T, P, reduction=np.array(["sum", "none"])), ValueError, ["reduction"]),
    (lambda: fl.mse(0.5, 0.5), ValueError, ["y_pred", "()", "last axis"]),
])
def test_bad_input_raises_clearly(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


class FakeGpuArray:
    """Anything exposing __cuda_array_interface__ counts as a GPU array."""
    __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f8", "data": (0, False), "version": 3}


def test_mixed_devices_name_the_arguments():
    with pytest.raises(TypeError, match=r"y_pred on the GPU, y_true on the CPU"):
        fl.mse(T, FakeGpuArray())


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None,
                    reason="CuPy is installed: a fake GPU array would be read")
@pytest.mark.parametrize("call", [
    lambda: fl.mse(FakeGpuArray(), FakeGpuArray()),
    # numbers go with arrays anywhere: they are not CPU inputs beside GPU ones
    lambda: fl.mse(FakeGpuArray(), FakeGpuArray(), sample_weight=2.0),
    lambda: fl.mse.grad(FakeGpuArray(), FakeGpuArray(), grad_output=np.float32(0.5)),
    lambda: fl.kl_div(FakeGpuArray(), FakeGpuArray(), reduction="batchmean"),
])
def test_gpu_inputs_without_cupy_name_the_extra(call):
    with pytest.raises(ImportError, match=r"fastloss\[cuda\]"):
        call()


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        with fl.backend("tpu"):
            pass


def test_nan_propagates_and_inf_does_not_crash():
    p = P.copy()
    p[1, 2] = np.nan
    assert np.isnan(fl.mse(T, p)[1]) and np.isfinite(np.delete(fl.mse(T, p), 1)).all()
    value, grad = fl.mse.value_and_grad(T, p, reduction="sum_over_batch_size")
    assert np.isnan(value) and np.isnan(grad[1, 2]) and np.isfinite(np.delete(grad.ravel(), 5)).all()
    p[1, 2] = np.inf
    assert fl.mse(T, p, reduction="sum") == np.inf


# -- the matrix ------------------------------------------------------------------------

LOSSES = fl.LOSSES
_rng = np.random.default_rng(0)
_T = _rng.uniform(0.05, 0.95, (2, 6))
_P = _rng.uniform(0.05, 0.95, (2, 6))


def family(loss):
    """The loss's family, with the variants whose bad inputs differ told apart."""
    name = loss.spec.family
    if name in ("pairwise", "overlap"):
        return name
    if name in ("embeddings", "elements"):
        return f"multi-{'rows' if name == 'embeddings' else 'elements'}"
    if name == "rows":
        return "rows-labels" if loss.family.targets in ("labels", "either") else "rows-dense"
    if name == "sequences":
        return f"sequences-{loss.convention}"
    return f"pointwise-{loss.convention}"


@dataclass(frozen=True)
class Subject:
    """A loss with valid arguments (float64, a batch of 2) and what its arrays are."""
    name: str
    loss: object
    family: str
    args: tuple
    names: tuple        # the positional arrays' names
    predictions: tuple  # the names of the arrays that get a gradient
    labels: bool        # args[0] holds integer labels
    y_true_unused: bool


def subject(name):
    loss = LOSSES[name]
    args = tuple(arguments(name, _T, _P))
    return Subject(name, loss, family(loss), args, loss.inputs, loss.predictions,
                   labels=args[0].dtype.kind == "i",
                   y_true_unused=getattr(loss.family, "targets", None) == "unused")


SUBJECTS = {name: subject(name) for name in LOSSES}


@dataclass(frozen=True)
class Case:
    """One call: with ``error``, it must raise that exception type with a message holding
    ``words`` (before any kernel runs, unless ``after_kernel``: a check of the data that
    the kernel's own result settles); without, ``run`` does its own checks."""
    label: str
    run: object
    error: type = None
    words: tuple = ()
    after_kernel: bool = False


def raises(label, error, words, fn, *args, **kwargs):
    return Case(label, lambda: fn(*args, **kwargs), error, tuple(words))


def raises_after_kernel(label, error, words, fn, *args, **kwargs):
    return Case(label, lambda: fn(*args, **kwargs), error, tuple(words), after_kernel=True)


def works(label, fn, *args, **kwargs):
    return Case(label, lambda: fn(*args, **kwargs))


def _kernel_ran(*args, **kwargs):
    raise AssertionError("a kernel ran before the argument error was raised")


@contextlib.contextmanager
def kernels_forbidden():
    with contextlib.ExitStack() as stack:
        # (every family runs its kernels through one Launcher, made before any kernel runs)
        stack.enter_context(mock.patch.object(Launcher, "__init__", _kernel_ran))
        yield


def check(case):
    if case.error is None:
        case.run()
        return
    with (contextlib.nullcontext() if case.after_kernel else kernels_forbidden()), \
            pytest.raises(case.error) as info:
        case.run()
    message = str(info.value)
    for word in case.words:
        assert word in message, f"{case.label}: {word!r} not in {message!r}"


def results(value_and_grad):
    """(value, grad) or (value, (grads...)) as a flat list of arrays."""
    value, grad = value_and_grad
    return [np.asarray(value), *map(np.asarray, grad if isinstance(grad, tuple) else (grad,))]


def negated(value_and_grad):
    value, grad = value_and_grad
    return -value, tuple(-g for g in grad) if isinstance(grad, tuple) else -grad


def assert_same_results(got, expected, rtol=1e-12, atol=1e-15):
    """Same shapes and dtypes, values equal up to rounding: a reduced value's last bits
    depend on where the arrays lie in memory (the kernels' vectorised and scalar loops
    sum in different orders)."""
    got, expected = results(got), results(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, equal_nan=True)


def with_arg(args, i, x):
    return args[:i] + (x,) + args[i + 1:]


def one_row_more(x):
    return np.concatenate([x, x[:1]])


def per_sample_shape(s):
    """The shape of the Keras loss per sample (what sample_weight broadcasts to), or None:
    one loss per row of the last axis, or one over every element for the overlap losses
    (axis=None).  (Known without running a kernel: the matrix is built at collection.)"""
    if s.loss.convention != "keras":
        return None
    if s.family == "sequences-keras":  # (one loss per sequence of y_pred (N, T, C))
        return s.args[-1].shape[:1]
    return () if s.family == "overlap" else s.args[-1].shape[:-1]


def vg(s, args, **kwargs):
    return s.loss.value_and_grad(*args, **kwargs)


def grad_outs(s, make):
    """out= for s: one buffer, or a tuple of one per prediction array."""
    index = {n: i for i, n in enumerate(s.names)}
    outs = tuple(make(s.args[index[n]]) for n in s.predictions)
    return outs if len(outs) > 1 else outs[0]


# -- the kinds of bad input: each maker returns the cases that apply to a loss -----------

def mismatched(s):
    """(the arguments with one array of a length the others do not match, the words its
    error must hold)."""
    args, names = s.args, s.names
    if s.y_true_unused:  # y_pred's parts are what must agree
        p = args[1][..., :-1]
        return (args[0], p), ["y_pred", str(p.shape)]
    bad = with_arg(args, 0, one_row_more(args[0]))
    return bad, [names[0], str(bad[0].shape), str(args[1].shape)]


def shapes_that_do_not_broadcast(s):
    args, names = s.args, s.names
    bad, words = mismatched(s)
    cases = [raises("one row more in the first array", ValueError, words, vg, s, bad)]
    if len(args) > 2:
        bad = with_arg(args, len(args) - 1, one_row_more(args[-1]))
        cases.append(raises(f"{names[-1]} with one row more", ValueError,
                            [names[-1], str(bad[-1].shape)], vg, s, bad))
    samples = per_sample_shape(s)
    if samples:
        w = np.ones(samples[0] + 1)
        cases.append(raises("sample_weight with one row more", ValueError,
                            ["sample_weight", str(w.shape)], vg, s, args, sample_weight=w))
    if takes_weight(s):
        w = np.ones(args[-1].shape[-1] + 1)
        cases.append(raises("weight with one entry more", ValueError, ["weight", str(w.shape)],
                            vg, s, args, weight=w))
    cases.append(raises("grad_output of a reduced value not a scalar", ValueError,
                        ["grad_output", "(3,)"], vg, s, args, grad_output=np.ones(3),
                        reduction="mean"))
    cases.append(raises("out of another shape", ValueError, ["out", "(1, 1)"], vg, s, args,
                        out=grad_outs(s, lambda x: np.empty((1, 1)))))
    return cases


def wrong_rank(s):
    i = len(s.args) - 1 if s.y_true_unused else 0
    x = s.args[i]
    bad = np.repeat(x[..., None], 2, axis=-1)
    cases = [raises(f"{s.names[i]} with an extra axis", ValueError, [s.names[i], str(bad.shape)],
                    vg, s, with_arg(s.args, i, bad))]
    if s.family == "pairwise":
        for p in (s.args[1][0], s.args[1][None]):
            cases.append(raises(f"y_pred of rank {p.ndim}", ValueError, ["y_pred", str(p.shape)],
                                vg, s, (s.args[0], p)))
    return cases


def non_numeric_dtypes(s):
    cases = []
    for i, name in enumerate(s.names):
        x = s.args[i]
        for label, bad, word in [("strings", x.astype(str), "dtype"),
                                 ("objects", x.astype(object), "object"),
                                 ("complex numbers", x + 1j, "complex")]:
            cases.append(raises(f"{name} of {label}", TypeError, [name, word], vg, s,
                                with_arg(s.args, i, bad)))
    cases.append(raises("grad_output a string", TypeError, ["grad_output"], vg, s, s.args,
                        grad_output="1"))
    if s.loss.convention == "keras":
        cases.append(raises("sample_weight of complex numbers", TypeError, ["sample_weight"],
                            vg, s, s.args, sample_weight=np.ones(2) * 1j))
    if takes_weight(s):
        cases.append(raises("weight of strings", TypeError, ["weight"], vg, s, s.args,
                            weight=np.array(["1"] * s.args[-1].shape[-1])))
    return cases


def _class_count(s):
    return s.args[-1].shape[-1]


def labels_out_of_range(s):
    if s.family == "pairwise":
        return _pairwise_labels(s)
    if s.family.startswith("sequences"):
        return _sequence_labels(s)
    if not s.labels:
        return []
    keras = s.loss.convention == "keras"
    C = _class_count(s)
    y = s.args[0]
    # a row of class indices per sample, padded with -1 (multilabel_margin_loss): the
    # first entry of row 1 made bad; -1 is the padding, -2 the first negative refused
    label_sets = y.shape == s.args[-1].shape
    at, where = ((1, 0), "y_true[1, 0]") if label_sets else (1, "y_true[1]")
    negative = -2 if label_sets else -1

    def at_1(value, dtype=None):
        labels = y.astype(dtype or y.dtype) if not label_sets else np.maximum(y, 0).astype(
            dtype or y.dtype)  # (valid for an unsigned dtype too)
        labels[at] = value
        return with_arg(s.args, 0, labels)

    cases = [
        raises("label C", ValueError, [where, f"= {C}", f"[0, {C})"], vg, s, at_1(C)),
        raises(f"label {negative}", ValueError, [where, f"= {negative}"], vg, s,
               at_1(negative)),
        raises("label 2**64 - 1", ValueError, [where, str(2 ** 64 - 1)], vg, s,
               at_1(2 ** 64 - 1, np.uint64)),
        raises("boolean labels", TypeError, ["y_true", "boolean"], vg, s,
               with_arg(s.args, 0, y > 0)),
    ]
    if keras:  # Keras casts float labels to int: truncated toward zero
        cases += [
            works("float labels", lambda: assert_same_results(
                vg(s, with_arg(s.args, 0, y + 0.7)), vg(s, s.args))),
            raises("NaN label", ValueError, ["y_true[1]", "non-finite"], vg, s,
                   at_1(np.nan, np.float64)),
            raises("label 1e30", ValueError, ["y_true[1]", "1e+30"], vg, s, at_1(1e30, np.float64)),
        ]
    else:  # PyTorch wants integer class indices
        cases.append(raises("float labels", TypeError, ["y_true", "float64"], vg, s,
                            with_arg(s.args, 0, y + 0.0)))
    ignore = getattr(s.loss.family, "ignore", None)
    if ignore:
        default = next(o.default for o in s.loss.options if o.name == ignore)
        ignored = -1 if default is None else default
        options = {ignore: ignored} if default is None else {}

        def ignored_label_accepted():
            assert np.isfinite(s.loss(*at_1(ignored), **options)).all()
        cases.append(works(f"the ignored label {ignored}", ignored_label_accepted))
    return cases


def _sequence_labels(s):
    """CTC's targets: classes in [0, C) but the blank; integers (Keras truncates floats)."""
    keras = s.loss.convention == "keras"
    y, C = s.args[0], s.args[1].shape[-1]
    name = s.names[0]

    def with_label(value, dtype=None):
        labels = y.astype(dtype or y.dtype)
        labels[0, 0] = value
        return with_arg(s.args, 0, labels)

    cases = [
        raises("label C", ValueError, [name, f"label {C}", "out of range"], vg, s,
               with_label(C)),
        raises("label -1", ValueError, [name, "-1"], vg, s, with_label(-1)),
        raises("label 2**64 - 1", ValueError, [name, str(2 ** 64 - 1)], vg, s,
               with_label(2 ** 64 - 1, np.uint64)),
        raises("boolean labels", TypeError, [name, "bool"], vg, s, with_arg(s.args, 0, y > 0)),
        raises("the blank inside a target", ValueError, [name, "blank"], vg, s,
               with_arg(s.args, 0, np.concatenate([np.zeros_like(y), y], axis=1))
               if keras else with_label(0)),
    ]
    if keras:
        cases += [
            works("float labels", lambda: assert_same_results(
                vg(s, with_arg(s.args, 0, y + 0.7)), vg(s, s.args))),
            raises("NaN label", ValueError, [name, "non-finite"], vg, s,
                   with_label(np.nan, np.float64)),
        ]
    else:
        cases.append(raises("float labels", TypeError, [name, "float64"], vg, s,
                            with_arg(s.args, 0, y + 0.0)))
    return cases


def _pairwise_labels(s):
    y = s.args[0]
    keras = s.loss.convention == "keras"
    cases = [works("negative labels (only compared)", lambda: assert_same_results(
        vg(s, with_arg(s.args, 0, y - 10)), vg(s, s.args)))]
    if keras:
        cases += [
            works("float labels", lambda: assert_same_results(
                vg(s, with_arg(s.args, 0, y + 0.7)), vg(s, s.args))),
            raises("NaN label", ValueError, ["y_true", "non-finite"], vg, s,
                   with_arg(s.args, 0, np.where(np.arange(y.size) == 1, np.nan, y))),
            raises("label 1e30", ValueError, ["y_true", "int64"], vg, s,
                   with_arg(s.args, 0, np.where(np.arange(y.size) == 1, 1e30, y))),
        ]
    else:
        cases.append(raises("float labels", TypeError, ["y_true", "float64"], vg, s,
                            with_arg(s.args, 0, y + 0.0)))
    return cases


# Keras clips probabilities (the value is that of the clipped input) or normalises them
# (accepted); PyTorch's binary_cross_entropy raises (any loss with a pred_range does).
CLIPPED_PROBABILITIES = {"binary_crossentropy": (1e-7, 1 - 1e-7), "kl_divergence": (1e-7, 1.0)}
ACCEPTED_PROBABILITIES = ("binary_focal_crossentropy", "categorical_crossentropy",
                          "sparse_categorical_crossentropy", "categorical_focal_crossentropy",
                          "categorical_generalized_cross_entropy")


def probabilities_outside_unit_interval(s):
    cases = []
    i = s.names.index(s.predictions[-1])
    for outside in (1.5, -0.5):
        p = s.args[i].copy()
        p.reshape(-1)[1] = outside  # (row 0's second element)
        args = with_arg(s.args, i, p)
        if pred_range(s) is not None:
            # A value reduced to one number is checked after the kernel, by being NaN;
            # gradients alone and per-element values are checked before any kernel runs.
            words = ["y_pred", "[0, 1]", str(outside)]
            cases.append(raises_after_kernel(f"y_pred {outside}", ValueError, words, vg, s, args))
            cases.append(raises_after_kernel(f"y_pred {outside} value", ValueError, words,
                                             s.loss, *args))
            cases.append(raises(f"y_pred {outside} grad", ValueError, words, s.loss.grad, *args))
            cases.append(raises(f"y_pred {outside} unreduced", ValueError, words, vg, s, args,
                                reduction="none"))
        elif s.name in CLIPPED_PROBABILITIES:
            clipped = with_arg(s.args, i, np.clip(p, *CLIPPED_PROBABILITIES[s.name]))
            cases.append(works(f"y_pred {outside} clipped", lambda a=args, c=clipped:
                               np.testing.assert_allclose(s.loss(*a), s.loss(*c), rtol=1e-12)))
        elif s.name in ACCEPTED_PROBABILITIES and not (outside < 0 and "generalized" in s.name):
            cases.append(works(f"y_pred {outside} accepted", lambda a=args:
                               np.testing.assert_array_equal(np.isfinite(s.loss(*a)), True)))
    return cases


def negative_weights(s):
    """Keras and PyTorch multiply by weights as given, negative ones too."""
    cases = []
    samples = per_sample_shape(s)
    if samples is not None:
        w = np.linspace(0.5, 2.0, samples[0]) if samples else np.float64(1.5)

        def sample_weights_applied(w=w):
            assert np.shape(s.loss(*s.args, reduction="none")) == samples
            assert_same_results(vg(s, s.args, sample_weight=-w, reduction="sum"),
                                negated(vg(s, s.args, sample_weight=w, reduction="sum")))
            if not samples:
                return  # (a scalar loss times a scalar weight is not reduced, as in Keras)
            # divided by the sum of the weights as given: the signs cancel
            mean = "mean_with_sample_weight"
            assert_same_results(vg(s, s.args, sample_weight=-w, reduction=mean),
                                vg(s, s.args, sample_weight=w, reduction=mean))
        cases.append(works("negative sample_weight", sample_weights_applied))
    if takes_weight(s):
        w = np.linspace(0.5, 2.0, _class_count(s))
        if getattr(s.loss.family, "exact_weight", False):  # (PyTorch: y_pred's shape)
            w = np.broadcast_to(w, s.args[-1].shape).copy()
        cases.append(works("negative weight", lambda: assert_same_results(
            vg(s, s.args, weight=-w, reduction="sum"),
            negated(vg(s, s.args, weight=w, reduction="sum")))))
    if "var" in s.names:
        i = s.names.index("var")
        var = s.args[i].copy()
        var[0, 1] = -0.5
        cases.append(raises("a negative variance", ValueError, ["var", "negative"], vg, s,
                            with_arg(s.args, i, var)))
    return cases




def array_options(s):
    """The options of s that take arrays."""
    return tuple(o.name for o in s.loss.options if o.is_array)


def pred_range(s):
    """The range s's y_pred must lie in (PyTorch's binary_cross_entropy), or None."""
    return getattr(s.loss.family, "pred_range", None)


def takes_weight(s):
    """s takes PyTorch's ``weight`` (per element or per class)."""
    return "weight" in array_options(s)

_WRONG_VALUES = {"nonnegative": -1.0, "positive": 0.0, "probability": 1.5, "open_unit": 1.0}


def bad_options(s):
    loss = s.loss
    cases = [
        raises("an unknown option", TypeError, ["nope"], vg, s, s.args, nope=1.0),
        raises("an unknown reduction", ValueError, ["reduction", "'avg'"], vg, s, s.args,
               reduction="avg"),
        raises("a reduction of another type", ValueError, ["reduction", "3"], vg, s, s.args,
               reduction=3),
    ]
    if loss.convention != "keras":
        cases.append(raises("sample_weight", TypeError, ["sample_weight"], vg, s, s.args,
                            sample_weight=np.ones(2)))
    for option in (o for o in loss.options if not o.is_array):
        if option.rule == "str":  # (a name, one of the choices)
            cases.append(raises(f"{option.name} a number", TypeError, [option.name], vg, s,
                                s.args, **{option.name: 1.0}))
            cases.append(raises(f"{option.name} not a choice", ValueError,
                                [option.name, "'nope'", repr(option.choices)], vg, s, s.args,
                                **{option.name: "nope"}))
            continue
        cases.append(raises(f"{option.name} a string", TypeError, [option.name], vg, s, s.args,
                            **{option.name: "1"}))
        if option.name == "axis":
            cases.append(raises("axis out of range", ValueError, ["axis", "5"], vg, s, s.args,
                                axis=5))
        elif option.rule in _WRONG_VALUES:
            wrong = _WRONG_VALUES[option.rule]
            cases.append(raises(f"{option.name}={wrong}", ValueError, [option.name, str(wrong)],
                                vg, s, s.args, **{option.name: wrong}))
        elif option.rule == "bool":
            cases.append(raises(f"{option.name}=1", TypeError, [option.name], vg, s, s.args,
                                **{option.name: 1}))
        elif option.choices:
            cases.append(raises(f"{option.name} not a choice", ValueError, [option.name], vg, s,
                                s.args, **{option.name: max(option.choices) + 1}))
    for name in array_options(s):
        cases.append(raises(f"{name} a string", TypeError, [name], vg, s, s.args, **{name: "1"}))
    for class_name, cls in fl.CLASSES.items():
        if cls.loss is loss:
            cases.append(raises(f"{class_name}(nope=1)", TypeError, ["nope"], cls, nope=1.0))
    return cases


def read_only(s):
    def read_only_copy(x):
        x = x.copy()
        x.flags.writeable = False
        return x

    frozen = tuple(map(read_only_copy, s.args))
    out = grad_outs(s, lambda x: read_only_copy(np.empty_like(x, dtype=np.float64)))
    return [works("read-only inputs", lambda: assert_same_results(vg(s, frozen), vg(s, s.args))),
            raises("a read-only out", ValueError, ["out", "writeable"], vg, s, s.args, out=out)]


def memory_layouts(s):
    def same_as_contiguous(transform):
        laid_out = tuple(transform(x) for x in s.args)
        contiguous = tuple(np.ascontiguousarray(x).astype(x.dtype.newbyteorder("="))
                           for x in laid_out)
        assert_same_results(vg(s, laid_out), vg(s, contiguous))

    return [
        works("non-contiguous", same_as_contiguous,
              lambda x: np.repeat(x, 2, axis=-1)[..., ::2]),
        works("negative strides", same_as_contiguous, lambda x: x[::-1]),
        works("Fortran order", same_as_contiguous, np.asfortranarray),
        works("big-endian", same_as_contiguous, lambda x: x.astype(x.dtype.newbyteorder(">"))),
    ]


def different_devices(s):
    gpu = FakeGpuArray()
    cases = [raises(f"{name} on the GPU", TypeError, [f"{name} on the GPU", "on the CPU"],
                    vg, s, with_arg(s.args, i, gpu)) for i, name in enumerate(s.names)]
    cases.append(raises("grad_output on the GPU", TypeError, ["grad_output on the GPU"], vg, s,
                        s.args, grad_output=gpu))
    cases.append(raises("out on the GPU", TypeError, ["out", "GPU"], vg, s, s.args,
                        out=grad_outs(s, lambda x: gpu)))
    if s.loss.convention == "keras":
        cases.append(raises("sample_weight on the GPU", TypeError, ["sample_weight on the GPU"],
                            vg, s, s.args, sample_weight=gpu))
    for name in array_options(s):
        cases.append(raises(f"{name} on the GPU", TypeError, [f"{name} on the GPU"], vg, s,
                            s.args, **{name: gpu}))
    return cases


# What 0-d arrays do, per family: PyTorch takes 0-d tensors, Keras's mean over the last
# axis of a scalar fails, Keras's overlap losses flatten their inputs.
ZERO_D = {"pointwise-torch": None, "multi-elements": None, "overlap": None,
          "pointwise-keras": "y_pred", "rows-labels": "y_pred", "rows-dense": "y_pred",
          "multi-rows": "first prediction", "pairwise": "y_pred",
          "sequences-torch": "log_probs", "sequences-keras": "y_pred"}


def zero_d(s):
    scalars = tuple(x.reshape(-1)[0] for x in s.args)
    rule = ZERO_D[s.family]
    if rule is None:
        def scalar_results():
            for r in results(vg(s, scalars)) + [np.asarray(s.loss(*scalars, reduction="none"))]:
                assert r.shape == (), r.shape
        cases = [works("0-d arrays", scalar_results)]
    else:
        name = s.predictions[0] if rule == "first prediction" else rule
        cases = [raises("0-d arrays", ValueError, [name], vg, s, scalars)]
    if s.family == "rows-labels":  # one sample: (C,) scores and a 0-d label
        def one_sample():
            value, grad = vg(s, (s.args[0][0], s.args[1][0]), reduction="sum")
            assert_same_results((value, grad[None]),
                                vg(s, (s.args[0][:1], s.args[1][:1]), reduction="sum"))
        cases.append(works("one sample, a 0-d label", one_sample))
    return cases


def lists_and_scalars(s):
    cases = [works("Python lists", lambda: assert_same_results(
        vg(s, tuple(x.tolist() for x in s.args)), vg(s, s.args)))]
    if getattr(s.loss.family, "same_shape", False):  # (as Keras's and PyTorch's BCE)
        cases.append(raises("a Python scalar y_true", ValueError,
                            ["y_true", "()", "must have the same shape"], vg, s,
                            (0.25, s.args[1])))
    elif s.family.startswith("pointwise"):
        cases.append(works("a Python scalar y_true", lambda: assert_same_results(
            vg(s, (0.25, s.args[1])), vg(s, (np.full_like(s.args[1], 0.25), s.args[1])))))
    samples = per_sample_shape(s)
    if samples:
        cases.append(works("a Python scalar sample_weight", lambda: assert_same_results(
            vg(s, s.args, sample_weight=2.0), vg(s, s.args, sample_weight=np.full(samples, 2.0)))))
    return cases


def _predictions_as(s, make):
    return tuple(make(x) if name in s.predictions else x for name, x in zip(s.names, s.args))


def integer_and_bool_predictions(s):
    """Computed as the same predictions in float32 (Keras casts them to its floatx)."""
    def as_float32_of(make):
        given = _predictions_as(s, make)
        cast = tuple(x.astype(np.float32) if name in s.predictions else x
                     for name, x in zip(s.names, given))
        assert_same_results(vg(s, given), vg(s, cast), rtol=1e-6, atol=1e-7)
        assert all(r.dtype == np.float32 for r in results(vg(s, given)))

    return [works("int64 predictions", as_float32_of, lambda x: (x > 0.5).astype(np.int64)),
            works("bool predictions", as_float32_of, lambda x: x > 0.5)]


def float16_inputs(s):
    """Accepted and computed in float32, like every non-float32/64 prediction."""
    def as_float32():
        half = tuple(x.astype(np.float16) if x.dtype.kind == "f" else x for x in s.args)
        single = tuple(x.astype(np.float32) if x.dtype.kind == "f" else x for x in half)
        got = vg(s, half)
        assert all(r.dtype == np.float32 for r in results(got))
        assert_same_results(got, vg(s, single), rtol=1e-6, atol=1e-7)
    return [works("float16", as_float32)]


KINDS = {
    "shapes": shapes_that_do_not_broadcast,
    "rank": wrong_rank,
    "dtype": non_numeric_dtypes,
    "labels": labels_out_of_range,
    "probabilities": probabilities_outside_unit_interval,
    "weights": negative_weights,
    "options": bad_options,
    "read-only": read_only,
    "layout": memory_layouts,
    "devices": different_devices,
    "0-d": zero_d,
    "lists": lists_and_scalars,
    "int-predictions": integer_and_bool_predictions,
    "float16": float16_inputs,
}
MATRIX = [(kind, name) for kind, make in KINDS.items() for name in LOSSES
          if make(SUBJECTS[name])]


def _ids(matrix):
    return [f"{kind}-{SUBJECTS[name].family}-{name}" for kind, name in matrix]


@pytest.mark.parametrize("kind, name", MATRIX, ids=_ids(MATRIX))
def test_bad_input_matrix(kind, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # (a cast that wraps, say)
        for case in KINDS[kind](SUBJECTS[name]):
            check(case)


# The same errors on the CUDA backend (the simulator in CI), for one loss per family and
# convention and the losses with range checks of their own: the arguments are checked
# before anything is copied to the device.
CUDA_SUBSET = sorted(set({(s.family, s.loss.convention): n
                          for n, s in reversed(list(SUBJECTS.items()))}.values())
                     | {n for n, s in SUBJECTS.items() if pred_range(s) or "var" in s.names})
CUDA_MATRIX = [(kind, name) for kind, name in MATRIX if name in CUDA_SUBSET
               and any(case.error for case in KINDS[kind](SUBJECTS[name]))]


@pytest.mark.cudasim
@pytest.mark.parametrize("kind, name", CUDA_MATRIX, ids=_ids(CUDA_MATRIX))
def test_bad_input_matrix_on_cuda(kind, name):
    with fl.backend("cuda"):
        for case in KINDS[kind](SUBJECTS[name]):
            if case.error is not None:
                check(case)


UNIVERSAL_KINDS = ("shapes", "rank", "dtype", "options", "read-only", "layout", "devices", "0-d",
                   "lists", "int-predictions", "float16")


def test_every_loss_is_in_every_kind_that_applies():
    covered = {kind: {name for k, name in MATRIX if k == kind} for kind in KINDS}
    for kind in UNIVERSAL_KINDS:
        assert covered[kind] == set(LOSSES), (kind, set(LOSSES) - covered[kind])
    with_labels = {n for n, s in SUBJECTS.items() if s.labels or s.family == "pairwise"}
    assert covered["labels"] == with_labels
    assert {n for n, s in SUBJECTS.items() if pred_range(s)} <= covered["probabilities"]
    weighted = {n for n, s in SUBJECTS.items()
                if s.loss.convention == "keras" or takes_weight(s) or "var" in s.names}
    assert covered["weights"] == weighted
    assert set(CUDA_SUBSET) <= {name for _, name in CUDA_MATRIX}
    assert {SUBJECTS[n].family for n in CUDA_SUBSET} == set(ZERO_D)


def test_read_only_inputs_reuse_the_compiled_kernel():
    """Numba compiles a separate kernel for read-only arrays (and may sum differently in
    it): the front end hands the kernels writable views instead."""
    from fastloss.kernels import generated_cpu

    t, p = _T.copy(), _P.copy()
    with fl.backend("cpu"):
        expected = fl.mse.value_and_grad(t, p)
        kernel = generated_cpu.squared_error_value_and_grad_serial
        compiled = list(kernel.signatures)
        t.flags.writeable = p.flags.writeable = False
        got = fl.mse.value_and_grad(t, p)
    assert list(kernel.signatures) == compiled
    assert_same_results(got, expected)


# -- NaN and inf ----------------------------------------------------------------------------

# NaN in an element a loss reads reaches its value, except where the peer drops it too.
NAN_VALUE_DROPPED = {
    ("multi_margin_loss", "y_pred"): "PyTorch adds a margin term only where it is > 0",
    ("multilabel_margin_loss", "y_pred"): "PyTorch adds a margin term only where it is > 0",
    ("hinge_embedding_loss", "y_true"): "PyTorch: a label that is neither 1 nor -1 takes "
                                        "both terms",
    ("cosine_embedding_loss", "y_true"): "PyTorch: a label that is neither 1 nor -1 gives 0",
}
# ... and its gradient, except where the peer's derivative takes a finite branch at NaN
# or does not depend on the element's value.
NAN_GRAD_DROPPED = {
    "mean_absolute_error": "|x|: JAX takes the x < 0 branch at NaN",
    "mean_absolute_percentage_error": "|x|: JAX takes the x < 0 branch at NaN",
    "l1_loss": "PyTorch's sign(NaN) is 0",
    "hinge_embedding_loss": "PyTorch's clamp_min passes no gradient at NaN",
    "margin_ranking_loss": "PyTorch's clamp_min passes no gradient at NaN",
    "multi_margin_loss": "PyTorch adds a margin term only where it is > 0",
    "multilabel_margin_loss": "PyTorch adds a margin term only where it is > 0",
    "kl_div": "the gradient, -target, does not depend on the input",
    "nll_loss": "the gradient, -weight[y], does not depend on the input",
}


def _nan_at_a_read_element(s, i):
    x = s.args[i].astype(np.float64)
    if s.labels and s.family == "rows-labels":  # the scores of row 0's own class
        x[0, s.args[0][0]] = np.nan
    else:
        x.reshape(-1)[1] = np.nan
    return with_arg(s.args, i, x)


NAN_CASES = []
for _name, _s in SUBJECTS.items():
    for _i, _array in enumerate(_s.names):
        if (_i == 0 and (_s.labels or _s.y_true_unused)) or _s.args[_i].dtype.kind in "iu":
            continue  # integer labels (the "labels" kind) or lengths, or unused
        for _what in ("value", "grad") if _array in _s.predictions else ("value",):
            _reason = (NAN_VALUE_DROPPED.get((_name, _array)) if _what == "value"
                       else NAN_GRAD_DROPPED.get(_name))
            if _reason is not None:
                continue
            NAN_CASES.append(pytest.param(_name, _i, _what, id=f"{_name}-{_array}-{_what}"))


@pytest.mark.parametrize("name, position, what", NAN_CASES)
def test_nan_reaches_the_value_and_the_gradient(name, position, what):
    s = SUBJECTS[name]
    args = _nan_at_a_read_element(s, position)
    with np.errstate(invalid="ignore"):
        if what == "value":
            assert np.isnan(s.loss(*args)).any()
        else:
            grad = s.loss.grad(*args)
            if isinstance(grad, tuple):
                grad = grad[s.predictions.index(s.names[position])]
            assert np.isnan(grad).any()


INF_CASES = [pytest.param(n, i, sign, id=f"{n}-{array}-{sign}inf")
             for n, s in SUBJECTS.items() for i, array in enumerate(s.names)
             if not (i == 0 and s.labels) and s.args[i].dtype.kind not in "iu"
             for sign in "+-"]


@pytest.mark.parametrize("name, position, sign", INF_CASES)
def test_inf_never_crashes(name, position, sign):
    """Results of the usual shapes (inf, NaN or finite, as the math has it), or a ValueError
    naming the argument where the loss checks its range (probabilities, variances)."""
    s = SUBJECTS[name]
    x = s.args[position].astype(np.float64)
    x.reshape(-1)[1] = np.inf if sign == "+" else -np.inf
    args = with_arg(s.args, position, x)
    try:
        with np.errstate(all="ignore"):
            got = vg(s, args)
    except ValueError as error:
        assert s.names[position] in str(error)
        return
    assert_shapes = [r.shape for r in results(got)]
    assert assert_shapes == [r.shape for r in results(vg(s, s.args))]


# -- an independent probe: generic malformed calls -----------------------------------------

def _malformed_calls(s):
    """(label, positional arrays, options) of calls that no loss may accept."""
    args, last = s.args, len(s.args) - 1
    calls = {
        "y_pred None": (with_arg(args, last, None), {}),
        "y_pred a string": (with_arg(args, last, "abc"), {}),
        "y_pred a dict": (with_arg(args, last, {}), {}),
        "y_pred a set": (with_arg(args, last, {1.0}), {}),
        "y_pred an empty tuple": (with_arg(args, last, ()), {}),
        "y_pred ragged": (with_arg(args, last, [[1.0, 2.0], [3.0]]), {}),
        "y_pred bytes": (with_arg(args, last, b"\x00\x01"), {}),
        "y_true None": (with_arg(args, 0, None), {}),
        "3 extra positional arrays": (args + (args[-1],) * 3, {}),
        "no arrays": ((), {}),
        "one array short": (args[:-1], {}),
        "reduction an object": (args, {"reduction": object()}),
        "grad_output a dict": (args, {"grad_output": {}}),
        "an option None": (args, {"nope": None}),
        "mismatched lengths": (mismatched(s)[0], {}),
    }
    return calls


PROBE_LABELS = list(_malformed_calls(SUBJECTS["mse_loss"]))


@pytest.mark.parametrize("probe", PROBE_LABELS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_malformed_calls_raise_value_or_type_error(name, probe):
    """Each call raises ValueError or TypeError: never another exception, a crash or a
    silent result."""
    s = SUBJECTS[name]
    args, options = _malformed_calls(s)[probe]
    for method in ("__call__", "grad", "value_and_grad"):
        if method == "__call__" and "grad_output" in options:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                result = getattr(s.loss, method)(*args, **options)
            except (ValueError, TypeError):
                continue
            except Exception as error:  # noqa: BLE001 - the point of the probe
                pytest.fail(f"{method}: {type(error).__module__}.{type(error).__name__}: {error}")
        pytest.fail(f"{method} returned {result!r}")


def test_smooth_l1_at_beta_zero_is_l1_at_nan_too():
    """PyTorch computes smooth_l1_loss with beta 0 as l1_loss, whose slope sign(NaN) is 0."""
    y_pred = np.array([np.nan, 2.0, -1.0])
    with np.errstate(invalid="ignore"):
        value, grad = fl.smooth_l1_loss.value_and_grad(np.zeros(3), y_pred, beta=0.0,
                                                       reduction="none")
    assert np.isnan(value[0]) and np.array_equal(value[1:], [2.0, 1.0])
    assert np.array_equal(grad, [0.0, 1.0, -1.0])

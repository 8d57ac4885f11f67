"""The registry is the one source: every loss has a full spec, its public face (signature,
docstrings, class, exports, README row) is derived from it, and every contract test
covers every loss in it."""

import ast
import inspect
import pathlib
import pydoc

import numpy as np
import pytest

import fastloss as fl
import loss_cases
from fastloss.registry import readme_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = sorted(fl.LOSSES)


@pytest.mark.parametrize("name", NAMES)
def test_every_spec_is_complete(name):
    spec = fl.LOSSES[name].spec
    assert spec.name == name and spec.formula and spec.reference
    assert spec.family in {"pointwise", "rows", "embeddings", "elements", "overlap", "pairwise",
                           "sequences"}
    assert spec.convention in {"keras", "torch", "optax"}
    assert set(spec.predictions) <= set(spec.inputs) and spec.predictions
    assert spec.default_reduction in spec.reductions
    for option in spec.options:
        if not option.is_array:  # every default passes its own rule
            assert option.check(option.default, name) == option.default


# Options a family reads itself (the layout, the choice of element, masked labels);
# every other scalar option is one of the element's named options.
FAMILY_OPTIONS = {"axis", "from_logits", "ignore_index", "ignore_class"}
ELEMENT_FAMILIES = {"pointwise", "rows", "embeddings", "elements"}


def _another_value(option):
    """A valid value other than the option's default."""
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.rule == "bool":
        return not option.default
    return 0.375 if option.default is None else option.default * 0.5 + 0.375


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if fl.LOSSES[n].spec.family in ELEMENT_FAMILIES])
def test_elements_read_every_option_by_name(name):
    """Changing one option changes exactly one of the element's named options: the one
    of its name, or the one the family's kernel_values maps it to."""
    from fastloss.kernels.generated_cpu import ELEMENT_OPTIONS
    loss = fl.LOSSES[name]
    dtype = np.dtype(np.float64)
    defaults = {o.name: o.default for o in loss.options}
    element, base = loss.family.kernel_element(loss, defaults, dtype)
    names = ELEMENT_OPTIONS[element]
    assert all(v == 0 for v in base[len(names):])  # unused slots
    for option in loss.options:
        if option.is_array or option.name in FAMILY_OPTIONS:
            continue
        value = option.check(_another_value(option), name)
        changed, slots = loss.family.kernel_element(loss, {**defaults, option.name: value},
                                                    dtype)
        differ = [n for n, a, b in zip(names, base, slots) if a != b]
        assert changed == element and len(differ) == 1, (option.name, differ)
        if option.name in names:
            assert differ == [option.name] and slots[names.index(option.name)] == value


@pytest.mark.parametrize("name", NAMES)
def test_signature_shows_arrays_options_defaults_and_reduction(name):
    loss = fl.LOSSES[name]
    params = inspect.signature(loss).parameters
    assert list(params)[:len(loss.inputs)] == list(loss.inputs)
    for option in loss.options:
        assert params[option.name].default == option.default
        assert params[option.name].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["reduction"].default == "default"
    assert ("sample_weight" in params) == (loss.convention == "keras")
    grad_params = inspect.signature(loss.grad).parameters
    assert {"grad_output", "out"} <= set(grad_params)
    assert inspect.signature(loss.value_and_grad) == inspect.signature(loss.grad)


@pytest.mark.parametrize("name", NAMES)
def test_help_shows_formula_reference_options_and_reductions(name):
    loss = fl.LOSSES[name]
    spec = loss.spec
    for text in (pydoc.render_doc(loss, renderer=pydoc.plaintext), loss.grad.__doc__,
                 loss.value_and_grad.__doc__):
        flat = " ".join(text.split())
        assert " ".join(spec.formula.split()) in flat
        assert " ".join(spec.reference.split()) in flat
        assert repr(spec.default_reduction) in flat
        for option in spec.options:
            assert f"{option.name}={option.default!r}" in flat
    assert "grad_output" in loss.grad.__doc__


def test_cross_entropy_help_as_a_user_reads_it():
    text = pydoc.render_doc(fl.cross_entropy, renderer=pydoc.plaintext)
    assert "cross_entropy(y_true, y_pred, *, reduction='default', weight=None, " \
           "ignore_index=-100, label_smoothing=0.0)" in text
    assert "torch.nn.functional.cross_entropy" in text
    assert "'mean', 'sum', 'none'" in text


def test_classes_show_their_options():
    sig = inspect.signature(fl.CategoricalCrossentropy)
    assert sig.parameters["from_logits"].default is False
    assert sig.parameters["reduction"].default == "sum_over_batch_size"
    assert "categorical_crossentropy" in fl.CategoricalCrossentropy.__doc__
    for loss in fl.LOSSES.values():
        if loss.spec.class_name:
            assert fl.CLASSES[loss.spec.class_name].loss is loss


def _statically_bound_names():
    """The names fastloss/__init__.py binds in its own text (what a type checker sees)."""
    tree = ast.parse((ROOT / "fastloss" / "__init__.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


def test_every_loss_alias_and_class_is_exported_explicitly():
    expected = set(fl.LOSSES) | set(fl.ALIASES) | set(fl.CLASSES)
    assert expected <= set(fl.__all__)
    assert set(fl.__all__) <= _statically_bound_names()
    for name in expected:
        assert fl.get(name) is getattr(fl, name)
    assert (ROOT / "fastloss" / "py.typed").exists()


def test_readme_loss_table_is_the_registrys():
    """Regenerate with ``python -m fastloss table``."""
    readme = (ROOT / "README.md").read_text()
    assert readme_table(loss.spec for loss in fl.LOSSES.values()) in readme


def test_every_contract_test_covers_every_loss():
    """The table-driven contract tests draw their losses from the registry; none may be
    left out."""
    import test_bad_input
    import test_properties
    import test_reliability

    assert set(loss_cases.MAKERS) == set(fl.LOSSES)
    assert set(test_properties.NAMES) == set(fl.LOSSES)
    assert set(test_bad_input.SUBJECTS) == set(fl.LOSSES)
    assert set(test_reliability.NAMES) == set(fl.LOSSES)


def test_value_shape_is_the_values_shape():
    """Loss.value_shape (what framework front ends allocate ahead of a call) equals the
    shape of the value computed, for every loss, unreduced and reduced."""
    from fastloss._bench import arguments
    rng = np.random.default_rng(0)
    for name, loss in fl.LOSSES.items():
        # (the sample arguments put classes last: rank 3 for Keras's layout only)
        for shape in ((4, 6), (2, 3, 6)) if loss.convention == "keras" else ((4, 6), (5, 3)):
            args = arguments(name, rng.uniform(0.05, 0.95, shape), rng.uniform(0.05, 0.95, shape))
            if "none" in loss.spec.reductions:
                expected = loss.value_shape(*(np.shape(a) for a in args), reduction="none")
                assert np.shape(loss(*args, reduction="none")) == expected, (name, shape)
            reduced = [r for r in loss.spec.reductions if r not in ("none", None)][0]
            assert loss.value_shape(*(np.shape(a) for a in args), reduction=reduced) == ()
    x = rng.uniform(0.05, 0.95, (2, 3, 4))
    for axis in (1, (0, 2), -1):  # the overlap losses keep the axes they do not reduce
        assert np.shape(fl.dice(x, x, axis=axis, reduction="none")) == fl.dice.value_shape(
            x.shape, x.shape, axis=axis, reduction="none")

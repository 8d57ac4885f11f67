"""Losses defined by their formula: ``fl.define_loss(name, formula, options=..., ...)``.

The formula ``formula(t, p, *options)`` is one element's loss, written with
``fastloss.math`` and Python arithmetic.  It is traced once (fastloss.math.Traced); its
gradient and second derivative in ``p`` are derived with SymPy (an optional extra),
simplified, shared subexpressions taken out, and written as an element function and
its kernels - the pointwise family's, the same templates as the built-in losses
(kernels/_generate.py) - into a module in a cache folder.  The printed code is checked
against central finite differences of the formula (float64) before it is used.

The module's file name carries a hash of the trace, the options, the convention and the
kernel sources it inlines, so the same definition in a new process imports the module
that is already there (no SymPy) and its kernels load from Numba's on-disk cache beside
it; any change (formula, options, fastloss's kernels) writes a new module.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import keyword
import math
import os
import sys
from pathlib import Path

import numpy as np

from . import math as fmath
from .families.pointwise import Pointwise
from .launch import DEFINED_MODULES
from .pipeline import Loss
from .registry import TORCH_REDUCTIONS, LossSpec, Option

__all__ = ["define_loss", "DEFINED", "cache_folder"]

# The losses defined in this process, by name.
DEFINED: dict[str, Loss] = {}

# Names an option may not take: the element's own parameters and the names its code uses,
# and the arguments every loss call takes.
_RESERVED = {"t", "p", "T", "math", "y_true", "y_pred", "sample_weight", "reduction",
             "grad_output", "out", "axis", "weight", "input", "target",
             *fmath.__all__, "heaviside", "power", "maximum", "minimum"}
# Bumped when the code written below changes (the cache key includes it).
_WRITER_VERSION = "2"


def cache_folder() -> Path:
    """Where the modules of defined losses (and Numba's cache of their kernels) live:
    ``$FASTLOSS_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastloss``, else ``~/.cache/fastloss``."""
    root = os.environ.get("FASTLOSS_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastloss"
    return Path(root) / "defined"


def define_loss(name, formula, *, options=None, convention="keras", grad=None, hess=None):
    """A loss from its per-element formula, with fused kernels like the built-in ones.

    ``formula(t, p, *options)``: the loss of one label ``t`` and prediction ``p``,
    written with ``fastloss.math`` (exp, log, log1p, expm1, sqrt, abs, tanh, sigmoid,
    softplus, sign, maximum, minimum, clip, where) and Python arithmetic; ``options``: its
    scalar options, ``{name: default}``, passed in that order.  ``grad`` / ``hess``: the
    first and second derivatives in ``p``, written the same way; when not given they are
    derived with SymPy (``pip install fastloss[define]``).  Derivatives are checked
    against finite differences of ``formula`` here, once per definition.

    ``convention``: "keras" (``loss(y_true, y_pred, sample_weight=None,
    reduction="none")``, the mean over the last axis per sample, Keras's reductions) or
    "torch" (elementwise, reductions "mean", "sum", "none").  The result is a ``Loss``
    with value, grad, value_and_grad and grad_hess (usable by ``fl.xgboost_objective``),
    on the CPU and CUDA.  Where the formula is not differentiable (a kink of maximum, abs,
    a where), each side's derivative is used, a tie of maximum/minimum split evenly.
    """
    _check_name(name)
    options = _check_options(name, options)
    if convention not in ("keras", "torch"):
        raise ValueError(f"define_loss({name!r}): convention must be 'keras' or 'torch', "
                         f"got {convention!r}")
    names = ("t", "p", *options)
    traced = {"formula": _trace(name, "formula", formula, names)}
    for what, fn in (("grad", grad), ("hess", hess)):
        if fn is not None:
            traced[what] = _trace(name, what, fn, names)
    key = hashlib.sha256("\n".join(
        [_WRITER_VERSION, _kernel_sources_digest(), convention, repr(names),
         *(f"{k}: {v}" for k, v in traced.items())]).encode()).hexdigest()
    element = f"{name}_{key[:12]}"
    folder = cache_folder()
    cpu_path, cuda_path = folder / f"{element}.py", folder / f"{element}_cuda.py"
    if not (cpu_path.exists() and cuda_path.exists()):
        cpu_source, cuda_source = _write_kernels(name, element, traced, formula, grad, hess,
                                                 options)
        folder.mkdir(parents=True, exist_ok=True)
        _write_once(cpu_path, cpu_source)
        _write_once(cuda_path, cuda_source)
    DEFINED_MODULES[f"{element}_cpu"] = _loader(f"fastloss_defined.{element}", cpu_path)
    DEFINED_MODULES[f"{element}_cuda"] = _loader(f"fastloss_defined.{element}_cuda", cuda_path)
    spec = LossSpec(
        name, "pointwise", convention, infix(traced["formula"]),
        "defined with fastloss.define_loss",
        options=tuple(Option(n, v, "any") for n, v in options.items()),
        notes=("per sample: the mean over the last axis" if convention == "keras"
               else "elementwise"),
        reductions=None if convention == "keras" else TORCH_REDUCTIONS)
    loss = Loss(spec, Pointwise(element))
    DEFINED[name] = loss
    return loss


# -- checks and tracing -------------------------------------------------------------------

def _check_name(name):
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"define_loss: name must be a Python identifier, got {name!r}")
    from .losses import ALIASES, LOSSES
    if name in LOSSES or name in ALIASES:
        raise ValueError(f"define_loss: {name!r} is a built-in loss; choose another name")


def _check_options(name, options):
    options = dict(options or {})
    for option, value in options.items():
        if not isinstance(option, str) or not option.isidentifier() or keyword.iskeyword(option):
            raise ValueError(f"define_loss({name!r}): option name {option!r} is not a Python "
                             "identifier")
        if option in _RESERVED or option.startswith("_"):
            raise ValueError(f"define_loss({name!r}): option name {option!r} clashes with a "
                             f"name the loss uses (reserved: {', '.join(sorted(_RESERVED))}, "
                             "and names starting with _)")
        if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
                or not math.isfinite(value)):
            raise ValueError(f"define_loss({name!r}): option {option!r} needs a finite number "
                             f"as its default, got {value!r}")
    if len(options) > _option_slots():
        raise ValueError(f"define_loss({name!r}): at most {_option_slots()} options, got "
                         f"{len(options)}")
    return {k: float(v) for k, v in options.items()}


def _option_slots():
    from .kernels.elements import OPTION_SLOTS
    return OPTION_SLOTS


def _trace(name, what, fn, names):
    if not callable(fn):
        raise TypeError(f"define_loss({name!r}): {what} must be a function of "
                        f"({', '.join(names)}), got {type(fn).__name__}")
    try:
        result = fmath.trace(fn, names)
    except TypeError as e:
        if "positional argument" in str(e):
            raise TypeError(f"define_loss({name!r}): {what} is called as {what}"
                            f"({', '.join(names)}): {e}") from None
        raise TypeError(f"define_loss({name!r}): {what}: {e}") from None
    except (NameError, AttributeError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"define_loss({name!r}): {what} could not be traced: "
                         f"{type(e).__name__}: {e}. Write it with fastloss.math's functions "
                         "and Python arithmetic") from None
    if not isinstance(result, fmath.Traced):
        if isinstance(result, (int, float)) and not isinstance(result, bool):
            return float(result)
        raise TypeError(f"define_loss({name!r}): {what} returned {type(result).__name__}, "
                        "not an expression of t, p and the options")
    if what == "formula" and "p" not in _symbols(result):
        raise ValueError(f"define_loss({name!r}): formula does not depend on p (the "
                         "prediction); there is nothing to differentiate")
    if _is_condition(result):
        raise TypeError(f"define_loss({name!r}): {what} returned a comparison, not a number")
    return result


_CONDITIONS = {"lt", "le", "gt", "ge", "and", "or", "not"}


def _is_condition(node):
    return isinstance(node, fmath.Traced) and node.op in _CONDITIONS


def _symbols(node):
    if not isinstance(node, fmath.Traced):
        return set()
    if node.op == "symbol":
        return {node.args[0]}
    return set().union(*map(_symbols, node.args))


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "lt": "<", "le": "<=",
          "gt": ">", "ge": ">=", "and": "&", "or": "|"}


def infix(node):
    """A traced formula as one line of Python (for its docs)."""
    if not isinstance(node, fmath.Traced):
        return repr(node)
    if node.op == "symbol":
        return node.args[0]
    args = [infix(a) for a in node.args]
    if node.op in _INFIX:
        return f"({args[0]} {_INFIX[node.op]} {args[1]})"
    if node.op == "neg":
        return f"-{args[0]}"
    if node.op == "not":
        return f"~{args[0]}"
    return f"{node.op}({', '.join(args)})"


@functools.cache
def _kernel_sources_digest():
    """A hash of the kernel code a defined loss's kernels inline (Numba's cache checks
    only the module's own file)."""
    here = Path(__file__).resolve().parent / "kernels"
    if not here.exists():  # (an editable install maps fastloss.kernels elsewhere)
        from . import kernels
        here = Path(kernels.__file__).parent
    files = ("_math.py", "formula_math.py", "pointwise.py", "pointwise_cuda.py", "_generate.py",
             "arguments.py", "cpu_target.py", "cuda_target.py")
    return hashlib.sha256(b"".join((here / f).read_bytes() for f in files)).hexdigest()


def _write_once(path, text):
    """Writes ``path`` unless it exists (another process may have written it: rewriting
    would change its time stamp and invalidate Numba's cache of it)."""
    if path.exists():
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)  # (fails if it appeared meanwhile: theirs is the same text)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _loader(module_name, path):
    @functools.cache
    def load():
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    return load


# -- derivation (SymPy) and code ---------------------------------------------------------

def _sympy():
    try:
        import sympy
    except ImportError:
        raise ImportError("define_loss derives gradients with SymPy, which is not installed: "
                          "pip install 'fastloss[define]' (or pass grad= and hess=)") from None
    return sympy


@functools.cache
def _sympy_functions():
    """SymPy functions for sigmoid and softplus, with their derivatives."""
    sp = _sympy()

    class sigmoid(sp.Function):
        def fdiff(self, argindex=1):
            x = self.args[0]
            return sigmoid(x) * sigmoid(-x)

    class softplus(sp.Function):
        def fdiff(self, argindex=1):
            return sigmoid(self.args[0])

    return sigmoid, softplus


def to_sympy(node, symbols):
    """A traced formula as a SymPy expression of ``symbols`` (name -> Symbol)."""
    sp = _sympy()
    from sympy.codegen.cfunctions import expm1, log1p
    sigmoid, softplus = _sympy_functions()
    if not isinstance(node, fmath.Traced):
        if isinstance(node, int):
            return sp.Integer(node)
        return sp.Rational(repr(node)) if math.isfinite(node) else sp.sympify(node)
    if node.op == "symbol":
        return symbols[node.args[0]]
    a = [to_sympy(x, symbols) for x in node.args]
    ops = {
        "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y, "pow": lambda x, y: x ** y, "neg": lambda x: -x,
        "abs": sp.Abs, "lt": sp.Lt, "le": sp.Le, "gt": sp.Gt, "ge": sp.Ge, "and": sp.And,
        "or": sp.Or, "not": sp.Not, "exp": sp.exp, "log": sp.log, "log1p": log1p,
        "expm1": expm1, "sqrt": sp.sqrt, "tanh": sp.tanh, "sigmoid": sigmoid,
        "softplus": softplus, "sign": sp.sign, "maximum": sp.Max, "minimum": sp.Min,
        "where": lambda c, x, y: sp.Piecewise((x, c), (y, True)),
    }
    return ops[node.op](*a)


def _derive(expr, p):
    """(d expr / dp with the deltas of steps (kinks) dropped, its SymPy simplification or
    None where that is not shorter)."""
    sp = _sympy()
    d = sp.diff(expr, p).replace(sp.DiracDelta, lambda *args: sp.S.Zero)
    try:
        simple = sp.simplify(d)
    except Exception:  # (SymPy's simplify can fail on Piecewise; keep d)
        return d, None
    return d, (simple if sp.count_ops(simple) < sp.count_ops(d) else None)


class Unprintable(ValueError):
    pass


class _Printer:
    """SymPy expressions as the kernels' Python: constants as T(c) (so a float32 kernel
    stays float32), small integer powers as products, the functions kernels/formula_math
    provides."""

    def __init__(self):
        sp = self.sp = _sympy()
        from sympy.codegen.cfunctions import expm1, log1p
        sigmoid, softplus = _sympy_functions()
        self.functions = {sp.exp: "exp", sp.log: "log", log1p: "log1p", expm1: "expm1",
                          sp.tanh: "tanh", sigmoid: "sigmoid", softplus: "softplus",
                          sp.sign: "sign", sp.Abs: "abs", sp.Heaviside: "heaviside"}
        self.relations = {sp.StrictLessThan: "<", sp.LessThan: "<=", sp.StrictGreaterThan: ">",
                          sp.GreaterThan: ">=", sp.Equality: "==", sp.Unequality: "!="}

    def __call__(self, e):
        sp = self.sp
        if e.is_Symbol:
            return e.name
        if e is sp.true or e is sp.false:
            return str(bool(e))
        if e.is_Number:
            return f"T({float(e)!r})" if e.is_finite else (
                "T(math.nan)" if e is sp.nan or e is sp.zoo else f"T({'-' if e.is_negative else ''}math.inf)")
        if e.is_Add:
            terms = list(e.args)
            text = self(terms[0])
            for term in terms[1:]:
                text += f" - {self(-term)}" if term.could_extract_minus_sign() else f" + {self(term)}"
            return f"({text})"
        if e.is_Mul:
            if e.could_extract_minus_sign():
                return f"(-{self(-e)})"
            num, den = [], []
            for f in e.args:
                if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                    den.append(self(f.base ** -f.exp))
                else:
                    num.append(self(f))
            text = " * ".join(num) if num else "T(1.0)"
            return f"({text} / ({' * '.join(den)}))" if den else f"({text})"
        if e.is_Pow:
            return self.power(e.base, e.exp)
        if isinstance(e, sp.Piecewise):
            *cases, (last, last_cond) = e.args
            text = self(last) if last_cond is sp.true else (
                f"({self(last)} if {self(last_cond)} else T(math.nan))")
            for value, cond in reversed(cases):
                text = f"({self(value)} if {self(cond)} else {text})"
            return text
        if type(e) in self.relations:
            return f"({self(e.lhs)} {self.relations[type(e)]} {self(e.rhs)})"
        if isinstance(e, (sp.And, sp.Or)):
            joint = " and " if isinstance(e, sp.And) else " or "
            return f"({joint.join(self(a) for a in e.args)})"
        if isinstance(e, sp.Not):
            return f"(not {self(e.args[0])})"
        if isinstance(e, (sp.Max, sp.Min)):
            name = "maximum" if isinstance(e, sp.Max) else "minimum"
            text = self(e.args[0])
            for a in e.args[1:]:
                text = f"{name}({text}, {self(a)})"
            return text
        if isinstance(e, sp.Heaviside):
            return f"heaviside({self(e.args[0])})"
        if e.func in self.functions:
            return f"{self.functions[e.func]}({self(e.args[0])})"
        raise Unprintable(f"{type(e).__name__} ({e})")

    def power(self, base, ex):
        sp = self.sp
        b = self(base)
        if ex.is_Integer and abs(int(ex)) <= 8:
            n = int(ex)
            if n == 0:
                return "T(1.0)"
            product = " * ".join([b] * abs(n))
            return f"({product})" if n > 0 else f"(T(1.0) / ({product}))"
        if ex == sp.Rational(1, 2):
            return f"sqrt({b})"
        if ex == sp.Rational(-1, 2):
            return f"(T(1.0) / sqrt({b}))"
        return f"power({b}, {self(ex)})"


def _function_source(fn_name, params, outputs, printer):
    """``def fn_name(params): ... return outputs`` with shared subexpressions taken out."""
    sp = printer.sp
    replacements, reduced = sp.cse(outputs, symbols=sp.numbered_symbols("_c"))
    lines = [f"def {fn_name}({', '.join(params)}):", "    T = type(p)"]
    lines += [f"    {s} = {printer(v)}" for s, v in replacements]
    results = ", ".join(printer(e) for e in reduced)
    lines.append(f"    return {results}")
    return "\n".join(lines) + "\n"


def _write_kernels(name, element, traced, formula, grad_fn, hess_fn, options):
    """(CPU module source, CUDA module source) of a defined loss, its derivatives derived
    where not given and all checked against finite differences."""
    sp = _sympy()
    symbols = {n: sp.Symbol(n, real=True) for n in ("t", "p", *options)}
    p = symbols["p"]
    loss = to_sympy(traced["formula"], symbols)
    grad, simple_grad = ((to_sympy(traced["grad"], symbols), None) if "grad" in traced
                         else _derive(loss, p))
    hess, simple_hess = ((to_sympy(traced["hess"], symbols), None) if "hess" in traced
                         else _derive(grad, p))
    params = tuple(symbols)
    printer = _Printer()
    given = {w for w in ("grad", "hess") if w in traced}
    # SymPy's simplification works over the complex numbers: it may rewrite a real power
    # into one that is NaN for a negative base (|x|**r -> |x**r|) or into functions the
    # kernels lack.  So the simplified derivatives are used only where they print and
    # pass the check; else the plain ones.
    simplified = (simple_grad or grad, simple_hess or hess)
    for first, second in dict.fromkeys([simplified, (grad, hess)]):
        try:
            element_source = _function_source(f"_{element}", params, [loss, first], printer)
            hess_source = _function_source(f"_{element}_hess", params, [second], printer)
            _check_derivatives(name, element, element_source + "\n" + hess_source, formula,
                               options, given)
            break
        except (Unprintable, ValueError) as e:
            error = e
    else:
        if isinstance(error, Unprintable):
            raise ValueError(f"define_loss({name!r}): the derivatives use a function kernels do "
                             f"not have: {error}") from None
        raise error
    return _modules(name, element, element_source, hess_source, params, traced)


# Sample points of the definition-time check: labels and predictions of both signs,
# near 0 and 1 (probabilities) and further out.
_T_SAMPLES = (-1.0, 0.0, 0.35, 1.0, 2.0)
_P_SAMPLES = (-2.5, -1.3, -0.7, -0.2, 0.15, 0.45, 0.8, 1.6, 3.1)


def _check_derivatives(name, element, source, formula, options, given):
    """The printed element against the formula (NumPy, float64): its value equal, its
    gradient the formula's central difference, its second derivative its gradient's, at
    every sample point where the formula is finite and smooth (the differences at two
    steps agree)."""
    from .kernels import formula_math
    namespace = {"math": math, "exp": np.exp, "log": np.log, "log1p": np.log1p,
                 "expm1": np.expm1, "sqrt": np.sqrt, **formula_math.FUNCTIONS}
    exec(compile(source, f"<{element}>", "exec"), namespace)
    element_fn, hess_fn = namespace[f"_{element}"], namespace[f"_{element}_hess"]
    opts = [np.float64(v) for v in options.values()]

    def value(t, p):
        return np.float64(formula(np.float64(t), np.float64(p), *opts))

    def grad(t, p):
        return element_fn(np.float64(t), np.float64(p), *opts)[1]

    checked = 0
    with np.errstate(all="ignore"):
        for t in _T_SAMPLES:
            for p in _P_SAMPLES:
                loss, g = element_fn(np.float64(t), np.float64(p), *opts)
                h = hess_fn(np.float64(t), np.float64(p), *opts)
                f = value(t, p)
                if not (np.isfinite(f) and np.isfinite(loss)):
                    continue
                if not np.isclose(loss, f, rtol=1e-9, atol=1e-12):
                    raise AssertionError(f"define_loss({name!r}): kernel value {loss} != "
                                         f"formula {f} at t={t}, p={p}")
                ok_g = _agrees(g, value, t, p)
                ok_h = _agrees(h, grad, t, p)
                for what, ok, got in (("grad", ok_g, g), ("hess", ok_h, h)):
                    if ok is False:
                        who = f"the given {what}" if what in given else f"the derived {what}"
                        raise ValueError(f"define_loss({name!r}): {who} ({got}) does not match "
                                         f"finite differences of the "
                                         f"{'formula' if what == 'grad' else 'gradient'} at "
                                         f"t={t}, p={p}")
                checked += ok_g is True
    if not checked:
        raise ValueError(f"define_loss({name!r}): the formula is not finite and smooth at any "
                         f"sample point (t in {_T_SAMPLES}, p in {_P_SAMPLES}, options at "
                         "their defaults), so its derivatives cannot be checked")


def _agrees(derivative, f, t, p):
    """True / False: ``derivative`` equals f's central difference in p at (t, p); None
    where that cannot be told (f not finite or not smooth there)."""
    step = 1e-4 * max(1.0, abs(p))
    wide = (f(t, p + step) - f(t, p - step)) / (2 * step)
    narrow = (f(t, p + step / 2) - f(t, p - step / 2)) / step
    if not (np.isfinite(wide) and np.isfinite(narrow)):
        return None
    if abs(wide - narrow) > 1e-5 * (1 + abs(narrow)):
        return None  # a kink or a jump within the step
    return bool(abs(derivative - narrow) <= 1e-5 * (1 + abs(narrow)))


CPU_HEADER = '''"""The kernels of loss {name!r}, written by fastloss.define_loss: do not edit.
formula(t, p{option_list}) = {formula}"""
import math

from numba import njit, prange

from fastloss.kernels.cpu_target import inlined, wide_vectors
from fastloss.kernels.formula_math import (exp, expm1, heaviside, log, log1p, maximum, minimum,
                                           power, sigmoid, sign, softplus, sqrt, tanh)
from fastloss.kernels.pointwise import (FASTMATH, block_range, pointwise, pointwise_pair,
                                        pointwise_total, task_blocks)

ELEMENT_OPTIONS = {element_options!r}
KERNEL_ELEMENTS = {kernel_elements!r}
NUMBA_INLINED = frozenset()

'''

CUDA_HEADER = '''"""The CUDA kernels of loss {name!r}, written by fastloss.define_loss: do not edit."""
import math

from numba import cuda

from fastloss.kernels.formula_math import cuda_functions
from fastloss.kernels.pointwise_cuda import pointwise, pointwise_pair

globals().update(cuda_functions())  # (exp, log, ..., tanh, sigmoid: CUDA device functions)

'''


def _modules(name, element, element_source, hess_source, params, traced):
    from .kernels._generate import CPU_LAZY, cpu_element, cuda_element
    namespace = {}
    exec(element_source.replace(f"def _{element}(", f"def {element}("), namespace)
    element_fn = namespace[element]
    kernel_elements = {}
    cpu_kernels = cpu_element("pointwise", element, element_fn, kernel_elements,
                              hess=f"{element}_hess")
    options = params[2:]
    cpu = CPU_HEADER.format(name=name, option_list="".join(f", {o}" for o in options),
                            formula=infix(traced["formula"]),
                            element_options={element: options},
                            kernel_elements=dict(sorted(kernel_elements.items())))
    definitions = (f"{element_source}\n\n{hess_source}\n\n"
                   f"{element} = {{jit}}(_{element})\n{element}_hess = {{jit}}(_{element}_hess)\n")
    cpu += definitions.format(jit="inlined") + "\n".join(cpu_kernels) + CPU_LAZY
    cuda = CUDA_HEADER.format(name=name) + definitions.format(
        jit='cuda.jit(device=True, inline="always")') + "\n".join(
        cuda_element("pointwise", element, element_fn, hess=f"{element}_hess"))
    return cpu, cuda

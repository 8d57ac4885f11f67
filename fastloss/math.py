"""The functions a user-defined loss's formula is written with (``fastloss.define_loss``).

On NumPy arrays and numbers each is the NumPy function (so a formula is also its own
float64 NumPy reference); on the symbols ``define_loss`` traces a formula with, each
records itself, and the trace becomes the loss's kernels.  Python arithmetic
(``+ - * / **``, unary ``-``, ``abs``) and comparisons (``< <= > >=``, combined with
``& | ~``) trace too; a Python ``if``, ``and``/``or``, ``min``/``max`` or a ``math.*``
function cannot (they need a value), and raise ``TypeError`` saying what to use instead.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exp", "log", "log1p", "expm1", "sqrt", "abs", "tanh", "sigmoid", "softplus",
           "sign", "maximum", "minimum", "clip", "where", "Traced"]

_abs = abs


class Traced:
    """One node of a traced formula: an operation and its arguments (nodes, or Python
    numbers).  ``str()`` is its canonical text, the key of its kernels' cache."""

    __slots__ = ("op", "args")

    def __init__(self, op, *args):
        self.op, self.args = op, args

    def __str__(self):
        if self.op == "symbol":
            return self.args[0]
        return f"{self.op}({', '.join(_text(a) for a in self.args)})"

    __repr__ = __str__

    # -- arithmetic and comparisons trace -----------------------------------------------
    def __add__(self, other): return _node("add", self, other)
    def __radd__(self, other): return _node("add", other, self)
    def __sub__(self, other): return _node("sub", self, other)
    def __rsub__(self, other): return _node("sub", other, self)
    def __mul__(self, other): return _node("mul", self, other)
    def __rmul__(self, other): return _node("mul", other, self)
    def __truediv__(self, other): return _node("div", self, other)
    def __rtruediv__(self, other): return _node("div", other, self)
    def __pow__(self, other): return _node("pow", self, other)
    def __rpow__(self, other): return _node("pow", other, self)
    def __neg__(self): return Traced("neg", self)
    def __pos__(self): return self
    def __abs__(self): return Traced("abs", self)
    def __lt__(self, other): return _node("lt", self, other)
    def __le__(self, other): return _node("le", self, other)
    def __gt__(self, other): return _node("gt", self, other)
    def __ge__(self, other): return _node("ge", self, other)
    def __and__(self, other): return _node("and", self, other)
    __rand__ = __and__
    def __or__(self, other): return _node("or", self, other)
    __ror__ = __or__
    def __invert__(self): return Traced("not", self)

    # -- what needs a value does not -------------------------------------------------------
    def __bool__(self):
        raise TypeError("a formula cannot branch on an array value (a Python if, and/or, "
                        "min/max or a chained comparison): use fastloss.math.where(cond, a, b), "
                        "maximum, minimum or clip, and & | ~ to combine conditions")

    def __float__(self):
        raise TypeError("a formula's values are arrays, not Python floats (math.* and float() "
                        "cannot take them): use fastloss.math's functions")

    __int__ = __index__ = __float__

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise TypeError(f"numpy.{ufunc.__name__} is not a formula function: use "
                        f"fastloss.math's functions ({', '.join(__all__[:-1])})")

    def __floordiv__(self, other):
        raise TypeError("// and % are not formula operations")

    __rfloordiv__ = __mod__ = __rmod__ = __floordiv__


def symbol(name):
    return Traced("symbol", name)


def _number(x):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"a formula takes numbers and traced values, got {type(x).__name__} "
                        f"{x!r}")
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def _node(op, *args):
    return Traced(op, *(a if isinstance(a, Traced) else _number(a) for a in args))


def _text(a):
    return str(a) if isinstance(a, Traced) else repr(a)


def _traced(*args):
    return any(isinstance(a, Traced) for a in args)


def _function(name, numeric, doc):
    def fn(*args):
        return _node(name, *args) if _traced(*args) else numeric(*args)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _sigmoid(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))[()]


def _softplus(x):
    x = np.asarray(x, dtype=float)
    return (np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0))[()]


exp = _function("exp", np.exp, "e**x.")
log = _function("log", np.log, "Natural logarithm.")
log1p = _function("log1p", np.log1p, "log(1 + x), accurate near 0.")
expm1 = _function("expm1", np.expm1, "e**x - 1, accurate near 0.")
sqrt = _function("sqrt", np.sqrt, "Square root.")
abs = _function("abs", np.abs, "|x| (its derivative: sign(x), 0 at 0).")
tanh = _function("tanh", np.tanh, "Hyperbolic tangent.")
sigmoid = _function("sigmoid", _sigmoid, "1 / (1 + e**-x), exact for any x (its derivative "
                                         "sigmoid(x) sigmoid(-x)).")
softplus = _function("softplus", _softplus, "log(1 + e**x), exact for any x (its derivative "
                                            "sigmoid(x)).")
sign = _function("sign", np.sign, "-1, 0 or 1 (its derivative: 0).")
maximum = _function("maximum", np.maximum, "The larger of a and b (at a tie the derivative is "
                                           "split half and half, as JAX's).")
minimum = _function("minimum", np.minimum, "The smaller of a and b (ties as maximum's).")
where = _function("where", np.where, "a where cond holds, else b; each branch differentiated "
                                     "on its own side.")


def clip(x, lo, hi):
    """x limited to [lo, hi]: minimum(maximum(x, lo), hi)."""
    return minimum(maximum(x, lo), hi)


def trace(formula, names):
    """``formula`` called on symbols ``names`` (t, p, options...): its traced result."""
    return formula(*(symbol(n) for n in names))

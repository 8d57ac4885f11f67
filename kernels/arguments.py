"""The arguments of each family kernel, in order: the one definition that
kernels/_generate.py writes the kernels from and fastloss.launch fills (plain data, no
Numba import)."""

KERNEL_ARGS = {
    "pointwise": ("t", "p", "o", "C", "weight", "coef", "gscale", "row_out", "grad",
                  "partials"),
    "pointwise_pair": ("t", "a", "b", "o", "C", "weight", "coef", "gscale", "row_out", "ga",
                       "gb", "partials"),
    "rowwise": ("t", "labels", "p", "cw", "o", "C", "weight", "coef", "gscale", "row_out",
                "grad", "partials"),
    "tuplewise": ("y", "a", "b", "c", "d", "o", "C", "weight", "coef", "gscale", "row_out",
                  "ga", "gb", "gc", "gd", "partials"),
    # grad_hess of a pair element: both gradients and second derivatives
    "pointwise_pair_hess": ("t", "a", "b", "o", "C", "weight", "coef", "gscale", "row_out",
                            "ga", "gb", "ha", "hb", "partials"),
    # grad_hess of a row element: the gradient and the Hessian's diagonal
    "rowwise_grad_hess": ("t", "labels", "p", "cw", "o", "C", "weight", "coef", "gscale",
                          "row_out", "grad", "hess", "partials"),
}

# How each family body calls its element function: with these arguments, ``o`` being the
# tuple of the loss's scalar options (OPTION_SLOTS values in the compute dtype).  An
# element function is written with named options instead of ``o``: every parameter not
# named here is an option, and the generated kernels bind ``o``'s slots to those names
# (``bind_<element>``), in the order the element lists them.
ELEMENT_CALLS = {
    "pointwise": ("t", "p", "o"),
    "pointwise_pair": ("t", "a", "b", "o"),
    "rowwise": ("t", "label", "p", "cw", "o", "g", "scale", "lane", "lanes", "shared", "GRAD"),
    "tuplewise": ("y", "x", "o", "g", "scale", "lane", "lanes", "shared", "GRAD"),
}


def element_parameters(fn):
    """An element function's parameter names, in order."""
    code = fn.__code__
    return code.co_varnames[:code.co_argcount]


def element_options(fn, body):
    """The named options of an element function of family body ``body``, in order."""
    return tuple(n for n in element_parameters(fn) if n not in ELEMENT_CALLS[body])

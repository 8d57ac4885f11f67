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
}

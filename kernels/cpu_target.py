"""How the CPU kernels are vectorised: full-width AVX-512 registers where the CPU has them,
and loops vectorised by their narrowest type.

Two LLVM defaults cost the kernels up to half their speed (measured on a Xeon with
AVX-512, float32 ``value_and_grad`` at 1e7 elements):

* LLVM's tuning for most AVX-512 CPUs prefers 256-bit vectors (to spare older parts a
  clock drop), so a float32 loop runs 8 lanes wide instead of 16.  ``wide_vectors()``,
  called in a kernel, marks the compiled function to use 512-bit vectors; on a CPU
  without AVX-512 it changes nothing.
* The loop vectoriser picks the lane count from a loop's widest type, so a float32 loop
  that also adds its losses up in float64 computes its float32 math in half the lanes.
  ``-vectorizer-maximize-bandwidth`` (set once for the process, as Numba sets its own
  vector-library option) makes it consider the narrowest type's count too and keep the
  cheaper: the float32 math at full width, the float64 sum split across registers.

Neither changes a result: lanes compute the same element functions, and every sum's
order is fixed by the compiled code, as before.
"""

import llvmlite.binding as ll
from numba.core import types
from numba.extending import intrinsic

ll.set_option("fastloss", "-vectorizer-maximize-bandwidth")


@intrinsic
def wide_vectors(typingctx):
    """Mark the function being compiled to vectorise with 512-bit registers (LLVM's
    ``prefer-vector-width`` and ``min-legal-vector-width`` attributes; llvmlite knows only
    a fixed list of function attributes, so these two strings go into its set directly)."""
    def codegen(context, builder, sig, args):
        attributes = builder.function.attributes
        for attribute in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
            set.add(attributes, attribute)
        return context.get_dummy_value()

    return types.none(), codegen

"""How the CPU kernels are vectorised: full-width AVX-512 registers where the CPU has them,
and loops vectorised by their narrowest type.

Two LLVM defaults cost the kernels up to half their speed (measured on a Xeon with
AVX-512, float32 ``value_and_grad`` at 1e7 elements):

* LLVM's tuning for most AVX-512 CPUs prefers 256-bit vectors (to spare older parts a
  clock drop), so a float32 loop runs 8 lanes wide instead of 16.  ``wide_vectors()``,
  called in a kernel, marks the compiled function to use 512-bit vectors; on a CPU
  without AVX-512 it changes nothing.  A function that LLVM inlines (``inlined``) has
  its loops vectorised in its own module first, so each one with a loop calls it too.
* The loop vectoriser picks the lane count from a loop's widest type, so a float32 loop
  that also adds its losses up in float64 computes its float32 math in half the lanes.
  ``-vectorizer-maximize-bandwidth`` (set once for the process, as Numba sets its own
  vector-library option) makes it consider the narrowest type's count too and keep the
  cheaper: the float32 math at full width, the float64 sum split across registers.

``prefetch(array, index)`` asks for a cache line ahead of its use, for loops whose long
bodies keep the hardware's prefetcher from running far enough ahead (kernels/pointwise.py).

Neither changes a result: lanes compute the same element functions, and every sum's
order is fixed by the compiled code, as before.
"""

import llvmlite.binding as ll
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

ll.set_option("fastloss", "-vectorizer-maximize-bandwidth")

# Kernel flags: reassociation lets LLVM vectorise the float64 sums (the order is still
# fixed by the compiled code, so results stay deterministic); contraction allows FMA.
# No nnan/ninf: NaN and inf must propagate.
FASTMATH = {"reassoc", "contract"}

# The functions kernels call (family bodies, element functions, their helpers, _math's
# functions) are compiled once per signature as functions of their own, which LLVM then
# inlines at every call (``forceinline``: its ``alwaysinline``) before it vectorises the
# loops, the constant flags (VALUE, GRAD) folded.  Numba's own inlining
# (``inline="always"``) rebuilds and deep-copies a callee's IR at every call site
# instead: that took most of a kernel's compile time.  A function of its own does not
# get its caller's flags, so these carry the kernels' flags themselves.
INLINED = {"forceinline": True, "fastmath": FASTMATH, "error_model": "numpy",
           "no_cpython_wrapper": True, "no_cfunc_wrapper": True}


def inlined(fn):
    """Compile ``fn`` as a function that CPU kernels call and LLVM inlines (``INLINED``)."""
    return njit(**INLINED)(fn)


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


@intrinsic
def borrowed(typingctx, array):
    """A view of ``array`` that does not own its memory (no NRT meminfo): the same data,
    shape and strides, but taking slices of it or passing it to a function costs no
    reference counting.  Counts are atomic, so a kernel that sliced its inputs per row
    paid two atomics per array per row (measured: 0.1 us a row, most of a short row's
    time, and more where threads share the arrays' counters).  The caller's references
    keep the data alive during a kernel call; an array the kernel allocates itself must
    be kept with ``keep_alive`` until its last borrowed use."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, sig, args):
        source = context.make_array(sig.args[0])(context, builder, value=args[0])
        view = context.make_array(sig.return_type)(context, builder)
        for field in ("parent", "nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, field, getattr(source, field))
        view.meminfo = context.get_constant_null(types.MemInfoPointer(types.voidptr))
        return view._getvalue()

    return array(array), codegen


@intrinsic
def keep_alive(typingctx, array):
    """A use of ``array`` that computes nothing: Numba releases a variable after its last
    use, so this keeps an array whose borrowed views are still in use alive until here."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.get_dummy_value()

    return types.none(array), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Ask for the cache line of ``array[index]`` ahead of its use (``prefetcht0``; a hint:
    it never faults, and callers keep ``index`` within the array anyway)."""
    if not (isinstance(array, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, value=args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=ir.FunctionType(
            ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32]))
        # (a read, the highest locality, the data cache)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen

"""Where the inputs live and what they hold: device checks, dtype rules, shapes."""

import numpy as np

from ._config import current_backend

CUDA_EXTRA_HINT = "install the CUDA extra: pip install 'fastloss[cuda]'"


def on_gpu(x):
    return hasattr(x, "__cuda_array_interface__")


def import_cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(f"fastloss got a GPU array but CuPy is missing: {CUDA_EXTRA_HINT}") from exc
    return cupy


class Placement:
    """Which backend runs a call, and how its inputs and results move.

    ``xp`` is the array module the front end prepares arrays with (NumPy or CuPy);
    ``target`` is "cpu" or "cuda"; ``gpu_inputs`` says whether results go back as CuPy.
    """

    def __init__(self, named_arrays):
        # (a number, such as sample_weight=2.0 or a scaled grad_output, lives nowhere)
        where = {name: on_gpu(x) for name, x in named_arrays.items()
                 if x is not None and not isinstance(x, (int, float, np.generic))}
        if len(set(where.values())) > 1:
            gpu = [n for n, g in where.items() if g]
            cpu = [n for n, g in where.items() if not g]
            raise TypeError(f"inputs live on different devices: {', '.join(gpu)} on the GPU, "
                            f"{', '.join(cpu)} on the CPU; move them to one device")
        self.gpu_inputs = any(where.values())
        forced = current_backend()
        self.target = forced if forced != "auto" else ("cuda" if self.gpu_inputs else "cpu")
        self.xp = import_cupy() if self.gpu_inputs and self.target == "cuda" else np

    def asarray(self, x, name):
        """The input as an array of ``xp`` (host copies of GPU inputs forced to the CPU)."""
        return real_array(self.xp, x, name)

    def result(self, x):
        """A result in the inputs' library."""
        if self.gpu_inputs and self.xp is np:
            return import_cupy().asarray(x)
        return x


def array_module(x):
    """CuPy for GPU arrays, else NumPy."""
    return import_cupy() if on_gpu(x) else np


def real_array(xp, x, name):
    """``x`` as an array of ``xp`` holding real numbers (bool, int or float), in the form
    every kernel takes: native byte order, aligned, writable.  Anything else raises
    TypeError naming the argument; nothing is copied that need not be."""
    if xp is np and on_gpu(x):  # a GPU input forced to the CPU
        x = import_cupy().asnumpy(x)
    try:
        arr = xp.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), "
                        f"got dtype {arr.dtype}")
    if xp is np:
        if not arr.dtype.isnative or not arr.flags.aligned:
            # (the kernels take native, aligned data; a big-endian float64 is still float64)
            arr = arr.astype(arr.dtype.newbyteorder("="), order="K")
        arr = writable(arr)
    return arr


def writable(arr):
    """A NumPy array as the kernels take it: itself, or when read-only (a caller's array,
    a broadcast weight) a writable view of the same memory, no copy."""
    return arr if arr.flags.writeable else np.asarray(_WritableAlias(arr))


class _WritableAlias:
    """A read-only array's memory, seen as writable (no copy).  Numba compiles a separate
    kernel for read-only arrays, which costs a compile and may round sums differently;
    the kernels and the front end never write into their inputs, so one array type
    serves both.  (``out=`` is checked for writability on the caller's own array.)"""

    def __init__(self, arr):
        self.base = arr  # keeps the memory alive
        interface = dict(arr.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def separate_output(xp, buffer, arrays):
    """``buffer``, or a fresh one like it when it may share memory with one of ``arrays``
    (``out=y_pred``): a kernel writes its output there, and the caller copies it into
    ``buffer`` when it is not ``buffer``.  (Bounds only: cheap, and an overlap reported
    where there is none only costs the temporary.)"""
    if any(isinstance(x, xp.ndarray) and xp.may_share_memory(buffer, x) for x in arrays):
        return xp.empty_like(buffer)
    return buffer


def compute_dtype(y_pred):
    """float32 and float64 compute as such; everything else (float16, ints, bools) as float32."""
    return y_pred.dtype if y_pred.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def squeeze_or_expand_to_same_rank(shape1, shape2):
    """Keras's rule on shapes: if ranks differ by one and the longer ends in 1, drop that axis
    (or, when the shorter is rank 1, add a trailing 1 to it)."""
    r1, r2 = len(shape1), len(shape2)
    if r1 == r2 + 1 and shape1[-1] == 1:
        if r2 == 1:
            shape2 = shape2 + (1,)
        else:
            shape1 = shape1[:-1]
    if r2 == r1 + 1 and shape2[-1] == 1:
        if r1 == 1:
            shape1 = shape1 + (1,)
        else:
            shape2 = shape2[:-1]
    return shape1, shape2


def broadcasts_to(shape, target):
    if tuple(shape) == tuple(target):
        return True
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def check_broadcasts(loss_name, name, shape, target_name, target_shape):
    """ValueError naming both arrays and shapes unless ``shape`` broadcasts to ``target_shape``."""
    if not broadcasts_to(shape, target_shape):
        raise ValueError(f"{loss_name}: {name} of shape {tuple(shape)} does not broadcast to "
                         f"{target_name} of shape {tuple(target_shape)}")

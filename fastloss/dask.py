"""Dask arrays: every loss as a lazy graph of per-chunk fused calls.

A call with a Dask array among its arrays (NumPy or CuPy chunks; NumPy arrays beside it
are welcome) returns Dask arrays at once, having computed nothing: the value (0-d, or the
per-sample losses for ``reduction="none"``) and the gradients, each chunked like the
prediction it belongs to.  Checks that need only shapes and dtypes run at call time;
labels are checked where their chunks are computed.

The batch is the first axis.  Arrays that run along it (predictions, their labels,
per-sample weights, an elementwise weight, a per-sample cotangent) are cut into the
same chunks (unified to the first prediction's; any other axis, the class axis among
them, is made whole: one rechunk); arrays that broadcast over the batch (class weights, a
scalar cotangent) go whole to every chunk.  Each chunk's task runs the ordinary fused
kernel once, writing its gradient chunk and keeping the kernel's float64 block partials;
a last task adds every chunk's partials in chunk order and makes the value from them as
one call does from its own.  Means are divided by the whole batch's counts, and by
weight sums (Keras's "mean_with_sample_weight", PyTorch's weighted means over the kept
targets, Keras's ignore_class) computed first from the labels and weights alone.  So no
result depends on the scheduler, the number of workers or the order in which chunks
finish, and where every chunk (but the last) holds whole kernel blocks (``aligned_rows``
rows: a multiple of 4096 elements, of the rows of a block and of 4096 rows) the results
are bitwise those of the in-memory call.

The overlap losses (dice, tversky, fbeta_loss) whose groups span the batch take each
chunk's sums first (a pass over y_true and y_pred), add them in chunk order, and write
the gradient chunks from y_true and those sums.  circle and ntxent (every row's loss
reads every other row) run in tiles of the pair matrix, a task per pair of chunks
(fastloss.dask_pairs).  Some layouts run as a single task on the whole arrays
(rechunked to one chunk; the result is still lazy and equal to the in-memory one): ctc,
the overlap losses with per-sample groups, a class or reduced axis that is the first
axis (a 1-D class vector, Keras ``axis=0``), a prediction broadcast along the batch,
Keras's 1-D y_pred with non-scalar weights, and circle and ntxent on CuPy chunks or the
"cuda" backend.
"""

from __future__ import annotations

import math

import numpy as np

from . import _batch, _config, dask_pairs
from ._arrays import compute_dtype, squeeze_or_expand_to_same_rank

# The families whose calls split along the batch (their value is a sum of the kernel's
# block partials); the others run whole.
_CHUNKED_FAMILIES = ("pointwise", "rows", "embeddings", "elements")
_PROXY_LIMIT = 1 << 20  # elements: larger arrays of a whole call are not proxied


def is_dask(x):
    """Whether x is a Dask collection (checked without importing Dask)."""
    return type(x).__module__.partition(".")[0] == "dask" and hasattr(x, "__dask_graph__")


def involves_dask(arrays, kwargs):
    return any(is_dask(a) for a in arrays) or any(
        is_dask(v) or (isinstance(v, (tuple, list)) and any(is_dask(o) for o in v))
        for v in kwargs.values())


def aligned_rows(row_elements):
    """The number of rows of ``row_elements`` elements each that a chunk should hold a
    multiple of for results bitwise equal to an in-memory call: whole kernel blocks
    (4096 elements, or 4096 // row_elements rows for the losses of a row)."""
    from .kernels.pointwise import CHUNK  # (here: importing fastloss compiles nothing)

    rows_per_block = max(1, CHUNK // max(row_elements, 1))
    whole_blocks = CHUNK // math.gcd(CHUNK, max(row_elements, 1))
    return math.lcm(rows_per_block, whole_blocks)


# -- the call ------------------------------------------------------------------------------

def compute(loss, mode, arrays, kwargs):
    """A Loss method's call on Dask arrays: the same result as the in-memory call, as Dask
    arrays."""
    import dask.array as da

    kwargs = dict(kwargs)
    named = loss._bind(tuple(arrays), kwargs)
    if mode.grad and kwargs.pop("out", None) is not None:
        raise TypeError(f"{loss.name}: out= is not supported with Dask arrays (the gradient "
                        "is a new Dask array; write it with dask.array.store)")
    extra = {k: kwargs.pop(k) for k in ("sample_weight", "grad_output") if k in kwargs}
    if not mode.grad and "grad_output" in extra:
        raise TypeError(f"{loss.name}() got an unexpected option 'grad_output'")
    reduction = loss.check_reduction(kwargs.pop("reduction", "default"))
    options = loss.check_options(kwargs)
    scalars = {o.name: options[o.name] for o in loss.options if not o.is_array}
    for name in loss._array_options:
        if options[name] is not None:
            extra[name] = options[name]
    call = _Call(loss, mode, reduction, scalars, {**named, **{k: v for k, v in extra.items()
                                                               if v is not None}})
    for name, x in call.arrays.items():
        if is_dask(x) and not hasattr(x, "chunks"):
            raise TypeError(f"{loss.name}: {name} must be a dask.array Array, got "
                            f"{type(x).__name__}")
    call.plan(da)
    call.check()
    return call.graph(da)


class _Call:
    def __init__(self, loss, mode, reduction, scalars, arrays):
        self.loss, self.mode, self.reduction, self.scalars = loss, mode, reduction, scalars
        # (the backend in force at call time runs the graph's calls: they run later,
        # in other threads or processes)
        self.options = scalars
        self.scalars = {**scalars, _BACKEND: _config.current_backend()}
        self.arrays = {n: (x if is_dask(x) or hasattr(x, "shape") else np.asarray(x))
                       for n, x in arrays.items()}
        self.shapes = {n: tuple(x.shape) for n, x in self.arrays.items()}
        self.predictions = loss.predictions
        preds = [self.arrays[n] for n in self.predictions]
        self.dtype = compute_dtype(np.empty(0, np.result_type(*(p.dtype for p in preds))))

    # -- layout ----------------------------------------------------------------------

    def plan(self, da):
        """Which arrays run along the batch (``self.batch``), the batch's chunks, or a
        whole call (``self.batch`` None)."""
        self.one_row = False
        self.statistics = False  # (overlap: the batch's sums first)
        self.broadcast = set()
        self.pairs = dask_pairs.applies(self)  # (circle, ntxent: tiles of the pair matrix)
        self.batch = None if self.pairs else self._batch_arrays()
        self.leading = None
        first = None if self.batch is None else next(
            (n for n in (*self.predictions, *self.batch)
             if n in self.batch and is_dask(self.arrays[n])), None)
        if first is None:  # (no Dask array runs along the batch)
            self.batch = None
            return
        self.leading = self.shapes[first][0]
        for n in self.broadcast:
            x = self.arrays[n]
            self.arrays[n] = da.broadcast_to(x, (self.leading,) + tuple(x.shape[1:]))
            self.shapes[n] = tuple(self.arrays[n].shape)
        for n in self.batch:
            if self.shapes[n][0] != self.leading:
                raise ValueError(
                    f"{self.loss.name}: {n} of shape {self.shapes[n]} and {first} of shape "
                    f"{self.shapes[first]} must have the same length along the first (batch) "
                    "axis")
        self.chunks = self.arrays[first].chunks[0]

    def _batch_arrays(self):
        """The names of the arrays cut along the batch axis, or None for a whole call."""
        loss, shapes = self.loss, self.shapes
        family = loss.family.name
        p_name = self.predictions[0]
        p_shape = shapes[p_name]
        if family == "overlap" and len(p_shape) > 0:
            return self._overlap_arrays(p_shape)
        if family not in _CHUNKED_FAMILIES or len(p_shape) == 0:
            return None
        keras = loss.convention == "keras"
        values_shape = self._values_shape()
        if values_shape is None:
            return None
        if len(values_shape) == 0:  # one row: a value whatever the reduction
            # (Keras's 1-D y_pred, one mean over every element, splits like any sum;
            # with an array of weights Keras multiplies them by that one value)
            if not (family == "pointwise" and keras and len(p_shape) == 1
                    and shapes.get("sample_weight", ()) == ()):
                return None
            self.one_row = True
        if family == "pointwise" and keras and len(p_shape) > 1 and (
                self.options.get("axis", -1) % len(p_shape) == 0):
            return None
        if family == "rows":
            axis = loss.family._class_axis(loss.name, loss.convention, self.options,
                                           len(p_shape))
            if axis == 0:
                return None
        if family == "elements":
            full = values_shape
            if any(shapes[n] != full for n in self.predictions):
                return None  # (a broadcast prediction's gradient sums over the batch)
        N = values_shape[0] if values_shape else p_shape[0]
        batch = []
        for name, shape in shapes.items():
            along = self._along_batch(name, shape, p_shape, values_shape, N, keras, family)
            if along is None:
                return None
            if along:
                batch.append(name)
        return batch

    def _overlap_arrays(self, p_shape):
        """The overlap losses (sums over groups of elements, then a function of the sums):
        split along the batch when their groups span it (``axis=None``, the default, or an
        axis tuple with 0): each chunk's sums, added in chunk order, give the loss, and a
        second pass over y_true alone writes the gradient (affine in y_true)."""
        from .families.overlap import _reduced_axes

        loss = self.loss
        _, shape = squeeze_or_expand_to_same_rank(self.shapes["y_true"], p_shape)
        try:
            axes = _reduced_axes(loss.name, self.options["axis"], shape)
        except ValueError:
            return None  # (the check names it)
        if 0 not in axes or self.shapes["y_true"][:1] != p_shape[:1]:
            return None
        self.statistics = True
        return list(loss.inputs)

    def _along_batch(self, name, shape, p_shape, values_shape, N, keras, family):
        """True: the array runs along the batch; False: it broadcasts over it (goes whole
        to every chunk); None: neither (the call runs whole)."""
        if name in self.predictions:
            return True
        if len(shape) == 0:
            return False
        if name == "sample_weight":
            _, w_shape = squeeze_or_expand_to_same_rank(values_shape, shape)
            if len(w_shape) != len(values_shape):
                return False if len(w_shape) < len(values_shape) else None
            if w_shape[0] == 1 and N != 1:
                # (broadcast along the batch: weights of the values' rank are per sample in
                # every chunk's call, one sample's included)
                self.broadcast.add(name)
            return True
        if name == "grad_output":
            return (len(shape) == len(values_shape) and not (shape[0] == 1 and N != 1)
                    if self.reduction == "none" else False)
        labels = name in self.loss.inputs
        if family in ("rows", "embeddings"):
            # labels: one per row, or dense targets of y_pred's shape; array options
            # (class weights): per class
            return labels
        # pointwise and elements: labels and weights broadcast as NumPy's arrays do
        target = p_shape if family == "pointwise" else values_shape
        if keras and labels:
            shape, target = squeeze_or_expand_to_same_rank(shape, target)
        if len(shape) < len(target) or (shape[0] == 1 and N != 1):
            return False
        return True if len(shape) == len(target) else None

    def _values_shape(self):
        try:
            return tuple(self.loss.value_shape(*(self.shapes[n] for n in self.loss.inputs),
                                               reduction="none", **self.options))
        except (ValueError, TypeError, IndexError, ZeroDivisionError):
            return None  # (the check then names the problem)

    # -- call-time checks ----------------------------------------------------------------

    def check(self):
        """Runs the in-memory path on small stand-ins of the arrays (zeros, the batch axis
        cut to one row), up to where its kernel would run: every check of shapes, dtypes and
        options the loss makes; and notes which data-dependent divisors the reduction uses."""
        stand_ins = {}
        self.divisor_kinds = ()
        if self.pairs:
            dask_pairs.check(self)
            return
        if self.batch is None and self.loss.family.name == "sequences":
            return  # (CTC's labels and lengths are data: checked when the call runs)
        for name, x in self.arrays.items():
            shape = self.shapes[name]
            if self.batch is not None and name in self.batch:
                shape = (min(shape[0], 1),) + shape[1:]
            elif not is_dask(x):
                stand_ins[name] = x
                continue
            elif math.prod(shape) > _PROXY_LIMIT:
                return  # (a whole call on large arrays: checked when it runs)
            stand_ins[name] = np.zeros(shape, x.dtype)
        if self.batch is None:  # (small stand-ins of every array: the call itself)
            self._call(self.mode, stand_ins)
            return
        context = _batch.ChunkContext(None if self.statistics else self.leading, probing=True)
        try:
            with _batch.chunk_of(context):
                self._call(self.mode, stand_ins)
        except _batch.Probed:
            pass
        except (ValueError, TypeError) as exc:
            shapes = ", ".join(f"{n} {self.shapes[n]}" for n in self.batch)
            raise type(exc)(f"{exc} [checked with the batch axis cut to one row; the "
                            f"arrays along the batch: {shapes}]") from None
        self.divisor_kinds = tuple(k for k in context.seen if k != "statistics")

    # -- the graph -----------------------------------------------------------------------
    # Built by hand, one task per chunk and no more: a chunk's fused call, a getitem per
    # output chunk, one task adding the partials (Dask's scheduler costs about as much
    # per task as a chunk's kernel, so every task counts).

    def graph(self, da):
        from dask.base import tokenize

        token = tokenize(self.loss.name, self.mode.name, self.reduction, self.scalars,
                         {n: (x.name if is_dask(x) else tokenize(x)) for n, x in self.arrays.items()})
        self.prefix = f"fastloss-{self.loss.name}-{self.mode.name}"
        self.tasks, self.dependencies = {}, []
        if self.pairs:
            return dask_pairs.graph(self, da, token)
        if self.batch is None:
            return self._whole(da, token)
        refs = {}  # each array's task reference per chunk (a key) or whole (a key or value)
        for name, x in self.arrays.items():
            if name in self.batch:
                chunks = (self.chunks,) + tuple((n,) for n in x.shape[1:])
                x = da.from_array(x, chunks=chunks) if not is_dask(x) else x.rechunk(chunks)
                self.dependencies.append(x)
                tail = (0,) * (x.ndim - 1)
                refs[name] = [(x.name, i) + tail for i in range(len(self.chunks))]
            else:
                refs[name] = self._whole_ref(x, da)
        names = tuple(self.arrays)
        nchunks = len(self.chunks)

        def chunk_refs(i):
            return [refs[n][i] if n in self.batch else refs[n] for n in names]
        if self.statistics:
            return self._statistics_graph(da, token, names, chunk_refs)
        divisors = self._divisors(token, names, chunk_refs) if self.divisor_kinds else {}
        chunk_key = f"{self.prefix}-chunk-{token}"
        for i in range(nchunks):
            self.tasks[(chunk_key, i)] = (_chunk_task, self.loss, self.mode.name, self.reduction,
                                          self.scalars, self.leading, divisors, names,
                                          chunk_refs(i))
        value = grads = None
        if self.mode.value:
            value = self._value(da, token, chunk_key, divisors, chunk_refs)
        if self.mode.grad:
            grads = []
            for k, name in enumerate(self.predictions * (2 if self.mode.hess else 1)):
                grad_key = f"{self.prefix}-grad{k}-{token}"
                ndim = len(self.shapes[name])
                outputs = {(grad_key, i) + (0,) * (ndim - 1): (_output, (chunk_key, i), 1, k)
                           for i in range(nchunks)}
                chunks = (self.chunks,) + tuple((n,) for n in self.shapes[name][1:])
                grads.append(self._like(self._array(da, grad_key, outputs, chunks), name))
        return self._result(value, grads)

    def _statistics_graph(self, da, token, names, refs):
        """The overlap losses: each chunk's sums (a pass over y_true and y_pred), added in
        chunk order; the value from them; the gradient chunks from them and y_true."""
        nchunks = len(self.chunks)
        sums_key = f"{self.prefix}-sums-{token}"
        for i in range(nchunks):
            self.tasks[(sums_key, i)] = (_sums_task, self.loss, self.reduction, self.scalars,
                                         names, refs(i))
        total_key = f"{self.prefix}-total-{token}"
        self.tasks[total_key] = (_add_sums, [(sums_key, i) for i in range(nchunks)])
        value = grads = None
        if self.mode.value:
            heads = self._heads(token, names, refs)
            value_key = f"{self.prefix}-value-{token}"
            shape = () if self.reduction != "none" else tuple(self.loss.value_shape(
                *(self.shapes[n] for n in self.loss.inputs), reduction="none", **self.options))
            task = (_from_sums_task, self.loss, "value", self.reduction, self.scalars,
                    total_key, names, heads)
            value = self._array(da, value_key, {(value_key,) + (0,) * len(shape): task},
                                tuple((n,) for n in shape))
        if self.mode.grad:
            name = self.predictions[0]
            grad_key = f"{self.prefix}-grad0-{token}"
            ndim = len(self.shapes[name])
            outputs = {(grad_key, i) + (0,) * (ndim - 1):
                       (_from_sums_task, self.loss, "grad", self.reduction, self.scalars,
                        total_key, names, refs(i)) for i in range(nchunks)}
            chunks = (self.chunks,) + tuple((n,) for n in self.shapes[name][1:])
            grads = [self._like(self._array(da, grad_key, outputs, chunks), name)]
        return self._result(value, grads)

    def _value(self, da, token, chunk_key, divisors, refs):
        nchunks = len(self.chunks)
        value_key = f"{self.prefix}-value-{token}"
        if self.reduction == "none" and not self.one_row:
            shape = tuple(self.loss.value_shape(*(self.shapes[n] for n in self.loss.inputs),
                                                reduction="none", **self.options))
            outputs = {(value_key, i) + (0,) * (len(shape) - 1): (_output, (chunk_key, i), 0)
                       for i in range(nchunks)}
            chunks = (self.chunks,) + tuple((n,) for n in shape[1:])
            return self._array(da, value_key, outputs, chunks)
        # (the value's finishing steps run on the first row of the first non-empty chunk:
        # the kernel does not run again)
        names = tuple(self.arrays)
        heads = self._heads(token, names, refs)
        # (each chunk's partials a task of their own, run where the chunk's result lies: the
        # adding task then receives a few floats per chunk, not the chunk's gradient)
        partials_key = f"{self.prefix}-partials-{token}"
        for i in range(nchunks):
            self.tasks[(partials_key, i)] = (_output, (chunk_key, i), 2)
        partials = [(partials_key, i) for i in range(nchunks)]
        outputs = {(value_key,): (_combine_task, self.loss, self.reduction, self.scalars,
                                  self.leading, divisors, partials, names, heads)}
        return self._array(da, value_key, outputs, ())

    def _heads(self, token, names, refs):
        """Each array as the value's finishing call takes it: the first row of the first
        non-empty chunk, taken by a task where that chunk lies (one row travels), or the
        whole array."""
        first = next((i for i, n in enumerate(self.chunks) if n), 0)
        head_key = f"{self.prefix}-head-{token}"
        heads = []
        for n, ref in zip(names, refs(first)):
            if n in self.batch:
                self.tasks[(head_key, n)] = (_head, ref)
                ref = (head_key, n)
            heads.append(ref)
        return heads

    def _divisors(self, token, names, chunk_refs):
        """The key of the whole batch's data-dependent divisors: a chain of tasks, one per
        chunk where the chunk lies, each continuing the previous one's sums over its labels
        or weights (the predictions stood in for by zeros: not read)."""
        step_key = f"{self.prefix}-divisor-{token}"
        previous = {}
        for i in range(len(self.chunks)):
            shapes = {n: (self.chunks[i],) + self.shapes[n][1:] for n in self.predictions}
            self.tasks[(step_key, i)] = (_divisor_step, previous, self.divisor_kinds,
                                         self.loss, self.reduction, self.scalars, self.leading,
                                         names, chunk_refs(i), shapes, str(self.dtype))
            previous = (step_key, i)
        return previous

    def _whole(self, da, token):
        """One task on the whole arrays."""
        names = tuple(self.arrays)
        whole_key = f"{self.prefix}-whole-{token}"
        self.tasks[whole_key] = (_whole_task, self.loss, self.mode.name, self.reduction,
                                 self.scalars, names,
                                 [self._whole_ref(self.arrays[n], da) for n in names])
        value = grads = None
        if self.mode.value:
            shape = () if self.reduction != "none" else tuple(self.loss.value_shape(
                *(self.shapes[n] for n in self.loss.inputs), reduction="none", **self.options))
            value_key = f"{self.prefix}-value-{token}"
            value = self._array(da, value_key, {(value_key,) + (0,) * len(shape):
                                                (_output, whole_key, 0)},
                                tuple((n,) for n in shape))
        if self.mode.grad:
            grads = []
            for k, name in enumerate(self.predictions * (2 if self.mode.hess else 1)):
                shape = self.shapes[name]
                grad_key = f"{self.prefix}-grad{k}-{token}"
                grads.append(self._like(self._array(
                    da, grad_key, {(grad_key,) + (0,) * len(shape): (_output, whole_key, 1, k)},
                    tuple((n,) for n in shape)), name))
        return self._result(value, grads)

    def _whole_ref(self, x, da):
        """A whole array as a task's argument: a Dask array's key (rechunked to one
        chunk), or the array itself."""
        if not is_dask(x):
            return x
        x = x.rechunk(tuple((n,) for n in x.shape))
        self.dependencies.append(x)
        return (x.name,) + (0,) * x.ndim

    def _array(self, da, name, outputs, chunks):
        from dask.highlevelgraph import HighLevelGraph

        graph = HighLevelGraph.from_collections(name, {**self.tasks, **outputs},
                                                dependencies=self.dependencies)
        return da.Array(graph, name, chunks, dtype=self.dtype,
                        meta=np.empty((0,) * len(chunks), self.dtype))

    # -- pieces --------------------------------------------------------------------------

    def _chunk_shape(self, name, i):
        return (self.chunks[i],) + self.shapes[name][1:]

    def _like(self, grad, name):
        """The gradient chunked like its prediction (when that is a Dask array)."""
        x = self.arrays[name]
        return grad.rechunk(x.chunks) if is_dask(x) and grad.chunks != x.chunks else grad

    def _result(self, value, grads):
        mode, n = self.mode, len(self.predictions)
        if grads is not None:
            if mode.hess:
                grads = (tuple(grads[:n]), tuple(grads[n:])) if n > 1 else (grads[0], grads[1])
            elif n == 1:
                grads = grads[0]
            else:
                grads = tuple(grads)
        return mode.result(value, grads)

    def _call(self, mode, arrays):
        return call_in_memory(self.loss, mode.name, self.reduction, self.scalars, arrays)



# -- the tasks (module-level: they travel to distributed workers by reference) ------------

_BACKEND = "__backend__"  # (the key of the backend among a call's scalars)


def call_in_memory(loss, mode_name, reduction, scalars, arrays, plannable=False):
    """The in-memory call, with the arrays by name (inputs, sample_weight, grad_output and
    array options), on the backend named among ``scalars``."""
    from .pipeline import MODES

    kwargs = {k: v for k, v in scalars.items() if k != _BACKEND}
    kwargs["reduction"] = reduction
    kwargs.update({n: x for n, x in arrays.items() if n not in loss.inputs})
    inputs = tuple(arrays[n] for n in loss.inputs)
    with _config.backend(scalars.get(_BACKEND, "auto")):
        result, _ = loss._full_path(MODES[mode_name], inputs, kwargs, plannable)
    return result


def _flat_grads(mode_name, result, n):
    """(value or None, the gradients as a flat list) of a result of this mode."""
    if mode_name == "value":
        return result, []
    value, grads = result if mode_name == "value_and_grad" else (None, result)
    if mode_name == "grad_hess":
        return None, (list(grads[0]) + list(grads[1])) if n > 1 else list(grads)
    return value, (list(grads) if n > 1 else [grads])


def _host(partials):
    if hasattr(partials, "copy_to_host"):
        return partials.copy_to_host()
    if hasattr(partials, "get"):
        return partials.get()
    return np.array(partials, copy=True)


def _output(result, index, k=None):
    """An output of a chunk's (or the whole call's) result: value 0, gradients 1,
    partials 2."""
    return result[index] if k is None else result[index][k]


def _chunk_task(loss, mode_name, reduction, scalars, leading, divisors, names, arrays):
    """One chunk's fused call: (its value or per-sample values, its gradients, its
    kernel's float64 block partials)."""
    context = _batch.ChunkContext(leading, dict(divisors or {}))
    with _batch.chunk_of(context):
        result = call_in_memory(loss, mode_name, reduction, scalars, dict(zip(names, arrays)))
    value, grads = _flat_grads(mode_name, result, len(loss.predictions))
    partials = (np.concatenate([_host(p) for p in context.partials])
                if context.partials else np.empty(0))
    return value, grads, partials


def _head(x):
    """The first row of a chunk (a copy: the chunk's memory is not held)."""
    return x[:1].copy()


def _combine_task(loss, reduction, scalars, leading, divisors, partials, names, arrays):
    """The value from every chunk's partials, added in chunk order, finished by the
    in-memory path (its kernel not run) on the first row of the chunked arrays."""
    total = _batch.in_order(np.concatenate(partials)) if partials else 0.0
    context = _batch.ChunkContext(leading, dict(divisors or {}), total=total)
    with _batch.chunk_of(context):
        return call_in_memory(loss, "value", reduction, scalars, dict(zip(names, arrays)))


def _divisor_step(previous, kinds, loss, reduction, scalars, leading, names, arrays,
                  pred_shapes, dtype):
    """The divisors' sums continued over one chunk's labels or weights (predictions stood
    in for by zero-strided zeros: they are not read)."""
    arrays = dict(zip(names, arrays))
    for name, shape in pred_shapes.items():
        arrays[name] = np.broadcast_to(np.zeros((), dtype), shape)
    context = _batch.ChunkContext(leading, probing=True)
    try:
        with _batch.chunk_of(context):
            call_in_memory(loss, "value", reduction, scalars, arrays)
    except _batch.Probed:
        pass
    previous = previous or {}
    return {k: _batch.ordered_sum(_host(context.seen[k]), start=previous.get(k, 0.0))
            if k in context.seen else previous.get(k, 0.0) for k in kinds}


def _sums_task(loss, reduction, scalars, names, arrays):
    """A chunk's sums (the overlap family's statistics per group)."""
    context = _batch.ChunkContext(None, probing=True)
    try:
        with _batch.chunk_of(context):
            call_in_memory(loss, "value", reduction, scalars, dict(zip(names, arrays)))
    except _batch.Probed:
        pass
    return _host(context.seen["statistics"])


def _add_sums(sums):
    total = np.zeros_like(sums[0])
    for s in sums:  # (in chunk order)
        total = total + s
    return total


def _from_sums_task(loss, mode_name, reduction, scalars, total, names, arrays):
    """The value, or a chunk's gradient, from the batch's sums."""
    context = _batch.ChunkContext(None, statistics=total)
    with _batch.chunk_of(context):
        return call_in_memory(loss, mode_name, reduction, scalars, dict(zip(names, arrays)))


def _whole_task(loss, mode_name, reduction, scalars, names, arrays):
    result = call_in_memory(loss, mode_name, reduction, scalars, dict(zip(names, arrays)))
    return _flat_grads(mode_name, result, len(loss.predictions))

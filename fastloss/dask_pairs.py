"""circle and ntxent on Dask arrays: the pair matrix in tiles, one per pair of chunks.

Each row's loss reads every other row, so the N x N similarity matrix (N x M against
circle's reference embeddings) is cut into tiles: the rows of chunk I against the rows
of chunk J, for every (I, J).  A tile's task computes its rows' statistics over the
tile's columns (kernels/pairwise.py: ``*_tile_*``); one task per row chunk merges them
over J in column order and finishes each row's statistics and loss; one task on the N
per-row losses (never an N x N array, nor the embeddings) makes the value as the
in-memory call does and, for the gradient, each row's cotangent.  The gradient is a
second tiled pass: chunk I's rows get ``sum_j (G_ij (+ G_ji)) r_j`` from each tile
(I, J), added in float64 along a chain of tasks J = 0, 1, ... (a task holds two
gradient chunks at most), then cast (ntxent: through the normalisation first).

Tiles by pass:
- circle: stats (I, J); merge I; the reduction; with gradients, tiles (I, J) again.
- ntxent: the rows' norms per chunk; tiles (I, J) for each row's maximum, negatives'
  sum and positives' number; merge I; tiles (I, J) over the positive pairs alone for
  the rows' losses; merge I; the reduction; with gradients, tiles (I, J) again.

Nothing depends on the scheduler: every sum over tiles runs in chunk order.  Results
equal the in-memory call's to rounding (the row statistics are merged log-sum-exps of
tiles where the in-memory kernel takes a row at once).  CPU only: CuPy chunks, a
"cuda" backend and empty arrays run as one task on the whole arrays (fastloss.dask).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import _config
from ._arrays import Placement

_BACKEND = "__backend__"  # (fastloss.dask's key of the backend among a call's scalars)


def applies(call):
    """Whether ``call`` (a fastloss.dask _Call of circle or ntxent) runs in tiles."""
    from .dask import is_dask

    if call.loss.family.name != "pairwise" or call.mode.hess:
        return False
    if call.scalars.get(_BACKEND) == "cuda":
        return False
    for x in call.arrays.values():
        chunk = getattr(x, "_meta", x) if is_dask(x) else x
        if hasattr(chunk, "__cuda_array_interface__"):
            return False
    p_shape = call.shapes["y_pred"]
    if len(p_shape) != 2 or 0 in p_shape:
        return False
    ref = call.shapes.get("ref_embeddings")
    if ref is not None and (len(ref) != 2 or ref[0] == 0):
        return False
    return is_dask(call.arrays["y_pred"]) or is_dask(call.arrays["y_true"]) or (
        ref is not None and is_dask(call.arrays["ref_embeddings"]))


# -- call-time checks -----------------------------------------------------------------------

def check(call):
    """The in-memory call's checks of shapes, dtypes and options, run on stand-ins of one
    row (of the batch, and of the references), after the lengths the cut hides."""
    from .dask import call_in_memory, is_dask

    loss, shapes = call.loss, call.shapes
    N = shapes["y_pred"][0]
    ref_shape = shapes.get("ref_embeddings")
    M = N if ref_shape is None else ref_shape[0]
    rows_name = "y_pred" if ref_shape is None else "ref_embeddings"
    lengths = {"y_true": (N, "y_pred", shapes["y_pred"])}
    if "ref_labels" in shapes:
        lengths["ref_labels"] = (M, rows_name, ref_shape or shapes["y_pred"])
    elif ref_shape is not None and M != N:
        raise ValueError(f"{loss.name}: ref_embeddings of shape {ref_shape} need ref_labels "
                         "(y_true labels y_pred's rows only)")
    for name, (n, of, of_shape) in lengths.items():
        if not shapes[name] or shapes[name][0] != n:
            raise ValueError(f"{loss.name}: {name} of shape {shapes[name]} must hold one label "
                             f"per row of {of} of shape {tuple(of_shape)}, i.e. have shape "
                             f"({n},)")
    cut = {"y_true": N, "y_pred": N, "sample_weight": N, "ref_labels": M, "ref_embeddings": M}
    if call.reduction == "none":
        cut["grad_output"] = N
    stand_ins = {}
    for name, x in call.arrays.items():
        shape = shapes[name]
        if shape and name in cut and shape[0] == cut[name]:
            x = x[:1] if not is_dask(x) else np.zeros((min(shape[0], 1),) + shape[1:], x.dtype)
        elif is_dask(x):
            x = np.broadcast_to(np.zeros((), x.dtype), shape)  # (no memory)
        stand_ins[name] = x
    try:
        call_in_memory(loss, call.mode.name, call.reduction, call.scalars, stand_ins)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{exc} [checked with the batch cut to one row; y_pred "
                        f"{shapes['y_pred']}]") from None


# -- the graph --------------------------------------------------------------------------------

def graph(call, da, token):
    """The tiled graph of ``call``: its value and gradient as Dask arrays."""
    return _Tiles(call, da, token).build()


class _Tiles:
    def __init__(self, call, da, token):
        from .dask import is_dask

        self.call, self.da, self.token = call, da, token
        self.loss, self.mode = call.loss, call.mode
        self.dtype = np.dtype(call.dtype)
        arrays = call.arrays
        p, t = arrays["y_pred"], arrays["y_true"]
        self.N, self.D = call.shapes["y_pred"]
        # the row chunks: y_pred's, else y_true's, else one
        source = p if is_dask(p) else t if is_dask(t) else None
        self.chunks = source.chunks[0] if source is not None else (self.N,)
        self.offsets = _offsets(self.chunks)
        self.e = self._cut(p, self.chunks)
        self.labels = self._labels(self._cut(t, self.chunks), "y_true")
        ref = arrays.get("ref_embeddings")
        self.self_ref = ref is None
        if self.self_ref:
            self.col_chunks, self.ref = self.chunks, self.e
            ref_labels = arrays.get("ref_labels")
            self.col_labels = (self.labels if ref_labels is None else
                               self._labels(self._cut(ref_labels, self.chunks), "ref_labels"))
        else:
            self.col_chunks = (ref.chunks[0] if is_dask(ref) else
                               _even(ref.shape[0], max(self.chunks)))
            self.ref = self._cut(ref, self.col_chunks)
            source = arrays.get("ref_labels", t)
            name = "ref_labels" if "ref_labels" in arrays else "y_true"
            self.col_labels = self._labels(self._cut(source, self.col_chunks), name)
        self.col_offsets = _offsets(self.col_chunks)

    # -- pieces of the graph

    def _key(self, what):
        return f"{self.call.prefix}-{what}-{self.token}"

    def _cut(self, x, chunks):
        """The keys of x's chunks along axis 0 (every other axis whole)."""
        from .dask import is_dask

        da = self.da
        shape = tuple(x.shape)
        full = (chunks,) + tuple((n,) for n in shape[1:])
        x = x.rechunk(full) if is_dask(x) else da.from_array(np.asarray(x), chunks=full)
        self.call.dependencies.append(x)
        tail = (0,) * (len(shape) - 1)
        return [(x.name, i) + tail for i in range(len(chunks))]

    def _labels(self, keys, name):
        """Tasks of the labels' chunks as the kernels take them (int64, checked)."""
        key = self._key(f"labels-{name}")
        for i, ref in enumerate(keys):
            self.call.tasks[(key, i)] = (_labels_task, self.loss, name, ref)
        return [(key, i) for i in range(len(keys))]

    def _diagonal(self, I, J):
        return int(self.col_offsets[J] - self.offsets[I])

    def _array(self, name, outputs, chunks):
        return self.call._array(self.da, name, outputs, chunks)

    def _value(self, reduced):
        """The value: one scalar, or the per-row losses in the rows' chunks."""
        key = self._key("value")
        if self.call.reduction == "none" and self.loss.name == "circle":
            outputs = {(key, I): (_rows_of, reduced, int(self.offsets[I]),
                                  int(self.offsets[I + 1])) for I in range(len(self.chunks))}
            return self._array(key, outputs, (self.chunks,))
        return self._array(key, {(key,): (_item, reduced, 0)}, ())

    def _gradient(self, accumulated):
        """The gradient from each row chunk's last accumulated task."""
        key = self._key("grad0")
        outputs = {(key, I, 0): task for I, task in enumerate(accumulated)}
        grad = self._array(key, outputs, (self.chunks, (self.D,)))
        return self.call._like(grad, "y_pred")

    def build(self):
        value, grads = (self._circle() if self.loss.name == "circle" else self._ntxent())
        return self.call._result(value, grads)

    def _tiles(self, what, task, *args):
        """A task per tile (I, J): task(row chunk I's, column chunk J's, diagonal, *args)
        given by the ``args`` callables."""
        key = self._key(what)
        for I in range(len(self.chunks)):
            for J in range(len(self.col_chunks)):
                self.call.tasks[(key, I, J)] = (task, *(a(I, J) for a in args),
                                                self._diagonal(I, J))
        return key

    def _merged(self, what, task, tiles_key, *row_args):
        key = self._key(what)
        for I in range(len(self.chunks)):
            self.call.tasks[(key, I)] = (task, [(tiles_key, I, J)
                                                for J in range(len(self.col_chunks))],
                                         *(a(I) for a in row_args))
        return key

    # -- circle

    def _circle(self):
        tasks, options = self.call.tasks, self.call.options
        gamma, margin = float(options["gamma"]), float(options["margin"])
        remove = bool(options["remove_diagonal"])
        dtype = self.dtype.str
        stats_key = self._tiles(
            "circle-stats", _circle_stats_task,
            lambda I, J: self.labels[I], lambda I, J: self.e[I],
            lambda I, J: self.col_labels[J], lambda I, J: self.ref[J],
            lambda I, J: dtype, lambda I, J: gamma, lambda I, J: margin, lambda I, J: remove)
        rows_key = self._merged("circle-rows", _circle_merge_task, stats_key)
        reduced = self._key("reduce")
        tasks[reduced] = (_circle_reduce_task, self.loss, self.call.reduction, dtype,
                          self.mode.value, self.mode.grad,
                          [(rows_key, I) for I in range(len(self.chunks))],
                          self._whole("sample_weight"), self._whole("grad_output"))
        value = self._value(reduced) if self.mode.value else None
        if not self.mode.grad:
            return value, None
        side_key = self._key("circle-side")  # (h, p, n) of each row chunk
        for I in range(len(self.chunks)):
            tasks[(side_key, I)] = (_circle_side_task, (rows_key, I), reduced,
                                    int(self.offsets[I]), int(self.offsets[I + 1]))
        acc_key = self._key("circle-grad")
        last = []
        for I in range(len(self.chunks)):
            previous = None
            for J in range(len(self.col_chunks)):
                column = ((side_key, J), self.labels[J]) if self.self_ref else (None, None)
                tasks[(acc_key, I, J)] = (
                    _circle_grad_task, previous, self.labels[I], self.col_labels[I]
                    if self.self_ref else None, self.e[I], (side_key, I), self.col_labels[J],
                    self.ref[J], *column, dtype, gamma, margin, remove, self.self_ref,
                    self._diagonal(I, J))
                previous = (acc_key, I, J)
            last.append((_as_dtype, previous, dtype))
        return value, [self._gradient(last)]

    def _whole(self, name):
        x = self.call.arrays.get(name)
        return None if x is None else self.call._whole_ref(x, self.da)

    # -- ntxent

    def _ntxent(self):
        tasks, options = self.call.tasks, self.call.options
        temperature = float(options["temperature"])
        dtype = self.dtype.str
        p_dtype = np.dtype(self.call.arrays["y_pred"].dtype)
        # Optax clamps squared norms at its input's epsilon (as the family does)
        eps = float(np.finfo(p_dtype if p_dtype.kind == "f" else self.dtype).eps)
        norms_key = self._key("ntxent-norms")
        for I in range(len(self.chunks)):
            tasks[(norms_key, I)] = (_ntxent_norms_task, self.e[I], dtype, eps)

        def tile_args(stats_key):
            return (lambda I, J: self.labels[I], lambda I, J: self.e[I],
                    lambda I, J: (stats_key, I), lambda I, J: self.labels[J],
                    lambda I, J: self.e[J], lambda I, J: (stats_key, J),
                    lambda I, J: dtype, lambda I, J: temperature)
        negatives_key = self._tiles("ntxent-negatives", _ntxent_tile_task,
                                    lambda I, J: "negatives", *tile_args(norms_key))
        shifted_key = self._merged("ntxent-shifted", _ntxent_merge_negatives_task,
                                   negatives_key, lambda I: (norms_key, I))
        positives_key = self._tiles("ntxent-positives", _ntxent_tile_task,
                                    lambda I, J: "positives", *tile_args(shifted_key))
        rows_key = self._merged("ntxent-rows", _ntxent_merge_positives_task, positives_key,
                                lambda I: (shifted_key, I))
        reduced = self._key("reduce")
        tasks[reduced] = (_ntxent_reduce_task, self.loss, dtype, temperature,
                          [(rows_key, I) for I in range(len(self.chunks))],
                          self._whole("grad_output"))
        value = self._value(reduced) if self.mode.value else None
        if not self.mode.grad:
            return value, None
        stats = self._key("ntxent-stats")
        for I in range(len(self.chunks)):
            tasks[(stats, I)] = (_item, (rows_key, I), 0)
        acc_key = self._key("ntxent-grad")
        last = []
        for I in range(len(self.chunks)):
            previous = None
            for J in range(len(self.chunks)):
                tasks[(acc_key, I, J)] = (_ntxent_grad_task, previous, self.labels[I],
                                          self.e[I], (stats, I), self.labels[J], self.e[J],
                                          (stats, J), dtype, temperature, self._diagonal(I, J))
                previous = (acc_key, I, J)
            last.append((_ntxent_finish_task, previous, self.e[I], (stats, I), reduced, dtype))
        return value, [self._gradient(last)]


def _offsets(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _even(n, size):
    """n rows in chunks of ``size`` (the last shorter)."""
    size = max(int(size), 1)
    return tuple(min(size, n - i) for i in range(0, n, size)) or (0,)


# -- the tasks (module-level: they travel to distributed workers by reference) ------------

def _request(loss, sample_weight=None):
    """What the family's helpers read of a call: its name, convention, array module."""
    with _config.backend("cpu"):
        placement = Placement({})
    return SimpleNamespace(loss=loss, name=loss.name, xp=np, placement=placement,
                           sample_weight=sample_weight)


def _labels_task(loss, name, chunk):
    """A chunk of labels as the kernels take them: flat int64, checked as the family does."""
    from .families.pairwise import _labels

    n = chunk.shape[0]
    return _labels(_request(loss), chunk, name, n, "its rows", (n,))


def _embeddings(chunk, dtype):
    return np.ascontiguousarray(chunk, dtype=np.dtype(dtype))


def _item(result, index):
    return result[index]


def _rows_of(result, lo, hi):
    return result[0][lo:hi]


def _as_dtype(accumulated, dtype):
    return accumulated.astype(np.dtype(dtype))


def _circle_stats_task(labels, e, ref_labels, ref, dtype, gamma, margin, remove_diagonal,
                       diagonal):
    from .kernels.pairwise import circle_tile_stats

    out = np.empty((e.shape[0], 2))
    circle_tile_stats(labels, _embeddings(e, dtype), ref_labels, _embeddings(ref, dtype),
                      gamma, margin, remove_diagonal, diagonal, out)
    return out


def _circle_merge_task(parts):
    """A row chunk's (stats, losses) from its tiles' log-sum-exps, in column order."""
    from .kernels.pairwise import CIRCLE_STATS, circle_merge_rows

    parts = np.ascontiguousarray(np.stack(parts))
    stats = np.empty((parts.shape[1], CIRCLE_STATS))
    rows = np.empty(parts.shape[1])
    circle_merge_rows(parts, stats, rows)
    return stats, rows


def _circle_reduce_task(loss, reduction, dtype, want_value, want_grad, parts, sample_weight,
                        grad_output):
    """(value, each row's cotangent): Keras's mask, weights and reduction of the rows'
    losses, as fastloss.families.pairwise.Circle has them between its two passes."""
    from .families.pairwise import _sample_weight, circle_reduction

    xp, dtype = np, np.dtype(dtype)
    rows = np.concatenate([part[1] for part in parts])
    N = rows.size
    request = _request(loss, sample_weight)
    value, layout = circle_reduction(loss.name, request.placement, rows,
                                     _sample_weight(request, N), reduction, grad_output, dtype,
                                     want_value)
    cotangent = None
    if want_grad:
        cotangent = xp.ascontiguousarray(
            xp.broadcast_to(layout.coef.reshape(-1), (N,)) * layout.gscale, dtype=np.float64)
    return value, cotangent


def _circle_side_task(merged, reduced, lo, hi):
    """A row chunk's (h, p, n): its cotangent times sigmoid, its log-sum-exps."""
    from .kernels.pairwise import CIRCLE_NEGATIVE, CIRCLE_POSITIVE, CIRCLE_SIGMOID

    stats = merged[0]
    h = stats[:, CIRCLE_SIGMOID] * reduced[1][lo:hi]
    return (np.ascontiguousarray(h), np.ascontiguousarray(stats[:, CIRCLE_POSITIVE]),
            np.ascontiguousarray(stats[:, CIRCLE_NEGATIVE]))


def _circle_grad_task(previous, labels, ref_labels, e, side, col_ref_labels, ref, col_side,
                      col_labels, dtype, gamma, margin, remove_diagonal, self_ref, diagonal):
    """Row chunk I's gradient so far (float64) plus tile (I, J)'s share."""
    from .kernels.pairwise import circle_tile_grad

    e, ref = _embeddings(e, dtype), _embeddings(ref, dtype)
    acc = np.zeros(e.shape) if previous is None else previous.copy()
    if not self_ref:  # (the columns' side is not read)
        col_side, col_labels, ref_labels = side, labels, labels
    circle_tile_grad(labels, ref_labels, e, *side, col_labels, col_ref_labels, ref, *col_side,
                     gamma, margin, remove_diagonal, self_ref, diagonal, acc)
    return acc


def _ntxent_norms_task(e, dtype, eps):
    from .kernels.pairwise import NTXENT_STATS, ntxent_tile_norms

    stats = np.zeros((e.shape[0], NTXENT_STATS))
    ntxent_tile_norms(_embeddings(e, dtype), eps, stats)
    return stats


def _ntxent_tile_task(kind, labels, e, stats, col_labels, f, col_stats, dtype, temperature,
                      diagonal):
    """Tile (I, J)'s (m, negatives, positives) or, given the rows' merged maxima and
    negatives, its (loss, inv_sum) over the positive pairs."""
    from .kernels import pairwise

    if kind == "negatives":
        kernel, width = pairwise.ntxent_tile_negatives, 3
    else:
        kernel, width = pairwise.ntxent_tile_positives, 2
    out = np.empty((e.shape[0], width))
    kernel(labels, _embeddings(e, dtype), stats, col_labels, _embeddings(f, dtype), col_stats,
           temperature, diagonal, out)
    return out


def _ntxent_merge_negatives_task(parts, norms):
    from .kernels.pairwise import ntxent_merge_negatives

    stats = norms.copy()
    ntxent_merge_negatives(np.ascontiguousarray(np.stack(parts)), stats)
    return stats


def _ntxent_merge_positives_task(parts, shifted):
    from .kernels.pairwise import ntxent_merge_positives

    stats = shifted.copy()
    rows = np.empty(stats.shape[0])
    ntxent_merge_positives(np.ascontiguousarray(np.stack(parts)), stats, rows)
    return stats, rows


def _ntxent_reduce_task(loss, dtype, temperature, parts, grad_output):
    """(value, the gradient's factor): Optax's mean over the positive pairs, as
    fastloss.families.pairwise.NTXent has it between its two passes."""
    from .conventions import divide_no_nan, scalar_cotangent
    from .families import as_dtype
    from .kernels.pairwise import NTXENT_POSITIVES

    dtype = np.dtype(dtype)
    go = scalar_cotangent(loss.name, grad_output, np)
    rows = np.concatenate([part[1] for part in parts])
    pairs = np.sum(np.concatenate([part[0][:, NTXENT_POSITIVES] for part in parts]))
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 without positive pairs
        value = as_dtype(np.sum(rows) / pairs, dtype, np)
    scale = np.asarray(divide_no_nan(go, pairs, np), dtype=np.float64).reshape(1)
    return value, scale[0] / temperature


def _ntxent_grad_task(previous, labels, e, stats, col_labels, f, col_stats, dtype,
                      temperature, diagonal):
    from .kernels.pairwise import ntxent_tile_grad

    e, f = _embeddings(e, dtype), _embeddings(f, dtype)
    acc = np.zeros(e.shape) if previous is None else previous.copy()
    ntxent_tile_grad(labels, e, stats, col_labels, f, col_stats, temperature, diagonal, acc)
    return acc


def _ntxent_finish_task(accumulated, e, stats, reduced, dtype):
    from .kernels.pairwise import ntxent_tile_finish

    grad = accumulated.copy()
    ntxent_tile_finish(_embeddings(e, dtype), stats, float(reduced[1]), grad)
    return grad.astype(np.dtype(dtype))


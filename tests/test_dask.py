"""Every loss on Dask arrays (fastloss.dask): lazy results equal to the in-memory call's.

- every loss, on calls drawn by Hypothesis (tests/loss_cases.py), its arrays made Dask
  arrays cut at drawn places (the batch axis, sometimes other axes too), mixed with NumPy
  arrays: Dask arrays come back, nothing computed at call time, equal to the in-memory
  results to rounding (bitwise where the README's rule says);
- chunks on the kernels' block boundaries give bitwise the in-memory results, for every
  reduction, weights and ignored targets, on the threaded scheduler and on a
  ``distributed.LocalCluster`` of two worker processes (a loss of every family);
- bad shapes raise at call time; the gradient keeps y_pred's chunks.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl
from fastloss.dask import aligned_rows
from loss_cases import calls

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:In loss categorical:SyntaxWarning")

NAMES = sorted(fl.LOSSES)
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def flat(result):
    """The arrays of a result, in order (value, gradients...)."""
    out = []
    for x in as_tuple(result):
        out.extend(flat(x) if isinstance(x, tuple) else [x])
    return out


def assert_same(actual, expected, dtype, exact=False):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if exact:
        np.testing.assert_array_equal(actual, expected)
        return
    scale = float(np.max(np.abs(expected[np.isfinite(expected)]), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale * 8)


def chunked(draw, x, label):
    """x as a Dask array cut at drawn places (a NumPy array sometimes left as it is)."""
    x = np.asarray(x)
    if x.ndim == 0 or draw(st.integers(0, 4), label=f"{label} kept") == 0:
        return x
    chunks = []
    for axis, n in enumerate(x.shape):
        parts = draw(st.integers(1, 3 if axis == 0 else 2), label=f"{label} parts {axis}")
        size = max(1, math.ceil(n / parts))
        chunks.append(size)
    return da.from_array(x, chunks=tuple(chunks))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_loss_on_dask_arrays_equals_the_in_memory_call(name, data):
    call = data.draw(calls(name), label="call")
    if call.backend == "cuda":
        return
    loss = call.loss
    arrays = tuple(chunked(data.draw, x, f"array {i}") for i, x in enumerate(call.arrays))
    weight = call.sample_weight
    kwargs = call.kwargs()
    if weight is not None and np.ndim(weight):
        kwargs["sample_weight"] = chunked(data.draw, weight, "sample_weight")
    if not any(isinstance(x, da.Array) for x in (*arrays, kwargs.get("sample_weight"))):
        arrays = (da.from_array(np.asarray(arrays[-1])),) + arrays[:-1] if len(arrays) == 1 \
            else arrays[:-1] + (da.from_array(np.asarray(arrays[-1])),)
    method = data.draw(st.sampled_from(["__call__", "grad", "value_and_grad"]), label="method")
    lazy = getattr(loss, method)(*arrays, **kwargs)
    assert all(isinstance(x, da.Array) for x in flat(lazy))
    computed = dask.compute(*flat(lazy))
    expected = flat(getattr(loss, method)(*call.arrays, **call.kwargs()))
    for got, want in zip(computed, expected, strict=True):
        assert_same(got, want, np.asarray(want).dtype.type)
    if method != "__call__":  # (the gradients keep their predictions' chunks)
        grads = flat(lazy)[1:] if method == "value_and_grad" else flat(lazy)
        for k, g in zip(call.gradients, grads):
            if isinstance(arrays[k], da.Array):
                assert g.chunks == arrays[k].chunks


# -- bitwise on block boundaries ------------------------------------------------------------

def _aligned_cases(rng, dtype=np.float32):
    """(loss, arrays, options, chunk rows) of every chunked family, at sizes of several
    kernel blocks, with chunks of ``aligned_rows`` rows."""
    def real(*shape):
        return rng.normal(size=shape).astype(dtype)
    N, C = 3 * 4096 + 17, 8
    labels = rng.integers(0, C, N)
    ignored = np.where(rng.random(N) < 0.2, -100, labels)
    cases = [
        ("mean_squared_error", (real(N, C), real(N, C)), {"sample_weight": rng.random(N)}),
        ("mean_squared_error", (real(N * C), real(N * C)), {}),  # (1-D: one mean)
        ("mse_loss", (real(N, C), real(N, C)), {"weight": rng.random((N, C)).astype(dtype)}),
        ("huber", (real(N, C), real(N, C)), {"delta": 0.5}),
        ("kl_div", (real(N, C), real(N, C)), {"log_target": True}),
        ("cross_entropy", (ignored, real(N, C)), {"weight": rng.random(C),
                                                  "label_smoothing": 0.1}),
        ("sparse_categorical_crossentropy", (labels, real(N, C)),
         {"from_logits": True, "ignore_class": 3, "sample_weight": rng.random(N)}),
        ("categorical_crossentropy", (np.eye(C, dtype=dtype)[labels], real(N, C)),
         {"from_logits": True, "sample_weight": rng.random(N)}),
        ("triplet_margin_loss", (real(N, C), real(N, C), real(N, C)), {}),
        ("cosine_embedding_loss", (np.where(labels % 2, 1, -1), real(N, C), real(N, C)), {}),
        ("gaussian_nll_loss", (real(N, C), real(N, C), np.abs(real(N, C)) + 0.1), {}),
    ]
    return [(name, arrays, options, aligned_rows(arrays[-1][0].size if arrays[-1].ndim > 1
                                                 else 1)) for name, arrays, options in cases]


def _reductions(loss):
    from loss_cases import reductions
    return reductions(loss)


def _dask_args(arrays, options, rows):
    def cut(x):
        x = np.asarray(x)
        return da.from_array(x, chunks=(rows,) + x.shape[1:]) if x.ndim else x
    weight = options.get("sample_weight")
    dask_options = dict(options)
    if weight is not None:
        dask_options["sample_weight"] = cut(weight)
    if isinstance(options.get("weight"), np.ndarray) and options["weight"].shape == arrays[-1].shape:
        dask_options["weight"] = cut(options["weight"])
    return tuple(cut(x) for x in arrays), dask_options


def test_chunks_on_block_boundaries_give_bitwise_the_in_memory_results():
    rng = np.random.default_rng(7)
    for name, arrays, options, rows in _aligned_cases(rng):
        loss = fl.LOSSES[name]
        if arrays[-1].ndim == 1:
            rows = 4096 * 2
        lazy_arrays, lazy_options = _dask_args(arrays, options, rows)
        assert len(lazy_arrays[-1].chunks[0]) > 1
        for reduction in _reductions(loss):
            if reduction == "mean_with_sample_weight" and "sample_weight" not in options:
                continue
            for method in ("__call__", "value_and_grad"):
                lazy = getattr(loss, method)(*lazy_arrays, reduction=reduction, **lazy_options)
                got = dask.compute(*flat(lazy))
                want = flat(getattr(loss, method)(*arrays, reduction=reduction, **options))
                for g, w in zip(got, want, strict=True):
                    assert_same(g, w, None, exact=True), (name, reduction, method)


def test_row_losses_are_bitwise_on_their_own_blocks_with_weighted_means():
    """A row loss's kernel block is 4096 // C rows (4 for 1000 classes); the weighted
    mean's divisor is a sum continued from chunk to chunk, the same for any chunking."""
    rng = np.random.default_rng(13)
    N, C = 1000, 1000
    logits = rng.normal(size=(N, C)).astype(np.float32)
    labels = np.where(rng.random(N) < 0.1, -100, rng.integers(0, C, N))
    weight = rng.random(C)
    lazy = fl.cross_entropy.value_and_grad(da.from_array(labels, chunks=100),
                                           da.from_array(logits, chunks=(100, C)),
                                           weight=weight)
    for got, want in zip(dask.compute(*lazy),
                         fl.cross_entropy.value_and_grad(labels, logits, weight=weight)):
        assert_same(got, want, None, exact=True)


def test_ragged_and_misaligned_chunks_agree_to_rounding():
    rng = np.random.default_rng(8)
    t, p = rng.normal(size=(5000, 7)), rng.normal(size=(5000, 7)).astype(np.float32)
    w = rng.random(5000)
    lazy = fl.mean_squared_error.value_and_grad(
        da.from_array(t, chunks=(1234, 3)), da.from_array(p, chunks=(999, 7)),
        sample_weight=da.from_array(w, chunks=777), reduction="mean_with_sample_weight")
    assert lazy[1].chunks == ((999,) * 5 + (5,), (7,))
    value, grad = dask.compute(*lazy)
    v0, g0 = fl.mean_squared_error.value_and_grad(t, p, sample_weight=w,
                                                  reduction="mean_with_sample_weight")
    assert_same(value, v0, np.float32)
    assert_same(grad, g0, np.float32)


# -- laziness and checks --------------------------------------------------------------------

def test_nothing_is_computed_at_call_time():
    computed = []

    def make(block_id=None):
        computed.append(block_id)
        return np.ones((100, 4), np.float32)
    p = da.map_blocks(lambda b: make(), da.zeros((300, 4), chunks=(100, 4)), dtype=np.float32,
                      meta=np.empty((0, 0), np.float32))
    t = da.zeros((300, 4), chunks=(100, 4), dtype=np.float32)
    value, grad = fl.mean_squared_error.value_and_grad(t, p, reduction="sum")
    assert computed == []
    assert isinstance(value, da.Array) and value.shape == () and grad.shape == (300, 4)
    assert float(value.compute()) == pytest.approx(300.0)
    # the pairwise losses' tiles too (labels and references lazy as well)
    computed.clear()
    labels = da.arange(300, chunks=100) % 3
    for loss, options in ((fl.circle, {"reduction": "sum"}),
                          (fl.circle, {"ref_embeddings": p[:200], "ref_labels": labels[:200]}),
                          (fl.ntxent, {})):
        value, grad = loss.value_and_grad(labels, p * 0.5, **options)
        assert computed == []
        assert isinstance(value, da.Array) and grad.shape == (300, 4)
        assert np.isfinite(value.compute()).all() and computed
        computed.clear()


def test_overlap_losses_add_the_chunks_sums_and_read_only_y_true_for_the_gradient():
    """dice / tversky / fbeta_loss over the whole batch (axis=None): a pass per chunk for
    its sums, then the gradient chunks from y_true and the batch's sums."""
    rng = np.random.default_rng(12)
    t = (rng.random((1000, 7)) > 0.5).astype(np.float32)
    p = rng.random((1000, 7)).astype(np.float32)
    for name in ("dice", "tversky", "fbeta_loss"):
        loss = fl.LOSSES[name]
        for options in ({}, {"axis": (0, 1)}, {"reduction": "none"}, {"sample_weight": 0.5}):
            lazy = loss.value_and_grad(da.from_array(t, chunks=(300, 7)),
                                       da.from_array(p, chunks=(256, 7)), **options)
            keys = {str(k) for k in dict(lazy[1].__dask_graph__())}
            assert any("-sums-" in k for k in keys) and not any("-whole-" in k for k in keys)
            for got, want in zip(dask.compute(*lazy), loss.value_and_grad(t, p, **options)):
                assert_same(got, want, np.float32)


# -- circle and ntxent: tiles of the pair matrix --------------------------------------------

def _unit_rows(rng, n, d, dtype):
    """Rows of norm 0.6 to 0.95 (circle's embeddings are L2-normalised; below 1, no
    similarity sits on the kink of Keras's distance at 1)."""
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)
            * rng.uniform(0.6, 0.95, (n, 1))).astype(dtype)


@st.composite
def _row_chunks(draw, n, label):
    """Ragged chunks of n rows: one chunk, rows of one, or cut at drawn places."""
    form = draw(st.sampled_from(["cuts", "single rows", "one"]), label=f"{label} form")
    if form == "one" or n <= 1:
        return (n,)
    if form == "single rows":
        return (1,) * n
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=4), label=label))
    return tuple(np.diff([0, *cuts, n]).tolist())


def _pairwise_tolerance(dtype):
    return 1e-12 if dtype == np.float64 else 2e-5


def _assert_close(got, want, dtype):
    """Equal to rounding: relative to the largest element (gradients, per-row losses)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = _pairwise_tolerance(dtype)
    scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_circle_and_ntxent_in_tiles_equal_the_in_memory_call(data):
    draw = data.draw
    name = draw(st.sampled_from(["circle", "ntxent"]), label="loss")
    loss = fl.LOSSES[name]
    dtype = draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16), label="seed"))
    # (sampled, not drawn integers: those shrink to one class and two rows, where a
    # misplaced diagonal goes unseen)
    N = draw(st.sampled_from([9, 12, 5, 1, 2]), label="N")
    D = draw(st.sampled_from([3, 1, 4]), label="D")
    chunks = draw(_row_chunks(N, "chunks"))
    labels = rng.integers(0, draw(st.sampled_from([3, 2, 1]), label="classes"), N)
    options = {}
    if name == "circle":
        e = _unit_rows(rng, N, D, dtype)
        options["gamma"] = draw(st.sampled_from([80.0, 10.0]), label="gamma")
        options["margin"] = draw(st.sampled_from([0.4, 0.25]), label="margin")
        options["remove_diagonal"] = draw(st.sampled_from([True, False]),
                                          label="remove_diagonal")
        references = draw(st.sampled_from(["none", "labels", "embeddings"]), label="references")
        if references == "labels":
            options["ref_labels"] = rng.integers(0, 3, N)
        elif references == "embeddings":
            M = draw(st.sampled_from([7, 12, 1]), label="M")
            options["ref_labels"] = rng.integers(0, 3, M)
            options["ref_embeddings"] = _unit_rows(rng, M, D, dtype)
        if draw(st.booleans(), label="float labels, (N, 1)"):  # (Keras truncates floats)
            labels = labels.reshape(N, 1) + 0.5
        weight = draw(st.sampled_from(["none", "scalar", "rows"]), label="sample_weight")
        if weight != "none":
            options["sample_weight"] = 0.5 if weight == "scalar" else rng.random(N)
    else:
        e = rng.standard_normal((N, D)).astype(dtype)
        options["temperature"] = draw(st.sampled_from([0.07, 0.5]), label="temperature")
    reductions = _reductions(loss)
    reduction = draw(st.sampled_from(reductions), label="reduction")
    if reduction == "mean_with_sample_weight" and "sample_weight" not in options:
        reduction = "sum"
    options["reduction"] = reduction
    method = draw(st.sampled_from(["__call__", "grad", "value_and_grad"]), label="method")
    if method != "__call__" and draw(st.booleans(), label="grad_output"):
        options["grad_output"] = (rng.random(N) if reduction == "none" else 0.75)

    def lazy(x, name):  # (NumPy arrays beside Dask ones are taken too)
        x = np.asarray(x)
        if draw(st.integers(0, 3), label=f"{name} kept NumPy") == 0:
            return x
        if name in ("ref_embeddings", "ref_labels"):
            row_chunks = draw(_row_chunks(x.shape[0], name))
        else:
            row_chunks = chunks
        return da.from_array(x, chunks=(row_chunks,) + x.shape[1:])
    lazy_e = da.from_array(e, chunks=(chunks, draw(st.sampled_from([D, 1]), label="D chunks")))
    lazy_options = {k: (lazy(v, k) if isinstance(v, np.ndarray) else v)
                    for k, v in options.items()}
    got = getattr(loss, method)(lazy(labels, "labels"), lazy_e, **lazy_options)
    keys = {str(k) for x in flat(got) for k in dict(x.__dask_graph__())}
    assert not any("-whole-" in k for k in keys)
    computed = dask.compute(*flat(got))
    want = flat(getattr(loss, method)(labels, e, **options))
    for g, w in zip(computed, want, strict=True):
        _assert_close(g, w, dtype)
    if method != "__call__":
        assert flat(got)[-1].chunks == lazy_e.chunks


def _computed_pieces(lazy):
    """Every fastloss task's result in the graph of ``lazy``, by key (the sync scheduler)."""
    from dask.core import flatten

    graph = {}
    for x in lazy:
        graph.update(dict(x.__dask_graph__()))
    keys = [k for k in graph if str(k[0] if isinstance(k, tuple) else k).startswith("fastloss-")]
    assert keys
    return dict(zip(keys, dask.get(graph, keys)))


def _arrays_of(result):
    if isinstance(result, (tuple, list)):
        for r in result:
            yield from _arrays_of(r)
    elif isinstance(result, np.ndarray):
        yield result


@pytest.mark.parametrize("name, options", [
    ("circle", {}), ("circle", {"reduction": "none"}),
    ("circle", {"ref_embeddings": "dask", "ref_labels": "dask"}), ("ntxent", {})])
def test_circle_and_ntxent_tasks_hold_tiles_never_the_pair_matrix(name, options):
    """A tile task per pair of chunks and pass; every task's result a chunk's rows at
    most (or the N per-row losses, 1-D): never N x N, nor the embeddings."""
    rng = np.random.default_rng(14)
    N, D, chunk = 40, 3, 8
    labels, e = rng.integers(0, 3, N), _unit_rows(rng, N, D, np.float64)
    if "ref_embeddings" in options:
        M = 24
        options = {"ref_embeddings": da.from_array(_unit_rows(rng, M, D, np.float64), chunks=6),
                   "ref_labels": da.from_array(rng.integers(0, 3, M), chunks=5)}
    loss = fl.LOSSES[name]
    lazy = loss.value_and_grad(da.from_array(labels, chunks=chunk),
                               da.from_array(e, chunks=(chunk, D)), **options)
    pieces = _computed_pieces(lazy)
    tiles = {}
    for key in pieces:
        if isinstance(key, tuple) and len(key) == 3 and "-grad0-" not in key[0]:
            tiles.setdefault(key[0], set()).add(key[1:])
    K = N // chunk
    columns = K if "ref_embeddings" not in options else 24 // 6
    passes = {"circle": 2, "ntxent": 3}[name]  # (the statistics, [the positives,] the gradient)
    assert len(tiles) == passes
    assert all(len(pairs) == K * columns for pairs in tiles.values())
    for key, result in pieces.items():
        for x in _arrays_of(result):
            assert x.ndim <= 1 or x.shape[0] <= chunk, (key, x.shape)
            assert x.size < N * min(N, D), (key, x.shape)
    value, grad = dask.compute(*lazy, scheduler="threads")
    want = loss.value_and_grad(labels, e, **{k: (np.asarray(v) if isinstance(v, da.Array)
                                                 else v) for k, v in options.items()})
    _assert_close(value, want[0], np.float64)
    _assert_close(grad, want[1], np.float64)


@pytest.mark.parametrize("call, message", [
    (lambda: fl.circle(da.zeros(10, dtype=int), da.zeros((11, 3))), "y_true"),
    (lambda: fl.circle(da.zeros(10, dtype=int), da.zeros((10, 3)),
                       ref_embeddings=da.zeros((12, 3))), "ref_labels"),
    (lambda: fl.circle(da.zeros(10, dtype=int), da.zeros((10, 3)),
                       ref_embeddings=da.zeros((12, 4)), ref_labels=np.zeros(12, int)), "column"),
    (lambda: fl.circle(da.zeros(10, dtype=int), da.zeros((10, 3)),
                       sample_weight=da.zeros(9)), "sample_weight"),
    (lambda: fl.ntxent(da.zeros(10), da.zeros((10, 3))), "integer"),
    (lambda: fl.ntxent.grad(da.zeros(10, dtype=int), da.zeros((10, 3)),
                            grad_output=np.ones(10)), "grad_output"),
])
def test_circle_and_ntxent_bad_input_raises_at_call_time(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: fl.mean_squared_error(da.zeros((10, 3)), da.zeros((11, 3))), "batch"),
    (lambda: fl.cross_entropy(da.zeros(10, dtype=int), da.zeros((10, 3)),
                              weight=np.ones(4)), "weight"),
    (lambda: fl.mse_loss(da.zeros((10, 3)), da.zeros((10, 4))), "broadcast"),
    (lambda: fl.triplet_margin_loss(da.zeros((10, 3)), da.zeros((10, 3)), da.zeros((10, 4))),
     "shape"),
    (lambda: fl.mean_squared_error(da.zeros((10, 3)), da.zeros((10, 3)),
                                   sample_weight=da.zeros(11)), "batch"),
])
def test_bad_shapes_raise_before_any_compute(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_out_is_refused_with_dask_arrays():
    with pytest.raises(TypeError, match="out="):
        fl.mse_loss.grad(da.zeros(4), da.zeros(4), out=np.empty(4))


def test_bad_labels_raise_when_computed():
    lazy = fl.cross_entropy(da.from_array(np.array([0, 1, 7])), da.zeros((3, 3)))
    with pytest.raises(ValueError, match="class index"):
        lazy.compute()


# -- a real cluster ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.mark.slow
def test_a_loss_of_every_family_on_a_local_cluster(cluster_client):
    rng = np.random.default_rng(9)
    cases = {name: case for name, *case in _aligned_cases(rng)}
    N = 200
    whole = [("dice", (rng.random((N, 5)), rng.random((N, 5)).astype(np.float32)), {}, 64),
             ("ntxent", (rng.integers(0, 4, N), rng.normal(size=(N, 8)).astype(np.float32)),
              {}, 64),
             ("circle", (rng.integers(0, 4, N), _unit_rows(rng, N, 8, np.float32)), {}, 64)]
    for name, (arrays, options, rows) in [*cases.items(), *[(n, c) for n, *c in whole]]:
        loss = fl.LOSSES[name]
        if arrays[-1].ndim == 1:
            rows = 4096 * 2
        lazy_arrays, lazy_options = _dask_args(arrays, options, rows)
        lazy = loss.value_and_grad(*lazy_arrays, **lazy_options)
        got = cluster_client.gather(cluster_client.compute(flat(lazy)))
        want = flat(loss.value_and_grad(*arrays, **options))
        # (dice: the chunks' sums added in chunk order; circle, ntxent: tiles; to rounding)
        exact = name in cases
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, np.asarray(w).dtype.type, exact=exact), name


@pytest.mark.slow
def test_workers_load_the_kernels_from_numbas_cache(cluster_client):
    rng = np.random.default_rng(10)
    t = da.from_array(rng.normal(size=(8192, 16)).astype(np.float32), chunks=(4096, 16))
    p = da.from_array(rng.normal(size=(8192, 16)).astype(np.float32), chunks=(4096, 16))
    cluster_client.compute(fl.mean_squared_error.value_and_grad(t, p)[1]).result()

    def stats():
        from fastloss.kernels import generated_cpu
        used = []
        for suffix in ("parallel", "serial"):
            kernel = getattr(generated_cpu, f"squared_error_value_and_grad_{suffix}")
            used.append((sum(kernel.stats.cache_hits.values()),
                         sum(kernel.stats.cache_misses.values())))
        return used
    for used in cluster_client.run(stats).values():
        assert sum(h for h, _ in used) > 0 and all(m == 0 for _, m in used), used


# -- the CUDA kernels (the simulator here; a real GPU where there is one) ------------------

def test_the_backend_of_the_call_runs_the_chunks_on_cuda(monkeypatch):
    """fl.backend("cuda") around the call runs every chunk's kernel on CUDA (NumPy chunks
    copied to the device, as CuPy chunks would not need to be), whenever the graph is
    computed; the results are the CPU's to rounding."""
    import fastloss.launch as launch
    ran = []
    real = launch._run_cuda
    monkeypatch.setattr(launch, "_run_cuda", lambda call, launcher: ran.append(call.element)
                        or real(call, launcher))
    rng = np.random.default_rng(11)
    N, C = 24, 3
    cases = [("mean_squared_error", (rng.normal(size=(N, C)), rng.normal(size=(N, C)))),
             ("cross_entropy", (rng.integers(0, C, N), rng.normal(size=(N, C)))),
             ("triplet_margin_loss", tuple(rng.normal(size=(N, C)) for _ in range(3))),
             ("gaussian_nll_loss", (rng.normal(size=(N, C)), rng.normal(size=(N, C)),
                                    rng.random((N, C)) + 0.5))]
    for name, arrays in cases:
        loss = fl.LOSSES[name]
        lazy_arrays = tuple(da.from_array(x, chunks=(8,) + x.shape[1:]) for x in arrays)
        with fl.backend("cuda"):
            lazy = loss.value_and_grad(*lazy_arrays)
        before = len(ran)
        # (computed outside the with block; one thread: Numba's simulator is not thread-safe)
        got = dask.compute(*flat(lazy), scheduler="sync")
        assert len(ran) - before >= 3, name  # (a kernel per chunk, on CUDA)
        for g, w in zip(got, flat(loss.value_and_grad(*arrays)), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)

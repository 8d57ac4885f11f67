"""The kernels' shape: generated code up to date, determinism, on-disk cache, PTX for a real GPU."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastloss.kernels import _generate

ROOT = Path(__file__).resolve().parents[1]


def test_generated_kernels_are_up_to_date():
    for filename, render in _generate.TARGETS.items():
        on_disk = (Path(_generate.__file__).parent / filename).read_text()
        assert on_disk == render(), f"{filename} is stale: run python -m fastloss.kernels._generate"


def run_python(code, *args, **env):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                            capture_output=True, text=True, env={**os.environ, **env},
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


DIGEST = """
    import hashlib, numpy as np, fastloss as fl
    from fastloss.losses import LOSSES
    rng = np.random.default_rng(0)
    from fastloss._bench import arguments
    rng = np.random.default_rng(0)
    t = rng.uniform(0.05, 0.95, (3000, 333)).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (3000, 333)).astype(np.float32)
    w = rng.uniform(0, 1, 3000)
    h = hashlib.sha256()
    for name, loss in sorted(LOSSES.items()):
        # class indices for the losses over labels, ...; the losses over all pairs of a
        # batch (a cost of N**2) get a batch of a few hundred embeddings
        args = arguments(name, t[:400, :100] if loss.name in ("circle", "ntxent") else t, p)
        kw = {"sample_weight": w[:len(args[-1])]} if loss.convention == "keras" else {}
        v, g = loss.value_and_grad(*args, **kw)
        h.update(np.asarray(v).tobytes())
        for gi in (g if isinstance(g, tuple) else (g,)):
            h.update(gi.tobytes())
        h.update(np.asarray(loss(*args, **kw)).tobytes())
    print(h.hexdigest())
"""


def test_bitwise_identical_across_thread_counts():
    one = run_python(DIGEST, NUMBA_NUM_THREADS="1")
    two = run_python(DIGEST, NUMBA_NUM_THREADS="2")
    assert one == two
    assert run_python(DIGEST, NUMBA_NUM_THREADS="2") == two


def test_second_process_loads_kernels_from_cache(tmp_path):
    code = """
        import numpy as np, fastloss as fl
        from fastloss.kernels import generated_cpu as G
        fl.mse.value_and_grad(np.ones(10, np.float32), np.zeros(10, np.float32))
        k = G.squared_error_value_and_grad_serial
        print(k.stats.cache_hits and sum(k.stats.cache_hits.values()),
              sum(k.stats.cache_misses.values()))
    """
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    hits, misses = run_python(code, **env).split()
    assert misses == "1"
    hits, misses = run_python(code, **env).split()
    assert hits == "1" and misses == "0"


PTX_FAMILIES = [body for body, _, _ in _generate.FAMILIES]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("body", PTX_FAMILIES)
def test_every_cuda_element_and_body_compiles_to_ptx_for_sm90(body, dtype):
    """The simulator runs Python, so it would not catch a typing error: compile for real,
    every element of every family (one test per family and dtype, so that they spread
    over the test workers).  Every element in each mode in which it runs other code: a
    pointwise element is the same code in every mode (value_and_grad), a row element
    branches on GRAD (value and value_and_grad); the family bodies in all three modes."""
    element_modes = (("value_and_grad",) if body.startswith("pointwise")
                     else ("value", "value_and_grad"))
    code = f"""
        from numba import cuda, float32, float64, int64, types
        from fastloss.kernels import generated_cuda, pointwise_cuda
        from fastloss.kernels._generate import FAMILIES, MODES
        from fastloss.kernels.row_elements import INDEX_TARGETS
        from fastloss.kernels.elements import OPTION_SLOTS
        from numba.cuda import dispatcher

        # Device functions that are not inlined in Numba's IR (the row elements' helpers)
        # compile for the current device's compute capability: name sm_90's here, where
        # there is no GPU.
        class SM90:
            compute_capability = (9, 0)
        dispatcher.get_current_device = SM90
        count = 0
        dt = {dtype}
        o = types.UniTuple(dt, OPTION_SLOTS)
        a = dt[::1]
        middle = (int64, float64[::1], float64[::1], float64[::1], a)
        tail = middle + (a, float64[::1])
        sig = {{"pointwise": (a, a, o) + tail,
                "pointwise_pair": (a, a, a, o) + middle + (a, a, float64[::1]),
                "rowwise": (a, int64[::1], a, float64[::1], o) + tail,
                "tuplewise": (a,) * 5 + (o,) + middle + (a,) * 4 + (float64[::1],)}}["{body}"]
        names = sorted(next(elements for body, _, elements in FAMILIES if body == "{body}"))
        for name in names:
            # (an element of int64 targets: the signature it runs with)
            s = (int64[::1],) + sig[1:] if name in INDEX_TARGETS else sig
            for mode in (MODES if name == names[0] else {element_modes!r}):
                ptx, _ = cuda.compile_ptx(
                    getattr(generated_cuda, f"{{name}}_{{mode}}").py_func, s, cc=(9, 0))
                assert ".target sm_90" in ptx
                count += 1
        if "{body}" == "pointwise":
            cuda.compile_ptx(pointwise_cuda.finish.py_func, (float64[::1], float64[::1], a),
                             cc=(9, 0))
            cuda.compile_ptx(pointwise_cuda.rows_from_chunks.py_func,
                             (float64[::1], int64, a), cc=(9, 0))
        print(count)
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env={**env, "NUMBA_ENABLE_CUDASIM": "0"}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    elements = next(elements for name, _, elements in _generate.FAMILIES if name == body)
    assert int(result.stdout) == len(_generate.MODES) + (len(elements) - 1) * len(element_modes)


VECTORISED = r"""
    import re, sys
    from numba import float32, float64, int64, types
    from fastloss.kernels import elements, generated_cpu, row_elements
    a, w, i = float32[::1], float64[::1], int64[::1]
    o = types.UniTuple(float32, elements.OPTION_SLOTS)
    tasks = (int64, int64)  # (first, last)
    families = {
        "pointwise": (elements.ELEMENTS, (a, a, o, int64, w, w, w, a, a, w, *tasks)),
        "pair": (elements.PAIR_ELEMENTS, (a, a, a, o, int64, w, w, w, a, a, a, w, *tasks)),
        "rows": (row_elements.ROW_ELEMENTS, (a, i, a, w, o, int64, w, w, w, a, a, w, *tasks)),
        "tuple": (row_elements.TUPLE_ELEMENTS,
                  (a, a, a, a, a, o, int64, w, w, w, a, a, a, a, a, w, *tasks)),
    }
    for family in sys.argv[1:]:
        names, sig = families[family]
        for name in sorted(names):
            # (the serial kernel: its loop is the one that the parallel kernel calls too)
            kernel = getattr(generated_cpu, f"{name}_value_and_grad_serial")
            s = (i,) + sig[1:] if name in row_elements.INDEX_TARGETS else sig  # (int64 t)
            kernel.compile(s)
            ir = kernel.inspect_llvm(s)
            body = next(b for b in re.split(r"\n(?=define )", ir)
                        if b.startswith("define") and "cpython" not in b.split("(")[0]
                        and "cfunc" not in b.split("(")[0])
            calls = sorted({c for c in re.findall(r'call [^@]*@"?([\w.$]+)', body)
                            if not c.startswith(("llvm.", "NRT_"))})
            vector = len(re.findall(r"<(?:4|8|16) x float>", body))
            print(name, vector, ",".join(calls) or "-")
"""


@pytest.mark.slow
@pytest.mark.parametrize("families", [("pointwise", "pair"), ("rows", "tuple")])
def test_cpu_kernels_vectorise_with_no_calls_in_their_loops(tmp_path, families):
    """Every element's float32 value_and_grad kernel, read in LLVM IR: no call left (a
    scalar libm function such as ``sqrt``, an element or helper that LLVM did not inline)
    and vector float arithmetic present, so a new loss or a change to the shared math
    cannot silently lose vectorisation.  (A fresh cache: Numba keeps no IR for kernels it
    loads.)"""
    from fastloss.kernels import elements, row_elements

    out = run_python(VECTORISED, *families, NUMBA_CACHE_DIR=str(tmp_path))
    rows = [line.split() for line in out.splitlines()]
    expected = ({*elements.ELEMENTS, *elements.PAIR_ELEMENTS} if "pointwise" in families
                else {*row_elements.ROW_ELEMENTS, *row_elements.TUPLE_ELEMENTS})
    assert {r[0] for r in rows} == expected
    assert [r for r in rows if r[2] != "-"] == []
    assert [r for r in rows if int(r[1]) == 0] == []


def test_cpu_path_never_imports_cuda_and_import_compiles_nothing():
    code = """
        import sys
        import fastloss as fl
        assert "numba" not in sys.modules, "import fastloss must not import numba"
        assert fl.mse([1.0, 0.0], [2.0, 3.0]) == 5.0
        assert "numba.cuda" not in sys.modules and "cupy" not in sys.modules
        print("ok")
    """
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

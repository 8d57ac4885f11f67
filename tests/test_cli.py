"""The command line: the main job's table for every loss, its JSON and its plot."""

import json

import numpy as np
import pytest

import fastloss
from fastloss.__main__ import main


def test_bench_times_every_loss_and_writes_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["bench", "--size", "small", "--repeat", "1", "--json", str(out_json),
                 "--plot", str(out_png)]) == 0
    table = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    timed = {(row["loss"], row["mode"]) for row in doc["rows"]}
    assert timed == {(name, mode) for name in fastloss.LOSSES
                     for mode in ("value", "value_and_grad")} | {
        (name, "grad_hess") for name in ("mse_loss", "binary_cross_entropy_with_logits",
                                         "sigmoid_focal_loss", "cross_entropy")}
    for row in doc["rows"]:
        assert row["fastloss_s"] > 0 and row["bytes"] > 0 and np.isfinite(row["pct_copy"])
        assert row["loss"] in table
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_losses_and_shapes(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--loss", "no_such_loss"])
    assert "unknown loss 'no_such_loss'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--shape", "12by3"])
    assert "expected ROWSxCOLUMNS" in capsys.readouterr().err


def test_bench_by_alias_and_shape(tmp_path):
    out_json = tmp_path / "ce.json"
    assert main(["bench", "--shape", "8x300", "--loss", "CrossEntropyLoss", "mse",
                 "--dtype", "float64", "--repeat", "1", "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert {row["loss"] for row in doc["rows"]} == {"cross_entropy", "mean_squared_error"}
    assert doc["config"]["shape"] == [8, 300] and doc["config"]["dtype"] == "float64"


# -- --peers: PyTorch and JAX only when asked for; none of this needs them installed ------

def _mse_only(tmp_path, *options):
    """A tiny bench of mean_squared_error with ``options``; its JSON."""
    out_json = tmp_path / "peers.json"
    assert main(["bench", "--shape", "4x100", "--loss", "mse", "--repeat", "1", "--jobs", "1",
                 "--json", str(out_json), *options]) == 0
    return json.loads(out_json.read_text())


def _no_peer_expected(*args):
    raise AssertionError("a peer was asked for its functions without --peers")


def test_bench_peers_option_parses():
    from fastloss.__main__ import parser
    from fastloss._bench import _requested_peers

    def peers(*argv):
        return _requested_peers(parser().parse_args(["bench", *argv]).peers)
    assert peers() == ()
    assert peers("--peers") == ("torch", "jax")
    assert peers("--peers", "--loss", "mse") == ("torch", "jax")
    assert peers("--peers", "jax") == ("jax",)
    assert peers("--loss", "mse", "--peers", "jax", "torch", "jax") == ("jax", "torch")
    assert peers("--shape", "8x300", "--peers", "torch") == ("torch",)
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--peers", "tensorflow"])


def test_bench_without_peers_times_no_peer(tmp_path, monkeypatch):
    from fastloss import _bench

    monkeypatch.setattr(_bench, "torch_functions", _no_peer_expected)
    monkeypatch.setattr(_bench, "jax_functions", _no_peer_expected)
    doc = _mse_only(tmp_path)
    assert doc["config"]["peers"] == []
    assert doc["command"].startswith("python -m fastloss bench --shape 4x100")
    for row in doc["rows"]:
        assert {"fastloss_s", "numpy_s", "copy_s"} <= set(row)
        assert not {"torch_s", "jax_s", "speedup_torch", "speedup_jax"} & set(row)


def test_bench_names_requested_peers_that_are_not_installed(tmp_path, monkeypatch, capsys):
    from fastloss import _bench

    monkeypatch.setattr(_bench, "_missing", lambda modules: list(modules))
    monkeypatch.setattr(_bench, "torch_functions", _no_peer_expected)
    monkeypatch.setattr(_bench, "jax_functions", _no_peer_expected)
    doc = _mse_only(tmp_path, "--peers")
    err = capsys.readouterr().err
    assert "PyTorch is not timed: torch is not installed" in err
    assert "JAX is not timed: jax and optax are not installed" in err
    assert doc["config"]["peers"] == []
    assert not any("torch_s" in row or "jax_s" in row for row in doc["rows"])


def test_bench_times_the_installed_peers_asked_for(tmp_path, monkeypatch):
    """Fake peers (NumPy's functions behind the peer names): --peers torch times PyTorch
    alone, --peers both."""
    from fastloss import _bench

    mse, mse_vg = _bench.NUMPY["mean_squared_error"]
    asked = []

    def fake_torch():
        asked.append("torch")
        return {"mean_squared_error": "torch's mse"}

    def fake_jax():
        asked.append("jax")
        return {"mean_squared_error": ("jax's mse", "jax's mse and grad")}

    def torch_call(f, mode, args, positions):
        assert f == "torch's mse"
        return lambda: (mse if mode == "value" else mse_vg)(*args)

    def jax_call(f, args):
        assert f in ("jax's mse", "jax's mse and grad")
        return lambda: (mse if f == "jax's mse" else mse_vg)(*args)
    monkeypatch.setattr(_bench, "_missing", lambda modules: [])
    monkeypatch.setattr(_bench, "torch_functions", fake_torch)
    monkeypatch.setattr(_bench, "jax_functions", fake_jax)
    monkeypatch.setattr(_bench, "_torch_call", torch_call)
    monkeypatch.setattr(_bench, "_jax_call", jax_call)
    monkeypatch.setattr(_bench, "machine_info", lambda peers=(): {"processor": "test"})

    doc = _mse_only(tmp_path, "--peers", "torch")
    assert asked == ["torch"] and doc["config"]["peers"] == ["torch"]
    for row in doc["rows"]:
        assert row["torch_s"] > 0 and row["speedup_torch"] > 0 and "jax_s" not in row
    asked.clear()
    doc = _mse_only(tmp_path, "--peers")
    assert asked == ["torch", "jax"] and doc["config"]["peers"] == ["torch", "jax"]
    assert all(row["torch_s"] > 0 and row["jax_s"] > 0 for row in doc["rows"])


# -- the README's performance table from a bench JSON ------------------------------------

def _synthetic_bench_doc():
    machine = {"python": "3.11.7", "platform": "Linux-test", "processor": "Test CPU 9000",
               "cpu_count": 4, "cores": 2, "numba_threads": 4, "numba_threading_layer": "omp",
               "numpy": "2.4.6", "numba": "0.68.1", "torch": "2.13.0+cpu", "torch_threads": 4,
               "jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8"}
    rows = []
    for loss, peers in (("mean_squared_error", ("numpy", "torch", "jax")),
                        ("log_cosh", ("numpy", "jax")), ("quadruplet_loss", ("numpy",)),
                        ("sigmoid_focal_loss", ("jax",))):
        for k, mode in enumerate(("value", "value_and_grad")):
            row = {"loss": loss, "mode": mode, "bytes": 8e7, "fastloss_s": 0.004 * (k + 1),
                   "copy_s": 0.006, "gbps": 8e7 / (0.004 * (k + 1)) / 1e9, "pct_copy": 90.0 + k}
            for impl in peers:
                row[f"{impl}_s"] = 0.02 * (k + 1)
                row[f"speedup_{impl}"] = 5.0
            rows.append(row)
    return {"machine": machine,
            "config": {"size": "large", "n": 10_000_000, "shape": [10000, 1000],
                       "dtype": "float32", "repeat": 7, "peers": ["torch", "jax"]},
            "command": "python -m fastloss bench --size large --peers --json run.json",
            "copy": {"bytes": 8e7, "time_s": 0.006, "gbps": 13.3}, "rows": rows}


def test_markdown_table_has_every_loss_and_names_the_machine(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    doc = _synthetic_bench_doc()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    report_py = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", report_py)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.main(["--bench-json", str(path)]) == 0
    text = capsys.readouterr().out

    header = "| loss | value | value_and_grad | % of copy | vs NumPy | vs PyTorch | vs JAX |"
    assert header in text
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0][2:] for line in table] == [
        "mean_squared_error", "log_cosh", "quadruplet_loss", "sigmoid_focal_loss"]
    assert all(line.count(" | ") == header.count(" | ") for line in table)
    assert "| mean_squared_error | 4 ms | 8 ms | 90% / 91% | 5.0x / 5.0x | 5.0x / 5.0x |" in text
    assert "| quadruplet_loss | 4 ms | 8 ms | 90% / 91% | 5.0x / 5.0x |  |  |" in text
    for words in ("Test CPU 9000", "2 cores", "4 logical CPUs", "4 Numba threads",
                  "NumPy 2.4.6", "Numba 0.68.1", "PyTorch 2.13.0+cpu", "JAX 0.10.2",
                  "Optax 0.2.8", "13.3 GB/s", "1e7 float32 as (10000, 1000)",
                  "`python -m fastloss bench --size large --peers --json run.json`"):
        assert words in text


def test_bench_dask_times_fastloss_against_dask_array_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    out_json = tmp_path / "dask.json"
    assert main(["bench", "--dask", "--dask-size", "3e5", "--chunk-mb", "0.25",
                 "--workers", "1", "--repeat", "1", "--loss", "mse", "log_cosh",
                 "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert [row["loss"] for row in doc["rows"]] == ["mean_squared_error", "log_cosh"]
    for row in doc["rows"]:
        assert row["agree"] and row["fastloss_s"] > 0 and row["dask_array_s"] > 0
        assert row["chunk"] % 4096 == 0 and row["size"] == 300_000

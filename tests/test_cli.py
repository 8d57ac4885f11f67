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
                     for mode in ("value", "value_and_grad")}
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

"""The regression check of benchmarks/compare_ratios.py on made-up runs of the suite."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_ratios  # noqa: E402


def run(path, times):
    """A pytest-benchmark JSON file with the given {(loss, impl): median seconds}."""
    benchmarks = [{"extra_info": {"loss": loss, "mode": "value", "impl": impl, "n": 1000},
                   "stats": {"median": seconds, "min": seconds, "mean": seconds}}
                  for (loss, impl), seconds in times.items()]
    benchmarks.append({"extra_info": {"impl": "copy", "n": 1000}, "stats": {"median": 1.0}})
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return str(path)


def test_a_worse_ratio_fails_and_a_slower_machine_does_not(tmp_path, capsys):
    base = run(tmp_path / "a.json", {("mse", "fastloss"): 1.0, ("mse", "numpy"): 10.0,
                                     ("mae", "fastloss"): 1.0, ("mae", "numpy"): 10.0})
    # everything twice as slow (a busy machine): the ratios hold
    slower = run(tmp_path / "b.json", {("mse", "fastloss"): 2.0, ("mse", "numpy"): 20.0,
                                       ("mae", "fastloss"): 2.0, ("mae", "numpy"): 20.0})
    assert compare_ratios.main([base, slower]) == 0
    # mae's kernel 50% slower against the same NumPy time
    worse = run(tmp_path / "c.json", {("mse", "fastloss"): 1.0, ("mse", "numpy"): 10.0,
                                      ("mae", "fastloss"): 1.5, ("mae", "numpy"): 10.0})
    assert compare_ratios.main([base, worse]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION mae value" in out and "REGRESSION mse" not in out
    assert compare_ratios.main([base, worse, "--tolerance", "0.6"]) == 0


def test_runs_without_common_losses_are_an_error(tmp_path):
    a = run(tmp_path / "a.json", {("mse", "fastloss"): 1.0, ("mse", "numpy"): 2.0})
    b = run(tmp_path / "b.json", {("mae", "fastloss"): 1.0, ("mae", "numpy"): 2.0})
    assert compare_ratios.main([a, b]) == 2

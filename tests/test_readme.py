"""README's examples of "Use from PyTorch, JAX and Keras" run as written (each in a fresh
process, the Keras one on both backends) and train: the loss they print falls below the
untrained model's (log 5 for five balanced classes)."""

import importlib.util
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use from PyTorch, JAX and Keras"


def _examples():
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _example_importing(module):
    found = [code for code in _examples() if f"import fastloss.{module} " in code]
    assert len(found) == 1, f"README should have one example of fastloss.{module}"
    return found[0]


CASES = [("torch", "torch", {}), ("jax", "jax", {}),
         ("keras", "jax", {"KERAS_BACKEND": "jax"}), ("keras", "torch", {"KERAS_BACKEND": "torch"})]


@pytest.mark.parametrize("module, framework, env", CASES,
                         ids=[f"{m}-{env.get('KERAS_BACKEND', f)}" for m, f, env in CASES])
def test_readme_framework_example_runs_and_trains(module, framework, env):
    needed = [framework] + (["keras"] if module == "keras" else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    result = subprocess.run([sys.executable, "-c", _example_importing(module)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    final = float(re.search(r"cross-entropy after .*: ([0-9.]+)", result.stdout).group(1))
    assert final < 0.9 * math.log(5), result.stdout


def test_readme_dask_cluster_example_runs():
    """"Larger than memory, or many machines": the cluster example runs as written and
    prints the mean squared error of its noise (variance 0.01)."""
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("distributed not installed")
    text = README.read_text()
    section = text[text.index("## Larger than memory, or many machines"):]
    section = section[:section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mse = float(re.search(r"mse: ([0-9.e-]+)", result.stdout).group(1))
    assert abs(mse - 0.01) < 1e-3, result.stdout
    assert "gradient chunks: 5" in result.stdout

import os

# The CUDA kernels run under Numba's simulator unless a real GPU run is asked for
# (FASTLOSS_TEST_GPU=1, e.g. `FASTLOSS_TEST_GPU=1 pytest -m gpu`).  It must be set
# before numba.cuda is first imported.
if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

import fastloss as fl  # noqa: E402
from fastloss import _config  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(params=["serial", "parallel", "cuda"])
def backend(request, monkeypatch):
    """Runs a test on each backend: the serial and parallel CPU kernels, and CUDA
    (the simulator on machines without a GPU, with NumPy inputs copied to the device)."""
    if request.param == "cuda":
        with fl.backend("cuda"):
            yield "cuda"
        return
    monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", 0 if request.param == "parallel" else 1 << 62)
    with fl.backend("cpu"):
        yield request.param

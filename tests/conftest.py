import os

# The CUDA kernels run under Numba's simulator unless a real GPU run is asked for
# (FASTLOSS_TEST_GPU=1, e.g. `FASTLOSS_TEST_GPU=1 pytest -m gpu`).  It must be set
# before numba.cuda is first imported.
if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

from loss_cases import on_backend  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(params=["serial", "parallel", "cuda"])
def backend(request):
    """Runs a test on each backend: the serial and parallel CPU kernels, and CUDA
    (the simulator on machines without a GPU, with NumPy inputs copied to the device)."""
    with on_backend(request.param):
        yield request.param

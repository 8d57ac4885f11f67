import os

# The CUDA kernels run under Numba's simulator unless a real GPU run is asked for
# (FASTLOSS_TEST_GPU=1, e.g. `FASTLOSS_TEST_GPU=1 pytest -m gpu`).  It must be set
# before numba.cuda is first imported.
if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

from loss_cases import CUDA_MATRIX, on_backend  # noqa: E402

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(params=["serial", "parallel",
                        pytest.param("cuda", marks=[pytest.mark.cuda_matrix, pytest.mark.slow])])
def backend(request):
    """Runs a test on each backend: the serial and parallel CPU kernels, and CUDA (the
    simulator on machines without a GPU, with NumPy inputs copied to the device).  The
    CUDA case is the full CUDA matrix: opt-in (FASTLOSS_TEST_CUDA_MATRIX=1, or a real GPU
    with FASTLOSS_TEST_GPU=1); tests/test_cuda_smoke.py runs every CUDA kernel always."""
    with on_backend(request.param):
        yield request.param


def pytest_collection_modifyitems(config, items):
    if CUDA_MATRIX:
        return
    skip = pytest.mark.skip(reason="the full CUDA matrix is opt-in: FASTLOSS_TEST_CUDA_MATRIX=1 "
                                   "(simulator) or FASTLOSS_TEST_GPU=1 (a real GPU)")
    for item in items:
        if "cuda_matrix" in item.keywords:
            item.add_marker(skip)

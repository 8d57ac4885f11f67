#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU where numba-cuda and CuPy are installed:
# the GPU tests and the full CUDA matrix on real CuPy arrays, then every loss's GPU
# benchmark.  Logs and JSON go to OUTDIR (default benchmarks/results).
#     bash benchmarks/gpu_check.sh [OUTDIR]
# TEST_TIMEOUT / BENCH_TIMEOUT (seconds) bound the two steps.
set -o pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -m pip list 2>/dev/null | grep -iE "^(numba|numba-cuda|cupy-cuda..x|numpy|torch) "
  nproc; } | tee "$out/gpu_machine.txt"
# No `fastloss warmup` first: compiling every CPU kernel took over 5 minutes on 16 cores
# of an H200 machine, while each worker compiles only the few CPU kernels it compares with.
FASTLOSS_TEST_GPU=1 timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -rfE -n "$(nproc)" \
    -m "gpu or cuda_matrix or cudasim" -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log"
timeout "${BENCH_TIMEOUT:-140}" python3 benchmarks/gpu_bench.py --json "$out/gpu_bench.json" 2>&1 \
    | tee "$out/gpu_bench.log"

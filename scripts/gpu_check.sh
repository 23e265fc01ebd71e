#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU, CuPy, numba and pytest
# (about 2 minutes on an H200): the GPU kernel tests (bitwise against the CPU run of the
# same arithmetic, every n) and the matvec bandwidth benchmark. Output and JSON go to
# $OUT (or the first argument, default gpu_check_out/).
#
# Packages the GPU machine lacks travel as wheels in .whl/ (gguf for the reference
# dequantizers), fetched on a machine with pip for the GPU machine's Python, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl gguf
# and are installed from there first when the folder exists (.whl/ is git-ignored: name it
# in the device tool's carry list, or it does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
status=0  # a failing test does not stop the benchmark; the exit status keeps both
python3 -m pytest -q -rs tests/test_gpu_kernels.py 2>&1 | tee "$out/gpu_tests.txt" || status=1
python3 scripts/bench_gpu_kernels.py --json "$out/gpu_kernels.json" 2>&1 \
    | tee "$out/gpu_kernels.txt" || status=1
exit $status

#!/usr/bin/env bash
# Issue 9's GPU checks in one run, for a machine with an NVIDIA GPU, CuPy, numba and
# pytest. Output and JSON go to $OUT (or the first argument, default gpu_check_out/):
#   1. the GPU tests: kernels bitwise against the CPU run of the same arithmetic at every
#      n (test_gpu_kernels.py); the whole model on the GPU against the CPU f32 mode
#      (parity), bit-identity across n, all-GPU and hybrid (test_gpu_backend.py);
#   2. the matvec bandwidth benchmark against the device's measured copy bandwidth;
#   3. a qwen35-27b synth file (written here, ~16 GB on local disk) and `mtpdec sweep`
#      with oracle drafts at --accept 0.9, all-GPU and hybrid (FFN of 46 of the 64
#      layers on the CPU), with the verify step split into trunk, CPU FFN and transfer.
# A preflight step stops the run at once when CuPy, NVRTC or the wheels are missing. Every
# other step has its own time limit (STEP_LIMIT_S, default 150 s) and the script goes on
# after a failure; the exit status is non-zero if any step failed. Expected on an H200
# box with 16 cores: 6-8 minutes (numba compiles the CPU kernels cold). With the device
# tool: run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=580).
#
# Packages the GPU machine lacks travel as wheels in .whl/ (gguf with pyyaml and tqdm for
# the reference dequantizers; typer with click, shellingham, annotated-doc, pydantic,
# pydantic_core, annotated-types, typing-inspection, typing_extensions; rich with
# markdown-it-py, mdurl, pygments: 16 wheels, 5.6 MB), fetched on a machine with pip for
# the GPU machine's Python, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl gguf pyyaml tqdm \
#       typer click shellingham annotated-doc pydantic pydantic_core annotated-types \
#       typing-inspection typing_extensions rich markdown-it-py mdurl pygments
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
status=0  # a failing step does not stop the next; the exit status keeps them all
limit=${STEP_LIMIT_S:-150}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/mtpdec/numba}  # warm for a rerun
step() {  # step NAME COMMAND...: run with a time limit, output to $out/NAME.txt
    local name=$1 t0=$SECONDS
    shift
    echo "== $name" | tee -a "$out/steps.txt"
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1 || { echo "   FAILED (exit $?)" | tee -a "$out/steps.txt"; status=1; }
    tail -n 25 "$out/$name.txt"
    echo "   $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
}
python3 -c "import numba, gguf, typer, rich, cupy
from mtpdec.gpu import runtime
runtime.kernel('rows.cu', 'rmsnorm')
print('preflight: cupy', cupy.__version__, 'numba', numba.__version__)" 2>&1 | tee "$out/preflight.txt" \
    || { echo "preflight failed: see $out/preflight.txt"; exit 2; }
step gpu_tests python3 -m pytest -q -rs -s tests/test_gpu_kernels.py tests/test_gpu_backend.py
step gpu_kernels python3 scripts/bench_gpu_kernels.py --repeats 10 --json "$out/gpu_kernels.json"
big=${BIG_MODEL:-/tmp/mtpdec_qwen35_27b.gguf}
step synth_27b python3 -m mtpdec synth "$big" --preset qwen35-27b
printf '%s\n' "def parse_args(argv):" "The quick brown fox jumps over the lazy dog." > "$out/prompts.txt"
sweep=(python3 -m mtpdec sweep "$big" --draft oracle --accept 0.9 --draft-n 0,1,2,4,8
       --prompts "$out/prompts.txt" -n 24 --repeats 1 --device gpu)
step sweep_27b_gpu "${sweep[@]}" --json "$out/sweep_27b_gpu.json"
step sweep_27b_hybrid "${sweep[@]}" --draft-n 0,2,4 --cpu-ffn 46 \
    --json "$out/sweep_27b_hybrid.json"
rm -f "$big"
exit $status

#!/usr/bin/env bash
# The GPU path end to end, on a machine with CUDA:  bash scripts/gpu_check.sh [OUT_DIR]
#
#   1. the GPU tests (every test marked gpu: tests/test_gpu.py's bf16-mixed training, augment_on_device on
#      CUDA, optimize on CUDA against fp32, DDP with one GPU, the GPU bench; the Predictor and the mean
#      attention per view on CUDA),
#   2. the demo (train.py experiment=demo) trained on the GPU, timed,
#   3. the bench on the GPU (python -m benchmarks --device cuda): inference and training images/s,
#      GPU utilisation (nvidia-smi) and the time each step waits for data in the demo's loop,
#
# then writes OUT_DIR/gpu_check.json (default benchmarks/out/gpu_check/) and prints a table; the bench run
# is also added to benchmarks/results/<cpu-kind>-<date>.json (make speed-tables renders it). Exit status 0
# when every step passed, 1 if one failed. Without CUDA it says so and exits 0, running nothing.
# PYTHON selects the interpreter (default: .venv/bin/python of this checkout).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/benchmarks/out/gpu_check}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False with $PY): nothing to check, skipped"
    exit 0
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT" || exit 1
: > "$OUT/steps.tsv"

# step NAME COMMAND...: run COMMAND with its output in OUT/NAME.log; record its exit status and seconds
step() {
    local name=$1 start rc
    shift
    echo "gpu_check: $name ..."
    start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >> "$OUT/steps.tsv"
    echo "gpu_check: $name exit $rc (log: $OUT/$name.log)"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
step tests "$PY" -m pytest tests -m gpu -p no:cacheprovider -q -rs --junitxml="$OUT/tests.xml"
step demo env LANMSFF_ROOT="$OUT/demo" "$PY" train.py experiment=demo trainer=gpu logger=csv
step bench env LANMSFF_ROOT="$OUT" "$PY" -m benchmarks --device cuda --out "$OUT/bench.json"
"$PY" -m benchmarks.gpu "$OUT"

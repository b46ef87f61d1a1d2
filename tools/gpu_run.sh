#!/usr/bin/env bash
# Run on the GPU machine (no Qt, no network), with .deps carried (tools/gpu_prepare.sh):
# builds the engine and CUDA backend for sm_90a, runs the GPU tests and the benchmarks.
#   bash tools/gpu_run.sh [OUTDIR]      OUTDIR receives logs and benchmark JSON
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/folio-gpu}}
mkdir -p "$out"
# The carried libsentencepiece only where the machine has none of its own: headers and library
# must come from the same version.
if ! pkg-config --exists sentencepiece 2>/dev/null; then
  export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
cmake --preset gpu -DFOLIO_DEPS_DIR="$PWD/.deps" > "$out/configure.log"
cmake --build --preset gpu -j "$(nproc)" 2>&1 | tail -n 5
ctest --test-dir build/gpu -L gpu --output-on-failure 2>&1 | tee "$out/ctest.log" || true
build/gpu/app/folio-cli --backend cuda --model resources/models/stories260K/stories260K.bin \
  --prompt "" --max-tokens 24 --temperature 0 2>&1 | tee "$out/cli.txt"
build/gpu/app/folio-bench --shape smollm2-135m --prompt-tokens 512,2048 --decode-tokens 32 --reps 3 \
  --threads 16 > "$out/bench_smollm2_cpu16.json"

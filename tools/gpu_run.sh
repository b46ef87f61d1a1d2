#!/usr/bin/env bash
# Run on the GPU machine (no Qt, no network), with .deps carried (tools/gpu_prepare.sh here first):
# builds the engine, the CUDA backend and the GPU tests for sm_90a, then runs what is asked.
#   bash tools/gpu_run.sh [test] [bench] [peers] [hfcheck]    (default: test)
# Logs, JSON and tables go to $OUT (or /tmp/folio-gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/folio-gpu}
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(test)
# The carried libsentencepiece only where the machine has none of its own: headers and library
# must come from the same version.
if ! pkg-config --exists sentencepiece 2>/dev/null; then
  export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
cmake --preset gpu -DFOLIO_DEPS_DIR="$PWD/.deps" > "$out/configure.log"
cmake --build --preset gpu -j "$(nproc)" 2>&1 | tail -n 3
echo "build: $(( $(date +%s) - t0 )) s"
for step in "${steps[@]}"; do
  case "$step" in
    test)
      ctest --test-dir build/gpu -L gpu --output-on-failure 2>&1 | tee "$out/ctest.log" || true
      build/gpu/app/folio-cli --backend cuda --model resources/models/stories260K/stories260K.bin \
        --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>&1 | tee "$out/cli.txt" ;;
    bench) bash tools/bench_gpu.sh "$out" ;;
    peers) python3 tools/bench_gpu_peers.py --out "$out" ;;
    hfcheck) python3 tools/gpu_hf_check.py --out "$out" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done

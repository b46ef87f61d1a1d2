#!/usr/bin/env bash
# CPU benchmarks for docs/benchmarks.md, one after the other in one run on this machine:
#   1. folio-bench on stories260K and on a random-weight model of SmolLM2-135M's shape (bf16)
#   2. folio-bench and llama.cpp (llama-cpp-python, PYTHON below) on SmolLM2-135M Q4_1, same
#      prompt lengths and thread count.
#   bash tools/bench_cpu.sh OUTDIR [PYTHON_WITH_LLAMA_CPP]
# Needs a Release build (cmake --preset release && cmake --build --preset release). Run it on an
# otherwise idle machine; numbers from a loaded machine mean little.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench_cpu.sh OUTDIR [PYTHON]}
py=${2:-python3}
threads=${FOLIO_BENCH_THREADS:-$(nproc)}
mkdir -p "$out"
bench=build/release/app/folio-bench
"$bench" --model resources/models/stories260K/stories260K.bin --prompt-tokens 256,500 --decode-tokens 10 \
  --reps 3 --threads "$threads" > "$out/folio_stories260K.json"
"$bench" --shape smollm2-135m --dtype bf16 --prompt-tokens 512,2048 --decode-tokens 32 --reps 3 \
  --threads "$threads" > "$out/folio_smollm2_shape_bf16.json"
model=$(python3 tools/fetch_model.py)
"$bench" --model "$model" --prompt-tokens 512,2048 --decode-tokens 32 --reps 3 --threads "$threads" \
  > "$out/folio_smollm2_q4_1.json"
"$py" tools/bench_llamacpp.py --model "$model" --threads "$threads" --prompt-tokens 512,2048 \
  --decode-tokens 32 --reps 3 > "$out/llamacpp_smollm2_q4_1.json"
echo "written to $out"

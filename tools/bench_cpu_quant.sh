#!/usr/bin/env bash
# Per-weight CPU matmul time for every stored weight type (docs/cpu-quant.md):
#   bash tools/bench_cpu_quant.sh OUT.jsonl [FOLIO_BENCH]
# folio-bench --matmul-only on a Llama-3.1-8B attention projection (4096 x 4096) and its MLP down
# projection's shape cut to 4096 x 14336 / 4 (4096 x 3584), one token (decode) and 128 tokens
# (a prefill tile), 5 repetitions each (median), threads = FOLIO_BENCH_THREADS or all.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench_cpu_quant.sh OUT.jsonl [FOLIO_BENCH]}
bench=${2:-build/release/app/folio-bench}
threads=${FOLIO_BENCH_THREADS:-$(nproc)}
for shape in "4096 4096" "4096 3584"; do
  set -- $shape
  for dtype in bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k; do
    "$bench" --matmul-only --dtype "$dtype" --rows "$1" --cols "$2" --lengths 1,128 --reps 5 \
      --threads "$threads" --json "$out" > /dev/null
  done
done
echo "written to $out"

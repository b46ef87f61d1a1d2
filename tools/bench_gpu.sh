#!/usr/bin/env bash
# GPU benchmarks (run on the GPU machine by tools/gpu_run.sh bench): Folio's attention kernel alone,
# then whole-model TTFT/decode/memory for the Llama-3.1-8B and Phi-3.5-mini shapes with random
# weights. JSON lines go to OUTDIR/folio_*.jsonl. FOLIO_BENCH_LENGTHS overrides the lengths.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/folio-gpu}}
lengths=${FOLIO_BENCH_LENGTHS:-16384,32768,65536,131072}
bench=build/gpu/app/folio-bench
rm -f "$out"/folio_attention.jsonl "$out"/folio_attention_mt1.jsonl "$out"/folio_model.jsonl \
  "$out"/folio_attention_sparse.jsonl "$out"/folio_sparse.jsonl
# sparse prefill first (the issue's numbers): whole model, the default budgets (random weights drive
# every head to its maximum: the worst case), auto and dense beside it in the same call
sparse_lengths=${FOLIO_SPARSE_LENGTHS:-$lengths}
for mode in sparse auto dense; do
  $bench --shape llama3.1-8b --random-weights --backend cuda --attention $mode --lengths "$sparse_lengths" \
    --decode-tokens 8 --reps 1 --json "$out/folio_sparse.jsonl" > /dev/null
done
# the tile-list kernel on a fixed block-sparse pattern (FlexAttention gets the same in peers)
for stride in 8 32; do
  $bench --attention-only --heads 32 --kv-heads 8 --head-dim 128 --lengths "$lengths" --reps 5 \
    --sparse-stride $stride --json "$out/folio_attention_sparse.jsonl" > /dev/null
done
$bench --attention-only --heads 32 --kv-heads 8 --head-dim 128 --lengths "$lengths" --reps 5 \
  --json "$out/folio_attention.jsonl" > /dev/null
if [ "${FOLIO_BENCH_SPARSE_ONLY:-0}" = 1 ]; then exit 0; fi
$bench --attention-only --heads 32 --kv-heads 32 --head-dim 96 --lengths "$lengths" --reps 5 \
  --json "$out/folio_attention.jsonl" > /dev/null
# the mma.sync kernel's previous layout (one m16 tile per warp, 8 warps), for the kernel's history
$bench --attention-only --attn-kernel mma --attn-mtiles 1 --heads 32 --kv-heads 8 --head-dim 128 --lengths "$lengths" --reps 5 \
  --json "$out/folio_attention_mt1.jsonl" > /dev/null
if [ "${FOLIO_BENCH_ATTENTION_ONLY:-0}" = 1 ]; then exit 0; fi
for shape in llama3.1-8b phi3.5-mini; do
  $bench --shape "$shape" --random-weights --backend cuda --attention dense --lengths "$lengths" \
    --decode-tokens 64 --reps 1 --json "$out/folio_model.jsonl" > /dev/null
done

#!/usr/bin/env bash
# Run on the GPU machine (no Qt, no network), with .deps carried (tools/gpu_prepare.sh here first):
# builds the engine, the CUDA backend and the GPU tests for sm_90a, then runs what is asked.
#   bash tools/gpu_run.sh [test] [attn] [patterns] [sanitize] [bench] [peers] [hfcheck] [base] [regress] [archs]
#                         [server] [kvdisk] [decode] [decodek] [tp] [kvq8] [targets] [estimation] [needle] [chunks]
#                         (default: test)
# targets: issue 13's targets on this card with their peers in the same call (see the step).
# estimation: the sparse estimation kernels' tests, whole-model estimation time (against the build of
# `base` when there is one) and Nsight Compute's time per kernel at the last chunk of 128K.
# decodek: the decode attention kernels (tensor-core and SIMT): tst_gpu_ops' decode and q8 cases,
# tst_gpu_model's graph and random-shape cases, decode tok/s on the Llama-3.1-8B shape at 4K, 32K and
# 128K with each kernel (bf16; and Q4_K weights with the 8-bit KV cache at 32K and 128K) into
# $OUT/decodek.jsonl, and Nsight Compute's time and DRAM bytes of both kernels at 32K.
# needle: folio-needle on the GPU (the step says what; carry .needle/gpu4 too; NEEDLE_ONLY_COMPARE=1
# runs only the comparisons).
# chunks: sparse prefill on the 8B shape with prefill chunks of 4096, 8192 and 16384 tokens.
# kvq8: the 8-bit (q8) KV cache: tst_gpu_model's kv_q8 case (against the CPU's q8 cache, sparse
# prefill against bf16 KV, the memory caps), then TTFT and decode on the Llama-3.1-8B shape with Q4_K
# weights, bf16 KV and q8 KV (32K and 128K; q8 also at 128K under a 24 GB cap and 32K under 12 GB)
# into $OUT/kvq8.jsonl.
# tp: tensor parallel through NCCL: tst_gpu_model's tensor_parallel case (one rank against the plain
# backend; on two or more GPUs two ranks against one on a 4K prompt), then, with two GPUs, TTFT and
# decode on the Llama-3.1-8B shape on one GPU and on two (64K and 128K, dense and sparse; each GPU
# capped at 24 GB by FOLIO_TP_CAP, default 24), into $OUT/tp.jsonl.
# decode: tst_gpu_ops' quant case, tst_gpu_model's decoding cases (graphs vs op by op, quantized GGUFs, random shapes), then
# decode tokens/s on the Llama-3.1-8B shape (bf16, Q4_K, Q4_0 weights; 4K and 32K prompts; CUDA
# graphs on and off) into $OUT/decode.jsonl, then Nsight Compute's time and DRAM bytes of every
# kernel of a short Q4_K run (512-token prompt, 8 decode tokens, graphs off) into $OUT/ncu_q4k.txt.
# kvdisk: tst_gpu_model's KV round trip, then TTFT from the documents' KV saved on disk vs a fresh
# prefill on the Llama-3.1-8B shape at 32K and 128K (folio-bench --kv-disk) into $OUT/kv_disk.jsonl.
# server runs folio-server's loopback suites (tests/server/server_test.py: http, load, remote) with
# --backend cuda on stories260K, into $OUT/server_*.log and server_load.json.
# attn compares the prefill attention kernels alone (mma.sync and Hopper) on hd 128/96/64, dense and
# tile lists, into $OUT/attn_kernels.jsonl.
# sanitize runs tst_gpu_sparse's kernel case under compute-sanitizer memcheck and racecheck.
# patterns runs the 8B shape with sparse forced, every head Interval-Slash, then every head
# Block-Cluster (estimation and attention time, density) into $OUT/patterns.jsonl.
# archs builds folio-cli for the default architecture list (preset gpu-all), lists its SASS and
# PTX with cuobjdump and runs it here (the sm_90a code).
# base builds folio-bench from an earlier tree in $FOLIO_BASE_DIR (default .base, e.g. from
# `git archive <commit>`, carried); regress then measures both builds in turn on the Llama-3.1-8B
# shape (dense and sparse at 16K-128K, decode at 32K) into $OUT/regress_{new,base}.jsonl.
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
# FOLIO_GPU_TARGETS="a b": only those targets (a short call that needs two binaries)
cmake --build --preset gpu -j "$(nproc)" ${FOLIO_GPU_TARGETS:+--target $FOLIO_GPU_TARGETS} 2>&1 | tail -n 3
echo "build: $(( $(date +%s) - t0 )) s"
for step in "${steps[@]}"; do
  case "$step" in
    test)
      ctest --test-dir build/gpu -L gpu -V > "$out/ctest.log" 2>&1 || true
      grep -E "^[0-9]+/[0-9]+ Test|tests passed|FAIL" "$out/ctest.log" || true
      build/gpu/app/folio-cli --backend cuda --model resources/models/stories260K/stories260K.bin \
        --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>&1 | tee "$out/cli.txt" ;;
    bench) bash tools/bench_gpu.sh "$out" ;;
    kvdisk)
      # the documents' KV kept on disk (issue 14): fresh prefill vs saved KV loaded cold and warm,
      # Llama-3.1-8B shape (random bf16 weights), the app's default attention (auto); the files go
      # to build/ (the machine's disk, not a tmpfs: `df` below says which)
      FOLIO_GPU_CASES=kv_saved_and_restored build/gpu/kernels/tests/tst_gpu_model 2>&1 | tee "$out/kv_test.log"
      mkdir -p build/kvdisk && df -hT build/kvdisk | tee "$out/kv_disk_fs.txt"
      rm -f "$out/kv_disk.jsonl"
      for att in auto dense; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --random-weights --backend cuda --attention $att \
          --lengths "${FOLIO_KV_LENGTHS:-32768,131072}" --reps 1 --decode-tokens 4 --kv-disk build/kvdisk \
          --json "$out/kv_disk.jsonl" 2>&1 >/dev/null | grep kv-disk
      done ;;
    tp)
      FOLIO_GPU_CASES=tensor_parallel build/gpu/kernels/tests/tst_gpu_model 2>&1 | tee "$out/tp_test.log"
      gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
      rm -f "$out/tp.jsonl"
      if [ "$gpus" -ge 2 ]; then
        for att in dense sparse; do
          for g in 0 0,1; do
            build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --gpus $g --attention $att \
              --gpu-mem-limit "${FOLIO_TP_CAP:-24}" --lengths "${FOLIO_TP_LENGTHS:-65536,131072}" --reps 1 \
              --decode-tokens 32 --json "$out/tp.jsonl" 2>&1 | tail -n 4 || true
          done
        done
        # decode at 32K without a cap (the issue's decode target), one GPU and two
        for g in 0 0,1; do
          build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --gpus $g --lengths 32768 --reps 1 \
            --decode-tokens 64 --json "$out/tp.jsonl" 2>&1 | tail -n 2 || true
        done
      fi ;;
    needle)
      # folio-needle on this GPU (issues 20 and 18), with .needle/gpu4 carried (tools/needle/gpu_pack.sh
      # here): the whole-model sparse check GPU against CPU (tst_gpu_sparse), Folio CUDA on the
      # held-out Folio set against transformers' answers of the installed model's eval (eval_folio.py
      # on the committed eval JSON), then sparse against dense and the q8 KV against bf16 at
      # NEEDLE_LENGTHS (32K-128K), NEEDLE_N samples of each task a length (eval_sparse.py; NEEDLE_COMPARE
      # picks which of kv and attention, in that order; NEEDLE_JOBS samples side by side, default 4).
      nd=${NEEDLE_DATA:-.needle/gpu4}
      if [ ! -f "$nd/tokenizer.model" ]; then echo "needle: $nd is not here (carry it)"; continue; fi
      if [ "${NEEDLE_ONLY_COMPARE:-0}" = 0 ]; then
        build/gpu/kernels/tests/tst_gpu_sparse 2>&1 | tee "$out/needle_tst_gpu_sparse.log" | grep -E "folio-needle|FAIL|passed" || true
        gunzip -c docs/bench/gpu-2026-12-07-needle6/eval-heldout.json.gz > /tmp/needle-eval-heldout.json
        python3 tools/needle/eval_folio.py --results /tmp/needle-eval-heldout.json --data "$nd" \
          --cli build/gpu/app/folio-cli --backend cuda > "$out/needle_folio_cuda.log" 2>&1 || true
        tail -n 1 "$out/needle_folio_cuda.log"
      fi
      # NEEDLE_SPARSE_CONFIG: another folio-sparse.json for the sparse runs (e.g. fewer sample rows)
      for cmp in ${NEEDLE_COMPARE:-kv attention}; do
        tag=$cmp${NEEDLE_TAG:+_$NEEDLE_TAG}
        python3 tools/needle/eval_sparse.py --generator 6 --split eval --data "$nd" --cli build/gpu/app/folio-cli \
          --backend cuda --compare $cmp --kv q8 --lengths "${NEEDLE_LENGTHS:-32768,65536,131072}" \
          ${NEEDLE_SPARSE_CONFIG:+--sparse-config "$NEEDLE_SPARSE_CONFIG"} \
          --n "${NEEDLE_N:-10}" --jobs "${NEEDLE_JOBS:-4}" --json "$out/needle_$tag.json" > "$out/needle_$tag.log" 2>&1 || true
        tail -n 7 "$out/needle_$tag.log"
      done ;;
    chunks)
      # the prefill chunk's effect on sparse prefill (estimation runs once a chunk, so its share
      # falls as the chunk grows; scratch grows with it): the 8B shape, sparse forced, 64K and 128K
      rm -f "$out/chunks.jsonl"
      for c in ${FOLIO_CHUNKS:-4096 8192 16384}; do
        build/gpu/app/folio-bench --shape llama3.1-8b --random-weights --backend cuda --attention sparse --chunk $c \
          --lengths "${FOLIO_CHUNK_LENGTHS:-65536,131072}" --decode-tokens 4 --reps 1 --json "$out/chunks.jsonl" \
          > /dev/null 2> "$out/chunks_$c.log" || tail -n 5 "$out/chunks_$c.log"
      done
      python3 - "$out/chunks.jsonl" <<'PY'
import json, sys
print(f"{'chunk':>6} {'n':>7} {'TTFT s':>7} {'est ms':>7} {'sparse attn ms':>14} {'est/attn':>8} {'density':>7} {'scratch GiB':>11}")
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(f"{r.get('chunk', 0):>6} {r['n_prompt']:>7} {r['ttft_ms']/1e3:7.3f} {r['estimate_ms']:7.1f} {r['sparse_attention_ms']:14.1f} "
          f"{r['estimate_ms']/max(r['sparse_attention_ms'],1e-9):8.1%} {r['density']:7.3f} {r.get('scratch_bytes', 0)/2**30:11.2f}")
PY
      ;;
    kvq8)
      { FOLIO_GPU_CASES=kv_q8 build/gpu/kernels/tests/tst_gpu_ops; FOLIO_GPU_CASES=kv_q8 build/gpu/kernels/tests/tst_gpu_model; } 2>&1 | tee "$out/kvq8_test.log" | grep -v "^  FAIL" || true
      rm -f "$out/kvq8.jsonl"
      for kv in native q8; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --dtype q4_k --kv-dtype $kv \
          --lengths "${FOLIO_KVQ8_LENGTHS:-32768,131072}" --reps 1 --decode-tokens 32 --json "$out/kvq8.jsonl" \
          > /dev/null 2> "$out/kvq8_$kv.log" || tail -n 5 "$out/kvq8_$kv.log"
      done
      for cap in 24:131072 12:32768; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --dtype q4_k --kv-dtype q8 --gpu-mem-limit ${cap%%:*} \
          --lengths ${cap##*:} --reps 1 --decode-tokens 32 --json "$out/kvq8.jsonl" > /dev/null 2> "$out/kvq8_cap${cap%%:*}.log" ||
          tail -n 5 "$out/kvq8_cap${cap%%:*}.log"
      done
      # the app's default attention (auto: sparse at these lengths) at 128K, bf16 and q8 KV
      for kv in native q8; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --dtype q4_k --kv-dtype $kv --attention auto \
          --lengths 131072 --reps 1 --decode-tokens 32 --json "$out/kvq8.jsonl" > /dev/null 2> "$out/kvq8_auto_$kv.log" ||
          tail -n 5 "$out/kvq8_auto_$kv.log"
      done
      python3 - "$out/kvq8.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# rows in the order run: bf16 32K, 128K; q8 32K, 128K; q8 128K capped at 24 GB, 32K at 12 GB; auto bf16, q8 at 128K
print(f"{'kv':>5} {'n':>7} {'attn':>6} {'TTFT s':>8} {'decode tok/s':>12} {'weights GiB':>11} {'KV GiB':>7} {'total GiB':>9} {'peak GiB':>8}")
for r in rows:
    g = lambda k: r.get(k, 0) / 2**30
    print(f"{r.get('kv_dtype','?'):>5} {r['n_prompt']:>7} {r['attention']:>6} {r['ttft_ms']/1000:8.3f} {r.get('decode_tok_s',0):12.1f} "
          f"{g('weights_bytes'):11.2f} {g('kv_bytes'):7.2f} {g('weights_bytes')+g('kv_bytes')+g('scratch_bytes'):9.2f} {g('peak_bytes'):8.2f}")
PY
      ;;
    decode)
      { FOLIO_GPU_CASES=quant,rope_qkv,attention_decode build/gpu/kernels/tests/tst_gpu_ops
        FOLIO_GPU_CASES=decode_graphs,quantized_gguf,random_shapes,memory_plan_matches_device \
          build/gpu/kernels/tests/tst_gpu_model; } 2>&1 | tee "$out/decode_test.log" | grep -v "^  FAIL" || true
      rm -f "$out/decode.jsonl"
      for dt in ${FOLIO_DECODE_DTYPES:-bf16 q4_k q4_0}; do
        for g in on off; do
          build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --dtype $dt --decode-graphs $g \
            --lengths "${FOLIO_DECODE_LENGTHS:-4096,32768}" --reps 1 --decode-tokens 64 --json "$out/decode.jsonl" \
            > /dev/null 2> "$out/decode_${dt}_$g.log" || tail -n 5 "$out/decode_${dt}_$g.log"
        done
      done
      python3 - "$out/decode.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'dtype':>6} {'graphs':>6} {'n':>7} {'TTFT s':>8} {'decode tok/s':>12} {'ms/token':>9}")
for r in rows:
    t = r.get('decode_tok_s', 0)
    print(f"{r['dtype']:>6} {str(r.get('decode_graphs')):>6} {r['n_prompt']:>7} {r['ttft_ms']/1000:8.3f} {t:12.1f} {1000/t if t else 0:9.3f}")
PY
      if [ -z "${FOLIO_NO_NCU:-}" ] && command -v ncu > /dev/null; then
        timeout 300 ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --print-summary per-kernel \
          build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --dtype q4_k --decode-graphs off --lengths 512 \
          --reps 1 --decode-tokens 8 > "$out/ncu_q4k.txt" 2>&1 || echo "ncu: rc $?"
        grep -E "^  [a-zA-Z_].*\(|gpu__time_duration.sum|dram__bytes_read.sum" "$out/ncu_q4k.txt" | head -n 80 || true
      fi ;;
    decodek)
      # issue 13's decode: the tensor-core decode kernel (auto) against the SIMT kernel, same call
      { FOLIO_GPU_CASES=attention_decode,kv_q8 build/gpu/kernels/tests/tst_gpu_ops
        FOLIO_GPU_CASES=decode_graphs,random_shapes build/gpu/kernels/tests/tst_gpu_model; } 2>&1 |
        tee "$out/decodek_test.log" | grep -v "^  FAIL" || true
      rm -f "$out/decodek.jsonl"
      for k in auto simt; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --attention sparse --decode-kernel $k \
          --lengths "${FOLIO_DECODE_LENGTHS:-4096,32768,131072}" --reps 1 --decode-tokens 64 --json "$out/decodek.jsonl" \
          > /dev/null 2> "$out/decodek_$k.log" || tail -n 5 "$out/decodek_$k.log"
      done
      # the 8-bit KV cache (issue 18's 24 GB layout: Q4_K weights)
      for k in auto simt; do
        build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --attention sparse --decode-kernel $k \
          --dtype q4_k --kv-dtype q8 --lengths "${FOLIO_DECODE_Q8_LENGTHS:-32768,131072}" --reps 1 --decode-tokens 64 \
          --json "$out/decodek.jsonl" > /dev/null 2> "$out/decodek_q8_$k.log" || tail -n 5 "$out/decodek_q8_$k.log"
      done
      python3 - "$out/decodek.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'kernel':>6} {'dtype':>6} {'kv':>6} {'n':>7} {'TTFT s':>8} {'decode tok/s':>12} {'ms/token':>9}")
for r in rows:
    t = r.get('decode_tok_s', 0)
    print(f"{r.get('decode_kernel','?'):>6} {r.get('dtype','?'):>6} {r.get('kv_dtype','?'):>6} {r['n_prompt']:>7} "
          f"{r['ttft_ms']/1000:8.3f} {t:12.1f} {1000/t if t else 0:9.3f}")
PY
      if [ -z "${FOLIO_NO_NCU:-}" ] && command -v ncu > /dev/null; then
        # the decode attention kernels' time and DRAM traffic at 32K (graphs off: one launch each)
        for k in auto simt; do
          timeout 240 ncu --clock-control none --kernel-name regex:flash_decode -c 8 \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
            build/gpu/app/folio-bench --shape llama-3.1-8b --backend cuda --attention sparse --decode-kernel $k \
            --decode-graphs off --lengths 32768 --reps 1 --decode-tokens 2 > "$out/ncu_decode_$k.txt" 2>&1 || echo "ncu: rc $?"
          grep -E "flash_decode|gpu__time_duration.sum|dram__bytes_read.sum|dram__throughput" "$out/ncu_decode_$k.txt" | head -n 8 || true
        done
      fi ;;
    attn)
      rm -f "$out/attn_kernels.jsonl"
      for kern in mma hopper; do
        for shape in "128 32 8 0" "128 32 8 8" "96 32 32 0" "64 32 8 0"; do
          set -- $shape
          build/gpu/app/folio-bench --attention-only --head-dim $1 --heads $2 --kv-heads $3 --sparse-stride $4 \
            --lengths "${FOLIO_ATTN_LENGTHS:-4096,16384,32768,65536,131072}" --reps 3 --attn-kernel $kern \
            --json "$out/attn_kernels.jsonl" > /dev/null
        done
      done
      python3 - "$out/attn_kernels.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["head_dim"], r["kv_heads"], r["sparse_stride"], r["n"])
by = {(r["attn_kernel"],) + key(r): r for r in rows}
print(f"{'hd':>3} {'kv':>3} {'stride':>6} {'n':>7} {'mma TF':>8} {'hopper TF':>9} {'speedup':>7}  (TFLOP/s on computed tiles)")
for k in sorted({key(r) for r in rows}):
    m, h = by.get(("mma",) + k), by.get(("hopper",) + k)
    if m and h:
        print(f"{k[0]:>3} {k[1]:>3} {k[2]:>6} {k[3]:>7} {m['tile_tflops']:8.1f} {h['tile_tflops']:9.1f} {m['ms']/h['ms']:7.2f}")
PY
      ;;
    patterns)
      # whole model, sparse forced, every head Interval-Slash and then every head Block-Cluster
      rm -f "$out/patterns.jsonl"
      for pat in interval-slash block-cluster; do
        build/gpu/app/folio-bench --shape llama3.1-8b --random-weights --backend cuda --attention sparse \
          --sparse-pattern $pat --lengths "${FOLIO_PATTERN_LENGTHS:-32768,65536,131072}" --decode-tokens 4 --reps 1 \
          --json "$out/patterns.jsonl" > /dev/null
      done
      # HF transformers on the same shape and lengths, in the same call, when FOLIO_PATTERN_PEERS=1
      if [ "${FOLIO_PATTERN_PEERS:-0}" = 1 ]; then
        python3 tools/bench_gpu_peers.py --out "$out" --hf-only --shapes llama-3.1-8b \
          --lengths "${FOLIO_PATTERN_LENGTHS:-32768,65536,131072}" > "$out/peers_hf.log" 2>&1 || tail -5 "$out/peers_hf.log"
      fi
      python3 - "$out/patterns.jsonl" "$out/peers.jsonl" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
hf = {}
if os.path.exists(sys.argv[2]):
    for l in open(sys.argv[2]):
        r = json.loads(l)
        if r.get("peer") == "hf-transformers-sdpa" and r.get("ttft_ms"):
            hf[r["n_prompt"]] = r["ttft_ms"] / 1e3
print("| pattern (every head) | tokens | TTFT s | HF s | vs HF | estimation ms | sparse attention ms | estimation / attention | ms per layer | density | est. mass |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    h = hf.get(r["n_prompt"])
    t = r["ttft_ms"] / 1e3
    print(f"| {r['sparse_pattern']} | {r['n_prompt']} | {t:.2f} | {h if h else 0:.2f} | {(h / t) if h else 0:.2f}x | {r['estimate_ms']:.1f} | "
          f"{r['sparse_attention_ms']:.1f} | {r['estimate_ms'] / max(r['sparse_attention_ms'], 1e-9):.1%} | {r['estimate_ms'] / 32:.2f} | "
          f"{r['density']:.3f} | {r['est_mass_mean']:.3f} |")
PY
      ;;
    sanitize)
      # compute-sanitizer over the sparse kernels' test case (memcheck, then racecheck for shared memory)
      # FOLIO_SANITIZE="test:case[,case] ..." (default: the sparse kernels)
      for spec in ${FOLIO_SANITIZE:-tst_gpu_sparse:kernels_against_cpu}; do
        for tool in memcheck racecheck; do
          rc=0
          log="$out/sanitize_${spec%%:*}_$tool.log"
          FOLIO_GPU_CASES=${spec#*:} timeout "${FOLIO_SANITIZE_SECONDS:-200}" compute-sanitizer --tool $tool \
            --error-exitcode 9 "build/gpu/kernels/tests/${spec%%:*}" > "$log" 2>&1 || rc=$?
          echo "compute-sanitizer $tool $spec: exit $rc (124: out of time)"
          grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASS|FAIL" "$log" | head -12 || true
        done
      done ;;
    peers) python3 tools/bench_gpu_peers.py --out "$out" ;;
    quant)
      # Llama-3.1-8B shape: bf16 weights against Q4_K (and Q8_0) kept in their blocks, the same
      # lengths, prefill (auto attention) and decode; Q4_K under 24 GiB at 128K and 12 GiB at 32K.
      rm -f "$out/quant.jsonl"
      b=build/gpu/app/folio-bench
      q="--shape llama-3.1-8b --backend cuda --decode-tokens 64 --reps ${FOLIO_QUANT_REPS:-2} --json $out/quant.jsonl"
      $b $q --dtype bf16 --lengths 32768,131072 > /dev/null 2> "$out/quant_bf16.log" || tail -n 5 "$out/quant_bf16.log"
      $b $q --dtype q4_k --lengths 32768,131072 > /dev/null 2> "$out/quant_q4k.log" || tail -n 5 "$out/quant_q4k.log"
      $b $q --dtype q8_0 --lengths 32768 > /dev/null 2> "$out/quant_q80.log" || tail -n 5 "$out/quant_q80.log"
      $b $q --dtype q4_k --lengths 131072 --gpu-mem-limit 24 > /dev/null 2> "$out/quant_q4k_24g.log" || tail -n 5 "$out/quant_q4k_24g.log"
      $b $q --dtype q4_k --lengths 32768 --gpu-mem-limit 12 > /dev/null 2> "$out/quant_q4k_12g.log" || tail -n 5 "$out/quant_q4k_12g.log"
      python3 - "$out/quant.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'dtype':>6} {'n':>7} {'attention':>9} {'TTFT s':>8} {'decode tok/s':>12} {'weights GiB':>11} {'peak GiB':>8}")
for r in rows:
    print(f"{r['dtype']:>6} {r['n_prompt']:>7} {r['attention']:>9} {r['ttft_ms']/1000:8.3f} {r.get('decode_tok_s', 0):12.1f} "
          f"{r.get('weights_bytes', 0)/2**30:11.2f} {r.get('peak_bytes', 0)/2**30:8.2f}")
PY
      ;;
    server)
      # cpp-httplib and what it links to came in .deps/lib/httplib (tools/gpu_prepare.sh).
      export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:$PWD/.deps/lib/httplib"
      for suite in http load remote; do
        python3 tests/server/server_test.py $suite --server build/gpu/app/folio-server --cli build/gpu/app/folio-cli \
          --model resources/models/stories260K/stories260K.bin --backend cuda --report "$out/server_$suite.json" \
          > "$out/server_$suite.log" 2>&1 && echo "server $suite: passed" || echo "server $suite: FAILED (rc $?)"
      done ;;
    hfcheck) python3 tools/gpu_hf_check.py --out "$out" ;;
    archs)
      cmake --preset gpu-all -DFOLIO_DEPS_DIR="$PWD/.deps" > "$out/configure-all.log"
      cmake --build build/gpu-all -j "$(nproc)" --target folio-cli 2>&1 | tail -n 1
      cuobjdump --list-elf build/gpu-all/app/folio-cli | sed 's/.*\.\(sm_[0-9a-z]*\)\..*/\1/' | sort | uniq -c | tee "$out/archs.txt"
      cuobjdump --list-ptx build/gpu-all/app/folio-cli | sed 's/.*\.\(sm_[0-9a-z]*\)\..*/ptx \1/' | sort | uniq -c | tee -a "$out/archs.txt"
      for a in sm_80 sm_86 sm_89 sm_90a; do grep -q " $a\$" "$out/archs.txt" || { echo "no SASS for $a" >&2; exit 1; }; done
      build/gpu-all/app/folio-cli --backend cuda --model resources/models/stories260K/stories260K.bin \
        --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>&1 | tee -a "$out/archs.txt" ;;
    base)
      base=${FOLIO_BASE_DIR:-.base}
      (cd "$base" && cmake --preset gpu -DFOLIO_DEPS_DIR="$OLDPWD/.deps" > "$out/configure-base.log" &&
        cmake --build --preset gpu -j "$(nproc)" --target folio-bench 2>&1 | tail -n 1) ;;
    regress)
      base=${FOLIO_BASE_DIR:-.base}
      rm -f "$out"/regress_new.jsonl "$out"/regress_base.jsonl
      for mode in dense sparse; do
        for which in new base; do
          bin=build/gpu/app/folio-bench
          [ "$which" = base ] && bin=$base/build/gpu/app/folio-bench
          $bin --shape llama3.1-8b --random-weights --backend cuda --attention $mode \
            --lengths "${FOLIO_REGRESS_LENGTHS:-16384,32768,65536,131072}" --decode-tokens 32 --reps 2 \
            --json "$out/regress_$which.jsonl" > /dev/null
        done
      done
      python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = {}
for which in ("new", "base"):
    for line in open(f"{out}/regress_{which}.jsonl"):
        j = json.loads(line)
        rows[(which, j.get("attention"), j.get("n_prompt"))] = j
print(f"{'mode':7} {'tokens':>7} {'TTFT new':>9} {'TTFT base':>9} {'new/base':>8} {'dec new':>8} {'dec base':>8}")
for (which, mode, n), j in sorted(rows.items(), key=lambda kv: (str(kv[0][1]), kv[0][2] or 0)):
    if which != "new" or ("base", mode, n) not in rows: continue
    b = rows[("base", mode, n)]
    print(f"{mode:7} {n:>7} {j['ttft_ms']/1e3:9.3f} {b['ttft_ms']/1e3:9.3f} {j['ttft_ms']/b['ttft_ms']:8.3f} "
          f"{j.get('decode_tok_s', 0):8.1f} {b.get('decode_tok_s', 0):8.1f}")
PY
      ;;
    estimation)
      # issue 15: the sparse estimation kernels. tst_gpu_sparse with the default heads per CTA, with
      # two in both passes and without stacking; then Interval-Slash everywhere (sparse forced) at
      # 32K-128K with this build (64 and 32 sample rows, stacked and not) and, when `base` built one,
      # the older build in $FOLIO_BASE_DIR; then Nsight Compute's time of each estimation kernel at
      # the last chunk of 128K (layers 0 and 1; FOLIO_NCU_ROWS=64 for 64 sample rows).
      for hp in ${FOLIO_SAMPLE_HEADS_LIST:-0 2}; do
        FOLIO_SAMPLE_HEADS=$hp timeout 200 build/gpu/kernels/tests/tst_gpu_sparse > "$out/sparse_test_$hp.log" 2>&1 || true
        echo "tst_gpu_sparse FOLIO_SAMPLE_HEADS=$hp:"; grep -E "^(PASS|FAIL)" "$out/sparse_test_$hp.log" || tail -5 "$out/sparse_test_$hp.log"
      done
      FOLIO_SAMPLE_STACK=0 FOLIO_GPU_CASES=kernels_against_cpu timeout 200 build/gpu/kernels/tests/tst_gpu_sparse > "$out/sparse_test_nostack.log" 2>&1 || true
      echo "tst_gpu_sparse FOLIO_SAMPLE_STACK=0:"; grep -E "^(PASS|FAIL)" "$out/sparse_test_nostack.log" || tail -5 "$out/sparse_test_nostack.log"
      base=${FOLIO_BASE_DIR:-.base}
      # variants: 64 sample rows (the default before 2026-12-08), 32 rows (the default: two heads a
      # product where the group is even), 32 rows one head a product (FOLIO_SAMPLE_STACK=0), the base build
      rm -f "$out"/estimation_*.jsonl
      for which in rows64 rows32 rows32-nostack base; do
        bin=build/gpu/app/folio-bench; extra=(); stack=1
        case $which in
          base) bin=$base/build/gpu/app/folio-bench ;;
          rows64) extra=(--last-queries 64) ;;
          rows32) extra=(--last-queries 32) ;;
          rows32-nostack) extra=(--last-queries 32); stack=0 ;;
        esac
        [ -x "$bin" ] || continue
        FOLIO_SAMPLE_STACK=$stack $bin --shape llama3.1-8b --random-weights --backend cuda --attention sparse \
          --sparse-pattern interval-slash "${extra[@]}" --lengths "${FOLIO_ESTIMATION_LENGTHS:-32768,65536,131072}" \
          --decode-tokens 4 --reps 1 --json "$out/estimation_$which.jsonl" > /dev/null 2> "$out/estimation_$which.log" ||
          tail -5 "$out/estimation_$which.log"
      done
      for f in "$out"/estimation_*.jsonl; do
        [ -f "$f" ] && python3 -c "
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(sys.argv[2], r['n_prompt'], 'TTFT %.3f s' % (r['ttft_ms'] / 1e3), 'estimation %.1f ms' % r['estimate_ms'],
          'sparse attention %.1f ms' % r['sparse_attention_ms'], 'density %.3f' % r['density'], 'mass %.3f' % r['est_mass_mean'])" "$f" "$(basename "$f" .jsonl)"
      done
      # launches per (layer, chunk): pass 1, merge, pass 2, units, selection; --launch-skip counts
      # only the kernels the filter matches
      [ "${FOLIO_NCU:-1}" = 0 ] || timeout 150 ncu --clock-control none --kernel-name regex:"fused_sample|fused_merge|unit_stats|select_kernel" \
        --launch-skip $((31 * 32 * 5)) -c 10 --metrics gpu__time_duration.sum \
        build/gpu/app/folio-bench --shape llama3.1-8b --random-weights --backend cuda --attention sparse \
        --sparse-pattern interval-slash --last-queries "${FOLIO_NCU_ROWS:-32}" --lengths 131072 --decode-tokens 1 \
        --reps 1 > "$out/estimation_ncu.txt" 2>&1 || true
      grep -E "Context 1|duration" "$out/estimation_ncu.txt" | sed -E 's/^ +//; s/ +/ /g' | cut -c1-110 || true
      ;;
    targets)
      # issue 13's targets on this card, peers in the same call (~6 min): attention alone (the
      # Hopper kernel, hd 128/96/64, causal) against PyTorch SDPA (cuDNN, flash); the whole
      # Llama-3.1-8B shape dense and sparse at 16K-128K with 64 decode tokens; HF + SDPA at the
      # same lengths. Tables into $OUT/targets.txt.
      L=${FOLIO_TARGET_LENGTHS:-16384,32768,65536,131072}
      rm -f "$out"/targets_attn.jsonl "$out"/targets_model.jsonl "$out"/targets_sdpa.jsonl
      for shape in "128 32 8" "96 32 32" "64 32 8"; do
        set -- $shape
        build/gpu/app/folio-bench --attention-only --head-dim $1 --heads $2 --kv-heads $3 --sparse-stride 0 --lengths "$L" \
          --reps 3 --attn-kernel hopper --json "$out/targets_attn.jsonl" > /dev/null 2>> "$out/targets.log" || tail -3 "$out/targets.log"
      done
      python3 - "$out" "$L" >> "$out/targets.log" 2>&1 <<'PY' || tail -3 "$out/targets.log"
import json, sys
sys.path.insert(0, "tools")
import bench_gpu_peers as b
rows, lengths = [], [int(x) for x in sys.argv[2].split(",")]
for heads, kv, hd in ((32, 8, 128), (32, 32, 96), (32, 8, 64)):
    b.bench_sdpa(lengths, heads, kv, hd, rows)
with open(sys.argv[1] + "/targets_sdpa.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
PY
      for att in dense sparse; do
        build/gpu/app/folio-bench --shape llama3.1-8b --random-weights --backend cuda --attention $att --lengths "$L" \
          --decode-tokens 64 --reps 1 --json "$out/targets_model.jsonl" > /dev/null 2>> "$out/targets.log" || tail -3 "$out/targets.log"
      done
      python3 tools/bench_gpu_peers.py --out "$out" --hf-only --shapes llama-3.1-8b --lengths "$L" > "$out/peers_hf.log" 2>&1 ||
        tail -5 "$out/peers_hf.log"
      python3 - "$out" <<'PY' | tee "$out/targets.txt"
import json, os, sys
o = sys.argv[1]
load = lambda f: [json.loads(l) for l in open(os.path.join(o, f))] if os.path.exists(os.path.join(o, f)) else []
sdpa = {(r["head_dim"], r["n"], r["peer"]): r for r in load("targets_sdpa.jsonl") if r.get("ms")}
print("| hd | tokens | Folio Hopper TFLOP/s | SDPA cuDNN | SDPA flash |")
print("|---|---|---|---|---|")
for r in load("targets_attn.jsonl"):
    c, f = sdpa.get((r["head_dim"], r["n"], "torch-sdpa-cudnn")), sdpa.get((r["head_dim"], r["n"], "torch-sdpa-flash"))
    print(f"| {r['head_dim']} | {r['n']} | {r.get('tile_tflops', 0):.0f} | {c['tflops'] if c else 0:.0f} | {f['tflops'] if f else 0:.0f} |")
hf = {r["n_prompt"]: r["ttft_ms"] for r in load("peers.jsonl") if r.get("peer") == "hf-transformers-sdpa" and r.get("ttft_ms")}
print()
print("| attention | tokens | TTFT s | HF s | vs HF | decode tok/s | estimation ms |")
print("|---|---|---|---|---|---|---|")
for r in load("targets_model.jsonl"):
    h = hf.get(r["n_prompt"])
    print(f"| {r.get('attention')} | {r['n_prompt']} | {r['ttft_ms'] / 1e3:.3f} | {h / 1e3 if h else 0:.3f} | "
          f"{h / r['ttft_ms'] if h else 0:.2f}x | {r.get('decode_tok_s', 0):.1f} | {r.get('estimate_ms', 0):.1f} |")
PY
      ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done

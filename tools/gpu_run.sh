#!/usr/bin/env bash
# Run on the GPU machine (no Qt, no network), with .deps carried (tools/gpu_prepare.sh here first):
# builds the engine, the CUDA backend and the GPU tests for sm_90a, then runs what is asked.
#   bash tools/gpu_run.sh [test] [attn] [bench] [peers] [hfcheck] [base] [regress] [archs] [server]
#                                                                                     (default: test)
# server runs folio-server's loopback suites (tests/server/server_test.py: http, load, remote) with
# --backend cuda on stories260K, into $OUT/server_*.log and server_load.json.
# attn compares the prefill attention kernels alone (mma.sync and Hopper) on hd 128/96/64, dense and
# tile lists, into $OUT/attn_kernels.jsonl.
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
cmake --build --preset gpu -j "$(nproc)" 2>&1 | tail -n 3
echo "build: $(( $(date +%s) - t0 )) s"
for step in "${steps[@]}"; do
  case "$step" in
    test)
      ctest --test-dir build/gpu -L gpu --output-on-failure 2>&1 | tee "$out/ctest.log" || true
      build/gpu/app/folio-cli --backend cuda --model resources/models/stories260K/stories260K.bin \
        --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>&1 | tee "$out/cli.txt" ;;
    bench) bash tools/bench_gpu.sh "$out" ;;
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
    peers) python3 tools/bench_gpu_peers.py --out "$out" ;;
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
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done

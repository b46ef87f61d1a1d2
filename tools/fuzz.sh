#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a bounded time on a copy of
# its seed corpus (tests/fuzz/corpus). Fails on any crash, leak or sanitizer report.
#   bash tools/fuzz.sh [SECONDS_PER_TARGET]   (default 50: the CI run)
#   bash tools/fuzz.sh --long                 (an hour per target; the grown corpus is kept in
#                                              build/fuzz/run/<target>/corpus: merge small new
#                                              seeds into tests/fuzz/corpus with -merge=1)
#   FUZZ_TARGETS="fuzz_gguf_model fuzz_text_document" bash tools/fuzz.sh 30   (some targets only)
#   FUZZ_RUNS=10000000 bash tools/fuzz.sh --long   (each target stops at 10M executions or the hour)
# Each target's line gives executions, exec/s and peak RSS (docs/reliability.md's fuzzing table).
# Only the targets run are reset in build/fuzz/run, so targets can be run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-50}
if [[ "$seconds" == "--long" ]]; then seconds=3600; fi
targets=${FUZZ_TARGETS:-"fuzz_gguf fuzz_safetensors fuzz_llama2c fuzz_tokenizer fuzz_hf_config fuzz_gguf_model
                         fuzz_safetensors_model fuzz_tokenizer_json fuzz_text_document fuzz_source_tree
                         fuzz_text_file fuzz_pdf"}
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "${FUZZ_BUILD_JOBS:-$(nproc)}"
work=build/fuzz/run
mkdir -p "$work"
status=0
for target in $targets; do
  if [[ ! -x build/fuzz/tests/fuzz/"$target" ]]; then
    echo "== $target: not built (fuzz_source_tree, fuzz_text_file and fuzz_pdf need Qt 6 with Qt PDF), skipped =="
    continue
  fi
  rm -rf "${work:?}/$target" && mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  cp tests/fuzz/corpus/"$target"/* "$work/$target/corpus/" 2>/dev/null || true
  # Whole models and documents are larger than headers: their inputs may be up to 256 KiB.
  max_len=65536
  case "$target" in
    fuzz_gguf_model|fuzz_safetensors_model|fuzz_text_document|fuzz_text_file|fuzz_pdf|fuzz_tokenizer_json)
      max_len=262144 ;;
  esac
  # Qt PDF (PDFium) itself hangs on some inputs within seconds: fuzz_pdf runs in fork mode with
  # timeouts set aside (crashes, leaks and sanitizer reports still fail), so it gets past them to
  # Folio's own page handling. The app reads PDFs in a guarded worker that stops such a hang.
  extra=(-timeout=20)
  if [[ -n "${FUZZ_RUNS:-}" ]]; then extra+=(-runs="$FUZZ_RUNS"); fi
  if [[ "$target" == fuzz_pdf ]]; then extra=(-fork=1 -ignore_timeouts=1 -timeout=5); fi
  echo "== $target: $seconds s =="
  rc=0
  build/fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$max_len" \
    "${extra[@]}" -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/" \
    "$work/$target/corpus" > "$work/$target/log.txt" 2>&1 || rc=$?
  # Fork mode with -ignore_timeouts still exits 70 (libFuzzer's timeout code) when a job that hit a
  # PDFium hang was the last one running as the time ran out (seen 2026-12-06: every job 0/0/0
  # oom/timeout/crash, one timeout-* artifact). A timeout there is set aside, as the flags say;
  # crashes, leaks, OOMs and sanitizer reports still fail.
  if [[ "$target" == fuzz_pdf && $rc -eq 70 ]] &&
     ! ls "$work/$target/artifacts/" | grep -qvE '^timeout-' &&
     ! grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer: out-of-memory)|runtime error:" "$work/$target/log.txt"; then
    echo "(fuzz_pdf: a PDFium hang ended the last job, set aside: $(ls "$work/$target/artifacts/" | tr '\n' ' '))"
    rc=0
  fi
  if [[ $rc -eq 0 ]]; then
    { grep -E "^#[0-9]+.*(cov|DONE)" "$work/$target/log.txt" || true; } | tail -n 1
    { grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$work/$target/log.txt" || true; } |
      tr -s ' ' | tr '\n' ' ' && echo
  else
    echo "FUZZ FAILURE in $target (log: $work/$target/log.txt):"
    tail -n 40 "$work/$target/log.txt"
    status=1
  fi
done
exit $status

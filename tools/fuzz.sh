#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a bounded time on a copy of
# its seed corpus (tests/fuzz/corpus). Fails on any crash, leak or sanitizer report.
#   bash tools/fuzz.sh [SECONDS_PER_TARGET]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-50}
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"
work=build/fuzz/run
rm -rf "$work" && mkdir -p "$work"
status=0
for target in fuzz_gguf fuzz_safetensors fuzz_llama2c fuzz_tokenizer fuzz_hf_config; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  cp tests/fuzz/corpus/"$target"/* "$work/$target/corpus/" 2>/dev/null || true
  echo "== $target: $seconds s =="
  if build/fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
       -timeout=20 -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/" \
       "$work/$target/corpus" > "$work/$target/log.txt" 2>&1; then
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work/$target/log.txt" | tail -n 2
  else
    echo "FUZZ FAILURE in $target (log: $work/$target/log.txt):"
    tail -n 40 "$work/$target/log.txt"
    status=1
  fi
done
exit $status

#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is missing, build, and let folio-cli
# answer on the embedded default model. Extra arguments go to folio-cli, e.g.
#   bash tools/run.sh --prompt "Once upon a time" --max-tokens 100
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target folio-cli folio-bench
MODEL=resources/models/stories260K/stories260K.bin
if [[ $# -eq 0 ]]; then
  set -- --prompt "Once upon a time, in a small town by the sea," --max-tokens 120 --temperature 0.8 --top-p 0.9 --seed 1
fi
exec build/release/app/folio-cli --model "$MODEL" "$@"

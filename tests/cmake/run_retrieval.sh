#!/usr/bin/env bash
# ctest: folio-retrieval over a document and its fixture with the default model's tokenizer
# (SmolLM2-135M-Instruct, as users get it); exit 77 (skipped) when the model or the document is absent.
#   run_retrieval.sh FOLIO_RETRIEVAL DOC FIXTURE [folio-retrieval options...]
set -euo pipefail
bin=$1 doc=$2 fixture=$3
shift 3
model=${FOLIO_SMOLLM2_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/folio/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [[ ! -f $model ]]; then echo "skipped: $model not found (python3 tools/fetch_model.py)"; exit 77; fi
if [[ ! -e $doc ]]; then echo "skipped: $doc not found (bash tools/deps.sh installs r-doc-pdf)"; exit 77; fi
exec "$bin" --model "$model" --doc "$doc" --fixture "$fixture" --misses "$@"

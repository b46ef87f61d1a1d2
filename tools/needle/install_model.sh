#!/bin/bash
# Here, after tools/needle/gpu_train.sh eval (or the first model's single call) ran on the GPU
# machine: put the model that came back into resources/models/folio-needle, keep the run's eval
# JSONs and train_log.jsonl in .needle/last-run/, and ask Folio (folio-cli, CPU) the Folio set's
# questions (eval_folio.py).
#   bash tools/needle/install_model.sh DIR      (DIR: the folder the device tool copied $OUT to)
set -euo pipefail
D=${1:?usage: install_model.sh DIR}
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
tar xzf "$D/meta.tgz" -C "$T"
rm -rf resources/models/folio-needle
mkdir -p resources/models/folio-needle .needle/last-run
cp "$T"/folio-needle/* resources/models/folio-needle/
cp "$D"/model-*.safetensors resources/models/folio-needle/
chmod 644 resources/models/folio-needle/*
cp "$T"/eval*.json "$T"/train_log.jsonl .needle/last-run/ 2>/dev/null || true
cp "$D"/train.log "$D"/eval.log .needle/last-run/ 2>/dev/null || true
rm -rf "$T"
du -sh resources/models/folio-needle
ls -la resources/models/folio-needle
# Generator 3 runs name their Folio set's file eval-heldout.json; the first model's eval.json.
R=.needle/last-run/eval-heldout.json
[ -f "$R" ] || R=.needle/last-run/eval.json
DATA=.needle
[ -f .needle/filler-eval.txt ] || DATA=${NEEDLE_GPU:-.needle/gpu4}
python3 tools/needle/eval_folio.py --results "$R" --data "$DATA"

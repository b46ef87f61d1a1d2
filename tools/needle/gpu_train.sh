#!/bin/bash
# On the GPU machine (device tool, kind nvidia-h200, carry [".needle"]): train folio-needle,
# evaluate it, and leave in $OUT what comes back: train.log, eval.log, the safetensors shards and
# meta.tgz (config, index, tokenizer, model card with the accuracy table, eval.json,
# train_log.jsonl). About 8.5 minutes: 6 of training, 1.5 of evaluation.
#   bash tools/needle/gpu_train.sh
# Then, here: bash tools/needle/install_model.sh /work/.device/N
set -o pipefail
export PYTHONUNBUFFERED=1
W=/tmp/needle
M=$W/folio-needle
mkdir -p "$W"
python3 tools/needle/train.py --data .needle --out "$M" 2>&1 | grep -v "Writing model" | tee "$OUT/train.log" || exit 1
python3 tools/needle/eval.py --model "$M" --data .needle --n 30 --n-long 20 --folio-set 2 --max-seconds 120 \
  --json "$W/eval.json" --card 2>&1 | grep -v "Loading weights" | tee "$OUT/eval.log"
cp "$M"/*.safetensors "$OUT/"
tar czf "$OUT/meta.tgz" --exclude='*.safetensors' -C "$W" .
ls -la "$OUT"

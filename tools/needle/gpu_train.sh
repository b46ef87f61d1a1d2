#!/bin/bash
# folio-needle generator 3 on the GPU machine, in legs of at most 10 minutes (docs/needle.md,
# "Training plan"). Each call: device tool, kind nvidia-h200, carry [".needle/gpu"], timeout 600.
#
#   bash tools/needle/gpu_train.sh leg     one leg of training (about 9 minutes), resumed from
#                                          build/needle/full.pt when this machine made one in an
#                                          earlier call (exact), else from .needle/gpu/carry (the
#                                          compact state of the last leg; approximate), else from
#                                          scratch. $OUT: the bf16 shards, meta.tgz (config,
#                                          tokenizer, model card, resume.pt, train_log.jsonl), train.log
#   bash tools/needle/gpu_train.sh eval    evaluation of the model of the last leg (this machine's,
#                                          or the carried one) on the held-out split (4K-128K), the
#                                          training-style split and generator 2's tasks; $OUT as for
#                                          a leg, meta.tgz also holding eval-*.json, and eval.log
#   bash tools/needle/gpu_train.sh smoke   a 60-step run and a small evaluation (about 3 minutes)
#
# Here, between calls: bash tools/needle/take_leg.sh DIR (DIR: where the device tool put $OUT)
# makes .needle/gpu/carry the state that came back; bash tools/needle/install_model.sh DIR after
# the eval call installs the model into resources/models/folio-needle.
# Settings (environment): STEPS (the run's length, 16000 = about 45 minutes of training; never
# change it within a run), LEG_SECONDS (training seconds of a leg, 480), EVAL_SECONDS (300).
set -o pipefail
export PYTHONUNBUFFERED=1
MODE=${1:?usage: gpu_train.sh leg|eval|smoke}
D=.needle/gpu
CK=build/needle            # ignored, not carried: kept between the calls of one session only
[ "$MODE" = smoke ] && CK=build/needle-smoke
M=$CK/folio-needle
STEPS=${STEPS:-16000}
mkdir -p "$CK"
[ -f "$D/tokenizer.model" ] || { echo "no $D/tokenizer.model: run tools/needle/gpu_pack.sh here and carry .needle/gpu"; exit 1; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader

send_back() {  # the model (shards) and everything small in one archive: at most 8 files come back
  cp "$M"/*.safetensors "$OUT/"
  tar czf "$OUT/meta.tgz" --exclude='*.safetensors' --exclude='full.pt*' -C "$CK" .
  ls -la "$OUT"
}

case "$MODE" in
  leg|smoke)
    extra=()
    if [ ! -f "$CK/full.pt" ] && [ -f "$D/carry/resume.pt" ]; then
      extra=(--carry-in "$D/carry")
    fi
    secs=${LEG_SECONDS:-480}
    if [ "$MODE" = smoke ]; then
      STEPS=60; secs=120; rm -rf "$CK"; mkdir -p "$CK"; extra=()  # its own folder, from scratch
    fi
    python3 tools/needle/train.py --data "$D" --out "$M" --steps "$STEPS" --ckpt "$CK/full.pt" --ckpt-every 1000 \
      --max-seconds "$secs" "${extra[@]}" 2>&1 | grep -v "Writing model" | tee "$OUT/train.log" || exit 1
    if [ "$MODE" = smoke ]; then
      python3 tools/needle/eval.py --model "$M" --data "$D" --lengths 4096,16384 --n 10 --gui-lengths 4096 \
        --folio-set 1 --json "$CK/eval-heldout.json" --card 2>&1 | grep -v "Loading weights" | tee "$OUT/eval.log"
    fi
    send_back
    ;;
  eval)
    if [ ! -f "$M/config.json" ]; then  # a fresh machine: the carried model of the last leg
      mkdir -p "$M" && cp "$D"/carry/* "$M"/ && rm -f "$M/resume.pt"
      cp "$D/carry/train_log.jsonl" "$CK/" 2>/dev/null
    fi
    E=${EVAL_SECONDS:-300}
    {
      python3 tools/needle/eval.py --model "$M" --data "$D" --generator 3 --split eval --n 50 --n-long 50 \
        --folio-set 4 --max-seconds "$E" --json "$CK/eval-heldout.json" --card
      python3 tools/needle/eval.py --model "$M" --data "$D" --generator 3 --split train --n 30 --n-long 20 \
        --gui-lengths "" --max-seconds 100 --json "$CK/eval-trainstyle.json" --card
      [ -f "$D/filler.txt.gz" ] && python3 tools/needle/eval.py --model "$M" --data "$D" --generator 2 --n 30 \
        --n-long 20 --max-seconds 100 --json "$CK/eval-generator2.json" --card
    } 2>&1 | grep -v "Loading weights" | tee "$OUT/eval.log"
    send_back
    ;;
  *)
    echo "unknown mode $MODE (leg, eval or smoke)"; exit 1 ;;
esac

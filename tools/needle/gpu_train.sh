#!/bin/bash
# folio-needle on the GPU machine, in legs of at most 10 minutes (docs/needle.md, "Training plan"
# and "Generator 4: why and what"). Each call: device tool, carry [".needle/gpu4"], timeout 600.
# Generator 4 (the default) reads and carries .needle/gpu4 (gpu_pack.sh, take_leg.sh); generator
# 3's run stays in .needle/gpu (its leg-2 state: GENERATOR=3 NEEDLE_GPU=.needle/gpu would go on
# with it) and must not travel with generator 4's (64 MiB a call).
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
#   bash tools/needle/gpu_train.sh smoke   the code's first GPU run (about 4 minutes): 60 steps straight,
#                                          30 + 30 resumed exactly, 30 + 30 resumed from the compact
#                                          state, their weights compared, a small evaluation
#
# Here, between calls: bash tools/needle/take_leg.sh DIR (DIR: where the device tool put $OUT)
# makes .needle/gpu/carry the state that came back; bash tools/needle/install_model.sh DIR after
# the eval call installs the model into resources/models/folio-needle.
# Settings (environment): GENERATOR (6; 4-6 share .needle/gpu4), NEEDLE_GPU (.needle/gpu4), STEPS (the run's length, 16000 = about 45 minutes of training; never
# change it within a run), LEG_SECONDS (training seconds of a leg, 480), EVAL_SECONDS (420: all three
# evaluations together), INIT_FROM (a finished model folder, e.g. resources/models/folio-needle: the
# run is a second cycle from its weights, with its own STEPS; give it to every leg of that run).
set -o pipefail
export PYTHONUNBUFFERED=1
MODE=${1:?usage: gpu_train.sh leg|eval|smoke}
GEN=${GENERATOR:-6}
D=${NEEDLE_GPU:-.needle/gpu4}
CK=build/needle            # ignored, not carried: kept between the calls of one session only
[ "$MODE" = smoke ] && CK=build/needle-smoke
M=$CK/folio-needle
STEPS=${STEPS:-16000}
mkdir -p "$CK"
[ -f "$D/tokenizer.model" ] || { echo "no $D/tokenizer.model: run tools/needle/gpu_pack.sh here and carry $D"; exit 1; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader

send_back() {  # the model (shards) and everything small in one archive: at most 8 files come back
  cp "$M"/*.safetensors "$OUT/"
  tar czf "$OUT/meta.tgz" --exclude='*.safetensors' --exclude='full.pt*' -C "$CK" .
  ls -la "$OUT"
}

case "$MODE" in
  leg)
    extra=()
    if [ ! -f "$CK/full.pt" ] && [ -f "$D/carry/resume.pt" ]; then
      extra=(--carry-in "$D/carry")
    fi
    # INIT_FROM: a second cycle from a finished model's weights (every leg of that run passes it)
    [ -n "${INIT_FROM:-}" ] && extra+=(--init-from "$INIT_FROM")
    python3 tools/needle/train.py --generator "$GEN" --data "$D" --out "$M" --steps "$STEPS" --ckpt "$CK/full.pt" --ckpt-every 1000 \
      --max-seconds "${LEG_SECONDS:-480}" "${extra[@]}" 2>&1 | grep --line-buffered -v "Writing model" | tee "$OUT/train.log" || exit 1
    send_back
    ;;
  smoke)
    # 60 steps straight (a), 30 + 30 resumed exactly (b), 30 + 30 resumed from the compact state
    # (c); the weights of b and c against a's; then a small evaluation of a.
    rm -rf "$CK"; mkdir -p "$CK/c/carry"
    T="python3 tools/needle/train.py --generator $GEN --data $D --steps 60 --workers 8 --log-every 10"
    { $T --out "$CK/a/folio-needle" --max-seconds 300 &&
      $T --out "$CK/b/folio-needle" --ckpt "$CK/b/full.pt" --stop-after-steps 30 &&
      $T --out "$CK/b/folio-needle" --ckpt "$CK/b/full.pt" &&
      $T --out "$CK/c/folio-needle" --stop-after-steps 30 &&
      cp "$CK"/c/folio-needle/* "$CK/c/folio-needle-resume/resume.pt" "$CK/c/carry/" &&
      $T --out "$CK/c/folio-needle" --carry-in "$CK/c/carry"; } 2>&1 | grep --line-buffered -v "Writing model" | tee "$OUT/train.log" || exit 1
    python3 - "$CK" <<'PY' 2>&1 | tee -a "$OUT/train.log"
import glob, sys
from safetensors.torch import load_file
def weights(d):
    out = {}
    for f in sorted(glob.glob(d + "/*.safetensors")):
        out.update(load_file(f))
    return out
a, b, c = [weights("%s/%s/folio-needle" % (sys.argv[1], x)) for x in "abc"]
for name, o in (("exact resume (b)", b), ("compact resume (c)", c)):
    d = max((a[k].float() - o[k].float()).abs().max().item() for k in a)
    print("%s: max |weight - straight run's| = %.3g" % (name, d))
PY
    M=$CK/a/folio-needle
    python3 tools/needle/eval.py --generator "$GEN" --model "$M" --data "$D" --lengths 4096,16384 --n 10 --gui-lengths 4096 \
      --folio-set 1 --json "$CK/a/eval-heldout.json" --card 2>&1 | grep -v "Loading weights" | tee "$OUT/eval.log"
    CK=$CK/a
    send_back
    ;;
  eval)
    if [ ! -f "$M/config.json" ]; then  # a fresh machine: the carried model of the last leg
      mkdir -p "$M" && cp "$D"/carry/* "$M"/ && rm -f "$M/resume.pt"
      cp "$D/carry/train_log.jsonl" "$CK/" 2>/dev/null
    fi
    # EVAL_SECONDS is the whole call's evaluation time (model loads aside): 70% for the held-out
    # split, 15% each for the training-style split and generator 2's tasks (the call's limit is 600 s)
    E=${EVAL_SECONDS:-420}
    E1=$((E * 70 / 100)); E2=$((E * 15 / 100))
    {
      python3 tools/needle/eval.py --model "$M" --data "$D" --generator "$GEN" --split eval --n 50 --n-long 50 \
        --folio-set 20 --max-seconds "$E1" --json "$CK/eval-heldout.json" --card
      python3 tools/needle/eval.py --model "$M" --data "$D" --generator "$GEN" --split train --n 30 --n-long 20 \
        --gui-lengths "" --max-seconds "$E2" --json "$CK/eval-trainstyle.json" --card
      [ -f "$D/filler.txt.gz" ] && python3 tools/needle/eval.py --model "$M" --data "$D" --generator 2 --n 30 \
        --n-long 20 --max-seconds "$E2" --json "$CK/eval-generator2.json" --card
    } 2>&1 | grep --line-buffered -v "Loading weights" | tee "$OUT/eval.log"
    send_back
    ;;
  *)
    echo "unknown mode $MODE (leg, eval or smoke)"; exit 1 ;;
esac

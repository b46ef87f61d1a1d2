#!/bin/bash
# Here, after a `gpu_train.sh leg` call: make what came back ($OUT, copied to DIR by the device
# tool) the compact state the next leg starts from on a fresh machine (.needle/gpu4/carry for
# generator 4; NEEDLE_GPU=.needle/gpu for generator 3's run), and keep its logs in
# .needle/runs4/STEP/ (generator 3's: .needle/runs/STEP/).
#   bash tools/needle/take_leg.sh DIR
set -euo pipefail
D=${1:?usage: take_leg.sh DIR}
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
tar xzf "$D/meta.tgz" -C "$T"
[ -f "$T/folio-needle-resume/resume.pt" ] || { echo "no resume.pt in $D/meta.tgz"; exit 1; }
G=${NEEDLE_GPU:-.needle/gpu4}
R=.needle/runs4
[ "$G" = .needle/gpu ] && R=.needle/runs
[ -d "$G" ] || { echo "no $G: run tools/needle/gpu_pack.sh first"; exit 1; }
rm -rf "$G/carry"
mkdir -p "$G/carry"
cp "$T"/folio-needle/* "$G/carry/"
cp "$D"/model-*.safetensors "$G/carry/"
cp "$T/folio-needle-resume/resume.pt" "$G/carry/"
step=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().split('\n')[-1])['step'])" \
       "$T/train_log.jsonl" 2>/dev/null || echo unknown)
mkdir -p "$R/$step"
cp "$T"/*.json* "$D"/*.log "$R/$step/" 2>/dev/null || true
rm -rf "$T"
du -sh "$G" "$G/carry"
echo "carry is now the state after step $step"

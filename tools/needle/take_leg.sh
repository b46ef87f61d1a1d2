#!/bin/bash
# Here, after a `gpu_train.sh leg` call: make what came back ($OUT, copied to DIR by the device
# tool) the compact state the next leg starts from on a fresh machine (.needle/gpu/carry), and
# keep its logs in .needle/runs/STEP/.
#   bash tools/needle/take_leg.sh DIR
set -euo pipefail
D=${1:?usage: take_leg.sh DIR}
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
tar xzf "$D/meta.tgz" -C "$T"
[ -f "$T/folio-needle-resume/resume.pt" ] || { echo "no resume.pt in $D/meta.tgz"; exit 1; }
rm -rf .needle/gpu/carry
mkdir -p .needle/gpu/carry
cp "$T"/folio-needle/* .needle/gpu/carry/
cp "$D"/model-*.safetensors .needle/gpu/carry/
cp "$T/folio-needle-resume/resume.pt" .needle/gpu/carry/
step=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().split('\n')[-1])['step'])" \
       "$T/train_log.jsonl" 2>/dev/null || echo unknown)
mkdir -p ".needle/runs/$step"
cp "$T"/*.json* "$D"/*.log ".needle/runs/$step/" 2>/dev/null || true
rm -rf "$T"
du -sh .needle/gpu .needle/gpu/carry
echo "carry is now the state after step $step"

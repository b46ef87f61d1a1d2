#!/bin/bash
# Here, before the first GPU call of generator 3's training: .needle/gpu, what gpu_train.sh reads
# on the GPU machine (carry [".needle/gpu"]): the fillers gzipped (train, held-out eval, and
# generator 2's for the comparison with the committed model) and the tokenizer. The repository
# and the carried paths travel together within 64 MiB: the tracked tree is about 31 MiB, this
# folder about 6 MiB, and the compact state of a leg (.needle/gpu/carry, take_leg.sh) about 22 MiB.
#   bash tools/needle/gpu_pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=.needle
for f in filler-train.txt filler-eval.txt tokenizer.model; do
  [ -f "$N/$f" ] || { echo "no $N/$f: run prepare_data.py and train_tokenizer.py first"; exit 1; }
done
mkdir -p "$N/gpu"
gzip -9 -n -c "$N/filler-train.txt" > "$N/gpu/filler-train.txt.gz"
gzip -9 -n -c "$N/filler-eval.txt" > "$N/gpu/filler-eval.txt.gz"
[ -f "$N/filler.txt" ] && gzip -9 -n -c "$N/filler.txt" > "$N/gpu/filler.txt.gz"
cp "$N/tokenizer.model" "$N/gpu/"
cp "$N"/filler-*.json "$N/gpu/"
du -sh "$N/gpu"; ls -la "$N/gpu"

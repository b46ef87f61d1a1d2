#!/bin/bash
# Here, before the first GPU call of a training run: .needle/gpu4 (generator 4; NEEDLE_GPU=.needle/gpu
# was generator 3's), what gpu_train.sh reads on the GPU machine (carry [".needle/gpu4"]): the fillers gzipped (train, held-out eval, and
# generator 2's for the comparison with the first model) and the tokenizer. The repository
# and the carried paths travel together within 64 MiB: the tracked tree is about 31 MiB, this
# folder about 6 MiB, and the compact state of a leg (.needle/gpu4/carry, take_leg.sh) about 22 MiB.
# Generators 3 and 4 use the same filler and tokenizer (docs/needle.md).
#   bash tools/needle/gpu_pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=.needle
for f in filler-train.txt filler-eval.txt tokenizer.model; do
  [ -f "$N/$f" ] || { echo "no $N/$f: run prepare_data.py and train_tokenizer.py first"; exit 1; }
done
G=${NEEDLE_GPU:-.needle/gpu4}
mkdir -p "$G"
gzip -9 -n -c "$N/filler-train.txt" > "$G/filler-train.txt.gz"
gzip -9 -n -c "$N/filler-eval.txt" > "$G/filler-eval.txt.gz"
[ -f "$N/filler.txt" ] && gzip -9 -n -c "$N/filler.txt" > "$G/filler.txt.gz"
cp "$N/tokenizer.model" "$G/"
cp "$N"/filler-*.json "$G/"
du -sh "$G"; ls -la "$G"

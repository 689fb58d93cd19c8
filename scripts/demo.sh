#!/usr/bin/env bash
# The main job, end to end on built-in data (no download), after an idempotent set-up:
#   1. voxelize the built-in synthetic shapes (10 classes, 500 meshes) into one HDF5 dataset,
#   2. train an SO(3)-steerable model and the plain-CNN baseline on ALIGNED shapes only,
#   3. evaluate both under random 3D rotations and print the side-by-side comparison.
# Everything goes to out/ (override with VOL3D_OUT); a re-run starts the runs afresh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VOL3D="${VOL3D_VENV:-$ROOT/.venv}/bin/vol3d"
OUT=${VOL3D_OUT:-$ROOT/out}
mkdir -p "$OUT"
rm -rf "$OUT/runs" "$OUT/eval"
cd "$ROOT"

echo "== 1/4 voxelize builtin:synthetic -> $OUT/synthetic.h5"
"$VOL3D" voxelize builtin:synthetic "$OUT/synthetic.h5" --resolution 24 --representation fraction --workers 2
"$VOL3D" info "$OUT/synthetic.h5"
"$VOL3D" show "$OUT/synthetic.h5" --index 0 --out "$OUT/synthetic_sample0.png"

for model in so3 cnn; do
    config=configs/demo.yaml
    [ "$model" = cnn ] && config=configs/demo-cnn.yaml
    echo "== 2/4 train $model ($config) on aligned shapes"
    "$VOL3D" train --config "$config" --set data.path="$OUT/synthetic.h5" --out "$OUT/runs/$model" --quiet
    echo "== 3/4 evaluate $model under random SO(3) rotations"
    "$VOL3D" evaluate "$OUT/runs/$model/best.pt" "$OUT/synthetic.h5" --split test --rotations so3 \
        --num-rotations 4 --seed 0 --out "$OUT/eval/$model" --quiet
done

echo "== 4/4 comparison (also in $OUT/comparison.md)"
"$VOL3D" compare "$OUT/eval/so3" "$OUT/eval/cnn" --out "$OUT/comparison.md"

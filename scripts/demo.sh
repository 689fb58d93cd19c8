#!/usr/bin/env bash
# The main job, end to end on built-in data (no download): set up (idempotent), voxelize the
# built-in synthetic dataset and print its summary. Outputs go to out/ (override: VOL3D_OUT).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
VOL3D="${VOL3D_VENV:-$ROOT/.venv}/bin/vol3d"
OUT=${VOL3D_OUT:-$ROOT/out}
mkdir -p "$OUT"

echo "== 1. voxelize builtin:synthetic -> $OUT/synthetic.h5"
"$VOL3D" voxelize builtin:synthetic "$OUT/synthetic.h5" --resolution 32 --workers 2
echo "== 2. dataset summary"
"$VOL3D" info "$OUT/synthetic.h5"
"$VOL3D" show "$OUT/synthetic.h5" --index 0 --out "$OUT/synthetic_sample0.png"

#!/usr/bin/env bash
# Idempotent set-up for a fresh machine (Python >= 3.10 with pip and venv; root for apt-get):
#   - a local virtual environment in .venv (override with VOL3D_VENV),
#   - gfortran when missing (escnn needs py3nj, which compiles Fortran),
#   - the CPU wheel torch==2.13.0 (an unpinned torch would pull a multi-GB CUDA build),
#   - vol3d itself in editable mode with its dev extras.
# A stamp (hash of this script and pyproject.toml) makes a re-run a no-op when nothing changed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VOL3D_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.vol3d-setup"
WANT=$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16)

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi

echo "vol3d set-up: creating/updating $VENV (one time, a few minutes)" >&2
if ! command -v gfortran >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "vol3d set-up: installing gfortran (needed to build py3nj for escnn)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran >/dev/null
    else
        echo "vol3d set-up: gfortran is missing; install it (e.g. 'sudo apt-get install gfortran') and re-run" >&2
        exit 1
    fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" install "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" install -e "$ROOT[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, escnn, vol3d" || { echo "vol3d set-up: install failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"

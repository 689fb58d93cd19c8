#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${VOL3D_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"

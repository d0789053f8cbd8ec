#!/usr/bin/env bash
# The GPU path, checked in one run (at most ~8 minutes on a machine with an NVIDIA GPU, nothing downloaded):
#   scripts/gpu-check.sh OUT_DIR [--dry-run] [--llama-server PATH]
# benchmarks/gpu_check.py says what it does; the README ("Checking the GPU path") the report's format.
# Needs .gpu-check/llama.cpp-src.tar.gz from scripts/prepare-llama-source.sh (run once where PyPI answers).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"

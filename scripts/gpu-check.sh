#!/usr/bin/env bash
# The GPU path, checked in one run (at most ~8 minutes on a machine with an NVIDIA GPU, nothing downloaded):
#   scripts/gpu-check.sh OUT_DIR [--dry-run] [--llama-server PATH]
# benchmarks/gpu_check.py says what it does; the README ("Checking the GPU path") the report's format.
# Needs .gpu-check/llama.cpp-src.tar.gz (scripts/prepare-llama-source.sh, run once where PyPI answers) and, on a
# machine whose Python lacks llmctl's packages, .gpu-check/wheels (scripts/prepare-gpu-wheels.sh): they are then
# installed into .gpu-check/site with no index, and llmctl is run from this working tree (a link named llmctl).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
# the console script's entry point, as pyproject declares it (module:function)
ENTRY=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["scripts"]["llmctl"])' \
  "$ROOT/pyproject.toml")
if ! "$PY" -c "import ${ENTRY%%:*}, gguf, pydantic_settings" >/dev/null 2>&1; then
  SITE=$ROOT/.gpu-check/site
  if [ ! -d "$ROOT/.gpu-check/wheels" ]; then
    echo "error: $PY cannot import llmctl and its packages, and there is no .gpu-check/wheels" >&2
    echo "  -> run scripts/prepare-gpu-wheels.sh where PyPI answers (or use a venv with llmctl installed)" >&2
    exit 2
  fi
  if [ ! -d "$SITE/pydantic" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$ROOT"/.gpu-check/wheels/*.whl >&2
  fi
  ln -sfn "$ROOT" "$SITE/llmctl"  # the package llmctl is this tree's root (pyproject: package-dir)
  mkdir -p "$SITE/bin"
  printf '#!%s\nfrom %s import %s\n%s()\n' "$(command -v "$PY")" "${ENTRY%%:*}" "${ENTRY##*:}" "${ENTRY##*:}" \
    > "$SITE/bin/llmctl"
  chmod +x "$SITE/bin/llmctl"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH
fi
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"

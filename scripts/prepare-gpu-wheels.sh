#!/usr/bin/env bash
# Fetches, once, the Python packages llmctl needs that a bare GPU machine's image lacks (its python3 has PyTorch,
# aiohttp, click, httpx, psutil, nvidia-ml-py, numpy ... but not pydantic, tomlkit, gguf, textual ...), as wheels
# into .gpu-check/wheels (git-ignored, a few MiB), at the versions installed in .venv. scripts/gpu-check.sh installs
# them there (no index) when llmctl is not importable. PY_VERSION: the GPU machine's Python (default 3.12).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$ROOT/.gpu-check/wheels
PY_VERSION=${PY_VERSION:-3.12}
PKGS=(pydantic pydantic_core annotated-types typing-inspection typing_extensions pydantic-settings python-dotenv
      platformdirs tomlkit ollama gguf textual textual-plotext plotext rich markdown-it-py mdit-py-plugins)
pins=()
for p in "${PKGS[@]}"; do
  v=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$p")
  pins+=("$p==$v")
done
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$OUT" "${pins[@]}"
echo "$OUT: $(ls "$OUT" | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"

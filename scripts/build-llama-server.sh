#!/usr/bin/env bash
# Builds llama.cpp's native `llama-server` from the llama.cpp sources inside the llama-cpp-python sdist on PyPI
# (LLAMA_CPP_PYTHON_VERSION, default 0.3.36), once, into a cache; prints the binary's path. Optional: llmctl's
# default engine is the prebuilt xllamacpp; use this for a native build (add -DGGML_CUDA=ON etc. for a GPU).
# Needs a C++ compiler; cmake comes from PyPI when the machine has none. About 10 minutes on 2 cores.
set -euo pipefail
PY=${PYTHON:-python3}
VER=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE=${LLMCTL_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmctl-build}
OUT="$CACHE/llama-server-$VER"
if [ -x "$OUT/llama-server" ]; then
  echo "$OUT/llama-server"
  exit 0
fi
if ! command -v cmake >/dev/null 2>&1; then
  "$PY" -m pip install -q cmake >&2
  PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "building llama-server $VER from source (about 10 minutes on 2 cores) ..." >&2
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$tmp" >&2
tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
src=$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$tmp/build" --target llama-server -j"$(nproc)" >&2
mkdir -p "$OUT"
cp "$tmp/build/bin/llama-server" "$OUT/llama-server.tmp"
mv "$OUT/llama-server.tmp" "$OUT/llama-server"
echo "$OUT/llama-server"

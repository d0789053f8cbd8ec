# Sourced by the other scripts: `ensure_venv EXTRAS` creates .venv (with $PYTHON, default python3) if needed
# and installs llmctl into it, editable, with the given extras.
ensure_venv() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$1]"
}

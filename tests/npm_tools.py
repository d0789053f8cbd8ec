"""Agent CLIs the tests run as a user runs them, installed from npm once into ``~/.cache/llmctl-ci/`` (kept
between CI runs): the Codex CLI, Claude Code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path.home() / ".cache" / "llmctl-ci"


def npm_tool(package: str, command: str, var: str) -> str:
    """The path of ``command`` from npm ``package``, installed into ``CACHE/command`` if it is not there yet.
    Skips when node or npm is missing; a failed install fails the test, naming ``var`` (=skip to skip knowingly)."""
    prefix = CACHE / command
    exe = prefix / "node_modules" / ".bin" / command
    if exe.exists():
        return str(exe)
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip(f"node and npm are not installed: {command} (npm {package}) cannot be installed here")
    done = subprocess.run(["npm", "install", "--prefix", str(prefix), package], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and exe.exists(), (
        f"installing {package} from npm failed (set {var}=skip to skip knowingly):\n{done.stderr}")
    return str(exe)

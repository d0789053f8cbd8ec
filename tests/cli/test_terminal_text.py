"""Foreign text reaches the terminal shown, never obeyed: GGUF metadata in `models info`, file names in errors, a
mirror's file names in `pull` (a name with an escape sequence is refused with a clear error, not a crash)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hub_server import HubServer
from tiny_gguf import write_tiny_llama

from llmctl.catalog.store import ModelStore

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"  # retitle the terminal, clear the screen, turn red


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmctl", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCTL_", "HF_"))}
    env.update(LLMCTL_HOME=str(home), HF_HUB_OFFLINE="1", **extra)
    return env


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if ord(c) < 0x20 and c not in "\n"]


def test_gguf_metadata_is_shown_escaped_by_models_info(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gguf = write_tiny_llama(tmp_path / "evil.gguf", name=f"nice{ESC}model")
    ModelStore(home / "data").import_file(gguf, "evil")
    r = _run(_env(home), "models", "info", "evil")
    assert r.returncode == 0, r.stderr
    assert _raw_controls(r.stdout) == []
    assert "nice\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mmodel" in r.stdout
    r = _run(_env(home), "models", "list")
    assert r.returncode == 0 and _raw_controls(r.stdout) == []


def test_an_error_quoting_a_file_name_is_shown_escaped(tmp_path: Path) -> None:
    r = _run(_env(tmp_path / "home"), "import", str(tmp_path / f"no{ESC}such.gguf"))
    assert r.returncode == 1
    assert _raw_controls(r.stderr) == [] and "no\\x1b]0;owned" in r.stderr


def test_a_mirror_file_name_with_an_escape_is_refused_clearly(hub: HubServer, tmp_path: Path) -> None:
    data = write_tiny_llama(tmp_path / "m.gguf").read_bytes()
    hub.add_file("org/m-GGUF", f"m-Q4_K_M{ESC}.gguf", data)
    env = _env(tmp_path / "home", HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE")
    r = _run(env, "pull", "org/m-GGUF:Q4_K_M")
    assert r.returncode == 1
    assert "control characters" in r.stderr and "this is a bug" not in r.stderr, r.stderr
    assert _raw_controls(r.stderr + r.stdout) == []

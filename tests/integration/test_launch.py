"""`llmctl launch` against a real controller and the real default engine: the agent is handed the context window the
engine really serves (read here from the engine itself), after llmctl set the largest that fits in the model's
profile; an agent that is not installed is a clear error saying how to install it."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import httpx
import psutil
from harness import run_cli
from tiny_gguf import write_tiny_llama

from llmctl.catalog.store import ModelStore


def _engine_context(backend: dict) -> int:
    """The context per request the engine serves, asked of the engine with its launch's own key."""
    key = psutil.Process(backend["pid"]).environ()["LLAMA_API_KEY"]
    props = httpx.get(f"http://127.0.0.1:{backend['port']}/props", headers={"Authorization": f"Bearer {key}"},
                      timeout=30).json()
    return props["default_generation_settings"]["n_ctx"]


def test_codex_and_claude_get_the_context_the_engine_serves(home: Path, controller, tmp_path: Path) -> None:
    ModelStore(home / "data").import_file(write_tiny_llama(tmp_path / "coder.gguf", ctx=16384), "coder")
    proc = controller()
    port = str(proc.port)
    # a stand-in `codex` (the real one is not installed here) that records the arguments launch hands it
    bin_dir, seen = tmp_path / "bin", tmp_path / "codex-argv"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {seen}\n")
    (bin_dir / "codex").chmod(0o755)
    r = run_cli(home, "launch", "codex", "coder", LLMCTL_SERVER__PORT=port, PATH=f"{bin_dir}:{os.environ['PATH']}",
                timeout=120)
    assert r.returncode == 0, r.stderr + proc.output
    argv = seen.read_text().splitlines()
    served = _engine_context(proc.backend("coder"))
    # the backends' default is 2048 (tests' harness); the model was trained on 16384 and fits: llmctl set that
    assert served == 16384 and f"model_context_window={served}" in argv and argv[-2:] == ["-m", "coder"]
    assert 'model_providers.llmctl.wire_api="responses"' in argv
    assert tomllib.loads((home / "config" / "config.toml").read_text())["models"]["coder"] == {"ctx-size": 16384}
    assert "note: set ctx-size = 16384 in [models.coder]" in r.stderr

    r = run_cli(home, "launch", "codex", "coder", "--print", "--json", LLMCTL_SERVER__PORT=port, timeout=120)
    assert r.returncode == 0, r.stderr + proc.output
    shown = json.loads(r.stdout)
    assert shown["context"] == served and shown["context_source"] == "read from the engine"
    assert shown["start"] is False and shown["profile"] is None and shown["argv"][1:] == argv
    assert any("has no tool calling" in n for n in shown["notes"])  # the tiny model's template reads no tools
    assert not any("no inference key" in n for n in shown["notes"])  # no keys at all: nothing to warn of
    assert shown["installed"] is False

    r = run_cli(home, "launch", "claude", "coder", "--print", LLMCTL_SERVER__PORT=port, timeout=120)
    assert r.returncode == 0, r.stderr
    # fitted to the served context: refuse past it less the answer's room, compact at 10240 of its 16384
    assert f"CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE={served - served // 4}" in r.stdout
    assert "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE=10.24" in r.stdout and "CLAUDE_CODE_AUTO_COMPACT_WINDOW=100000" in r.stdout
    assert f"context {served} tokens per request (read from the engine" in r.stdout
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in r.stdout and "claude --model coder" in r.stdout
    assert "ctx-size 16384 is set in [models.coder]: kept as it is" in r.stderr

    assert run_cli(home, "models", "config", "coder", "ctx-size=4096").returncode == 0  # the user's own, too small
    r = run_cli(home, "launch", "codex", "coder", "--print", LLMCTL_SERVER__PORT=port)
    assert r.returncode == 1 and "ctx-size 4096 in [models.coder] is below the 8192 tokens codex needs" in r.stderr
    r = run_cli(home, "launch", "codex", "tiny", "--print", LLMCTL_SERVER__PORT=port)
    assert r.returncode == 1 and "tiny was trained on 2048 tokens of context; codex needs at least 8192" in r.stderr


def test_an_agent_given_the_admin_key_is_told_so(home: Path, controller, tmp_path: Path) -> None:
    """An agent runs what its model chooses: with only the admin api_key configured, launch says the agent gets it
    and how to give it an inference key instead."""
    ModelStore(home / "data").import_file(write_tiny_llama(tmp_path / "coder.gguf", ctx=16384), "coder")
    env = {"LLMCTL_SERVER__API_KEY": "admin-secret-123"}
    proc = controller(**env)
    r = run_cli(home, "launch", "codex", "coder", "--print", "--json", LLMCTL_SERVER__PORT=str(proc.port), timeout=120,
                **env)
    assert r.returncode == 0, r.stderr + proc.output
    shown = json.loads(r.stdout)
    assert any("no inference key is configured, so the agent gets an admin key" in n for n in shown["notes"])
    assert "admin-secret-123" not in r.stdout  # the key itself is never printed


def test_an_agent_that_is_not_installed_says_how_to_install_it(home: Path) -> None:
    empty = home / "empty-bin"
    empty.mkdir(parents=True)
    r = run_cli(home, "launch", "codex", "tiny", PATH=str(empty))
    assert r.returncode == 1
    assert "error: Codex CLI is not installed: no `codex` on PATH" in r.stderr
    assert "npm install -g @openai/codex" in r.stderr
    assert not (home / "state" / "controller.json").exists()  # nothing was started for it
    r = run_cli(home, "launch", "cursor")
    assert r.returncode == 1 and "it launches: codex, claude, opencode, aider" in r.stderr


def test_print_changes_nothing(home: Path, controller, tmp_path: Path) -> None:
    """`--print` answers "what would run?" and changes nothing: no ctx-size written to the profile, the model not
    started, no agent file written; it says the context it would set, why, that the model would be started, and
    the files it would write (path and content)."""
    ModelStore(home / "data").import_file(write_tiny_llama(tmp_path / "coder.gguf", ctx=16384), "coder")
    proc = controller()
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# mine\n[models.other]\nctx-size = 4096\n")
    before = config.read_bytes()

    def coder_backend() -> list:
        with proc.client() as c:
            return [b for b in c.get("/llmctl/v1/backends").json()["backends"] if b["model"] == "coder"]

    assert coder_backend() == []  # not loaded
    for agent in ("opencode", "aider"):
        r = run_cli(home, "launch", agent, "coder", "--print", "--json", LLMCTL_SERVER__PORT=str(proc.port),
                    timeout=120)
        assert r.returncode == 0, r.stderr + proc.output
        shown = json.loads(r.stdout)
        assert config.read_bytes() == before  # no ctx-size written
        assert coder_backend() == []  # not started
        assert not (home / "data" / "agents").exists()  # no agent file written
        assert shown["context"] == 16384 and shown["context_source"].startswith("would be set")
        assert shown["start"] is True
        assert shown["profile"] == {"path": str(config), "set": {"ctx-size": 16384}}
        assert any(n.startswith("would set ctx-size = 16384 in [models.coder]") for n in shown["notes"])
        [(path, content)] = shown["files"].items()
        assert path.startswith(str(home / "data" / "agents")) and "16384" in content
    r = run_cli(home, "launch", "opencode", "coder", "--print", LLMCTL_SERVER__PORT=str(proc.port), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "coder would be started with context 16384" in r.stdout
    assert f"would write to {config}:\n[models.coder]\nctx-size = 16384" in r.stdout
    assert "would write file " + str(home / "data" / "agents" / "opencode-coder.json") in r.stdout
    assert config.read_bytes() == before and coder_backend() == []


def test_print_with_no_controller_starts_none(home: Path, tmp_path: Path) -> None:
    """With nothing running, `--print` reads the model from the store and says a controller would be started; it
    starts none and writes nothing."""
    ModelStore(home / "data").import_file(write_tiny_llama(tmp_path / "coder.gguf", ctx=16384), "coder")
    r = run_cli(home, "launch", "opencode", "coder", "--print", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["start"] is True and shown["context"] == 16384
    assert any("no controller runs" in n for n in shown["notes"])
    assert not (home / "state" / "controller.json").exists()  # no controller was started
    assert not (home / "config" / "config.toml").exists() and not (home / "data" / "agents").exists()
    remote = run_cli(home, "launch", "opencode", "lab/gpt", "--print", timeout=60)
    assert remote.returncode != 0 and "no controller runs" in remote.stderr

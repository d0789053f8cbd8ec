"""`llmctl models config`: a model's profile set, shown and unset in config.toml, comments kept, bad keys refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from llmctl.app.cli.root import cli
from llmctl.catalog.errors import ConfigError


def _run(*args: str):
    return CliRunner().invoke(cli, ["models", "config", *args])


def test_set_show_and_unset_keep_the_rest_of_the_file(llmctl_home: Path) -> None:
    config = llmctl_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# my settings\n[server]\nport = 7979  # not the default\n")
    r = _run("qwen7b", "ctx-size=16384", "pinned=true", "aliases=coder,gpt-4o-mini")
    assert r.exit_code == 0, r.output
    text = config.read_text()
    assert "# my settings" in text and "port = 7979  # not the default" in text
    profile = tomllib.loads(text)["models"]["qwen7b"]
    assert profile == {"ctx-size": 16384, "pinned": True, "aliases": ["coder", "gpt-4o-mini"]}
    shown = json.loads(_run("qwen7b", "--json").stdout)["profile"]
    assert shown["pinned"] is True and shown["aliases"] == ["coder", "gpt-4o-mini"]
    assert _run("qwen7b", "--unset", "pinned").exit_code == 0
    assert "pinned" not in tomllib.loads(config.read_text())["models"]["qwen7b"]


def test_a_bad_key_or_value_is_one_clear_error_and_nothing_is_written(llmctl_home: Path) -> None:
    config = llmctl_home / "config" / "config.toml"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmctl", "models", "config", *args], capture_output=True,
                              text=True, timeout=60, env=os.environ.copy())

    r = run("qwen7b", "colour=blue")
    assert r.returncode == 1 and "'colour' is not a model setting" in r.stderr and "ctx-size" in r.stderr, r.stderr
    r = run("qwen7b", "ctx-size=lots")
    assert r.returncode == 1 and "[models.qwen7b] would be invalid" in r.stderr, r.stderr
    assert "Nothing was written" in r.stderr and "Traceback" not in r.stderr
    assert not config.exists() or "qwen7b" not in config.read_text()


def test_args_the_default_engine_cannot_take_are_refused_naming_the_flag(llmctl_home: Path) -> None:
    config = llmctl_home / "config" / "config.toml"
    r = _run("qwen7b", 'args=["--top-k", "20", "--control-vector", "cv.gguf"]')
    assert isinstance(r.exception, ConfigError), r.output
    assert r.exception.title == ("[models.qwen7b] args: llama.cpp flag --control-vector cannot be given to the "
                                 "default engine (xllamacpp)")
    assert "engine = \"llama-server\"" in r.exception.message and "Nothing was written" in r.exception.message
    assert not config.exists() or "qwen7b" not in config.read_text()
    r = _run("qwen7b", 'args=["--port", "9"]')
    assert isinstance(r.exception, ConfigError) and "llmctl sets it for every launch" in r.exception.message
    r = _run("qwen7b", 'args=["--reranking", "--top-k", "20", "--chat-template", "chatml"]')
    assert r.exit_code == 0, r.output
    assert tomllib.loads(config.read_text())["models"]["qwen7b"]["args"] == [
        "--reranking", "--top-k", "20", "--chat-template", "chatml"]

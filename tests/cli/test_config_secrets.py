"""config.toml holding an API key (issue 23, item 9): llmctl writes it 0600, and `doctor` says when such a file
can be read by other users, with what to do (it said "all good")."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from llmctl.app.cli.root import cli

KEYED = '# mine\n[server]\napi_key = "a-long-secret-key"\n\n[[server.keys]]\nname = "app"\nkey = "app-key-123"\n'


def _config(llmctl_home: Path, mode: int) -> Path:
    config = llmctl_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(KEYED)
    os.chmod(config, mode)
    return config


def test_a_config_llmctl_writes_is_private(llmctl_home: Path) -> None:
    config = _config(llmctl_home, 0o644)
    old = os.umask(0o022)  # the usual umask, under which it was written 0644
    try:
        r = CliRunner().invoke(cli, ["models", "config", "tiny", "ctx-size=4096"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert config.stat().st_mode & 0o777 == 0o600
    assert "a-long-secret-key" in config.read_text() and "# mine" in config.read_text()


def test_doctor_warns_on_a_readable_config_holding_a_key(llmctl_home: Path) -> None:
    config = _config(llmctl_home, 0o644)
    r = CliRunner().invoke(cli, ["doctor"])
    lines = r.output.splitlines()
    warned = [i for i, line in enumerate(lines) if line.startswith("FIX") and str(config) in line]
    assert warned, r.output
    line = lines[warned[0]]
    assert "server.api_key" in line and "server.keys[app].key" in line and "0644" in line
    assert f"chmod 600 {config}" in lines[warned[0] + 1]
    assert r.exit_code == 1 and "all good" not in r.output
    os.chmod(config, 0o600)
    r = CliRunner().invoke(cli, ["doctor"])
    assert not any(line.startswith("FIX") and str(config) in line for line in r.output.splitlines()), r.output

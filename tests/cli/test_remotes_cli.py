"""`llmctl remotes add|list|rm`: the config gets the URL and where the key is, never the key; the keyring keeps a
key when asked to; `list` checks each remote (or says why it is skipped, opening no connection); `models list`
shows remote models with their source."""

from __future__ import annotations

import json
import socket
import sys
import tomllib
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_remote import FakeRemote

from llmctl.app.cli.root import cli
from llmctl.app.paths import resolve_paths


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def fake_keyring(monkeypatch) -> dict:
    stored: dict = {}
    mod = types.ModuleType("keyring")
    mod.set_password = lambda service, user, key: stored.__setitem__((service, user), key)
    mod.get_password = lambda service, user: stored.get((service, user))

    def delete(service, user):
        del stored[(service, user)]

    mod.delete_password = delete
    monkeypatch.setitem(sys.modules, "keyring", mod)
    return stored


def config() -> dict:
    return tomllib.loads(resolve_paths().config_file.read_text())


def test_add_list_rm_keeps_keys_out_of_the_config(runner: CliRunner, llmctl_home: Path, fake_keyring: dict) -> None:
    r = runner.invoke(cli, ["remotes", "add", "gpu-box", "http://10.0.0.5:7878/v1/", "--key-env", "GPU_KEY"])
    assert r.exit_code == 0, r.output
    assert "gpu-box/MODEL" in r.output
    r = runner.invoke(cli, ["remotes", "add", "cloud", "https://api.example.com/v1", "--keyring",
                            "--model", "gpt-4o-mini", "--prefix", "c/"], input="sk-live-123\n")
    assert r.exit_code == 0, r.output
    assert config()["remotes"] == {
        "gpu-box": {"url": "http://10.0.0.5:7878", "key_env": "GPU_KEY"},
        "cloud": {"url": "https://api.example.com", "keyring": True, "models": ["gpt-4o-mini"], "prefix": "c/"}}
    assert "sk-live-123" not in resolve_paths().config_file.read_text()
    assert fake_keyring == {("llmctl", "remote:cloud"): "sk-live-123"}

    r = runner.invoke(cli, ["remotes", "add", "gpu-box", "http://x:1"])
    assert r.exit_code != 0 and "exists" in str(r.exception)
    for bad in (["bad name", "http://x:1"], ["ok", "ftp://x"], ["ok", "http://u:p@x:1"], ["ollama", "http://x:1"]):
        r = runner.invoke(cli, ["remotes", "add", *bad])
        assert r.exit_code != 0, bad

    r = runner.invoke(cli, ["remotes", "rm", "cloud"])
    assert r.exit_code == 0 and "keyring" in r.output
    assert fake_keyring == {} and set(config()["remotes"]) == {"gpu-box"}


def test_list_offline_skips_remotes_beyond_loopback_without_a_connection(runner: CliRunner, llmctl_home: Path,
                                                                         monkeypatch) -> None:
    assert runner.invoke(cli, ["remotes", "add", "far", "http://10.9.8.7:8000", "--model", "m"]).exit_code == 0
    attempts = []
    real = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or [])
    r = runner.invoke(cli, ["remotes", "list"])  # HF_HUB_OFFLINE=1 (conftest)
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "offline mode is on" in r.output and "opens no connection" in r.output
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    assert [(m["name"], m["where"]) for m in listed] == [("far/m", "remote:far")]
    assert [a for a in attempts if a[0] != "127.0.0.1"] == []  # (models list asks the loopback Ollama)


async def test_list_checks_a_remote_and_models_list_shows_its_models(llmctl_home: Path, monkeypatch) -> None:
    import asyncio

    remote = await FakeRemote(["a", "b/c"], key="k").start()
    try:
        monkeypatch.setenv("R_KEY", "k")
        runner = CliRunner()
        assert runner.invoke(cli, ["remotes", "add", "r", remote.url, "--key-env", "R_KEY"]).exit_code == 0
        # the CLI runs its own event loop: run it on a thread while this loop serves the fake remote
        r = await asyncio.to_thread(runner.invoke, cli, ["remotes", "list", "--json"])
        (row,) = json.loads(r.output)
        assert (row["state"], row["models"], row["key"]) == ("ready", ["a", "b/c"], "env R_KEY")
        r = await asyncio.to_thread(runner.invoke, cli, ["models", "list"])
        assert "r/b/c" in r.output and "remote:r" in r.output
        assert remote.auths() == {"Bearer k"}
    finally:
        await remote.stop()

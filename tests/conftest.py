"""Shared fixtures. Every test gets its own LLMCTL_HOME, and no test may reach beyond loopback."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            if host != "localhost":
                raise ConnectionRefusedError(f"tests may not connect to {host!r}") from None
            return
        if not ip.is_loopback:
            raise ConnectionRefusedError(f"tests may not connect to {host!r}: loopback only")


def _guarded_connect(self, address):
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def llmctl_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "llmctl-home"
    monkeypatch.setenv("LLMCTL_HOME", str(home))
    for var in [v for v in __import__("os").environ if v.startswith("LLMCTL_") and v != "LLMCTL_HOME"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # other tools' stores that discovery reads: never the real ones of whoever runs the tests
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama-models"))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # never the tester's own Ollama; tests that want one set it
    return home


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama.gguf")


@pytest.fixture
def hub():
    """The local Hugging Face Hub-protocol test server (tests/hub_server.py): no test reaches the real Hub."""
    from hub_server import HubServer

    server = HubServer().start()
    yield server
    server.stop()

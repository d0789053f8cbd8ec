"""The API key goes only to llmctl's own controller (issue 23, item 7). A process listening on the configured port
where no controller runs, or one named by a forged state file, gets no key and no request beyond the key-less
challenge; the CLI says that something else holds the port. The real controller proves itself and is managed."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from harness import ControllerProcess, run_cli

KEY = "configured-admin-key-1"


class Foreign:
    """Whatever holds the port: answers 200 with JSON to everything, and records what it was sent."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, dict(self.headers), body))
                out = json.dumps({"backends": [], "remotes": [], "proof": "0" * 64, "foreign": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def keys_seen(self) -> list[str]:
        return [h.get("Authorization") or h.get("x-api-key") or "" for _m, _p, h, _b in self.seen
                if h.get("Authorization") or h.get("x-api-key")]


@pytest.fixture
def foreign():
    server = Foreign()
    yield server
    server.stop()


def test_no_controller_the_port_holder_gets_nothing(foreign: Foreign, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for command in ("ps", "shutdown"):
        r = run_cli(home, command, LLMCTL_SERVER__API_KEY=KEY, LLMCTL_SERVER__PORT=str(foreign.port))
        assert r.returncode != 0, r.stdout
        said = r.stdout + r.stderr
        assert f"something else holds port {foreign.port}" in said and "sent it nothing" in said, said
        assert '"foreign"' not in said and "stopping" not in said  # its answers are never printed
    assert foreign.seen == []  # not even a key-less request


def test_a_forged_state_file_naming_the_port_holder_gets_no_key(foreign: Foreign, tmp_path: Path) -> None:
    """The state file names a live pid with its true start time (this test's own process), so only the challenge
    can tell: the holder cannot answer it without the secret."""
    home = tmp_path / "home"
    state = home / "state" / "controller.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time(),
                                 "url": f"http://127.0.0.1:{foreign.port}", "port": foreign.port,
                                 "secret": "forged-secret-forged-secret"}))
    for command in ("ps", "shutdown"):
        r = run_cli(home, command, LLMCTL_SERVER__API_KEY=KEY)
        assert r.returncode != 0, r.stdout
        said = r.stdout + r.stderr
        assert "is not the llmctl controller" in said and "sent it no key" in said, said
    assert foreign.keys_seen() == []
    assert {(m, p.split("?")[0]) for m, p, _h, _b in foreign.seen} == {("GET", "/llmctl/v1/hello")}


def test_the_real_controller_proves_itself_and_is_managed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = ControllerProcess(home, LLMCTL_SERVER__API_KEY=KEY).start()
    try:
        state = home / "state" / "controller.json"
        assert state.stat().st_mode & 0o777 == 0o600  # it holds the owner key
        r = run_cli(home, "ps", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout) == []
        assert run_cli(home, "shutdown").returncode == 0
        assert proc.proc is not None and proc.proc.wait(timeout=30) == 0
    finally:
        proc.kill_everything()

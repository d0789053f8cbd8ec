"""A fake engine for scheduler and supervisor tests: a real process speaking the bits of llama.cpp's protocol the
supervisor needs (``/health`` 503 while "loading", then 200; a chat completion), with a load delay, a key it
checks, and a failure mode. It is a stand-in for the *engine* only; llmctl's supervisor and scheduler run for real.

    python tests/fake_engine.py --port P [--uds PATH] [--load-delay S] [--fail-load] [--ignore-term]
                                [--die-on-first-request]

``--die-on-first-request``: ``/health`` answers 200, and the first POST gets a 500 and kills the process, as vLLM
does with a model its CPU kernels cannot run (head_dim 16). ``--uds PATH``: serve on that Unix socket instead of
the port, as vLLM does under llmctl. A POST with ``"stream": true`` is answered as server-sent events; ``GET
/metrics`` with two Prometheus series.

Also the ``FakeEngine`` dataclass that follows the Engine protocol and launches it, and ``FakeSocketEngine``, the
same serving on a Unix socket of its launch (``ServesOnSocket``).
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llmctl.catalog.estimate import MemoryProfile
from llmctl.runtimes.base import Deployment, EngineInfo
from llmctl.runtimes.sockets import socket_path


@dataclass(frozen=True, slots=True)
class FakeEngine:
    load_delay: float = 0.0
    fail_load: bool = False
    ignore_term: bool = False  # stops only by SIGKILL, after the supervisor's grace period
    die_on_first_request: bool = False  # healthy on /health, dead on the first request
    key: str = "fake"
    name: str = "fake engine"
    formats: frozenset[str] = frozenset({"gguf"})

    def build_command(self, d: Deployment) -> list[str]:
        argv = [sys.executable, str(Path(__file__)), "--port", str(d.port), "--load-delay", str(self.load_delay)]
        return argv + (["--fail-load"] if self.fail_load else []) + (["--ignore-term"] if self.ignore_term else []) \
            + (["--die-on-first-request"] if self.die_on_first_request else [])

    def build_env(self, d: Deployment) -> dict[str, str]:
        return {"FAKE_ENGINE_KEY": d.api_key} if d.api_key else {}

    def health_path(self) -> str:
        return "/health"

    def failure_reason(self, lines: list[str]) -> str | None:
        return next((line.split("error: ", 1)[1] for line in lines if "error: " in line), None)

    def memory_profile(self) -> MemoryProfile:
        return MemoryProfile(self.name)

    def info(self) -> EngineInfo:
        return EngineInfo(self.name, self.key, True, "0", sys.executable, ("gguf",), ("chat",), ("cpu",), "-")


@dataclass(frozen=True, slots=True)
class FakeSocketEngine(FakeEngine):
    """The fake engine on a Unix socket in its launch's folder, as llmctl runs vLLM (needs ``run_dir``)."""

    def socket_path(self, d: Deployment) -> Path:
        assert d.run_dir is not None
        return socket_path(d.run_dir, "fake.sock")

    def build_command(self, d: Deployment) -> list[str]:
        return [*FakeEngine.build_command(self, d), "--uds", str(self.socket_path(d))]


class _Quiet:
    """A client that hangs up (the supervisor's health probe given up on, a test that closed its stream) is not
    an engine error: no traceback in the log, where it would read as the engine's reason for failing."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _UnixHTTPServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPHTTPServer(_Quiet, ThreadingHTTPServer):
    pass


METRICS = b"""# HELP fake:requests_running Requests running.
# TYPE fake:requests_running gauge
fake:requests_running 0.0
# HELP fake:generation_tokens Tokens generated.
# TYPE fake:generation_tokens counter
fake:generation_tokens_total 7.0
"""


def serve(port: int, load_delay: float, fail_load: bool, die_on_first_request: bool = False,
          uds: str | None = None) -> None:
    started = time.monotonic()
    key = os.environ.get("FAKE_ENGINE_KEY") or os.environ.get("LLAMA_API_KEY")
    hold = os.environ.get("FAKE_ENGINE_HOLD")  # a file: streams send one chunk, then wait until it exists
    seen = os.environ.get("FAKE_ENGINE_REQUESTS")  # a file: each request's body is appended to it, one a line
    if fail_load:
        time.sleep(load_delay)
        print("error: this fake engine was told to fail", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self) -> str:
            return "unix" if uds else super().address_string()

        def do_GET(self) -> None:
            loaded = time.monotonic() - started >= load_delay
            if loaded and self.path == "/metrics":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(METRICS)))
                self.end_headers()
                self.wfile.write(METRICS)
                return
            self._send(200 if loaded else 503, {"status": "ok" if loaded else "loading"})

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            if hold and os.environ.get("FAKE_ENGINE_HOLD_PREFILL"):  # headers, then nothing until the signal
                self.wfile.flush()
                _wait_for_file(Path(hold), 120)
            for i, piece in enumerate(("o", "k", "!")):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if hold and i == 0:
                    _wait_for_file(Path(hold), 120)
                time.sleep(0.02)
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"message": "Invalid API Key"}})
                return
            if seen:
                with open(seen, "ab") as f:
                    f.write(raw.replace(b"\n", b" ") + b"\n")
            if die_on_first_request:
                print("RuntimeError: Unsupported CPU attention configuration: head_dim=16", flush=True)
                try:  # the client may already have gone (it has its answer or gave up): die all the same, quietly
                    self._send(500, {"error": {"message": "EngineCore encountered an issue"}})
                    self.wfile.flush()
                finally:
                    os._exit(1)
            try:
                stream = bool(json.loads(raw or b"{}").get("stream"))
            except (ValueError, AttributeError):
                stream = False
            if stream:
                self._stream()
                return
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                          "finish_reason": "stop"}], "usage": {"completion_tokens": 1}})

    if uds:
        print(f"fake engine on {uds}", flush=True)
        _UnixHTTPServer(uds, Handler).serve_forever()
    print(f"fake engine on {port}", flush=True)
    _TCPHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _wait_for_file(path: Path, timeout: float) -> None:
    """The signal a test gives to let held streams finish (bounded: a test that forgets it still ends)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def llama_server_shim(folder: Path) -> Path:
    """An executable named ``llama-server`` that runs this fake with llama-server's flags (the ones it does not
    know are ignored), so a real controller configured with ``engines.llama_server`` supervises the fake."""
    shim = folder / "llama-server"
    # a Python script of its own (not a shell exec of this file): its command line is the launch's argv behind its
    # interpreter, which is what the controller's reaping checks before it signals a leftover engine
    shim.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv.insert(1, '--llama-server')\n"
                    f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')\n")
    shim.chmod(0o755)
    return shim


if __name__ == "__main__":
    if "--llama-server" in sys.argv:  # called as llama-server: --version, or a launch with its flags
        if "--version" in sys.argv:
            print("version: 1 (fake)")
            sys.exit(0)
        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, required=True)
        known, _ = ap.parse_known_args()
        serve(known.port, 0.0, False)
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--load-delay", type=float, default=0.0)
    ap.add_argument("--fail-load", action="store_true")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--die-on-first-request", action="store_true")
    ap.add_argument("--uds")
    a = ap.parse_args()
    if a.ignore_term:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(a.port, a.load_delay, a.fail_load, a.die_on_first_request, a.uds)

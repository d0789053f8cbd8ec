"""A fake engine for scheduler and supervisor tests: a real process speaking the bits of llama.cpp's protocol the
supervisor needs (``/health`` 503 while "loading", then 200; a chat completion), with a load delay, a key it
checks, and a failure mode. It is a stand-in for the *engine* only; llmctl's supervisor and scheduler run for real.

    python tests/fake_engine.py --port P [--load-delay S] [--fail-load] [--ignore-term] [--die-on-first-request]

``--die-on-first-request``: ``/health`` answers 200, and the first POST gets a 500 and kills the process, as vLLM
does with a model its CPU kernels cannot run (head_dim 16).

Also the ``FakeEngine`` dataclass that follows the Engine protocol and launches it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llmctl.catalog.estimate import MemoryProfile
from llmctl.runtimes.base import Deployment, EngineInfo


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


def serve(port: int, load_delay: float, fail_load: bool, die_on_first_request: bool = False) -> None:
    started = time.monotonic()
    key = os.environ.get("FAKE_ENGINE_KEY")
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

        def do_GET(self) -> None:
            loaded = time.monotonic() - started >= load_delay
            self._send(200 if loaded else 503, {"status": "ok" if loaded else "loading"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"message": "Invalid API Key"}})
                return
            if die_on_first_request:
                print("RuntimeError: Unsupported CPU attention configuration: head_dim=16", flush=True)
                self._send(500, {"error": {"message": "EngineCore encountered an issue"}})
                self.wfile.flush()
                os._exit(1)
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                          "finish_reason": "stop"}], "usage": {"completion_tokens": 1}})

    print(f"fake engine on {port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--load-delay", type=float, default=0.0)
    ap.add_argument("--fail-load", action="store_true")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--die-on-first-request", action="store_true")
    a = ap.parse_args()
    if a.ignore_term:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(a.port, a.load_delay, a.fail_load, a.die_on_first_request)

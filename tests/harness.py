"""Runs the real controller (`python -m llmctl serve`) as a child process for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from llmctl.runtimes.process import free_port

FAST_SUPERVISION = {
    "LLMCTL_BACKENDS__BACKOFF_INITIAL": "0.2",
    "LLMCTL_BACKENDS__BACKOFF_MAX": "1",
    "LLMCTL_BACKENDS__STOP_GRACE": "3",
    "LLMCTL_BACKENDS__THREADS": "2",
    "LLMCTL_BACKENDS__CTX_SIZE": "2048",
    "LLMCTL_BACKENDS__READY_TIMEOUT": "60",
}


def llmctl_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL_")}
    env.update(FAST_SUPERVISION)
    # an Ollama the person running the tests has must not leak in: tests that want one name the fixture's
    env.update({"LLMCTL_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "OLLAMA_HOST": "127.0.0.1:9", "OLLAMA_MODELS": str(home / "no-ollama-store")})
    env.update(extra)
    return env


def run_cli(home: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmctl", *args], env=llmctl_env(home, **env),
                          capture_output=True, text=True, timeout=timeout)


class ControllerProcess:
    def __init__(self, home: Path, *args: str, port: int | None = None, **env: str) -> None:
        self.home = home
        self.port = port or free_port()
        self.args = args
        self.env = llmctl_env(home, **env)
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def start(self, wait_for: str = "OpenAI endpoint at", timeout: float = 30) -> ControllerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmctl", "serve", "--port", str(self.port), *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_output(wait_for, timeout)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc is not None and self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"controller exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} after {timeout} s:\n{self.output}")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def backend(self, model: str) -> dict:
        with self.client() as c:
            r = c.get("/llmctl/v1/backends")
            r.raise_for_status()
        return next(b for b in r.json()["backends"] if b["model"] == model)

    def wait_state(self, model: str, state: str, timeout: float = 30, where=None) -> dict:
        """The model's backend record once it is in ``state`` and, when given, ``where(record)`` holds (a new pid, a
        restart counted): a test waits for the state it needs, not for whatever the state was a moment ago."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.backend(model)
                if last["state"] == state and (where is None or where(last)):
                    return last
            except StopIteration:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{model} never became {state}; last: {last}\n{self.output}")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill_everything(self) -> None:
        """Test cleanup: whatever happened, leave no process behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        state = self.home / "state" / "backends.json"
        if state.exists():
            from llmctl.runtimes.state_file import StateFile

            StateFile(state).reap(grace=1)


def pid_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def tcp_listeners(pid: int) -> list[tuple[str, int]]:
    """(process name, port) of every TCP socket listening in the process tree of ``pid``."""
    root = psutil.Process(pid)
    return [(p.name(), c.laddr.port) for p in [root, *root.children(recursive=True)]
            for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def answers_http(port: int, timeout: float = 1.0) -> bool:
    """Whether something on the loopback ``port`` answers an HTTP request (within ``timeout`` seconds)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /tokenize HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(5) == b"HTTP/"
    except OSError:
        return False

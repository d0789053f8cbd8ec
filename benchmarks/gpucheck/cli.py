"""llmctl as a user runs it: its own executable in subprocesses, a private ``LLMCTL_HOME``, a config file, and a
foreground ``llmctl serve`` on a free port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def llmctl_executable() -> str:
    """The ``llmctl`` beside this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "llmctl"
    found = str(here) if here.is_file() else shutil.which("llmctl")
    if not found:
        raise SystemExit("error: no llmctl executable beside this Python or on PATH\n"
                         "  -> run with the venv's python (.venv/bin/python) after `pip install -e .`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Llmctl:
    def __init__(self, home: Path, log) -> None:
        self.exe = llmctl_executable()
        self.home = home
        self.log = log
        self.env = {**os.environ, "LLMCTL_HOME": str(home), "NO_COLOR": "1"}
        self.env.pop("LLMCTL_CONFIG", None)
        self.env.pop("LLMCTL_HW_RECORDING", None)  # the real machine, never a recording
        self.serve_proc: subprocess.Popen | None = None
        self.port = free_port()
        self.commands: list[dict] = []  # every command run, its exit status and seconds (the report keeps them)

    def config(self, text: str) -> None:
        path = self.home / "config" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def run(self, *args: str, env: dict | None = None, timeout: float = 300, check: bool = True
            ) -> subprocess.CompletedProcess:
        started = time.monotonic()
        out = subprocess.run([self.exe, *args], capture_output=True, text=True, timeout=timeout,
                             env={**self.env, **(env or {})})
        seconds = round(time.monotonic() - started, 2)
        self.commands.append({"argv": ["llmctl", *args], "rc": out.returncode, "seconds": seconds})
        self.log(f"$ llmctl {' '.join(args)}  -> {out.returncode} ({seconds} s)")
        if check and out.returncode != 0:
            raise RuntimeError(f"llmctl {' '.join(args)} exited {out.returncode}:\n{out.stdout[-2000:]}"
                               f"{out.stderr[-2000:]}")
        return out

    def json(self, *args: str, **kw) -> dict | list:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    def serve(self, env: dict | None = None, timeout: float = 120) -> None:
        """Start ``llmctl serve`` in the foreground of a child process; return once ``llmctl ps`` answers."""
        self.port = free_port()
        log = self.home / f"serve-{self.port}.log"
        with open(log, "w") as out:  # the child keeps its own copy of the file
            self.serve_proc = subprocess.Popen([self.exe, "serve", "--port", str(self.port)], stdout=out,
                                               stderr=subprocess.STDOUT, env={**self.env, **(env or {}),
                                                                              "LLMCTL_SERVER__PORT": str(self.port)})
        self.env["LLMCTL_SERVER__PORT"] = str(self.port)
        deadline = time.monotonic() + timeout
        while True:
            if self.serve_proc.poll() is not None:
                raise RuntimeError(f"llmctl serve exited {self.serve_proc.returncode}:\n"
                                   f"{log.read_text()[-3000:]}")
            ps = subprocess.run([self.exe, "ps", "--json"], capture_output=True, text=True, env=self.env)
            if ps.returncode == 0:
                self.log(f"llmctl serve is up on port {self.port}")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"llmctl serve did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def shutdown(self) -> None:
        """Stop the controller (SIGINT, as Ctrl-C: it stops every model server), then wait for it."""
        proc, self.serve_proc = self.serve_proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

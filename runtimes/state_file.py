"""``backends.json``: every live backend's pid, process start time, port or socket and argv, so that a controller
that was SIGKILLed leaves enough behind for the next one to reap its orphans without ever killing a reused pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import threading
import time
from pathlib import Path

import psutil

from llmctl.runtimes.sockets import remove_socket_dir


class StateFile:
    """``backends.json``: name -> {pid, create_time, port, socket, argv}. Written atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a temporary name of this writer's own: two writers (a reaping controller, a thread stopping a backend)
        # sharing one ".tmp" could rename each other's file away mid-write
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2), "utf-8")
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put(self, name: str, record: dict) -> None:
        data = self.read()
        data[name] = record
        self._write(data)

    def drop(self, name: str, pid: int | None = None) -> None:
        data = self.read()
        if name in data and (pid is None or data[name].get("pid") == pid):
            del data[name]
            self._write(data)

    def reap(self, grace: float = 5.0) -> list[dict]:
        """Kill the process groups of backends a dead controller left behind; return what was reaped.

        A pid is only signalled when the process with that pid started at the recorded time, so a pid the
        OS has since given to an unrelated process is never touched. The folder of a backend's Unix socket goes too
        (it may lie outside the run folders the controller clears: see ``runtimes.sockets``).
        """
        reaped = []
        for name, rec in self.read().items():
            if isinstance(rec.get("socket"), str):
                _reap_socket_dir(Path(rec["socket"]))
            pid, created = rec.get("pid"), rec.get("create_time")
            if not isinstance(pid, int) or not isinstance(created, (int, float)):
                continue
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) > 0.05:
                    continue  # the pid was reused: not ours
            except psutil.Error:
                continue
            _kill_group(pid, grace)
            reaped.append({"name": name, **rec})
        self._write({})
        return reaped


def _reap_socket_dir(sock: Path) -> None:
    """Remove the folder of a dead backend's socket: only a folder of this user's that holds nothing but it."""
    folder = sock.parent
    with contextlib.suppress(OSError):
        st = folder.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and {p.name for p in folder.iterdir()} <= {sock.name}:
            remove_socket_dir(folder)


def _kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds for its leader, then SIGKILL it (blocking)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pgid) or _is_zombie(pgid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True

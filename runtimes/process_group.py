"""Process groups: how the supervisor stops an engine's server, and how the next controller reaps one it left.

Every server runs in a process group of its own (the supervisor starts it with ``start_new_session``), so a
signal reaches what it forks too (vLLM's engine core and workers, Ollama's runner). Stop is SIGTERM to the group,
a grace period, then SIGKILL, and one more SIGKILL to the group once its leader is gone, so nothing it forked
lingers.

``StateFile`` records each live group's leader with its start time, so a controller that was SIGKILLed leaves
enough behind for the next one to reap the orphans without ever signalling a pid the OS has since reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def kill_group(pgid: int) -> None:
    """SIGKILL the group now; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def terminate_group(proc: asyncio.subprocess.Process, grace: float, log: Callable[[str], None]) -> None:
    """SIGTERM the group ``proc`` leads, wait up to ``grace`` seconds for ``proc`` to exit, then SIGKILL (saying
    so through ``log``); at the end SIGKILL whatever is left of the group."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        log(f"--- llmctl: no exit {grace:.0f} s after SIGTERM; sending SIGKILL")
        kill_group(proc.pid)
        await proc.wait()
    # the leader is gone; make sure nothing it forked lingers in the group
    kill_group(proc.pid)


# the state file ----------------------------------------------------------------------------------------------
class StateFile:
    """``backends.json``: name -> {pid, create_time, port, argv}. Written atomically on every change."""

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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2), "utf-8")
        os.replace(tmp, self.path)

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
        OS has since given to an unrelated process is never touched.
        """
        reaped = []
        for name, rec in self.read().items():
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


def _kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds for its leader, then SIGKILL it (blocking)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pgid) or _is_zombie(pgid):
            break
        time.sleep(0.05)
    kill_group(pgid)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True

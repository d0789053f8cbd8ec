"""``backends.json``: every live backend's pid, process start time, port or socket, argv and launch marker, so that
a controller that was SIGKILLed leaves enough behind for the next one to reap its orphans without ever killing a
reused pid.

The file is only a hint: a record is acted on only when the process proves it is one llmctl started (issue 23: a
forged record made ``serve`` kill an unrelated process and delete a folder). It must be alive with the recorded
start time, lead its own process group, run the recorded command line, and carry the record's per-launch marker in
its environment (``LAUNCH_MARKER_ENV``: a random token the supervisor put there when it spawned it; no other process
can have it). A socket folder is removed only where llmctl puts socket folders (``sockets.owned_socket_dir``), never
through a symlink. The file is 0600.
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

from llmctl.runtimes.sockets import owned_socket_dir, remove_socket_dir

LAUNCH_MARKER_ENV = "LLMCTL_LAUNCH_MARKER"
"""The variable holding a launch's random marker in the backend's environment (checked before reaping it)."""


class StateFile:
    """``backends.json``: name -> {pid, create_time, port, socket, argv, match_argv, marker}. Written atomically on
    every change."""

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
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # this user's business alone
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(data, indent=2))
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

    def reap(self, grace: float = 5.0, run_dir: Path | None = None) -> list[dict]:
        """Kill the process groups of backends a dead controller left behind; return what was reaped.

        Only a process that proves it is one llmctl started is signalled (see the module's docstring), so neither a
        pid the OS has since given to an unrelated process nor one a forged record names is ever touched. The
        folder of a backend's Unix socket goes too when it is one of llmctl's (under ``run_dir`` or the short
        socket folder: see ``runtimes.sockets``); anything else a record names stays.
        """
        reaped = []
        for name, rec in self.read().items():
            if not isinstance(rec, dict):
                continue
            if isinstance(rec.get("socket"), str) and run_dir is not None:
                _reap_socket_dir(Path(rec["socket"]), run_dir)
            pid = rec.get("pid")
            if not isinstance(pid, int) or not launched_by_llmctl(pid, rec):
                continue
            _kill_group(pid, grace)
            reaped.append({"name": name, **rec})
        self._write({})
        return reaped


def launched_by_llmctl(pid: int, rec: dict) -> bool:
    """Whether the live process ``pid`` is the launch ``rec`` describes: its start time, its own process group,
    its command line and the launch's marker in its environment.

    The command line matched is ``match_argv``, what the process runs after a wrapper exec'd it in place (a vLLM
    engine in its own network namespace: ``unshare -rn -- python -c LOOPBACK_UP vllm...`` becomes ``vllm...``;
    matching the wrapper's argv never reaped it: ``test_reap_kills_an_engine_run_in_its_own_network_namespace``);
    a record without one (written before it existed) is matched on ``argv``."""
    created, marker = rec.get("create_time"), rec.get("marker")
    argv = rec.get("match_argv") or rec.get("argv")
    if (not isinstance(created, (int, float)) or not isinstance(marker, str) or len(marker) < 16
            or not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)):
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.05:
            return False  # the pid was reused: not ours
        if os.getpgid(pid) != pid:
            return False  # a backend leads its own group (start_new_session); killpg would hit another group
        if not _runs(proc.cmdline(), argv):
            return False
        return proc.environ().get(LAUNCH_MARKER_ENV) == marker
    except (psutil.Error, OSError):
        return False  # gone, or not ours to read (another user's): never signalled


def _runs(cmdline: list[str], argv: list[str]) -> bool:
    """The command line is the recorded argv, or that argv behind the interpreter of a ``#!`` script (the kernel puts
    the interpreter and at most one argument of its in front)."""
    return cmdline == argv or (len(argv) < len(cmdline) <= len(argv) + 2 and cmdline[-len(argv):] == argv)


def _reap_socket_dir(sock: Path, run_dir: Path) -> None:
    """Remove the folder of a dead backend's socket: only one where llmctl puts them, of this user's, that holds
    nothing but it."""
    folder = sock.parent
    if not owned_socket_dir(folder, run_dir):
        return
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

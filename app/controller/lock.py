"""One controller per state directory; a second start says which one runs and where, and leaves it alone.

Two controllers sharing a state directory would reap each other's live backends at start-up and overwrite each
other's ``backends.json`` and ``controller.json``. The first one takes an exclusive ``flock`` on
``state/controller.lock`` before it touches anything and holds it for its whole life; the kernel drops it when the
process ends, SIGKILL included, so a crash never leaves a stale lock. A second one reads who holds it and stops
with a clear error. A different ``LLMCTL_HOME`` is a different state directory, with its own lock.

The descriptor is not inheritable (PEP 446), so backends the controller starts never hold the lock after it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from llmctl.catalog.errors import LlmctlError


class ControllerAlreadyRunning(LlmctlError):
    """Another controller holds this state directory."""


class ControllerLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "controller.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ControllerAlreadyRunning naming the holder (pid, URL)."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise self._busy(holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid()}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock

    def _busy(self, holder: dict) -> ControllerAlreadyRunning:
        pid = holder.get("pid")
        url = None
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            state = json.loads((self.state_dir / "controller.json").read_text("utf-8"))
            if pid is None or state.get("pid") == pid:
                pid, url = state.get("pid"), state.get("url")
        who = f"pid {pid}" if pid else "pid unknown"
        where = f" at {url}" if url else " (still starting)"
        return ControllerAlreadyRunning(
            f"another llmctl controller ({who}) is already running{where} for {self.state_dir}",
            "use that one (`llmctl ps`), stop it with `llmctl shutdown`, or set LLMCTL_HOME to run a separate "
            "controller with its own models and state.",
        )


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

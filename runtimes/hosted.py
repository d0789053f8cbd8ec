"""What the deployments that own no process of their own share (an Ollama model, a remote's model): their state
changes, their failure, and the lines llmctl writes to their log. ``process.Backend`` supervises a process and
keeps its own versions of these, fed by the process's output."""

from __future__ import annotations

import contextlib
import time

from llmctl.runtimes.base import BackendState, ReportsLoad, RequestTimeouts


class HostedState:
    """A mixin for a ``RunningDeployment`` that owns no process; the class provides ``name``, ``state``, ``error``,
    ``failed_at``, ``tail``, ``log_path`` and ``on_change``."""

    socket_path: str | None = None  # reached over HTTP at its URL, never over a Unix socket of llmctl's
    remote = False
    timeouts: RequestTimeouts | None = None
    load_reporter: ReportsLoad | None = None  # its server's /metrics are not per model (Ollama has none)

    def connection_refused(self) -> None:
        """Nothing by default: the server's own poller notices it is down."""

    def _fail(self, reason: str) -> None:
        self.error = reason
        self.failed_at = time.monotonic()
        self._log(f"failed: {reason}")
        self._set_state(BackendState.FAILED)

    def _set_state(self, state: BackendState) -> None:
        self._changed_at = time.monotonic()  # when llmctl last changed it (Ollama's poller compares its answers)
        if self.state is not state:
            self.state = state
            if self.on_change:
                self.on_change(self)

    def _log(self, line: str) -> None:
        line = f"--- llmctl: {line}"
        self.tail.append(line)
        with contextlib.suppress(OSError):
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(line + "\n")

"""The background controller's own log, bounded (issue 8 item 12).

A controller the TUI starts in the background has no terminal: everything it would print (its events, error
tracebacks from the gateway, a crash) goes to ``state/logs/controller.log``. The file is rotated when it reaches
``server.log_max_bytes``; ``BACKUPS`` older copies are kept (``controller.log.1``, ``.2``), so it never grows
without bound however long the controller runs.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import sys
from pathlib import Path

BACKUPS = 2
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _LineLogger(io.TextIOBase):
    """A text stream that sends each complete line to a logger (for ``print``/``click.echo`` and tracebacks)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self._pending = ""

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.logger.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.logger.log(self.level, self._pending)
            self._pending = ""


def log_to_file(path: Path, max_bytes: int, backups: int = BACKUPS) -> logging.Handler:
    """Send llmctl's logging and the process's Python-level stdout/stderr to a size-capped, rotated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and errors only
    logging.getLogger("llmctl").setLevel(logging.INFO)
    sys.stdout = _LineLogger(logging.getLogger("llmctl.stdout"), logging.INFO)
    sys.stderr = _LineLogger(logging.getLogger("llmctl.stderr"), logging.WARNING)
    return handler

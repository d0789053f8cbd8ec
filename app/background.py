"""Starting a controller in the background for the TUI when none is running."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from llmctl.app.client import controller_url, running_controller
from llmctl.app.paths import Paths
from llmctl.app.settings import Settings
from llmctl.catalog.errors import LlmctlError


def ensure_controller(settings: Settings, paths: Paths, wait: float = 20.0) -> str | None:
    """Start `llmctl serve` detached unless a controller answers; returns what to tell the user, or None."""
    url = controller_url(settings, paths)
    if running_controller(paths) is not None or _answers(url):
        return None
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = paths.logs_dir / "controller.log"
    # the controller writes its own log, rotated at server.log_max_bytes; the descriptors only catch what is
    # written before that is set up (a bad config) or below Python (a crash of a C library)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", "--log-file", str(log_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise LlmctlError("the background controller did not start", " / ".join(tail) or f"see {log_path}")
        if _answers(url):
            return (f"Started a background controller (pid {proc.pid}) at {url}/v1. "
                    "`llmctl shutdown` stops it and its model servers.")
        time.sleep(0.1)
    raise LlmctlError("the background controller did not answer in time", f"see {log_path}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=0.5).status_code in (200, 401)
    except httpx.HTTPError:
        return False

"""Starting a controller in the background for the TUI when none is running."""

from __future__ import annotations

import subprocess
import sys
import time

from llmctl.app.client.api import controller_url, running_controller
from llmctl.app.paths import Paths
from llmctl.app.settings import Settings
from llmctl.catalog.errors import LlmctlError
from llmctl.runtimes.sockets import describe_port_owner, port_is_free


def ensure_controller(settings: Settings, paths: Paths, wait: float = 20.0) -> str | None:
    """Start `llmctl serve` detached unless this state folder's controller runs; returns what to tell the user, or
    None. A port held by something else is told, never talked to (the TUI's client refuses it: ``app.handshake``)."""
    url = controller_url(settings, paths)
    if running_controller(paths) is not None:
        return None
    host = settings.server.host if settings.server.host not in ("localhost", "0.0.0.0", "::") else "127.0.0.1"
    if not port_is_free(host, settings.server.port):
        return (f"No llmctl controller runs for {paths.state_dir}, and port {settings.server.port} is held by "
                f"{describe_port_owner(settings.server.port)}: llmctl sends it nothing. Stop it or choose another "
                "port (LLMCTL_SERVER__PORT).")
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
        live = running_controller(paths)  # written once it listens
        if live is not None and live.get("pid") == proc.pid:
            return (f"Started a background controller (pid {proc.pid}) at {live.get('url', url)}/v1. "
                    "`llmctl shutdown` stops it and its model servers.")
        time.sleep(0.1)
    raise LlmctlError("the background controller did not answer in time", f"see {log_path}")

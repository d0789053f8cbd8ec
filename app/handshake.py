"""How llmctl's CLI and TUI know that the process on the controller's port is their controller before they send it
a key (a process that took the port after the controller died, or one listening where no controller runs, gets
nothing: neither a key nor a request).

Each controller start makes a secret and writes it in ``controller.json`` (0600, beside its pid, process start
time and URL). The client reads that file, checks that the pid is alive with the recorded start time, then sends
``GET /llmctl/v1/hello`` with a fresh random nonce and no key; the controller answers an HMAC-SHA256 of the nonce
keyed by the secret. Only a process that can read this user's 0600 file can answer; only then does the client send
the secret itself as its key: the controller's per-start owner key, which has the admin role (``controller.scopes``)
and dies with that controller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

import psutil

from llmctl.app.paths import Paths

HELLO_PATH = "/llmctl/v1/hello"
NONCE_HEADER = "X-Llmctl-Nonce"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(secret: str, nonce: str) -> str:
    """What the controller holding ``secret`` answers to ``nonce``."""
    return hmac.new(secret.encode(), b"llmctl-hello\n" + nonce.encode(), hashlib.sha256).hexdigest()


def proves(secret: str, nonce: str, answer: object) -> bool:
    return isinstance(answer, str) and hmac.compare_digest(answer.encode(), proof(secret, nonce).encode())


def write_state(path, data: dict) -> None:
    """``controller.json`` written atomically, 0600 from its first byte (it holds the owner key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an old tmp file of another mode keeps its mode through O_CREAT
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def live_state(paths: Paths) -> dict | None:
    """The state of a live controller of this state folder, or None when the file is missing, stale (its pid is
    gone or is another process now) or not this user's."""
    try:
        path = paths.controller_state
        if path.stat().st_uid != os.getuid():
            return None
        data = json.loads(path.read_text("utf-8"))
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["create_time"])) > 0.05:
            return None
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return data if isinstance(data, dict) else None

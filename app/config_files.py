"""config.toml may hold secrets (``server.api_key``, a ``[[server.keys]]`` ``key``): llmctl writes it 0600, and
``doctor`` says when a file holding one can be read by other users (issue 23: it was written 0644 and doctor said
"all good")."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` whole to ``path``: a temporary file created 0600, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover tmp file keeps its old mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)


def secrets_in(path: Path) -> list[str]:
    """The settings in the file that hold a secret (``server.api_key``, ``server.keys[NAME].key``)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    server = data.get("server") if isinstance(data.get("server"), dict) else {}
    found = ["server.api_key"] if server.get("api_key") else []
    for key in server.get("keys") or []:
        if isinstance(key, dict) and key.get("key"):
            found.append(f"server.keys[{key.get('name', '?')}].key")
    return found


def exposed(path: Path) -> str | None:
    """What is wrong when ``path`` holds a secret and other users may read it (or write it); None when fine."""
    try:
        st = path.stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    held = secrets_in(path)
    if not held:
        return None
    return f"{path} holds {', '.join(held)} and is mode {mode:04o}: other users of this machine can read it"

"""Where a backend listens and how llmctl reaches it: a TCP port on loopback, or a Unix domain socket.

An engine whose key guards only some of its routes serves on a Unix socket instead of a port (vLLM's ``--api-key``
guards ``/v1`` and a few other prefixes; ``/tokenize``, ``/pooling``, ``/metrics``… answer anyone who finds the
port). The socket lies in a folder of its launch created 0700, and is made 0600 once it appears, so only this user's
processes can connect. The per-launch key is still sent (defence in depth).

The path of a socket must fit ``sockaddr_un.sun_path``: 108 bytes on Linux including the terminating NUL, so 107
(104 on macOS and the BSDs). The launch's run folder, under llmctl's state dir, is the first choice; a deep
``LLMCTL_HOME`` (pytest's ``tmp_path``), a long user name or a long model name can push it past that, and then the
socket goes to a short folder of its own under ``$XDG_RUNTIME_DIR`` (per user, 0700 by the spec; used only when it
is a real folder of this user's that no one else may write to, as the spec promises but an environment may not keep)
or else ``/tmp/llmctl-UID`` (made 0700 and checked to be this user's before use), named by a hash of the run folder
so each launch still has its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import stat
import sys
from pathlib import Path

import psutil

SUN_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


# TCP ports ---------------------------------------------------------------------------------------------------
def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on the port. SO_REUSEADDR, as servers set it, so that connections still in
    TIME_WAIT from a server we just stopped do not count as taken; a listener always does."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def describe_port_owner(port: int) -> str:
    """Best effort: 'pid 123 (python3)' for whoever listens on the port, or 'another process'."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another process"


# Unix sockets ------------------------------------------------------------------------------------------------
def socket_path(run_dir: Path, name: str) -> Path:
    """Where a launch whose run folder is ``run_dir`` binds its socket ``name``: ``run_dir/sock/name`` when that
    fits ``sun_path``, else a short folder of its own (see the module's docstring). Pure but for reading
    ``$XDG_RUNTIME_DIR``: the same deployment always gets the same path."""
    preferred = run_dir / "sock" / name
    if len(os.fsencode(preferred)) <= SUN_PATH_MAX:
        return preferred
    # too long to bind: a short per-user folder, per launch (a hash of the run folder, which is per launch)
    digest = hashlib.sha256(os.fsencode(run_dir)).hexdigest()[:16]
    return _short_root() / digest / name


def _short_root() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and _private_dir(runtime):
        return Path(runtime) / "llmctl"
    return Path("/tmp") / f"llmctl-{os.getuid()}"


def _private_dir(path: str) -> bool:
    """A real folder (not a symlink) of this user's that neither group nor others may write to."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not stat.S_IMODE(st.st_mode) & 0o022


def make_socket_dir(folder: Path) -> None:
    """Create ``folder`` empty and 0700 (a socket the previous start left goes), inside a parent that is this user's
    alone (created 0700 when missing). Raises PermissionError when the parent belongs to someone else or is a
    symlink: in a shared ``/tmp`` another user could have made it first, to reach or swap the socket."""
    parent = folder.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = parent.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{parent} is not a folder of this user's; refusing to put a socket in it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(parent, 0o700)  # ours (checked above, not a symlink): make it private
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask; this is exact


def owned_socket_dir(folder: Path, run_dir: Path) -> bool:
    """Whether ``folder`` is where ``socket_path`` puts a launch's socket: ``RUN_DIR/LAUNCH/sock`` or a per-launch
    folder (16 hex digits) under the short root; absolute and reached through no symlink (resolved, it is itself).
    Paths read from a state file are checked with this before anything is removed."""
    if not folder.is_absolute() or os.path.realpath(folder) != os.path.normpath(folder):
        return False
    if folder.name == "sock" and folder.parent.parent == run_dir and folder.parent.name not in ("", ".", ".."):
        return os.path.realpath(run_dir) == os.path.normpath(run_dir)
    short = _short_root()
    return (folder.parent == short and len(folder.name) == 16 and all(c in "0123456789abcdef" for c in folder.name)
            and os.path.realpath(short) == os.path.normpath(short))


def remove_socket_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# the readiness probe -----------------------------------------------------------------------------------------
async def http_status(host: str, port: int, path: str, timeout: float = 2.0, api_key: str | None = None,
                      uds: str | None = None) -> int | None:
    """The status code of a GET to ``host:port`` (or over the Unix socket ``uds``), or None when nothing answers.
    Tiny on purpose: used for readiness only."""
    try:
        connect = asyncio.open_unix_connection(uds) if uds else asyncio.open_connection(host, port)
        reader, writer = await asyncio.wait_for(connect, timeout)
    except (OSError, TimeoutError):
        return None
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    where = "localhost" if uds else f"{host}:{port}"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {where}\r\n{auth}Connection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

"""The one place where an exception becomes what a person reads: the CLI's ``main`` (and any front end) hands
every exception a command ends with to ``report``.

llmctl's own errors (``LlmctlError(title, message)``, catalog/errors.py) are shown as they are. Failures of the
libraries llmctl uses are mapped here to the same shape, so an expected failure never shows a traceback:

    httpx / httpx2 (huggingface_hub) / aiohttp transport errors, OSError from a socket
                                  -> NetworkError  "talking to HOST failed: the connection was refused" + what to do
    huggingface_hub HTTP errors   -> NetworkError  "HOST answered 503" + what to do
    OSError from the filesystem   -> LlmctlError   "permission denied: PATH" / "the disk is full" + what to do

Anything else is a bug: its traceback goes to ``llmctl.log`` in the logs folder (``llmctl paths``) and the person
reads one line naming the exception and the log file.
"""

from __future__ import annotations

import datetime
import errno
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from llmctl.catalog.errors import LlmctlError, NetworkError
from llmctl.catalog.network import OFFLINE_HINT, host_of, reason
from llmctl.catalog.text import printable

LOG_NAME = "llmctl.log"


def _url_of(exc: BaseException) -> str | None:
    """The URL a failed request went to, when the library kept it (httpx, httpx2, aiohttp)."""
    for e in (exc, exc.__cause__, exc.__context__):
        if e is None:
            continue
        try:
            request = e.request  # httpx/httpx2 raise RuntimeError when the exception has no request
            return str(request.url)
        except (AttributeError, RuntimeError):
            pass
        response = getattr(e, "response", None)
        url = getattr(response, "url", None)
        if url is not None:
            return str(url)
        info = getattr(e, "request_info", None)  # aiohttp.ClientResponseError
        if info is not None:
            return str(info.real_url)
        host = getattr(e, "host", None)  # aiohttp.ClientConnectorError
        if isinstance(host, str):
            return f"//{host}:{getattr(e, 'port', '')}".rstrip(":")
    return None


def _where(url: str | None) -> tuple[str, str]:
    """(the host, what to do) for a failure talking to ``url``."""
    if url is None:
        return "the server", f"check the network and the address. {OFFLINE_HINT}"
    host = host_of(url)
    hostname = host.rsplit(":", 1)[0].strip("[]")
    if hostname in ("127.0.0.1", "localhost", "::1"):
        return host, ("check that what should listen there is running: the llmctl controller (`llmctl serve`, "
                      "`llmctl ps`) or the mirror HF_ENDPOINT names.")
    return host, f"check the network and the address. {OFFLINE_HINT}"


def _hub_error(exc: BaseException) -> LlmctlError | None:
    if "huggingface_hub" not in sys.modules:
        return None
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return NetworkError("offline mode is on (HF_HUB_OFFLINE)", "unset HF_HUB_OFFLINE to download.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        host, hint = _where(_url_of(exc))
        return NetworkError(f"{host} answered {status}", f"try again later; {hint}")
    return None


def _file_error(exc: OSError) -> LlmctlError:
    where = f": {exc.filename}" if exc.filename else ""
    if isinstance(exc, PermissionError):
        return LlmctlError(f"permission denied{where}", "make it writable (or readable), or set LLMCTL_HOME / "
                           "HF_HOME to a folder you own.")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LlmctlError(f"the disk is full{where}", "free some space and run the command again; a pull "
                           "resumes where it stopped.")
    if isinstance(exc, FileNotFoundError):
        return LlmctlError(f"no such file or folder{where}", "check the path.")
    if exc.errno == errno.EROFS:
        return LlmctlError(f"the file system is read-only{where}", "set LLMCTL_HOME / HF_HOME to a writable place.")
    return LlmctlError(f"{exc.strerror or exc}{where}", "check the path and its permissions.")


def as_error(exc: BaseException) -> LlmctlError | None:
    """``exc`` as an LlmctlError a person can act on, or None when it is not an expected failure (a bug)."""
    if isinstance(exc, LlmctlError):
        return exc
    why = reason(exc)
    if why is not None:
        host, hint = _where(_url_of(exc))
        return NetworkError(f"talking to {host} failed: {why}", hint)
    mapped = _hub_error(exc)
    if mapped is not None:
        return mapped
    if type(exc).__name__ == "InvalidURL":  # httpx's (and requests'): a name with characters no URL may hold
        return NetworkError(f"refusing to request an address with characters a URL cannot hold ({exc})",
                            "check HF_ENDPOINT, the repo id and the file name; a mirror listing such a name is "
                            "not trustworthy.")
    if isinstance(exc, OSError):
        return _file_error(exc)
    return None


def log_unexpected(exc: BaseException, logs_dir: Path) -> Path | None:
    """Append ``exc``'s traceback, with the command line and the time, to the log; the log's path, or None."""
    log = logs_dir / LOG_NAME
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            out.write(f"--- {stamp} llmctl {' '.join(sys.argv[1:])}\n")
            out.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return log


def report(exc: BaseException, logs_dir: Callable[[], Path]) -> int:
    """Show ``exc`` on stderr as ``error: ...`` (plus what to do) and return the exit code."""
    error = as_error(exc)
    if error is None:
        try:
            log = log_unexpected(exc, logs_dir())
        except Exception:  # resolving the logs folder failed too; still say something useful
            log = None
        where = f"the traceback is in {log}" if log else "no log could be written"
        click.secho(f"error: unexpected {type(exc).__name__}: {printable(str(exc)[:300]) or 'no message'}", fg="red",
                    err=True)
        click.echo(f"  this is a bug in llmctl; {where}. Please report it with that file.", err=True)
        return 1
    # titles and messages quote foreign text (file names, a remote's answer, GGUF metadata): shown, never obeyed
    click.secho(f"error: {printable(error.title)}", fg="red", err=True)
    if error.message:
        click.echo(f"  {printable(error.message, newlines=True)}", err=True)
    tail = getattr(error, "log_tail", None)
    if tail:
        click.echo("  last log lines:", err=True)
        for line in tail[-10:]:
            click.echo(f"    {printable(line)}", err=True)
    return 1

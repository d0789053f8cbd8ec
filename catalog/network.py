"""What a network failure means, in words a person can act on, and the few network facts the domain needs.

httpx (llmctl's own client), httpx2 (huggingface_hub's) and aiohttp wrap the operating system's errors in their
own classes; ``reason`` looks through the wrapping (the exception, then its ``__cause__``/``__context__`` chain) for
what actually happened: the name did not resolve, the connection was refused or reset, TLS failed, it timed out.
``app/errors.py`` uses it to turn any command's failure into one line; the downloader uses it to say which file
stopped where. Nothing here imports an HTTP library at import time.
"""

from __future__ import annotations

import errno
import importlib
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

OFFLINE_HINT = ("offline? use `--offline` with models you have, set HF_ENDPOINT to a mirror you can reach, "
                "or bring a file over and `llmctl import PATH`.")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _classes(name: str) -> tuple[type[BaseException], ...]:
    """The exception class called ``name`` in each HTTP library llmctl meets (httpx, huggingface_hub's httpx2)."""
    found = []
    for module in ("httpx", "httpx2"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def reason(exc: BaseException) -> str | None:
    """A few words for a network failure (``connection refused``), or None when ``exc`` is not one."""
    for e in _chain(exc):
        if isinstance(e, socket.gaierror):
            return "its name does not resolve (no DNS answer: is the network up?)"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({e.verify_message or e.reason})"
        if isinstance(e, ssl.SSLError):
            return f"the TLS handshake failed ({e.reason or e})"
        if isinstance(e, ConnectionRefusedError):
            return "the connection was refused (nothing listens there)"
        if isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return "the connection was reset"
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
            return "there is no route to it (network unreachable)"
        if isinstance(e, TimeoutError | socket.timeout):
            return "it did not answer in time"
    transport = _classes("TransportError")
    for e in _chain(exc):
        if not isinstance(e, (OSError, *transport)):
            continue
        text = str(e).lower()
        if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
            return "its name does not resolve (no DNS answer: is the network up?)"
        if "certificate" in text or "ssl" in text or "tls" in text:
            return f"the TLS handshake failed ({e})"
        if isinstance(e, _classes("TimeoutException")):
            return "it did not answer in time"
        if isinstance(e, _classes("RemoteProtocolError")):
            return "the server closed the connection in the middle of a response"
        if isinstance(e, _classes("ProxyError")):
            return f"the proxy failed ({e})"
        if isinstance(e, transport):
            return f"the connection failed ({type(e).__name__}: {e})" if str(e) else "the connection failed"
    return None


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def route_problem(url: str, timeout: float = 3.0) -> str | None:
    """Why this machine cannot reach ``url``'s host at all, or None when it may. Resolves the name and asks the
    kernel for a route to each address (a UDP ``connect`` sends no packet); does not contact the host."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        addresses = [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return f"{host} does not resolve (no DNS answer)"
        except OSError as exc:
            return f"{host} cannot be looked up ({exc.strerror or exc})"
        addresses = [(info[0], info[4][0]) for info in infos]
    unreachable = 0
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.settimeout(timeout)
            try:
                probe.connect((address, port))
            except OSError as exc:
                if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL):
                    unreachable += 1
                    continue
                return None  # something else (a test's guard, a firewall rule): let the real request tell
    if addresses and unreachable == len(addresses):
        return f"there is no network route to {host}"
    return None


def retry_after(headers, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))

"""The HTTP client sessions the controller reaches its backends with (the gateway's requests, the engine-metrics
scrape).

A backend on a TCP port, and every remote, goes through one pooled session. A backend that serves on a Unix socket
(``socket_path``: vLLM, whose API key leaves routes open, so it listens on no port) goes through a session of its
own, because an aiohttp connector is bound to one socket path: made at the first request, closed when the backend
stops (``forget``) or the controller does (``close``). Requests keep ``backend.base_url`` as their URL, so the
Host header and the logs read as before; the socket decides where the bytes go.

The gateway's own requests to an engine running on this machine go over ``relay`` instead: llmctl's own pooled
HTTP/1.1 client (``engine_link``), a fraction of aiohttp's per-request cost on the hot path. Remotes (TLS,
timeouts, a proxy's redirects refused) keep aiohttp.
"""

from __future__ import annotations

import asyncio

import aiohttp

from llmctl.app.controller.engine_link import EngineLink

# bytes pass through exactly as the backend sent them (no decompression); no total timeout (long generations),
# a bound on connecting only
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)


class Upstreams:
    def __init__(self) -> None:
        self._tcp: aiohttp.ClientSession | None = None
        self._unix: dict[str, aiohttp.ClientSession] = {}
        self._closing: set[asyncio.Task] = set()
        self._links: dict[tuple, EngineLink] = {}

    @property
    def opened(self) -> bool:
        return self._tcp is not None

    def open(self) -> None:
        """Create the pooled TCP session (in the running loop)."""
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, enable_cleanup_closed=True)
        self._tcp = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT, auto_decompress=False)

    def session(self, backend) -> aiohttp.ClientSession:
        """The session that reaches ``backend``: over its Unix socket when it has one, else the TCP pool."""
        if self._tcp is None:
            raise RuntimeError("the upstream sessions are not open")
        path = backend.socket_path
        if path is None:
            return self._tcp
        session = self._unix.get(path)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=path, limit=0, keepalive_timeout=60)
            session = self._unix[path] = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT,
                                                               auto_decompress=False)
        return session

    def relay(self, backend) -> aiohttp.ClientSession | EngineLink:
        """What the gateway posts a request to ``backend`` through: the engine link for an engine on this machine
        (plain http, no per-request bounds), else its aiohttp session."""
        base = backend.base_url
        if backend.remote or backend.timeouts is not None or not base.startswith("http://"):
            return self.session(backend)
        if self._tcp is None:
            raise RuntimeError("the upstream sessions are not open")
        where = (base, backend.socket_path)
        link = self._links.get(where)
        if link is None:
            link = self._links[where] = EngineLink(base, backend.socket_path)
        return link

    def drop(self, backend) -> None:
        """A backend stopped: its pooled connections lead nowhere now. Only the idle ones are closed: one address
        may serve several models (an Ollama server's), whose answers in progress go on; a dead process's
        connections end by themselves. Links with nothing open are let go (an engine restarted on a new port)."""
        if backend.socket_path is not None:
            self.forget(backend.socket_path)
        link = self._links.get((backend.base_url, backend.socket_path))
        if link is not None:
            link.close_idle()
        for where, other in list(self._links.items()):
            if other.unused:
                del self._links[where]

    def linked(self) -> list[str]:
        """The engine addresses with a link now (a socket path, else the base URL)."""
        return [path or base for base, path in self._links]

    def sockets(self) -> list[str]:
        """The socket paths with a session now."""
        return list(self._unix)

    def forget(self, path: str) -> None:
        """Close the session of a socket whose backend stopped (its pooled connections lead nowhere now)."""
        session = self._unix.pop(path, None)
        if session is not None:
            task = asyncio.ensure_future(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
        for path in list(self._unix):
            self.forget(path)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None

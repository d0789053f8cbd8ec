"""The gateway's own HTTP/1.1 client for the engines llmctl runs on this machine: the hot path of every request.

Why not aiohttp's client here: a request through it costs the gateway more Python than the rest of the request's
handling together (``benchmarks/relay_floor.py``: an aiohttp server and client relaying bytes add ~0.4 ms where a
byte pipe adds ~0.05 ms). A local engine needs little of it: one POST with a JSON body and a fixed set of headers,
plain HTTP on 127.0.0.1 or a Unix socket, no TLS, no proxies, no redirects, no cookies, no compression. So the
request head is written here in one piece, the answer is parsed by httptools (llhttp, the parser of Node.js), and
the body's bytes are handed on as they arrive. Remotes keep aiohttp (``upstream.py``).

Connections are kept alive and pooled per engine address. An engine may close an idle connection at any time
(llama.cpp's HTTP library does after a few seconds, or after a number of requests): a connection that is closed
before any byte of its answer raises ``Dropped`` (nothing was answered: the caller may send again on a fresh one).
An answer is treated as hostile: its head is bounded (``MAX_HEAD_BYTES``), a malformed one ends the connection,
and reading pauses while more than ``HIGH_WATER`` bytes wait for the consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD_BYTES = 64 << 10  # status line and headers of one answer
HIGH_WATER = 256 << 10  # bytes of body waiting for the consumer before the connection stops reading
LOW_WATER = 64 << 10
IDLE_SECONDS = 60.0  # a pooled connection unused this long is closed rather than reused
CONNECT_SECONDS = 10.0  # an engine that accepts no connection within this is not there (as aiohttp's bound was)
MAX_IDLE = 64  # pooled connections kept per engine


class LinkError(ConnectionError):
    """The engine could not be reached or broke off its answer."""


class NotConnected(LinkError):
    """No connection could be made (refused, unreachable): nothing was sent."""


class Dropped(LinkError):
    """The connection closed before any byte of the answer: nothing was answered. Either a kept-alive connection the
    engine had closed, or the engine died with the request: the gateway sends it once more, as it did over aiohttp
    (inference has no side effects; a request that kills its engine is sent at most twice)."""


class _Surplus(Exception):
    """Bytes of a second answer came after the one asked for."""


class BrokenAnswer(LinkError):
    """The answer was malformed, too large in its head, or cut off after it began."""


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value must not contain a line break")
    return value


def _header_name(name: str) -> str:
    if not name or any(c in name for c in ":\r\n \t"):
        raise ValueError(f"not a header name: {name!r}")
    return name


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an engine; at most one request at a time."""

    def __init__(self, link: EngineLink) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answer: EngineResponse | None = None
        self.idle_since = 0.0
        self.keep_for = IDLE_SECONDS  # how long it may sit idle and still be reused (the engine's Keep-Alive says)

    # asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None:  # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        answer._received(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.link._discard(self)
        if self.answer is not None:
            self.answer._lost(exc)

    # ------------------------------------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
            self.link._discard(self)

    def send(self, head: bytes, body: bytes) -> EngineResponse:
        self.answer = EngineResponse(self)
        if len(body) <= 1 << 16:
            self.transport.write(head + body)  # one write: one segment for a small request
        else:  # no copy of a large body
            self.transport.write(head)
            self.transport.write(body)
        return self.answer

    @property
    def clean(self) -> bool:
        """Nothing of the last request still waits to be sent, and it is reading: fit to carry another request."""
        return not self.closed and not self.transport.is_closing() and self.transport.get_write_buffer_size() == 0


class EngineResponse:
    """An engine's answer, as much of aiohttp's ``ClientResponse`` as the gateway reads: ``status``, ``headers``,
    ``content_length``, ``read()``, ``content.iter_any()`` / ``iter_chunked()``, ``release()`` and ``close()``."""

    def __init__(self, connection: _Connection) -> None:
        self._conn = connection
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[str, str]] = []
        self._head_bytes = 0  # of its header lines
        self._head_read = 0  # bytes read while its head was unfinished
        self._head: asyncio.Future = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future | None = None
        self._started = False  # a byte of the answer has come
        self._complete = False
        self._framing = 0  # bytes read since the last body bytes, the head done (chunk framing, trailers)
        self._body_seen = 0  # body bytes so far
        self._released = False
        self._reusable = False  # the engine keeps the connection open after this answer
        self._error: BaseException | None = None
        self.status = 0
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self.content_length: int | None = None

    @property
    def content(self) -> EngineResponse:
        return self

    # parser callbacks (httptools) -----------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise BrokenAnswer(f"the engine's answer head is larger than {MAX_HEAD_BYTES >> 10} KiB")

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer begins in the same bytes: nobody asked for it
            raise _Surplus

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._reusable = self._parser.should_keep_alive()  # read here: the parser forgets it once the answer ends
        self.headers = CIMultiDictProxy(CIMultiDict(self._fields))
        length = self.headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isascii() and length.isdigit() else None
        keep = self.headers.get("Keep-Alive")
        if keep is not None:  # "timeout=5, max=100": reused only well within the engine's own idle timeout
            for part in keep.split(","):
                name, _, value = part.strip().partition("=")
                if name.lower() == "timeout" and value.isascii() and value.isdigit():
                    self._conn.keep_for = min(IDLE_SECONDS, max(0.0, int(value) - 1.0))
        if self.status < 200:
            raise BrokenAnswer(f"the engine answered {self.status}, an interim answer llmctl never asks for")
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._wake()

    # from the connection --------------------------------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        self._started = True
        if self._complete:  # more than the answer: the connection cannot be reused
            self._conn.close()
            return
        body_before = self._body_seen
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised by a callback here: its own error says what
            cause = exc.__context__
            if isinstance(cause, _Surplus):  # the answer asked for is whole; what follows it is not trusted
                self._conn.close()
                return
            self._fail(cause if isinstance(cause, BrokenAnswer) else BrokenAnswer(f"the engine's answer: {cause}"))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(BrokenAnswer(f"the engine's answer is not valid HTTP ({exc})"))
            return
        if self._complete:
            return
        if not self._head.done():  # a head still unfinished: counted by reads (one read is bounded)
            self._head_read += len(data)
            if self._head_read > MAX_HEAD_BYTES:
                self._fail(BrokenAnswer(f"the engine's answer head is larger than {MAX_HEAD_BYTES >> 10} KiB"))
        elif self._body_seen == body_before:  # no body in these bytes: framing, chunk extensions, trailers
            self._framing += len(data)
            if self._framing > MAX_HEAD_BYTES:  # the parser would keep growing an endless trailer line
                self._fail(BrokenAnswer(f"the engine sent more than {MAX_HEAD_BYTES >> 10} KiB without body bytes"))
        else:
            self._framing = 0

    def _lost(self, exc: BaseException | None) -> None:
        if self._complete:
            return
        if not self._started:
            self._fail(Dropped("the engine closed the connection before answering"))
        elif exc is None and self._head.done() and self.content_length is None and \
                "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            self._complete = True  # a body that runs to the connection's end ended with it
            self._wake()
        else:
            self._fail(BrokenAnswer("the engine closed the connection in the middle of its answer"))

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        if not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved: a caller that left is not told "never retrieved"
        self._wake()
        self._conn.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # for the gateway ------------------------------------------------------------------------------------------
    async def _next(self) -> bytes | None:
        """What has arrived of the body since the last call (waiting for some); None at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self._conn.transport is not None:
            self._paused = False
            self._conn.transport.resume_reading()
        return data

    async def iter_any(self):
        while (data := await self._next()) is not None:
            yield data

    async def iter_chunked(self, _size: int):
        async for data in self.iter_any():
            yield data

    async def read(self) -> bytes:
        parts = []
        while (data := await self._next()) is not None:
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Done with it: a whole answer's connection goes back to the pool; one cut short is closed. Once released,
        the answer lets go of its connection (a second release or a close cannot touch a reused connection)."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if self._complete and self._error is None and self._reusable and not self._paused and conn.clean:
            conn.answer = None
            conn.link._pool(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the connection (the engine stops generating for a closed connection)."""
        if not self._released:
            self._released = True
            self._conn.close()

    async def __aenter__(self) -> EngineResponse:
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()


class EngineLink:
    """Pooled connections to one engine address (``http://host:port`` or a Unix socket)."""

    def __init__(self, base_url: str, socket_path: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an engine link speaks plain http to a local engine, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.socket_path = socket_path
        self._host_header = _header_value(parts.netloc)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._connecting = 0

    @property
    def unused(self) -> bool:
        """No connection open (none pooled, none in use) and none being made."""
        return not self._open and not self._connecting

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                if self.socket_path is not None:
                    _t, conn = await loop.create_unix_connection(lambda: _Connection(self), self.socket_path)
                else:
                    _t, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except TimeoutError:
            raise NotConnected(f"the engine accepted no connection within {CONNECT_SECONDS:g} s") from None
        except OSError as exc:
            raise NotConnected(f"could not connect to the engine: {exc}") from None
        finally:
            self._connecting -= 1
        self._open.add(conn)
        return conn

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed by the engine
            if conn.clean and now - conn.idle_since < conn.keep_for:
                return conn
            conn.close()
        return None

    def _pool(self, conn: _Connection) -> None:
        if len(self._idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    async def post(self, url: str, *, data: bytes, headers: dict[str, str], allow_redirects: bool = False,
                   ) -> EngineResponse:
        """POST ``data`` to ``url`` (an address of this engine): the answer once its head has come. Only POST:
        an answer's framing is read as a POST's (a HEAD's answer has none)."""
        path = urlsplit(url)
        target = path.path or "/"
        if path.query:
            target += "?" + path.query
        lines = [f"POST {target} HTTP/1.1", f"Host: {self._host_header}", f"Content-Length: {len(data)}"]
        lines += [f"{_header_name(name)}: {_header_value(value)}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")  # as aiohttp encoded them
        conn = self._take() or await self._connect()
        try:
            answer = conn.send(head, data)
            await answer._head
        except Dropped:
            # a kept-alive connection the engine had closed (or the engine went): the other idle ones are as
            # likely gone, so the caller's next try gets a fresh connection
            for other in list(self._idle):
                other.close()
            raise
        except BaseException:
            conn.close()  # cancelled, or the answer broke: the connection's state is unknown
            raise
        return answer

    def close_idle(self) -> None:
        """Close the pooled connections; those carrying a request are left to end (a dead engine's end by
        themselves; a live one's, of another model on the same server, are answers in progress)."""
        for conn in list(self._idle):
            conn.close()

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

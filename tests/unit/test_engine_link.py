"""The gateway's HTTP/1.1 client for local engines (``engine_link``), against raw servers that send exactly the
bytes a test chooses: well-behaved engines, engines that close connections under it, and hostile answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import SimpleNamespace

import pytest

from llmctl.app.controller import engine_link
from llmctl.app.controller.engine_link import (
    HIGH_WATER,
    BrokenAnswer,
    Dropped,
    EngineLink,
    NotConnected,
)
from llmctl.app.controller.upstream import Upstreams


class RawServer:
    """A TCP (or Unix socket) server whose answer to each request is decided by ``answer(request_bytes, writer)``."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # a client closed a connection (EOF seen)
        self.reader: asyncio.StreamReader | None = None  # the latest connection's

    async def generating(self) -> None:
        """Answer nothing until the client closes the connection (an engine at work that notices a close)."""
        await self.reader.read()
        self.closed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.reader = reader
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if await self.answer(request, writer) == "close":
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        except asyncio.CancelledError:
            pass  # the test ended with this connection open
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()


def whole(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


async def post(link: EngineLink, url: str, body: bytes = b'{"prompt":"hi"}', **headers):
    return await link.post(url + "/v1/completions", data=body,
                           headers={"Content-Type": "application/json", **headers})


async def test_a_whole_answer_comes_back_and_the_connection_is_kept_for_the_next_request():
    async def answer(request, writer):
        writer.write(whole(b'{"n": %d}' % len(request)))

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        for _ in range(3):
            up = await post(link, server.url, Authorization="Bearer k")
            assert up.status == 200 and up.headers["content-type"] == "application/json"
            assert (await up.read()).startswith(b'{"n": ')
            up.release()
        assert server.connections == 1  # pooled: one connection served all three
        head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[0] == b"POST /v1/completions HTTP/1.1"
        assert b"Authorization: Bearer k" in head and b"Content-Length: 15" in head
        assert server.requests[0].endswith(b'{"prompt":"hi"}')
        link.close()


async def test_a_connection_closed_before_any_answer_raises_dropped_and_the_next_request_gets_a_fresh_one():
    async def answer(request, writer):
        return "close"  # read the request, answer nothing (an engine that dropped a kept-alive connection)

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        with pytest.raises(Dropped):
            await post(link, server.url)
        server.answer = lambda request, writer: _write(writer, whole(b"{}"))
        up = await post(link, server.url)
        assert await up.read() == b"{}"
        assert server.connections == 2


async def _write(writer, data):
    writer.write(data)


async def test_an_answer_that_says_connection_close_is_not_reused():
    async with RawServer(lambda r, w: _write(w, whole(b"{}", b"Connection: close\r\n"))) as server:
        link = EngineLink(server.url)
        for _ in range(2):
            up = await post(link, server.url)
            await up.read()
            up.release()
        assert server.connections == 2


async def test_a_stream_is_handed_on_as_it_arrives_not_when_it_ends():
    more = asyncio.Event()

    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"8\r\ndata: 1\n\r\n")
        await more.wait()
        writer.write(b"8\r\ndata: 2\n\r\n0\r\n\r\n")

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        chunks = up.content.iter_any()
        assert await asyncio.wait_for(anext(chunks), 5) == b"data: 1\n"  # before the engine sent the rest
        more.set()
        assert b"".join([c async for c in chunks]) == b"data: 2\n"
        up.release()
        assert link._take() is not None  # a whole stream's connection went back to the pool


async def test_an_answer_head_past_its_bound_is_refused_and_the_connection_closed():
    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (80 << 10) + b"\r\n\r\n")

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        with pytest.raises(BrokenAnswer, match="larger than 64 KiB"):
            await post(link, server.url)
        await asyncio.wait_for(server.closed.wait(), 5)


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                                     b"HTTP/1.1 100 Continue\r\n\r\n"])
async def test_an_answer_that_is_not_valid_http_is_refused(garbage):
    async with RawServer(lambda r, w: _write(w, garbage)) as server:
        link = EngineLink(server.url)
        with pytest.raises(BrokenAnswer):
            up = await post(link, server.url)
            await up.read()


async def test_a_body_cut_before_its_length_is_an_error_not_a_short_answer():
    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        return "close"

    async with RawServer(answer) as server:
        up = await post(EngineLink(server.url), server.url)
        with pytest.raises(BrokenAnswer, match="middle of its answer"):
            await up.read()


async def test_a_chunked_body_cut_before_its_end_is_an_error():
    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        return "close"

    async with RawServer(answer) as server:
        up = await post(EngineLink(server.url), server.url)
        with pytest.raises(BrokenAnswer):
            await up.read()


async def test_a_body_without_a_length_runs_to_the_connection_end():
    async def answer(request, writer):
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 1}")
        return "close"

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        assert await up.read() == b'{"a": 1}'
        up.release()
        assert link._take() is None  # its end was the connection's: nothing to reuse


async def test_bytes_past_the_answer_end_the_connection():
    async with RawServer(lambda r, w: _write(w, whole(b"{}") + b"HTTP/1.1 200 OK\r\n")) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        assert await up.read() == b"{}"
        up.release()
        up = await post(link, server.url)
        await up.read()
        assert server.connections == 2


async def test_a_reader_that_falls_behind_stops_the_connection_reading():
    async def answer(request, writer):
        size = 8 << 20
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size >> 16):
            writer.write(b"x" * (1 << 16))
            await writer.drain()  # blocks once the link stops reading and the socket buffers are full

    async with RawServer(answer) as server:
        up = await post(EngineLink(server.url), server.url)
        while not up._paused:  # nothing consumed meanwhile: it stops reading (the test times out if it never does)
            await asyncio.sleep(0.01)
        assert HIGH_WATER <= up._buffered < HIGH_WATER + (1 << 20)  # not the 8 MiB the engine wanted to send
        assert len(await up.read()) == 8 << 20  # and reading resumes


async def test_a_cancelled_request_closes_its_connection_so_the_engine_stops():
    got = asyncio.Event()

    async def answer(request, writer):
        got.set()
        await server.generating()
        return "close"

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        task = asyncio.ensure_future(post(link, server.url))
        await asyncio.wait_for(got.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 5)  # the engine saw its connection close
        assert link.unused


async def test_a_closed_answer_mid_stream_closes_the_connection():
    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await server.generating()
        return "close"

    async with RawServer(answer) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        assert await anext(up.content.iter_any()) == b"hello"
        up.close()
        await asyncio.wait_for(server.closed.wait(), 5)
        assert link.unused


async def test_nothing_listening_is_not_connected():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()
    with pytest.raises(NotConnected):
        await post(EngineLink(url), url)


async def test_a_unix_socket_engine(tmp_path):
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(whole(b'{"unix": true}'))
        await writer.drain()

    path = str(tmp_path / "engine.sock")
    server = await asyncio.start_unix_server(serve, path)
    try:
        link = EngineLink("http://localhost", socket_path=path)
        up = await link.post("http://localhost/v1/completions", data=b"", headers={})
        assert await up.read() == b'{"unix": true}'
    finally:
        server.close()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    async with RawServer(lambda r, w: _write(w, whole(b"{}"))) as server:
        with pytest.raises(ValueError, match="line break"):
            await post(EngineLink(server.url), server.url, Authorization="Bearer k\r\nX-Evil: 1")
        assert server.connections == 0


def test_only_plain_http_addresses_are_linked():
    with pytest.raises(ValueError, match="plain http"):
        EngineLink("https://example.com")


async def test_an_answer_released_twice_goes_back_to_the_pool_once():
    async with RawServer(lambda r, w: _write(w, whole(b"{}"))) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        await up.read()
        up.release()
        up.release()
        up.close()  # after release: must not close the pooled connection another request may be using
        assert len(link._idle) == 1 and not link._idle[0].closed


async def test_a_connection_is_not_reused_once_the_engine_may_have_timed_it_out():
    async with RawServer(lambda r, w: _write(w, whole(b"{}", b"Keep-Alive: timeout=1, max=100\r\n"))) as server:
        link = EngineLink(server.url)
        for _ in range(2):
            up = await post(link, server.url)
            await up.read()
            up.release()
        assert server.connections == 2  # timeout=1 leaves no safe idle time: a new connection each time


async def test_a_second_answer_in_the_same_bytes_is_not_mixed_into_the_first():
    async with RawServer(lambda r, w: _write(w, whole(b'{"ok":1}') + b"HTTP/1.1 500 Oops\r\nX-Injected: 1\r\n"
                                                  b"Content-Length: 7\r\n\r\n{\"x\":2}")) as server:
        link = EngineLink(server.url)
        up = await post(link, server.url)
        assert await up.read() == b'{"ok":1}'
        assert up.status == 200 and "X-Injected" not in up.headers
        up.release()
        assert link._take() is None  # the connection that carried it is not trusted again


async def test_an_endless_trailer_is_refused_before_it_grows():
    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: ")
        for _ in range(64):  # 4 MiB of one trailer line, never ended
            writer.write(b"a" * (1 << 16))
            await writer.drain()
        await server.generating()
        return "close"

    async with RawServer(answer) as server:
        up = await post(EngineLink(server.url), server.url)
        with pytest.raises(BrokenAnswer, match="without body bytes"):
            await up.read()


async def test_an_engine_that_accepts_no_connection_is_not_waited_on_for_ever(monkeypatch):
    monkeypatch.setattr(engine_link, "CONNECT_SECONDS", 0.5)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once its queue is full, new connections are not answered
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        with pytest.raises(NotConnected, match=r"within 0\.5 s"):
            await post(EngineLink(f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}")
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_an_answer_given_before_its_request_was_sent_whole_leaves_the_connection_out_of_the_pool():
    async def serve(reader, writer):  # answers at once, reading only the head (its body is still on the way)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        link = EngineLink(url)
        up = await post(link, url, body=b"x" * (32 << 20))  # far more than the socket buffers hold
        assert up.status == 413 and await up.read() == b"{}"
        up.release()
        assert link._take() is None  # its request's end would be read as the next request's start
    finally:
        server.close()


async def test_a_stopped_model_leaves_the_answers_of_others_on_the_same_server_alone():
    more = asyncio.Event()

    async def answer(request, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await more.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")

    async with RawServer(answer) as server:  # one server hosting two models, as an Ollama server does
        upstreams = Upstreams()
        upstreams.open()
        a, b = (SimpleNamespace(base_url=server.url, socket_path=None, remote=False, timeouts=None) for _ in "ab")
        try:
            link = upstreams.relay(b)
            assert upstreams.relay(a) is link
            up = await post(link, server.url)
            chunks = up.content.iter_any()
            assert await anext(chunks) == b"one"
            upstreams.drop(a)  # model a stopped while b answers
            more.set()
            assert b"".join([c async for c in chunks]) == b"two"
        finally:
            await upstreams.close()

"""Degraded transport (issue 23, item 9), against the real controller in-process over real sockets: a body that is
not the encoding it claims is a 400 (not a 500 "please report it"); a body or headers that never finish are cut off
(408, or the connection closed) instead of being held forever; and bodies in flight share one bounded budget, so
many held-open large bodies get 503 instead of ballooning the controller's memory."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.runtimes.process import free_port


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


async def start(**server) -> Controller:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[engines.ollama]\nmode = "off"\n')
    overrides = {"server.port": free_port(), **{f"server.{k}": v for k, v in server.items()}}
    c = Controller(load_settings(paths, overrides), paths, gpu_probe=NoGpu())
    await c.start()
    return c


@pytest.fixture
async def controller(request):
    c = await start(**getattr(request, "param", {}))
    yield c
    await c.close()


async def _open(c: Controller, head: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
    writer.write(head)
    await writer.drain()
    return reader, writer


def _head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def test_gzip_that_is_not_gzip_is_a_400(controller: Controller) -> None:
    body = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode()
    async with httpx.AsyncClient(base_url=controller.url, timeout=10) as http:
        r = await http.post("/v1/chat/completions", content=body,
                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "bad_content_encoding" and "gzip" in error["message"]
        assert error["type"] == "invalid_request_error"
        # a real gzip body is read as before (the model does not exist: the handler saw the request)
        r = await http.post("/v1/chat/completions", content=gzip.compress(body),
                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("controller", [{"body_timeout": 0.5}], indirect=True)
async def test_a_body_that_never_finishes_gets_408(controller: Controller) -> None:
    reader, writer = await _open(controller, _head("/v1/chat/completions", 1000) + b'{"model": ')
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:"))
        body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert body["error"]["code"] == "request_timeout" and "server.body_timeout" in body["error"]["message"]


@pytest.mark.parametrize("controller", [{"header_timeout": 0.5}], indirect=True)
async def test_headers_that_never_finish_are_cut_off(controller: Controller) -> None:
    reader, writer = await _open(controller, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        assert await asyncio.wait_for(reader.read(), 20) == b""  # closed, nothing answered
    finally:
        writer.close()


@pytest.mark.parametrize("controller", [{"max_body_bytes": 65536, "max_bodies_bytes": 131072}], indirect=True)
async def test_bodies_in_flight_share_one_budget(controller: Controller) -> None:
    held = [await _open(controller, _head("/v1/chat/completions", 65536) + b"{") for _ in range(2)]
    async with httpx.AsyncClient(base_url=controller.url, timeout=10) as http:
        small = {"model": "nope", "messages": [{"role": "user", "content": "x" * 200}]}

        async def status() -> int:
            return (await http.post("/v1/chat/completions", json=small)).status_code

        # the two held bodies take the whole budget as soon as their headers are in
        for _ in range(200):
            r = await http.post("/v1/chat/completions", json=small)
            if r.status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1" and r.json()["error"]["code"] == "server_busy"
        for _reader, writer in held:
            writer.close()
        # their clients left: their share comes back, and a request is served again
        for _ in range(200):
            if (code := await status()) != 503:
                break
            await asyncio.sleep(0.05)
        assert code == 404  # the handler ran: no such model


@pytest.mark.parametrize("controller", [{"max_body_bytes": 65536, "max_bodies_bytes": 100000}], indirect=True)
async def test_a_gzip_body_is_charged_its_decompressed_size(controller: Controller) -> None:
    """A few hundred gzip bytes that decompress to 60 kB hold 60 kB of the controller's memory: the budget must
    count that, not the compressed Content-Length (which let compressed bodies pass server.max_bodies_bytes)."""
    held = await _open(controller, _head("/v1/chat/completions", 65536) + b"{")
    big = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x" * 60000}]}).encode()
    packed = gzip.compress(big)
    assert len(packed) < 1000
    async with httpx.AsyncClient(base_url=controller.url, timeout=10) as http:
        # the held body is in the budget once a 40 kB plain body no longer fits beside it
        plain = {"model": "nope", "messages": [{"role": "user", "content": "x" * 40000}]}
        for _ in range(200):
            if (r := await http.post("/v1/chat/completions", json=plain)).status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 503, r.text
        zipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        r = await http.post("/v1/chat/completions", content=packed, headers=zipped)
        assert r.status_code == 503, r.text  # 60 kB beside the held 64 kB passes the 100 kB budget
        assert r.headers["Retry-After"] == "1" and r.json()["error"]["code"] == "server_busy"
        # a plain body of the compressed one's size still fits: it is the decompressed size that counts
        small = {"model": "nope", "messages": [{"role": "user", "content": "x" * len(packed)}]}
        assert (await http.post("/v1/chat/completions", json=small)).status_code == 404
        held[1].close()
        # the held client left: the gzip body is read, and its handler runs (no such model)
        for _ in range(200):
            if (r := await http.post("/v1/chat/completions", content=packed, headers=zipped)).status_code != 503:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 404, r.text

"""The floor under the gateway's added latency: what one extra hop through a Python process costs with no work at
all in it, on this machine.

    .venv/bin/python benchmarks/relay_floor.py [--requests 300] [--mode pipe|aiohttp|link]

Starts the default engine (xllamacpp) on the tiny random-weight GGUF with a key, and a byte pipe in its own
process (uvloop, asyncio protocols: every byte from the client goes to the engine and back, no HTTP parsing, no
routing, no JSON). Then it alternates the same 1-token completion sent straight to the engine and through the
pipe, as benchmarks/gateway_overhead.py does, and prints the added p50/p99. Whatever the pipe adds, a gateway
written in Python on this event loop cannot add less; what the gateway adds beyond it is its own work (HTTP
parsing twice, routing, policy, metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gateway_overhead import percentile, unary  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

from llmctl.runtimes.base import Deployment  # noqa: E402
from llmctl.runtimes.llama_cpp import XLlamaCpp  # noqa: E402
from llmctl.runtimes.process import free_port  # noqa: E402


class _Pipe(asyncio.Protocol):
    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.peer, self.pending = target, None, []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()
        self.opening = asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        _t, back = await loop.create_connection(lambda: _Back(self), *self.target)
        self.peer = back
        for data in self.pending:
            back.transport.write(data)
        self.pending.clear()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.peer is None:  # arrived before the engine connection was up
            self.pending.append(data)
        else:
            self.peer.transport.write(data)

    def connection_lost(self, exc) -> None:
        if self.peer is not None:
            self.peer.transport.close()


class _Back(asyncio.Protocol):
    def __init__(self, front: _Pipe) -> None:
        self.front = front

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.front.transport.write(data)

    def connection_lost(self, exc) -> None:
        self.front.transport.close()


def aiohttp_main(listen: int, target: int, link: bool = False) -> None:
    """The least an aiohttp gateway does: read the body, parse its JSON (to route), post it with aiohttp's client
    (``link``: with llmctl's engine link, as the gateway does for local engines), answer with the whole body."""
    import json

    import aiohttp
    import uvloop
    from aiohttp import web

    from llmctl.app.controller.engine_link import EngineLink

    async def serve() -> None:
        url = f"http://127.0.0.1:{target}"
        session = EngineLink(url) if link else aiohttp.ClientSession(auto_decompress=False)

        async def forward(request: web.Request) -> web.Response:
            raw = await request.read()
            json.loads(raw)
            up = await session.post(url + request.path, data=raw, headers={
                "Content-Type": "application/json", "Authorization": request.headers["Authorization"]})
            async with up:
                data = await up.read()
                return web.Response(body=data, status=up.status, content_type="application/json")

        async def health(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application(handler_args={"access_log": None})
        app.add_routes([web.post("/v1/completions", forward), web.get("/health", health)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", listen).start()
        await asyncio.Event().wait()

    uvloop.run(serve())


def pipe_main(listen: int, target: int) -> None:
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Pipe(("127.0.0.1", target)), "127.0.0.1", listen)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--mode", choices=("pipe", "aiohttp", "link"), default="pipe",
                    help="pipe: bytes only; aiohttp: the least an aiohttp server + client relay does; link: the same "
                    "with llmctl's engine link as the client")
    ap.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)  # the relay's own process
    args = ap.parse_args()
    if args.serve:
        if args.mode == "pipe":
            pipe_main(*args.serve)
        else:
            aiohttp_main(*args.serve, link=args.mode == "link")
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "bench.gguf", n_layers=2, n_embd=64)
        engine = XLlamaCpp()
        d = Deployment("bench", model, free_port(), ctx_size=2048, parallel=1, threads=1, api_key="bench-key")
        backend = subprocess.Popen(engine.build_command(d), env={**os.environ, **engine.build_env(d)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        listen = free_port()
        pipe = subprocess.Popen([sys.executable, __file__, "--mode", args.mode, "--serve", str(listen), str(d.port)])
        direct, piped = f"http://127.0.0.1:{d.port}", f"http://127.0.0.1:{listen}"
        try:
            with httpx.Client(timeout=60, headers={"Authorization": "Bearer bench-key"}) as client:
                for _ in range(600):
                    try:
                        if client.get(direct + "/health").status_code == 200 and \
                                client.get(piped + "/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                for _ in range(20):
                    unary(client, direct)
                    unary(client, piped)
                diffs = []
                for i in range(args.requests):
                    if i % 2:
                        p, q = unary(client, piped), unary(client, direct)
                    else:
                        q, p = unary(client, direct), unary(client, piped)
                    diffs.append(p - q)
        finally:
            for proc in (pipe, backend):
                proc.terminate()
                proc.wait(30)
    what = {"pipe": "byte pipe (uvloop protocols, no HTTP work)",
            "aiohttp": "aiohttp server + client relay (read, json.loads, post, answer)",
            "link": "aiohttp server + llmctl's engine link relay (read, json.loads, post, answer)"}[args.mode]
    print(f"{what}, {args.requests} alternating pairs")
    print(f"  added   p50 {statistics.median(diffs) * 1000:7.3f} ms   p99 {percentile(diffs, 99) * 1000:7.3f} ms")


if __name__ == "__main__":
    main()

"""The engine-metrics scrape against tiny aiohttp servers standing in for engines, reached through the controller's
own sessions (``Upstreams``): a big ``/metrics`` written in pieces is read whole, an engine that would gzip it is
asked not to, and one backend failing (its session closed because it stopped, a page nested past the stack) leaves
that backend out without failing the scrape."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from llmctl.app.controller.engine_load import NO_ANSWER, collect
from llmctl.app.controller.engine_metrics import scrape
from llmctl.app.controller.upstream import Upstreams
from llmctl.runtimes.base import BackendState, ReportsLoad
from llmctl.runtimes.llama_cpp import XLlamaCpp
from llmctl.runtimes.process import free_port

FIXTURES = Path(__file__).parent.parent / "fixtures" / "llamacpp"
BUSY = (FIXTURES / "metrics-busy.txt").read_text()
SLOTS = (FIXTURES / "slots-busy.json").read_bytes()
PADDING = 4000  # ~85 bytes a family: about 340 KB, as a vLLM with many series


@dataclass
class Backend:
    """A stand-in for a RunningDeployment on this machine: what the scrape reads of one."""

    name: str
    port: int
    engine: object = field(default_factory=XLlamaCpp)
    state: BackendState = BackendState.READY
    socket_path: str | None = None
    remote: bool = False
    in_flight: int | None = None  # None: this stand-in does not say, so the scrape always asks it
    last_used: float | None = None

    @property
    def load_reporter(self) -> ReportsLoad | None:  # as process.Backend's: its engine, when that engine reports load
        return self.engine if isinstance(self.engine, ReportsLoad) else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer k-{self.name}"}

    def status(self) -> dict:
        return {"engine": self.engine.key, "state": self.state.value, "memory_bytes": 1 << 20}


def big_metrics() -> str:
    pad = "".join(f"# HELP llamacpp:pad_{i} padding\n# TYPE llamacpp:pad_{i} gauge\nllamacpp:pad_{i} {i}\n"
                  for i in range(PADDING))
    return pad + BUSY  # the families the load is read from come last


def engine(metrics: str, slots: bytes = SLOTS) -> web.Application:
    """An engine whose /metrics comes in four writes with a pause between them, gzipped when the client takes
    gzip (as a server behind a compressing proxy)."""

    async def serve_metrics(request: web.Request) -> web.StreamResponse:
        body = metrics.encode()
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        if gzipped:
            body = gzip.compress(body)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4",
                                               **({"Content-Encoding": "gzip"} if gzipped else {})})
        await response.prepare(request)
        step = len(body) // 4 + 1
        for i in range(0, len(body), step):
            await response.write(body[i:i + step])
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    async def serve_slots(request: web.Request) -> web.Response:
        return web.Response(body=slots, content_type="application/json")

    app = web.Application()
    app.add_routes([web.get("/metrics", serve_metrics), web.get("/slots", serve_slots)])
    return app


async def start(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_a_big_metrics_page_written_in_pieces_is_read_whole_and_uncompressed() -> None:
    text = big_metrics()
    assert len(text) > 256 << 10
    backend = Backend("big", free_port())
    runner = await start(engine(text), backend.port)
    upstreams = Upstreams()
    upstreams.open()
    try:
        scraped = await scrape(upstreams.session, [backend])
    finally:
        await upstreams.close()
        await runner.cleanup()
    names = {fam.name for fam in scraped["big"]}
    assert {f"llamacpp:pad_{i}" for i in range(PADDING)} <= names
    assert {"llamacpp:prompt_tokens", "llamacpp:requests_processing", "llamacpp:requests_deferred"} <= names


async def test_one_backend_failing_leaves_it_out_never_the_scrape() -> None:
    """``stopped``'s session was closed after the scrape began (the backend stopped meanwhile); ``nested``'s /slots
    is JSON nested past Python's stack. ``well`` still gets its figures, ``nested`` its /metrics ones."""
    well, nested, stopped = Backend("well", free_port()), Backend("nested", free_port()), Backend("gone", free_port())
    deep = b"[" * 100_000 + b"]" * 100_000
    runners = [await start(engine(BUSY), well.port), await start(engine(BUSY, deep), nested.port),
               await start(engine(BUSY), stopped.port)]
    upstreams = Upstreams()
    upstreams.open()
    closed = aiohttp.ClientSession()
    await closed.close()

    def session_for(backend) -> aiohttp.ClientSession:
        return closed if backend is stopped else upstreams.session(backend)

    try:
        scraped, loads = await collect(session_for, [well, nested, stopped])
    finally:
        await upstreams.close()
        for runner in runners:
            await runner.cleanup()
    assert scraped["well"] and scraped["nested"] and scraped["gone"] == []
    by_name = {m.model: m for m in loads}
    assert by_name["well"].load.requests_running == 2 and by_name["well"].load.kv_cache_usage is not None
    assert by_name["nested"].load.requests_running == 2 and by_name["nested"].load.kv_cache_usage is None
    assert (by_name["gone"].load, by_name["gone"].note) == (None, NO_ANSWER)


async def test_an_idle_engine_is_not_asked_again_until_a_request_goes_through_it() -> None:
    """llama.cpp logs a line for every /metrics and /slots it answers: an engine idle since its last answer (none in
    flight, ``last_used`` unchanged) gets its last answer served again; a request through it, or a busy one, is
    asked every time."""
    idle_metrics = (FIXTURES / "metrics-idle.txt").read_text()
    idle_slots = (FIXTURES / "slots-idle.json").read_bytes()
    hits: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler):
        hits.append(request.path)
        return await handler(request)

    app = engine(idle_metrics, idle_slots)
    app.middlewares.append(count)
    backend = Backend("quiet", free_port())
    backend.in_flight, backend.last_used = 0, 1.0
    runner = await start(app, backend.port)
    upstreams = Upstreams()
    upstreams.open()
    try:
        first = await collect(upstreams.session, [backend])
        asked = len(hits)
        assert sorted(hits) == ["/metrics", "/slots"]
        for _ in range(5):
            again = await collect(upstreams.session, [backend])
        assert len(hits) == asked  # not asked: nothing went through it
        assert again[1][0].load == first[1][0].load and again[0]["quiet"]
        backend.last_used = 2.0  # a request went through it
        await collect(upstreams.session, [backend])
        assert len(hits) == 2 * asked
        backend.in_flight = 1  # one is running: asked every time
        await collect(upstreams.session, [backend])
        await collect(upstreams.session, [backend])
        assert len(hits) == 4 * asked
    finally:
        await upstreams.close()
        await runner.cleanup()

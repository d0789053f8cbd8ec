"""How the controller reaches a backend: the pooled TCP session for one on a port, a session of its own for one on
a Unix socket (vLLM under llmctl). First against two tiny aiohttp servers, one on each kind of socket; then the
real gateway, scheduler and supervisor with the fake engine on a socket, plain and streamed requests and the
engine-metrics scrape going over it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from fake_engine import FakeEngine, FakeSocketEngine

from llmctl.app.controller.directory import ModelDirectory
from llmctl.app.controller.engine_metrics import scrape
from llmctl.app.controller.gateway import Gateway, _said
from llmctl.app.controller.metrics import Metrics
from llmctl.app.controller.upstream import Upstreams
from llmctl.catalog.store import ModelEntry, ModelStore
from llmctl.runtimes.base import CHAT, COMPLETIONS, BackendState, Deployment
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.scheduler import Scheduler
from llmctl.runtimes.sockets import make_socket_dir
from llmctl.runtimes.state_file import StateFile

POLICY = RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1)


def _backend(tmp_path: Path, name: str, engine, on_change=None) -> Backend:
    d = Deployment(name, tmp_path / f"{name}.gguf", free_port(), api_key="k-" + name, run_dir=tmp_path / "run" / name)
    return Backend(d, engine, log_dir=tmp_path / "logs", state=StateFile(tmp_path / "state.json"), policy=POLICY,
                   on_change=on_change)


async def _site(app: web.Application, **where) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.UnixSite(runner, where["path"]) if "path" in where else web.TCPSite(runner, "127.0.0.1", where["port"])
    await site.start()
    return runner


def _server(name: str) -> web.Application:
    """A stand-in backend that says which one it is, and streams."""

    async def who(request: web.Request) -> web.Response:
        return web.json_response({"server": name, "host": request.headers.get("Host"),
                                  "auth": request.headers.get("Authorization")})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in (name, "!"):
            await response.write(f"data: {piece}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.add_routes([web.get("/who", who), web.post("/v1/chat/completions", stream)])
    return app


async def test_each_backend_is_reached_where_it_listens(tmp_path: Path) -> None:
    tcp = _backend(tmp_path, "tcp", FakeEngine())
    uds = _backend(tmp_path, "uds", FakeSocketEngine())
    assert tcp.socket_path is None and uds.socket_path is not None
    make_socket_dir(Path(uds.socket_path).parent)
    runners = [await _site(_server("tcp"), port=tcp.spec.port), await _site(_server("unix"), path=uds.socket_path)]
    upstreams = Upstreams()
    upstreams.open()
    try:
        for backend, name, host in ((tcp, "tcp", f"127.0.0.1:{tcp.spec.port}"), (uds, "unix", "localhost")):
            session = upstreams.session(backend)
            async with session.get(backend.base_url + "/who", headers=backend.auth_headers) as r:
                assert await r.json() == {"server": name, "host": host, "auth": f"Bearer k-{backend.name}"}
            async with session.post(backend.base_url + "/v1/chat/completions", data=b"{}") as r:
                streamed = b"".join([chunk async for chunk in r.content.iter_any()])
            assert streamed == f"data: {name}\n\ndata: !\n\n".encode()
        assert upstreams.session(uds) is upstreams.session(uds)  # one session per socket, reused
        assert upstreams.session(uds) is not upstreams.session(tcp)
        assert upstreams.sockets() == [uds.socket_path]
        first = upstreams.session(uds)
        upstreams.forget(uds.socket_path)  # its backend stopped
        assert upstreams.sockets() == [] and upstreams.session(uds) is not first
        await upstreams.close()
        assert first.closed and upstreams.sockets() == [] and not upstreams.opened
    finally:
        await upstreams.close()
        for runner in runners:
            await runner.cleanup()


async def test_the_gateway_serves_a_backend_on_a_unix_socket(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path / "data")
    store.import_file(tiny_gguf, "tiny")
    made: list[Backend] = []
    gateway: Gateway | None = None

    async def make(entry: ModelEntry) -> Backend:
        made.append(_backend(tmp_path, entry.name, FakeSocketEngine(), on_change=gateway.backend_changed))
        return made[-1]

    scheduler = Scheduler(make)
    gateway = Gateway(ModelDirectory(store, []), scheduler, Metrics(), lambda entry: frozenset({CHAT, COMPLETIONS}))
    await gateway.open()
    app = web.Application()
    app.add_routes(gateway.routes())
    port = free_port()
    runner = await _site(app, port=port)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "ok"
            backend = made[0]
            # the gateway's own requests go over its engine link, bound to the socket
            assert backend.state is BackendState.READY and gateway.upstreams.linked() == [backend.socket_path]
            async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                events = [line[6:] async for line in s.aiter_lines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]) == "ok!"
        scraped = await scrape(gateway.upstreams.session, scheduler.backends.values())  # aiohttp's, per socket
        assert backend.socket_path in gateway.upstreams.sockets()
        assert {s.name for fam in scraped["tiny"] for s in fam.samples} >= {"fake:requests_running",
                                                                             "fake:generation_tokens_total"}
        await scheduler.shutdown()
        assert backend.state is BackendState.STOPPED and gateway.upstreams.sockets() == []  # its session closed
        assert gateway.upstreams.linked() == []  # and its link
    finally:
        await scheduler.shutdown()
        await gateway.close()
        await runner.cleanup()


@pytest.mark.parametrize("data, said", [
    (b'{"error": {"code": 400, "message": "the request exceeds the available context size"}}',
     "the request exceeds the available context size"),
    (b'{"detail": "Not Found"}', "Not Found"),  # FastAPI's shape
    (b'{"error": null, "message": "x"}', "x"),
    (b'{"error": ""}', b'{"error": ""}'.decode()),
    (b"[" * 5000, "[" * 300 + "…"),  # nested past Python's stack: shown as bytes, never a 500
    (b"[1,2]", "[1,2]"),
    (b'{"error": {"message": "\\u001b]0;owned\\u0007\\u001b[2J"}}', r"\x1b]0;owned\x07\x1b[2J"),  # shown, not obeyed
    (b"", "(nothing)"),
    (b"x" * (1 << 20), "x" * 300 + "…"),
])
def test_what_an_engine_said_is_kept_whatever_it_sent(data: bytes, said: str) -> None:
    assert _said(data) == "the model server answered: " + said

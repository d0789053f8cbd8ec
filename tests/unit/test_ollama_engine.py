"""Ollama as an engine (runtimes/ollama_engine.py) against the Ollama fixture (recorded Ollama 0.23.0): the model
directory's entries, a deployment's load / readiness / unload / keep_alive mirrored from /api/ps, the scheduler
driving it, and the spawned server's argv and environment (golden: no Ollama binary can run here)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from ollama_fixture import RECORDED_NAME, OllamaFixture

from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import CHAT, COMPLETIONS, EMBEDDINGS, BackendFailed, BackendState, Deployment
from llmctl.runtimes.ollama_engine import (
    OllamaServe,
    OllamaServer,
    keep_alive_for,
    ollama_name,
)
from llmctl.runtimes.ollama_wire import OllamaError
from llmctl.runtimes.process import launch_env
from llmctl.runtimes.scheduler import Scheduler

NAME = f"ollama/{RECORDED_NAME}"


@pytest.fixture
def fx(tiny_gguf: Path):
    digest = f"sha256:{hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()}"
    with OllamaFixture(gguf_digest=digest, time_scale=0.1) as f:
        yield f


@pytest.fixture
async def server(fx, tmp_path):
    s = OllamaServer(fx.url, log_dir=tmp_path / "logs")
    yield s
    await s.close()


async def _entry(server: OllamaServer) -> ModelEntry:
    entry = await server.entry(NAME)
    assert entry is not None
    return entry


async def test_models_are_listed_as_ollama_name_tag_with_their_facts(server, fx):
    assert await server.entries() == [] and server.last_error is None
    fx.seed_model()
    (entry,) = await server.entries(fresh=True)
    assert (entry.name, entry.format, entry.path, entry.size) == (NAME, "ollama", "ollama:smollm2:135m", 98363007)
    f = entry.facts
    assert (f["source"], f["architecture"], f["quant"], f["parameter_size"], f["context_length"]) == (
        "ollama", "llama", "Q4_1", "134.52M", 8192)
    # capabilities ["completion"]; Ollama 0.23.0 answered /v1/embeddings for it too (recorded)
    assert set(f["capabilities"]) == {CHAT, COMPLETIONS, EMBEDDINGS}
    assert await server.entry("ollama/smollm2") is None  # :latest, which it does not have
    assert await server.entry("smollm2:135m") is None  # not an Ollama name


async def test_an_unreachable_ollama_lists_nothing_and_says_why(tmp_path):
    s = OllamaServer("http://127.0.0.1:9", log_dir=tmp_path)
    try:
        assert await s.entries() == []
        assert "Cannot reach Ollama at http://127.0.0.1:9" in s.last_error
        # at start-up most machines have no Ollama: one calm line, not the error
        line = await s.announce()
        assert line.startswith("ollama: none answers at http://127.0.0.1:9") and 'mode = "off"' in line, line
    finally:
        await s.close()


async def test_deployment_loads_is_ready_when_listed_and_unloads_with_keep_alive_zero(server, fx):
    fx.seed_model()
    d = server.deployment(await _entry(server), ttl=None, log_dir=server.log_dir)
    d.start()
    assert d.state is BackendState.STARTING and d.alive
    await d.wait_ready(10)
    assert d.state is BackendState.READY and d.upstream_model == RECORDED_NAME and d.auth_headers == {}
    st = d.status()
    assert (st["runtime"], st["engine"], st["command"], st["memory_bytes"], st["vram_bytes"], st["ctx_size"]) == (
        "ollama", "ollama", "attached", 190948608, 0, 4096)
    assert st["expires_at"] is None and st["keep_alive"] == -1 and st["port"] == fx.port
    assert ("POST", "/api/generate") in fx.requests and fx.loaded[RECORDED_NAME].expires_ns > 10**19  # forever

    await d.stop()
    assert d.state is BackendState.STOPPED and d.memory_bytes() is None
    for _ in range(250):  # the fixture, like Ollama, lists an unloaded model a few ms longer
        if fx._listed() == []:
            break
        await asyncio.sleep(0.02)
    assert fx._listed() == []  # unloaded in Ollama
    assert fx.requests[-1] == ("POST", "/api/generate")
    assert "unloaded smollm2:135m (keep_alive 0)" in d.log_path.read_text()


async def test_a_model_ollama_unloads_by_itself_becomes_stopped(server, fx):
    fx.seed_model()
    d = server.deployment(await _entry(server), ttl=5, log_dir=server.log_dir)
    # Ollama keeps it (keep_alive -1); llmctl's scheduler unloads it by its TTL like any deployment: one clock
    assert (d.ollama_keep_alive, d.idle_ttl) == (-1, 5)
    d.start()
    await d.wait_ready(10)
    from llmctl.runtimes.ollama import OllamaApi

    async with OllamaApi(fx.url) as someone_else:  # `ollama stop` from another terminal
        await someone_else.unload(RECORDED_NAME)
    for _ in range(250):
        if fx._listed() == []:
            break
        await asyncio.sleep(0.02)
    await server.refresh()
    assert d.state is BackendState.STOPPED and not d.alive
    assert "Ollama unloaded smollm2:135m" in d.tail[-1]
    d.start()  # loads again
    await d.wait_ready(10)
    assert d.state is BackendState.READY


async def test_keep_alive_is_put_back_after_a_request(server, fx):
    """A request without keep_alive (the /v1 routes) sets Ollama's default 5m; the deployment's -1 is resent."""
    fx.seed_model()
    d = server.deployment(await _entry(server), ttl=None, log_dir=server.log_dir)
    d.start()
    await d.wait_ready(10)
    fx._touch(RECORDED_NAME, None)  # what a /v1/chat/completions does to expires_at
    loads = fx.requests.count(("POST", "/api/generate"))
    d.in_flight += 1
    d.in_flight -= 1
    for _ in range(100):
        if fx.requests.count(("POST", "/api/generate")) > loads and fx.loaded[RECORDED_NAME].expires_ns > 10**19:
            break
        await asyncio.sleep(0.02)
    assert fx.loaded[RECORDED_NAME].expires_ns > 10**19


async def test_a_model_that_fails_to_load_is_failed_with_ollamas_reason(server, fx):
    fx.seed_model()
    entry = await _entry(server)
    fx.models.clear()  # deleted behind llmctl's back
    d = server.deployment(entry, ttl=None, log_dir=server.log_dir)
    d.start()
    with pytest.raises(BackendFailed) as err:
        await d.wait_ready(10)
    assert d.state is BackendState.FAILED and "no model 'smollm2:135m'" in err.value.message


async def test_the_scheduler_runs_ollama_deployments_like_any_other(server, fx):
    fx.seed_model()

    async def make(entry):
        return server.deployment(entry, ttl=None, log_dir=server.log_dir)

    sched = Scheduler(make, max_loaded=1)
    entry = await _entry(server)
    async with sched.use(entry) as backend:
        assert backend.state is BackendState.READY and backend.in_flight == 1
    assert sched.get(NAME) is backend
    await sched.shutdown()  # unloads; the server keeps running
    assert backend.state is BackendState.STOPPED
    assert await server.api.version() == "0.23.0"


def test_names():
    assert ollama_name("ollama/smollm2:135m") == "smollm2:135m"
    assert ollama_name("ollama:smollm2:135m") == "smollm2:135m"
    assert ollama_name("ollama/smollm2") == "smollm2:latest"
    assert ollama_name("ollama/library/smollm2") == "library/smollm2:latest"
    assert ollama_name("smollm2:135m") is None
    with pytest.raises(OllamaError):
        ollama_name("ollama/../etc")
    assert (keep_alive_for(None), keep_alive_for(300), keep_alive_for(2.5), keep_alive_for(float("inf"))) == (
        -1, "300s", "2.500s", -1)


def test_spawned_server_argv_and_environment_golden(tmp_path):
    """`ollama serve` on a private loopback port with its own store; the user's OLLAMA_* are not inherited, HOME
    is. (No Ollama binary exists here: this pins what would be run, not a run.)"""
    serve = OllamaServe("/usr/local/bin/ollama", tmp_path / "store")
    spec = Deployment("ollama-serve", tmp_path / "store", port=41234)
    assert serve.build_command(spec) == ["/usr/local/bin/ollama", "serve"]
    user = {"HOME": "/home/u", "PATH": "/usr/bin", "OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_MODELS": "/home/u/m",
            "OLLAMA_KEEP_ALIVE": "24h", "OLLAMA_ORIGINS": "*"}
    assert launch_env(serve, spec, user) == {
        "HOME": "/home/u", "PATH": "/usr/bin", "OLLAMA_HOST": "127.0.0.1:41234",
        "OLLAMA_MODELS": str(tmp_path / "store"),
    }
    assert serve.health_path() == "/api/version"
    assert serve.failure_reason(["time=… level=INFO", "Error: listen tcp 127.0.0.1:41234: bind: address already in use"]
                                ) == "Error: listen tcp 127.0.0.1:41234: bind: address already in use"
    # engines that do not drop anything inherit everything, as before
    from llmctl.runtimes.llama_cpp import XLlamaCpp

    env = launch_env(XLlamaCpp(), Deployment("m", tmp_path / "m.gguf", 1, api_key="k"), {"OLLAMA_HOST": "x"})
    assert env["OLLAMA_HOST"] == "x"


FAKE_OLLAMA = """#!{python}
import os, signal, sys, time
sys.path.insert(0, {tests!r})
from ollama_fixture import OllamaFixture
assert sys.argv[1:] == ["serve"], sys.argv
host, port = os.environ["OLLAMA_HOST"].rsplit(":", 1)
assert host == "127.0.0.1" and "OLLAMA_KEEP_ALIVE" not in os.environ
open(os.path.join(os.environ["OLLAMA_MODELS"], "served-by-fake"), "w").write(os.environ["HOME"])
fx = OllamaFixture(port=int(port)).start()
fx.seed_model()
print("fake ollama serving", flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(1)
"""


async def test_spawn_mode_supervises_a_private_server_and_stops_it(tmp_path, monkeypatch):
    """Spawn mode with nothing at the attach address: the supervisor runs `ollama serve` (here a stand-in script
    that serves the fixture on the port it is given) and llmctl stops it because it started it."""
    exe = tmp_path / "bin" / "ollama"
    exe.parent.mkdir()
    exe.write_text(FAKE_OLLAMA.format(python=os.environ.get("PYTHON", __import__("sys").executable),
                                      tests=str(Path(__file__).parents[1])))
    exe.chmod(0o755)
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "24h")
    store = tmp_path / "store"
    s = OllamaServer("http://127.0.0.1:9", serve=OllamaServe(str(exe), store), log_dir=tmp_path / "logs",
                     ready_timeout=30)
    try:
        (entry,) = await s.entries()
        assert s.mode == "spawned" and entry.name == NAME and s.version == "0.23.0"
        assert (store / "served-by-fake").read_text() == os.environ["HOME"]
        pid = s.process.pid
        d = s.deployment(entry, ttl=None, log_dir=s.log_dir)
        d.start()
        await d.wait_ready(20)
        assert d.status()["command"] == "spawned" and d.status()["pid"] == pid
        await d.stop()
    finally:
        await s.close()
    assert s.process.state is BackendState.STOPPED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

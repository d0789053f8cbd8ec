"""Remotes through the real controller, in-process, against fake remotes on loopback (``fake_remote.FakeRemote``):
listing and proxying with the remote's key (to it only, never along a redirect), ids validated before they become
names, failover before the first byte both ways, health checks with backoff, offline mode that opens no socket, and
the scheduler leaving remote deployments out of placement and TTLs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fake_remote import FakeRemote

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.runtimes.base import BackendState
from llmctl.runtimes.process import free_port

ASK = [{"role": "user", "content": "hi"}]


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


async def start_controller(config: str) -> Controller:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config + '\n[engines.ollama]\nmode = "off"\n')
    controller = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await controller.start()
    return controller


def chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "messages": ASK, "stream": stream}


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


@pytest.fixture
async def remotes():
    started: list[FakeRemote] = []

    async def make(*args, **kw) -> FakeRemote:
        r = await FakeRemote(*args, **kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        await r.stop()


async def test_remote_models_are_listed_and_answered_with_its_key_sent_to_it_only(remotes, monkeypatch) -> None:
    monkeypatch.setenv("BOX_KEY", "s3cret")
    box = await remotes(["m1", "org/Model-2"], key="s3cret", name="box")
    other = await remotes(["m1"], name="other")
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}/v1"\nkey_env = "BOX_KEY"\n'
                               f'[remotes.other]\nurl = "{other.url}"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            listed = (await http.get("/v1/models")).json()["data"]
            by_id = {m["id"]: m for m in listed}
            assert {"box/m1", "box/org/Model-2", "other/m1"} <= set(by_id)
            assert by_id["box/m1"]["owned_by"] == "remote:box" and by_id["box/m1"]["llmctl"]["source"] == "remote:box"
            assert (await http.get("/v1/models/box/org/Model-2")).status_code == 200

            r = await http.post("/v1/chat/completions", json=chat("box/org/Model-2"))
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "box says hi to org/Model-2"
            assert r.headers["X-Llmctl-Served-By"] == "box/org/Model-2"
            async with http.stream("POST", "/v1/chat/completions", json=chat("box/m1", stream=True)) as s:
                assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                text = "".join([json.loads(line[6:])["choices"][0]["delta"]["content"]
                                async for line in s.aiter_lines() if line.startswith("data: {")])
            assert text.strip() == "box says hi to m1"
            assert (await http.post("/v1/chat/completions", json=chat("other/m1"))).status_code == 200

            # the remote got its own id, with its key; the other remote never saw that key
            assert [b["model"] for m, _p, _h, b in box.seen if m == "POST"] == ["org/Model-2", "m1"]
            assert box.auths() == {"Bearer s3cret"}
            assert other.auths() == {None}
            recent = (await http.get("/llmctl/v1/requests")).json()["requests"]
            assert {r["model"] for r in recent} == {"box/org/Model-2", "box/m1", "other/m1"}

            # a remote that redirects is not followed: the key does not travel to where it points
            other.seen.clear()
            box.redirect_to = other.url
            r = await http.post("/v1/chat/completions", json=chat("box/m1"))
            assert r.status_code == 307
            assert other.seen == []

            # the remote holds nothing here, and is never unloaded for being idle
            backend = c.scheduler.get("box/m1")
            assert backend.footprint.held() == {} and backend.idle_ttl is None
            assert c.scheduler.unload_idle(now=time.monotonic() + 1e9) == []
            ps = (await http.get("/llmctl/v1/backends")).json()["backends"]
            assert {b["model"]: b["state"] for b in ps}["box/m1"] == "ready"
            status = (await http.get("/llmctl/v1/remotes")).json()["remotes"]
            assert [(s["name"], s["state"], s["key"]) for s in status] == [("box", "ready", "env BOX_KEY"),
                                                                           ("other", "ready", "none")]
            assert "s3cret" not in json.dumps(status) + json.dumps(ps)
    finally:
        await c.close()


async def test_a_wrong_key_is_a_clear_failure_not_a_listing(remotes, monkeypatch) -> None:
    monkeypatch.setenv("BOX_KEY", "wrong")
    box = await remotes(["m1"], key="right")
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}"\nkey_env = "BOX_KEY"\nmodels = ["m1"]\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            r = await http.post("/v1/chat/completions", json=chat("box/m1"))
            assert r.status_code == 503
            assert "refused the API key (401)" in r.json()["error"]["message"]
    finally:
        await c.close()


async def test_ids_a_remote_lists_are_validated_before_they_become_names(remotes) -> None:
    hostile = ["ok-1", "../../etc/passwd", "a b", "\x1b[31mred", "", 42, None, "x" * 300, "org//x", "trail/", "ok-1"]
    box = await remotes(hostile)
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
            assert ids == ["box/ok-1"]
            r = await http.post("/v1/chat/completions", json=chat("box/../../etc/passwd"))
            assert r.status_code == 404
        assert len(c.remotes[0].status()["rejected_ids"]) == 9
    finally:
        await c.close()


async def test_a_remote_that_dies_fails_over_before_the_first_byte_and_is_marked_ready_when_back(remotes) -> None:
    a = await remotes(["m"], name="a")
    b = await remotes(["m", "solo"], name="b")
    fast = "health_interval = 0.5\nbackoff_initial = 0.2\nbackoff_max = 0.4\n"
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\n{fast}[remotes.b]\nurl = "{b.url}"\n{fast}'
                               '[models."a/m"]\nfallback = "b/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            assert (await http.post("/v1/chat/completions", json=chat("a/m"))).json()["choices"][0]["message"][
                "content"] == "a says hi to m"
            await a.stop()
            t0 = time.monotonic()
            r = await http.post("/v1/chat/completions", json=chat("a/m"))
            assert r.status_code == 200 and r.headers["X-Llmctl-Served-By"] == "b/m"
            assert r.json()["choices"][0]["message"]["content"] == "b says hi to m"
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                assert s.status_code == 200 and s.headers["X-Llmctl-Served-By"] == "b/m"
            assert time.monotonic() - t0 < 3
            assert c.scheduler.get("a/m").state is BackendState.FAILED
            # the pair works both ways: b's model, with b down answering 503, goes to a's when a is back
            b.mode = "503"
            await a.start()
            await wait_for(lambda: c.scheduler.get("a/m").state is BackendState.READY)
            r = await http.post("/v1/chat/completions", json=chat("b/m"))
            assert r.status_code == 200 and r.headers["X-Llmctl-Served-By"] == "a/m"
            records = (await http.get("/llmctl/v1/requests")).json()["requests"]
            assert [x["served_by"] for x in records] == [None, "b/m", "b/m", "a/m"]
            # a model with no fallback: a clear 503, at once
            await b.stop()
            t0 = time.monotonic()
            r = await http.post("/v1/chat/completions", json=chat("b/solo"))
            assert r.status_code == 503 and time.monotonic() - t0 < 2
            assert "remote b" in r.json()["error"]["message"]
    finally:
        await c.close()


async def test_a_local_model_that_cannot_run_here_fails_over_to_its_remote_copy(remotes, tiny_gguf) -> None:
    from llmctl.catalog.store import ModelStore

    ModelStore(resolve_paths().data_dir).import_file(tiny_gguf, "tiny")
    box = await remotes(["tiny"], name="box")
    c = await start_controller(f'[backends]\nram_budget = "1MiB"\nmemory_margin = 0\n[remotes.box]\nurl = "{box.url}"\n'
                               '[models.tiny]\nfallback = "box/tiny"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            r = await http.post("/v1/chat/completions", json=chat("tiny"))
            assert r.status_code == 200 and r.headers["X-Llmctl-Served-By"] == "box/tiny"
            assert r.json()["choices"][0]["message"]["content"] == "box says hi to tiny"
            assert "does not fit" in c.gateway.failovers[-1][3] or "needs" in c.gateway.failovers[-1][3]
            assert c.scheduler.get("tiny") is None or not c.scheduler.get("tiny").alive  # nothing launched here
    finally:
        await c.close()


async def test_health_checks_back_off_while_down(remotes) -> None:
    box = await remotes(["m"])
    await box.stop()
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}"\nbackoff_initial = 0.1\nbackoff_max = 0.4\n')
    try:
        remote = c.remotes[0]
        await asyncio.sleep(1.6)
        # 0.1 + 0.2 + 0.4 + 0.4 + 0.4 ... : about 5 checks in 1.6 s, not 16
        assert 3 <= remote.checks <= 7 and remote.state == "failed"
        assert "cannot connect" in remote.error
        await box.start()
        await wait_for(lambda: remote.state == "ready", timeout=3)
        assert remote.ids == ["m"]
    finally:
        await c.close()


def _record_connects(monkeypatch) -> list:
    """Every connect and name lookup made from here on (the conftest guard refuses non-loopback ones anyway; this
    records that none was even tried)."""
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        attempts.append(("connect", address))
        return real_connect(self, address)

    def connect_ex(self, address):
        attempts.append(("connect", address))
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kw):
        attempts.append(("resolve", host))
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def _beyond_loopback(attempts: list) -> list:
    import ipaddress

    out = []
    for kind, target in attempts:
        host = target[0] if isinstance(target, tuple) else target
        if host in (None, "localhost") or (isinstance(host, str) and host.startswith("/")):
            continue
        try:
            if ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
                continue
        except ValueError:
            pass
        out.append((kind, target))
    return out


@pytest.mark.parametrize("how", ["setting", "HF_HUB_OFFLINE"])
async def test_offline_mode_opens_no_socket_beyond_loopback(remotes, monkeypatch, how) -> None:
    monkeypatch.setenv("FAR_KEY", "k")
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        offline = ""
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        offline = "offline = true\n"
    near = await remotes(["m"])  # loopback is this machine: still used
    attempts = _record_connects(monkeypatch)
    c = await start_controller(
        f'{offline}[remotes.far]\nurl = "http://10.1.2.3:8000/v1"\nkey_env = "FAR_KEY"\nmodels = ["m"]\n'
        '[remotes.cloud]\nurl = "https://api.example.com/v1"\n'
        f'[remotes.near]\nurl = "{near.url}"\n[models."far/m"]\nfallback = "near/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
            assert ids == ["far/m", "near/m"]  # the cloud's list is unknown: it was not asked
            r = await http.post("/v1/chat/completions", json=chat("cloud/gpt-x"))
            assert r.status_code == 503 and "offline mode is on" in r.json()["error"]["message"]
            r = await http.post("/v1/chat/completions", json=chat("far/m"))  # fails over to the loopback one
            assert r.status_code == 200 and r.headers["X-Llmctl-Served-By"] == "near/m"
            status = {s["name"]: s for s in (await http.get("/llmctl/v1/remotes")).json()["remotes"]}
            assert status["far"]["state"] == status["cloud"]["state"] == "skipped"
            assert status["near"]["state"] == "ready"
        await asyncio.sleep(0.3)  # give a background check every chance to try
    finally:
        await c.close()
    assert attempts, "the recorder saw nothing at all: the test would prove nothing"
    assert _beyond_loopback(attempts) == []


async def test_no_remotes_configured_means_no_remote_sources(remotes) -> None:
    c = await start_controller("")
    try:
        assert c.remotes == [] and c.describe()["remotes"] == []
    finally:
        await c.close()


def test_a_key_in_the_config_file_is_refused(llmctl_home: Path) -> None:
    from llmctl.catalog.errors import ConfigError

    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[remotes.box]\nurl = "https://x.example/v1"\napi_key = "sk-123"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(paths)
    assert "api_key" in exc.value.message
    paths.config_file.write_text('[remotes.box]\nurl = "https://user:pw@x.example/v1"\n')
    with pytest.raises(ConfigError, match="invalid"):
        load_settings(paths)


async def test_remote_deployments_take_no_room_and_are_never_victims(remotes) -> None:
    """With max_loaded = 1, a remote model beside a loaded local one evicts nothing and is never evicted."""
    from llmctl.catalog.store import ModelEntry
    from llmctl.runtimes.ledger import Footprint
    from llmctl.runtimes.scheduler import Scheduler

    box = await remotes(["m"])
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}"\n')
    try:

        class Local:
            name, in_flight, pinned, remote = "local", 0, False, False
            state, alive, last_used = BackendState.READY, True, 0.0
            footprint = Footprint(reserved={"ram": 1 << 30})
            spec = type("S", (), {"model_path": Path("/x.gguf")})()

            async def stop(self, reason=None):
                raise AssertionError("the local model was evicted for a remote one")

        entry = await c.models.get("box/m")
        sched = Scheduler(c._make_backend, max_loaded=1, capacity=lambda ours: {"ram": 2 << 30}, margin=0)
        sched.backends["local"] = Local()
        backend = await sched.ensure_ready(entry, 5)
        assert backend.state is BackendState.READY and sched._others(sched.backends["local"]) == []
        assert isinstance(entry, ModelEntry)
    finally:
        await c.close()


async def test_a_remote_that_drops_the_connection_twice_fails_over(remotes) -> None:
    """Accepted, then closed before any answer, on the first try and on the retry: nothing reached the client, so
    the fallback answers; with none, a clear 502."""
    a = await remotes(["m", "solo"], name="a")
    b = await remotes(["m"], name="b")
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\n[remotes.b]\nurl = "{b.url}"\n'
                               '[models."a/m"]\nfallback = "b/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=20) as http:
            a.drops = 2
            r = await http.post("/v1/chat/completions", json=chat("a/m"))
            assert r.status_code == 200, r.text
            assert r.headers["X-Llmctl-Served-By"] == "b/m" and r.json()["choices"][0]["message"]["content"] == \
                "b says hi to m"
            assert a.drops == 0  # both tries reached it
            a.drops = 2
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                assert s.status_code == 200 and s.headers["X-Llmctl-Served-By"] == "b/m"
                text = "".join([json.loads(line[6:])["choices"][0]["delta"]["content"]
                                async for line in s.aiter_lines() if line.startswith("data: {")])
            assert text.strip() == "b says hi to m" and a.drops == 0
            assert [f[1:3] for f in c.gateway.failovers] == [("a/m", "b/m")] * 2
            a.drops = 2
            r = await http.post("/v1/chat/completions", json=chat("a/solo"))
            assert r.status_code == 502 and r.json()["error"]["code"] == "backend_error"
            assert (await http.post("/v1/chat/completions", json=chat("a/m"))).headers["X-Llmctl-Served-By"] == "a/m"
    finally:
        await c.close()


async def test_a_remote_that_accepts_and_stalls_is_failed_over_or_ended_never_waited_on(remotes) -> None:
    """Before its first byte a stall past ``first_byte_timeout`` goes to the fallback (or is a 504); after it, a
    stall past ``read_timeout`` ends the stream with an error event."""
    a = await remotes(["m", "solo"], name="a")
    b = await remotes(["m"], name="b")
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\nfirst_byte_timeout = 1\nread_timeout = 1\n'
                               f'[remotes.b]\nurl = "{b.url}"\n[models."a/m"]\nfallback = "b/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=20) as http:
            a.mode = "stall"
            t0 = time.monotonic()
            r = await http.post("/v1/chat/completions", json=chat("a/m"))
            assert r.status_code == 200 and r.headers["X-Llmctl-Served-By"] == "b/m", r.text
            assert 0.9 < time.monotonic() - t0 < 5
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                assert s.status_code == 200 and s.headers["X-Llmctl-Served-By"] == "b/m"
                text = "".join([json.loads(line[6:])["choices"][0]["delta"]["content"]
                                async for line in s.aiter_lines() if line.startswith("data: {")])
            assert text.strip() == "b says hi to m"
            assert "sent nothing for 1 s" in c.gateway.failovers[-1][3]
            for stream in (False, True):  # no fallback: a clear 504 in the OpenAI shape
                r = await http.post("/v1/chat/completions", json=chat("a/solo", stream=stream))
                assert r.status_code == 504 and r.json()["error"]["code"] == "backend_timeout"
                assert "accepted the request, then sent nothing for 1 s" in r.json()["error"]["message"]

            a.mode = "stall-mid-stream"  # one chunk, then nothing: the stream has begun, so it is ended
            t0 = time.monotonic()
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                assert s.status_code == 200 and s.headers["X-Llmctl-Served-By"] == "a/m"
                events = [json.loads(line[6:]) async for line in s.aiter_lines() if line.startswith("data: {")]
            assert time.monotonic() - t0 < 5
            assert events[0]["choices"][0]["delta"]["content"] == "a "
            assert events[-1]["error"]["code"] == "backend_error"
            assert "stalled mid-stream (sent nothing for 1 s); the stream was ended" in events[-1]["error"]["message"]
            records = (await http.get("/llmctl/v1/requests")).json()["requests"]
            assert [x["status"] for x in records] == [200, 200, 504, 504, 502]
    finally:
        await c.close()


async def test_a_stream_that_ends_before_its_first_event_is_no_answer(remotes) -> None:
    """A 200 event stream with nothing in it: the fallback takes the request, or the client gets a 502 in the
    OpenAI shape, never an empty 200."""
    a = await remotes(["m", "solo"], name="a")
    b = await remotes(["m"], name="b")
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\nfirst_byte_timeout = 5\n'
                               f'[remotes.b]\nurl = "{b.url}"\n[models."a/m"]\nfallback = "b/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=20) as http:
            a.mode = "empty-stream"
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                assert s.status_code == 200 and s.headers["X-Llmctl-Served-By"] == "b/m"
            r = await http.post("/v1/chat/completions", json=chat("a/solo", stream=True))
            assert r.status_code == 502 and r.json()["error"]["code"] == "backend_error", r.text
            assert "ended its stream without sending anything" in r.json()["error"]["message"]
    finally:
        await c.close()


async def test_a_stream_is_whole_at_done_even_if_the_remote_keeps_its_body_open(remotes) -> None:
    """After ``data: [DONE]`` nothing is waited for: no error event after it when ``read_timeout`` passes."""
    a = await remotes(["m"], name="a")
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\nread_timeout = 1\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=20) as http:
            a.mode = "linger-after-done"
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                lines = [line async for line in s.aiter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines), lines
            records = (await http.get("/llmctl/v1/requests")).json()["requests"]
            assert records[-1]["status"] == 200
    finally:
        await c.close()


async def test_a_stream_whose_body_ends_before_done_ends_with_an_error_event(remotes) -> None:
    """An engine that dies between two chunks closes its body cleanly: the client gets an error event saying the
    stream was cut, not a short answer that looks whole."""
    a = await remotes(["m"], name="a")
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=20) as http:
            a.mode = "end-mid-stream"
            async with http.stream("POST", "/v1/chat/completions", json=chat("a/m", stream=True)) as s:
                events = [json.loads(line[6:]) async for line in s.aiter_lines() if line.startswith("data: {")]
            assert events[0]["choices"][0]["delta"]["content"] == "a "
            assert events[-1]["error"]["code"] == "backend_error"
            assert "stopped mid-stream (ended without its closing [DONE])" in events[-1]["error"]["message"]
            records = (await http.get("/llmctl/v1/requests")).json()["requests"]
            assert records[-1]["status"] == 502
    finally:
        await c.close()


async def test_names_a_remote_has_not_listed_are_taken_only_so_far(remotes) -> None:
    """While a remote's list is unknown, an unlisted name gets a 503 saying why; each deployed one is remembered (a
    deployment, a queue, a log file), so only MAX_UNLISTED of them at once (more get a clear 503, until one is
    stopped), MAX_UNLISTED_LEN long at most (a clear 400)."""
    from llmctl.runtimes.remote import MAX_UNLISTED, MAX_UNLISTED_LEN

    box = await remotes(["m"])
    await box.stop()  # down since start: its list is unknown
    c = await start_controller(f'[remotes.box]\nurl = "{box.url}"\nbackoff_initial = 0.1\nbackoff_max = 0.2\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            for i in range(MAX_UNLISTED):
                r = await http.post("/v1/chat/completions", json=chat(f"box/m{i}"))
                assert r.status_code == 503 and "remote box" in r.json()["error"]["message"]
            r = await http.post("/v1/chat/completions", json=chat("box/one-too-many"))
            assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
            assert f"{MAX_UNLISTED} other unlisted names are already in use" in r.json()["error"]["message"]
            r = await http.post("/v1/chat/completions", json=chat("box/M0"))  # the same name, another spelling
            assert r.status_code == 503 and "remote box" in r.json()["error"]["message"]
            r = await http.post("/v1/chat/completions", json=chat("box/" + "x" * (MAX_UNLISTED_LEN + 1)))
            assert r.status_code == 400 and f"longer than {MAX_UNLISTED_LEN}" in r.json()["error"]["message"]
            assert len([n for n in c.scheduler.backends if n.startswith("box/")]) == MAX_UNLISTED
            assert len(list(c.paths.logs_dir.glob("box_*.log"))) == MAX_UNLISTED
            # a stopped one gives its place back
            await c.scheduler.stop("box/m0")  # as `llmctl stop box/m0` does
            r = await http.post("/v1/chat/completions", json=chat("box/one-too-many"))
            assert r.status_code == 503 and "remote box" in r.json()["error"]["message"]

            await box.start()  # its list known: its models are names, others are not
            await wait_for(lambda: c.remotes[0].state == "ready")
            assert (await http.post("/v1/chat/completions", json=chat("box/m"))).status_code == 200
            assert (await http.post("/v1/chat/completions", json=chat("box/m99"))).status_code == 404
    finally:
        await c.close()


async def test_lookups_of_unlisted_names_never_crowd_out_a_configured_fallback(remotes) -> None:
    """While box's list is unknown, lookups of names it has not listed take no place, and deployed unlisted names
    never crowd out a name the config gives (a fallback): a request still fails over to it."""
    from llmctl.runtimes.remote import MAX_UNLISTED

    a = await remotes(["m"], name="a")
    box = await remotes(["m"], name="box")
    await a.stop()
    await box.stop()  # both down since start: their lists are unknown
    slow = "backoff_initial = 30\nbackoff_max = 30\n"  # no background check during the test
    c = await start_controller(f'[remotes.a]\nurl = "{a.url}"\n{slow}[remotes.box]\nurl = "{box.url}"\n{slow}'
                               '[models."a/m"]\nfallback = "box/m"\n')
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            await wait_for(lambda: c.remotes[1].state == "failed")
            for i in range(MAX_UNLISTED + 4):  # typos and probes
                assert (await http.get(f"/v1/models/box/typo{i}")).status_code == 200
            for i in range(MAX_UNLISTED):  # every unlisted place in use
                assert (await http.post("/v1/chat/completions", json=chat(f"box/n{i}"))).status_code == 503
            r = await http.post("/v1/chat/completions", json=chat("box/one-too-many"))
            assert "other unlisted names are already in use" in r.json()["error"]["message"]
            await box.start()  # box answers again; llmctl has not checked it yet
            await asyncio.sleep(1.1)  # older than the check a start may reuse
            r = await http.post("/v1/chat/completions", json=chat("a/m"))
            assert r.status_code == 200, r.text
            assert r.headers["X-Llmctl-Served-By"] == "box/m"
            assert r.json()["choices"][0]["message"]["content"] == "box says hi to m"
    finally:
        await c.close()

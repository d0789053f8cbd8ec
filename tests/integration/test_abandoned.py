"""Work a client abandons stops, and work it cuts short is paid for: a real controller, real llama.cpp (xllamacpp).

The tiny model never picks EOS, so a request generates exactly max_tokens tokens: with a large context, one asking
for 120,000 keeps the engine busy for far longer than these tests wait."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from harness import ControllerProcess
from tiny_gguf import write_tiny_llama

from llmctl.catalog.store import ModelStore

LONG = {"model": "tiny", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 120_000,
        "temperature": 0}


def _until(what, check, timeout: float = 20.0):
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"never {what}; last: {last}")


def _running(c: httpx.Client) -> int:
    model = next(m for m in c.get("/llmctl/v1/engine-metrics").json()["models"] if m["model"] == "tiny")
    return (model.get("figures") or {}).get("requests_running") or 0


def _send_raw(proc: ControllerProcess, body: dict, headers: str = "") -> socket.socket:
    """POST without reading the answer: the test closes the socket to leave."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", proc.port))
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\nContent-Type: "
              f"application/json\r\nContent-Length: {len(data)}\r\n{headers}\r\n".encode() + data)
    return s


@pytest.fixture
def long_controller(tmp_path: Path):
    """A controller serving the tiny model with 131,072 tokens of context (its header says it was trained for
    that many), so that one request can keep the engine busy for minutes."""
    home = tmp_path / "home"
    ModelStore(home / "data").import_file(write_tiny_llama(tmp_path / "long.gguf", ctx=131_072), "tiny")
    proc = ControllerProcess(home, LLMCTL_BACKENDS__CTX_SIZE="131072").start()
    yield proc
    proc.kill_everything()


def test_an_abandoned_unary_request_stops_the_engine(long_controller: ControllerProcess) -> None:
    proc = long_controller
    with proc.client() as c:
        assert c.post("/v1/chat/completions", json={**LONG, "max_tokens": 2}).status_code == 200  # loaded
        s = _send_raw(proc, LONG)
        _until("generating", lambda: _running(c) >= 1)
        s.close()  # the client leaves: its request must stop, in the gateway and in the engine
        _until("the gateway let the request go", lambda: c.get("/llmctl/v1/requests").json()["in_flight"] == 0)
        # llama.cpp notices a closed non-streamed connection when a second passes with no other result to hand
        # out: polling its /slots meanwhile would keep it from looking, so its log is read instead (from the file)
        _until("the engine cancelled the task", lambda: "cancel task" in json.dumps(
            c.get("/llmctl/v1/backends/tiny/logs", params={"tail": 50}).json()))
        _until("the slot was freed", lambda: _running(c) == 0)  # the cancel is queued: the slot frees next
        last = c.get("/llmctl/v1/requests").json()["requests"][-1]
        assert (last["status"], last["error"]) == (499, "the client went away")


def test_an_unload_mid_answer_starts_nothing_again_for_a_client_that_left(long_controller: ControllerProcess) -> None:
    """An unload drops the engine's connection mid-answer; the gateway used to start the model again and send the
    request anew, to answer nobody. End to end on llama.cpp: the departure watch (or the upstream connection's own
    check of the client) usually ends the request before the engine dies, so this does not pin the check before
    each attempt; ``test_a_request_is_never_sent_again_for_a_client_that_left`` does."""
    proc = long_controller
    with proc.client() as c:
        assert c.post("/v1/chat/completions", json={**LONG, "max_tokens": 2}).status_code == 200
        s = _send_raw(proc, LONG)
        _until("generating", lambda: _running(c) >= 1)
        s.close()
        assert c.post("/llmctl/v1/backends/tiny/unload", json={}).status_code == 200
        _until("the request finished", lambda: c.get("/llmctl/v1/requests").json()["in_flight"] == 0)
        assert proc.backend("tiny")["state"] == "stopped"  # not started again for nobody
        assert c.get("/llmctl/v1/requests").json()["requests"][-1]["status"] == 499


def test_a_request_is_never_sent_again_for_a_client_that_left(tmp_path: Path, tiny_gguf: Path) -> None:
    """The gateway checks that the client is still there before each attempt: the first, and the one after the
    engine was found dead and restarted (one check, at the top of the attempts). Here nothing else can stop the
    request: it waits behind another (``max_concurrent = 1``, the other held by the fake engine), its client
    leaves while it waits, where no departure watch runs yet; when its turn comes the watch's first look is 0.2 s
    away, the engine answers in milliseconds. Without the check it reaches the engine. (After a restart the
    watch and the upstream connection's own check read the same closed connection within 0.2 s, so no test can
    leave that check alone to decide there.)"""
    from fake_engine import llama_server_shim

    home = tmp_path / "home"
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    config = tmp_path / "config.toml"
    config.write_text("[models.tiny]\nmax_concurrent = 1\n")
    release, seen = tmp_path / "release", tmp_path / "engine-requests"
    proc = ControllerProcess(home, FAKE_ENGINE_HOLD=str(release), FAKE_ENGINE_REQUESTS=str(seen),
                             LLMCTL_CONFIG=str(config),
                             LLMCTL_BACKENDS__LLAMA_SERVER=str(llama_server_shim(tmp_path))).start()
    first = {**LONG, "max_tokens": 2, "messages": [{"role": "user", "content": "the one that holds the turn"}]}
    left = {**LONG, "max_tokens": 2, "messages": [{"role": "user", "content": "the one whose client left"}]}
    try:
        with proc.client() as c:
            assert c.post("/v1/chat/completions", json={**LONG, "max_tokens": 2}).status_code == 200  # loaded

            def inside() -> int:
                return c.get("/llmctl/v1/keys").json()["queues"]["tiny"]["inside"]

            with httpx.stream("POST", proc.url + "/v1/chat/completions", json={**first, "stream": True},
                              timeout=60) as held:
                assert held.status_code == 200  # its first chunk is through; the rest waits for the release
                s = _send_raw(proc, left)
                _until("the second request waits its turn", lambda: inside() == 2)
                s.close()  # its client leaves while it waits
                # a round trip after the close: the controller has read the closed connection by its answer
                assert inside() == 2
                release.touch()
                held.read()
            _until("both requests finished", lambda: c.get("/llmctl/v1/requests").json()["in_flight"] == 0)
            records = c.get("/llmctl/v1/requests").json()["requests"]
        asked = [json.loads(line)["messages"][0]["content"] for line in seen.read_text().splitlines()]
        assert "the one whose client left" not in asked, asked  # never sent
        assert asked[-1] == "the one that holds the turn"
        outcomes = sorted((r["status"], r["error"] or "") for r in records[-2:])
        assert outcomes == [(200, ""), (499, "the client went away")], records[-2:]
    finally:
        release.touch()
        proc.kill_everything()


def test_a_cut_stream_is_charged_its_prompt(tmp_path: Path, tiny_gguf: Path) -> None:
    """Streams with long prompts cut after a few events used to charge nothing against tokens_per_minute."""
    home = tmp_path / "home"
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    (home / "keys.toml").write_text('[[server.keys]]\nname = "app"\nkey = "app-secret-1"\ntokens_per_minute = 300\n'
                                    '[[server.keys]]\nname = "owner"\nkey = "owner-secret-1"\nrole = "admin"\n')
    proc = ControllerProcess(home, LLMCTL_CONFIG=str(home / "keys.toml")).start()
    auth = {"Authorization": "Bearer app-secret-1"}
    try:
        prompt = "word " * 300  # 1,500 bytes: 379 tokens by llmctl's estimate, about 1,200 in this vocabulary
        body = {**LONG, "messages": [{"role": "user", "content": prompt}], "max_tokens": 2000, "stream": True}
        with httpx.stream("POST", proc.url + "/v1/chat/completions", json=body, headers=auth, timeout=120) as r:
            assert r.status_code == 200
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break  # cut: the client hangs up after three events
        with proc.client(headers={"Authorization": "Bearer owner-secret-1"}) as admin:  # the control API is admin's
            _until("the stream was let go", lambda: admin.get("/llmctl/v1/requests").json()["in_flight"] == 0)
            app = next(k for k in admin.get("/llmctl/v1/keys").json()["keys"] if k["name"] == "app")
            assert app["prompt_tokens"] >= 379, app
            assert app["remaining_tokens"] == 0
        with proc.client(headers=auth) as c:
            refused = c.post("/v1/chat/completions", json={**LONG, "max_tokens": 2})
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens", refused.text
    finally:
        proc.kill_everything()


def test_a_stream_left_during_prefill_is_cancelled_before_its_first_token(tmp_path: Path, tiny_gguf: Path) -> None:
    """The engine sends its headers before prefill (llama-server does): a client that leaves then is seen by the
    departure watch, not only at the first write, so a long prefill does not run for nobody. A fake engine (run as
    a configured llama-server) holds the prefill until the test's signal."""
    from fake_engine import llama_server_shim

    home = tmp_path / "home"
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    release = tmp_path / "release"
    proc = ControllerProcess(home, FAKE_ENGINE_HOLD=str(release), FAKE_ENGINE_HOLD_PREFILL="1",
                             LLMCTL_BACKENDS__LLAMA_SERVER=str(llama_server_shim(tmp_path))).start()
    try:
        with proc.client() as c:
            assert c.post("/v1/chat/completions", json={**LONG, "max_tokens": 2}).status_code == 200  # loaded
        with httpx.stream("POST", proc.url + "/v1/chat/completions", json={**LONG, "stream": True},
                          timeout=60) as r:
            assert r.status_code == 200  # the engine's headers are through; its first chunk is held
        with proc.client() as c:
            rec = _until("the stream was let go", lambda: next(
                (x for x in c.get("/llmctl/v1/requests").json()["requests"] if x.get("stream")), None)
                if c.get("/llmctl/v1/requests").json()["in_flight"] == 0 else None)
        assert rec["status"] == 499, rec
        assert not release.exists()  # let go while the engine was still in prefill
    finally:
        release.touch()
        proc.kill_everything()


def test_a_stream_left_after_its_first_token_is_let_go_while_the_engine_is_silent(tmp_path: Path,
                                                                                  tiny_gguf: Path) -> None:
    """A client that leaves mid-stream while the engine sends nothing more (stalled, or a long pause) frees its
    request at once: the departure watch goes on through the stream, not only the stream's next write. The fake
    engine sends one chunk, then holds until the test's signal."""
    from fake_engine import llama_server_shim

    home = tmp_path / "home"
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    release = tmp_path / "release"
    proc = ControllerProcess(home, FAKE_ENGINE_HOLD=str(release),
                             LLMCTL_BACKENDS__LLAMA_SERVER=str(llama_server_shim(tmp_path))).start()
    try:
        with httpx.stream("POST", proc.url + "/v1/chat/completions", json={**LONG, "stream": True},
                          timeout=60) as r:
            assert next(line for line in r.iter_lines() if line.startswith("data: {"))  # the first chunk came
        with proc.client() as c:
            rec = _until("the stream was let go", lambda: next(
                (x for x in c.get("/llmctl/v1/requests").json()["requests"] if x.get("stream")), None)
                if c.get("/llmctl/v1/requests").json()["in_flight"] == 0 else None)
        assert rec["status"] == 499, rec
        assert not release.exists()  # let go while the engine was still holding its answer
    finally:
        release.touch()
        proc.kill_everything()

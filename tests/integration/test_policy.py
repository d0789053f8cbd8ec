"""Gateway policy with a real controller and real llama.cpp: named API keys on every route, per-minute request
and token limits with OpenAI's headers, per-key usage by name, the bounded queue per model, the response cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from harness import ControllerProcess, run_cli

from llmctl.catalog.store import ModelStore

ALICE, BOB, CAROL = "alice-secret-1", "bob-secret-22", "carol-secret-333"
KEYS = f"""
[[server.keys]]
name = "alice"
key_env = "ALICE_KEY"
requests_per_minute = 2

[[server.keys]]
name = "bob"
key = "{BOB}"
role = "admin"

[[server.keys]]
name = "carol"
key_env = "CAROL_KEY"
tokens_per_minute = 20
"""
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(proc: ControllerProcess, key: str | None = None, **kw) -> httpx.Response:
    return httpx.post(proc.url + "/v1/chat/completions", json={**CHAT, **kw}, headers=_auth(key) if key else {},
                      timeout=120)


def _start(home: Path, config: str, **env: str) -> ControllerProcess:
    (home / "extra.toml").write_text(config)
    return ControllerProcess(home, LLMCTL_CONFIG=str(home / "extra.toml"), **env).start()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny_gguf: Path):
    """One controller with three named keys: alice (2 requests/min), bob (no limit, admin), carol (20 tokens/min)."""
    home = tmp_path_factory.mktemp("keyed")
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    proc = _start(home, KEYS, ALICE_KEY=ALICE, CAROL_KEY=CAROL)
    yield proc
    proc.kill_everything()


def test_every_route_needs_a_named_key(keyed: ControllerProcess) -> None:
    routes = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/metrics"), ("GET", "/health"),
              ("GET", "/ready"), ("GET", "/llmctl/v1/keys"), ("GET", "/llmctl/v1/status"),
              ("POST", "/llmctl/v1/backends/tiny/load"), ("POST", "/llmctl/v1/shutdown"), ("GET", "/no/route")]
    for headers in ({}, _auth("wrong"), _auth(ALICE[:-1]), {"x-api-key": "alice"}):
        for method, path in routes:
            r = httpx.request(method, keyed.url + path, headers=headers, json={}, timeout=10)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(keyed.url + "/v1/models", headers={"x-api-key": BOB}).status_code == 200
    assert httpx.get(keyed.url + "/health", headers=_auth(CAROL)).status_code == 200
    # llmctl's own CLI sends the controller's owner key (read from its 0600 state file once the controller proved
    # it holds it), not a configured one: it works whatever the environment holds
    env = {"LLMCTL_CONFIG": str(keyed.home / "extra.toml"), "LLMCTL_SERVER__PORT": str(keyed.port)}
    assert run_cli(keyed.home, "ps", ALICE_KEY=ALICE, **env).returncode == 0
    assert run_cli(keyed.home, "ps", ALICE_KEY="not-alice-at-all", **env).returncode == 0


def test_a_rate_limited_key_gets_429_with_headers_while_another_is_served(keyed: ControllerProcess) -> None:
    first = _chat(keyed, ALICE)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert _chat(keyed, ALICE).headers["x-ratelimit-remaining-requests"] == "0"
    refused = _chat(keyed, ALICE)
    assert refused.status_code == 429, refused.text
    err = refused.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests" and "alice" in err["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    served = _chat(keyed, BOB)  # another key is not held back
    assert served.status_code == 200 and "x-ratelimit-limit-requests" not in served.headers
    keys = {k["name"]: k for k in httpx.get(keyed.url + "/llmctl/v1/keys", headers=_auth(BOB)).json()["keys"]}
    assert keys["alice"]["requests"] == 2 and keys["alice"]["rate_limited"]["requests"] == 1
    assert keys["bob"]["requests"] >= 1


def test_tokens_are_charged_from_usage(keyed: ControllerProcess) -> None:
    first = _chat(keyed, CAROL)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-tokens"] == "20"
    assert first.headers["x-ratelimit-remaining-tokens"] == "20"  # nothing charged before the answer
    usage = first.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] > 20  # the chat template alone is longer
    carol = next(k for k in httpx.get(keyed.url + "/llmctl/v1/keys", headers=_auth(BOB)).json()["keys"]
                 if k["name"] == "carol")
    assert (carol["prompt_tokens"], carol["completion_tokens"]) == (usage["prompt_tokens"],
                                                                      usage["completion_tokens"])
    assert carol["remaining_tokens"] == 0
    refused = _chat(keyed, CAROL)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0" and int(refused.headers["Retry-After"]) >= 1


def test_a_stream_is_charged_its_tokens(keyed: ControllerProcess) -> None:
    body = {**CHAT, "stream": True, "max_tokens": 6, "temperature": 0}
    with httpx.stream("POST", keyed.url + "/v1/chat/completions", json=body, headers=_auth(BOB), timeout=120) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert "[DONE]" in text
    bob = next(k for k in httpx.get(keyed.url + "/llmctl/v1/keys", headers=_auth(BOB)).json()["keys"]
               if k["name"] == "bob")
    assert bob["completion_tokens"] >= 6 and bob["prompt_tokens"] > 0


def test_key_metrics_name_keys_never_secrets(keyed: ControllerProcess) -> None:
    assert _chat(keyed, BOB).status_code == 200
    text = httpx.get(keyed.url + "/metrics", headers=_auth(BOB), timeout=10).text
    assert 'llmctl_key_requests_total{key="bob"}' in text
    assert 'llmctl_key_tokens_total{key="bob",kind="completion"}' in text
    assert 'llmctl_key_rate_limited_total{key="alice",limit="requests"}' in text
    assert 'llmctl_key_remaining{key="carol",limit="tokens"}' in text
    listing = httpx.get(keyed.url + "/llmctl/v1/keys", headers=_auth(BOB)).text
    for secret in (ALICE, BOB, CAROL):
        assert secret not in text and secret not in listing
    recent = httpx.get(keyed.url + "/llmctl/v1/requests", headers=_auth(BOB)).json()["requests"]
    assert {"alice", "bob", "carol"} <= {r["key"] for r in recent}


def test_queue_overflow_gets_429_with_retry_after(controller, home: Path, tmp_path: Path) -> None:
    """The two streams that fill the queue are held open by the test (a fake engine, run as a configured
    llama-server, that sends one chunk and then waits for the test's signal), not by the model being slow."""
    from fake_engine import llama_server_shim

    release = tmp_path / "release"
    (home / "extra.toml").write_text("[backends]\nparallel = 1\nmax_queue = 1\n")
    proc = controller(LLMCTL_CONFIG=str(home / "extra.toml"), FAKE_ENGINE_HOLD=str(release),
                      LLMCTL_BACKENDS__LLAMA_SERVER=str(llama_server_shim(tmp_path)))
    assert _chat(proc).status_code == 200  # loaded: one slot
    long = {**CHAT, "max_tokens": 2000, "stream": True, "temperature": 0}
    results: list[int] = []

    def stream() -> None:
        with httpx.stream("POST", proc.url + "/v1/chat/completions", json=long, timeout=120) as r:
            results.append(r.status_code)
            for _ in r.iter_bytes():
                pass

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(2)]
    try:
        for t in threads:  # one is served (and held), the other waits for the slot
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queues = httpx.get(proc.url + "/llmctl/v1/keys").json()["queues"]
            if queues["tiny"]["inside"] == 2:
                break
            time.sleep(0.02)
        assert queues["tiny"]["inside"] == 2, queues
        refused = _chat(proc)
        assert refused.status_code == 429, refused.text
        err = refused.json()["error"]
        assert err["code"] == "queue_full" and "tiny" in err["message"] and "max_queue 1" in err["message"]
        assert refused.headers["Retry-After"] == "1"
    finally:
        release.touch()
        for t in threads:
            t.join(60)
    assert results == [200, 200]
    text = httpx.get(proc.url + "/metrics").text
    assert 'llmctl_queue_rejected_total{model="tiny"} 1.0' in text
    assert 'llmctl_requests_total{endpoint="/v1/chat/completions",model="tiny",status="429"} 1.0' in text


def _generated(proc: ControllerProcess) -> float:
    r = httpx.get(proc.url + "/llmctl/v1/backends", params={"engine_metrics": "1"}, timeout=10)
    tiny = next(b for b in r.json()["backends"] if b["model"] == "tiny")
    return tiny["engine_metrics"]["tokens_generated"]


def test_the_response_cache_answers_deterministic_requests_only(controller, home: Path) -> None:
    (home / "extra.toml").write_text("[server.response_cache]\nenabled = true\nentries = 2\n")
    proc = controller(LLMCTL_CONFIG=str(home / "extra.toml"))
    first = _chat(proc, temperature=0)
    assert first.status_code == 200 and first.headers["x-llmctl-cache"] == "miss"
    before = _generated(proc)
    hit = _chat(proc, temperature=0)
    assert hit.status_code == 200 and hit.headers["x-llmctl-cache"] == "hit"
    assert hit.content == first.content  # the same bytes, id and usage included
    assert hit.headers["Content-Type"] == first.headers["Content-Type"]
    assert _generated(proc) == before  # the backend did not see it
    for _ in range(2):  # sampled: never cached
        warm = _chat(proc, temperature=0.7)
        assert warm.status_code == 200 and warm.headers["x-llmctl-cache"] == "bypass"
    assert _generated(proc) == before + 8
    streamed = httpx.post(proc.url + "/v1/chat/completions", json={**CHAT, "temperature": 0, "stream": True})
    assert streamed.headers["x-llmctl-cache"] == "bypass"
    too_long = [{"role": "user", "content": "hello there " * 2000}]  # beyond the context: the engine says 400
    for _ in range(2):  # an error is never cached
        bad = _chat(proc, temperature=0, messages=too_long)
        assert bad.status_code == 400 and bad.headers["x-llmctl-cache"] == "miss", bad.text
    assert _chat(proc, temperature=0, max_tokens=2).headers["x-llmctl-cache"] == "miss"
    assert _chat(proc, temperature=0, max_tokens=3).headers["x-llmctl-cache"] == "miss"  # 2 entries: evicts
    assert _chat(proc, temperature=0).headers["x-llmctl-cache"] == "miss"  # the first answer was evicted
    text = httpx.get(proc.url + "/metrics").text
    assert "llmctl_response_cache_hits_total 1.0" in text
    assert "llmctl_response_cache_evictions_total 2.0" in text
    assert "llmctl_response_cache_entries 2.0" in text
    recent = httpx.get(proc.url + "/llmctl/v1/requests").json()["requests"]
    assert [r["cache"] for r in recent][:2] == ["miss", "hit"]

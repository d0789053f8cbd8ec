"""Fit-aware placement with real llama.cpp: three tiny models under a RAM budget that holds two, idle TTLs,
keep_alive, pins, aliases, a model too big for the budget, an invisible retry after a backend dies, /ready and
the ledger in the status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from harness import kill_pid, run_cli

from llmctl.catalog.store import ModelStore

MiB = 1 << 20


def _chat(proc, model: str, **kw) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
    return httpx.post(proc.url + "/v1/chat/completions", json={**body, **kw}, timeout=120)


@pytest.fixture
def three(home: Path, tiny_gguf: Path) -> dict[str, str]:
    """Models a, b, c (the tiny GGUF thrice) and a RAM budget that holds two of them, not three."""
    store = ModelStore(home / "data")
    for name in ("a", "b", "c"):
        store.import_file(tiny_gguf, name)
    env = {"LLMCTL_BACKENDS__PROMPT_CACHE_MIB": "0", "LLMCTL_BACKENDS__MEMORY_MARGIN": "0"}
    fit = run_cli(home, "fit", str(tiny_gguf), "--ctx", "2048", "--json", **env)  # serve caps at the trained 2048
    assert fit.returncode == 0, fit.stderr
    one = json.loads(fit.stdout)["cpu_bytes"]
    assert 20 * MiB < one < 200 * MiB
    return {**env, "LLMCTL_BACKENDS__RAM_BUDGET": str(int(one * 2.5))}


def _config(home: Path, text: str) -> dict[str, str]:
    path = home / "extra.toml"
    path.write_text(text)
    return {"LLMCTL_CONFIG": str(path)}


def test_the_least_recently_used_idle_model_makes_room(controller, three) -> None:
    proc = controller(**three)
    for name in ("a", "b", "a", "c"):
        assert _chat(proc, name).status_code == 200, name
    b = proc.wait_state("b", "stopped")
    assert b["stop_reason"] == "evicted to make room for c"
    assert proc.backend("a")["state"] == "ready" and proc.backend("c")["state"] == "ready"
    with proc.client() as c:
        ledger = c.get("/llmctl/v1/status").json()["memory"]["ram"]
    assert set(ledger["models"]) == {"a", "c"}
    assert ledger["held"] <= ledger["capacity"] and ledger["reserved"] > 0 and ledger["measured"] > 0


def test_a_model_serving_a_request_is_never_evicted(controller, three) -> None:
    proc = controller(**three)
    assert _chat(proc, "a").status_code == 200
    assert _chat(proc, "b").status_code == 200  # b is the most recently used; a is the LRU one
    oai = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=120)
    stream = oai.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}], max_tokens=1500,
                                         temperature=0, stream=True)
    first = next(iter(stream))  # a is now streaming
    assert _chat(proc, "c").status_code == 200
    rest = list(stream)
    assert first and rest and rest[-1].choices[0].finish_reason == "length"  # a's stream was not cut
    assert proc.backend("b")["state"] == "stopped" and proc.backend("a")["state"] == "ready"


def test_a_pinned_model_stays(controller, home: Path, three) -> None:
    proc = controller(**three, **_config(home, "[models.a]\npinned = true\n"))
    for name in ("a", "b", "c"):
        assert _chat(proc, name).status_code == 200, name
    assert proc.backend("a")["state"] == "ready" and proc.backend("a")["pinned"]
    assert proc.wait_state("b", "stopped")["stop_reason"] == "evicted to make room for c"


def test_a_model_too_big_for_the_budget_gets_the_figures(controller, three) -> None:
    proc = controller(**{**three, "LLMCTL_BACKENDS__RAM_BUDGET": str(10 * MiB)})
    r = _chat(proc, "a")
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "insufficient_memory" and "a needs" in err["message"] and "llmctl fit a" in err["message"]
    assert "Retry-After" not in r.headers  # waiting will not help


def test_idle_ttl_and_keep_alive_unload(controller, home: Path, three) -> None:
    proc = controller(**three, **_config(home, "[models.a]\nttl = 1\n"))
    assert _chat(proc, "a").status_code == 200
    assert proc.wait_state("a", "stopped", timeout=15)["stop_reason"] == "idle for 1 s (ttl)"
    assert _chat(proc, "b", keep_alive=0).status_code == 200
    assert proc.wait_state("b", "stopped", timeout=15)["stop_reason"] == "keep_alive 0: unloaded after its request"
    assert _chat(proc, "c", keep_alive="1h").status_code == 200
    time.sleep(2)
    assert proc.backend("c")["state"] == "ready" and proc.backend("c")["ttl"] == 3600
    ps = run_cli(home, "ps", "--json", LLMCTL_SERVER__PORT=str(proc.port))
    reasons = {b["model"]: b["stop_reason"] for b in json.loads(ps.stdout)}
    assert reasons == {"a": "idle for 1 s (ttl)", "b": "keep_alive 0: unloaded after its request", "c": None}
    assert "idle for" in run_cli(home, "ps", LLMCTL_SERVER__PORT=str(proc.port)).stdout
    assert _chat(proc, "c", keep_alive="soon").status_code == 400


def test_an_alias_reaches_its_model(controller, home: Path) -> None:
    proc = controller(**_config(home, '[models.tiny]\naliases = ["gpt-4o-mini", "Coder"]\n'))
    r = _chat(proc, "coder")
    assert r.status_code == 200, r.text
    assert proc.backend("tiny")["state"] == "ready"


def test_a_backend_killed_before_the_first_byte_is_retried_invisibly(controller) -> None:
    proc = controller()
    assert _chat(proc, "tiny").status_code == 200
    first = proc.backend("tiny")
    kill_pid(first["pid"])
    r = _chat(proc, "tiny")  # the engine is gone; the gateway waits for the restart and sends it again
    assert r.status_code == 200, r.text
    b = proc.backend("tiny")
    assert b["pid"] != first["pid"] and b["restarts"] == 1


def test_ready_says_whether_a_model_can_answer(controller) -> None:
    proc = controller()
    with proc.client() as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 503
        assert _chat(proc, "tiny").status_code == 200
        assert c.get("/ready").status_code == 200
        assert c.get("/ready", params={"model": "tiny"}).json()["ready"] == ["tiny"]
        assert c.get("/ready", params={"model": "other"}).status_code == 503

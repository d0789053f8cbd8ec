"""The engine layer against the real default engine (llama.cpp's server from xllamacpp): engines' own metrics on
llmctl's /metrics, embeddings deployments, speculative decoding with a draft model, the per-launch backend key,
and `llmctl runtimes`."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from harness import run_cli

from llmctl.catalog.store import ModelStore

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}


def _config(home: Path, text: str) -> dict[str, str]:
    path = home / "extra.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"LLMCTL_CONFIG": str(path)}


def test_engine_series_pass_through_labelled_by_model(controller) -> None:
    proc = controller()
    with proc.client() as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        prom = c.get("/metrics").text
        backends = c.get("/llmctl/v1/backends", params={"engine_metrics": "1"}).json()["backends"]
    assert 'llamacpp:tokens_predicted_total{model="tiny"} 8.0' in prom, prom[-2000:]
    assert "llmctl_requests_total" in prom  # llmctl's own series are still there
    summary = backends[0]["engine_metrics"]
    assert summary["tokens_generated"] == 8 and summary["requests_running"] == 0


def test_the_backend_port_answers_only_the_gateway(controller) -> None:
    proc = controller()
    with proc.client() as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
    backend = proc.backend("tiny")
    direct = httpx.post(f"http://127.0.0.1:{backend['port']}/v1/chat/completions", json=CHAT, timeout=30)
    assert direct.status_code == 401  # a page or another local user cannot drive the engine's private port
    state = (proc.home / "state" / "backends.json").read_text()
    log_first_line = (proc.home / "state" / "logs" / "tiny.log").read_text().splitlines()[0]
    assert "api-key" not in log_first_line and "LLAMA_API_KEY" not in state  # the key is in neither


def test_an_embeddings_deployment_serves_v1_embeddings(controller, home: Path, tiny_gguf: Path) -> None:
    ModelStore(home / "data").import_file(tiny_gguf, "tiny-embed")
    proc = controller(**_config(home, "[models.tiny-embed]\nembeddings = true\npooling = \"mean\"\n"))
    oai = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=120)
    r = oai.embeddings.create(model="tiny-embed", input=["hello world", "goodbye"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 64  # the tiny model's n_embd
    assert r.data[0].embedding != r.data[1].embedding
    with pytest.raises(openai.BadRequestError, match="does not serve /v1/chat/completions"):
        oai.chat.completions.create(model="tiny-embed", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match=r"embeddings = true"):
        oai.embeddings.create(model="tiny", input="hello")


def test_speculative_decoding_with_a_draft_model(controller, home: Path, tiny_gguf: Path) -> None:
    proc = controller(**_config(home, f'[models.tiny]\nmodel-draft = "{tiny_gguf}"\n'))
    with proc.client() as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "max_tokens": 16})
        assert r.status_code == 200, r.text
        prom = c.get("/metrics").text
    assert r.json()["usage"]["completion_tokens"] == 16
    assert "--model-draft" in (proc.home / "state" / "logs" / "tiny.log").read_text().splitlines()[0]
    drafted = [line for line in prom.splitlines() if line.startswith("llamacpp:spec_decode_num_draft_tokens_total")]
    assert drafted and float(drafted[0].split()[-1]) > 0, drafted


def test_runtimes_lists_every_engine(home: Path) -> None:
    out = run_cli(home, "runtimes", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    engines = {e["engine"]: e for e in data["engines"]}
    assert data["default"] == "xllamacpp" and engines["xllamacpp"]["found"] and engines["xllamacpp"]["version"]
    assert set(engines) >= {"xllamacpp", "llama-server", "llama-cpp-python"}
    assert all(e["how_to_get"] for e in engines.values())


def _tiny_load(c: httpx.Client) -> dict:
    models = c.get("/llmctl/v1/engine-metrics").json()["models"]
    return next(m for m in models if m["model"] == "tiny")


def test_the_engine_metrics_route_reports_running_requests_and_kv_cache(controller) -> None:
    """GET /llmctl/v1/engine-metrics against the real llama.cpp server: while three streams share its two slots
    the model reports requests running and KV cache in use (read from llama.cpp's /slots: this build exports no KV
    series); once they end, none running and no KV held, the tokens counted, and no preemptions (n/a: llama.cpp
    defers instead). llmctl's own gauges say the same on /metrics."""
    proc = controller()
    streams = [{**CHAT, "messages": [{"role": "user", "content": f"story {i}"}], "max_tokens": 1800, "stream": True}
               for i in range(3)]

    def stream(body: dict) -> None:
        with httpx.stream("POST", proc.url + "/v1/chat/completions", json=body, timeout=120) as r:
            for _ in r.iter_lines():
                pass

    with proc.client() as c:
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200  # loaded
        threads = [threading.Thread(target=stream, args=(body,)) for body in streams]
        for t in threads:
            t.start()
        seen, t0 = [], time.monotonic()
        while any(t.is_alive() for t in threads):
            seen.append(_tiny_load(c))
        busy_for = time.monotonic() - t0
        for t in threads:
            t.join(60)
        after = _tiny_load(c)
        prom = c.get("/metrics").text
    busy = [m["figures"] for m in seen if m["figures"] and m["figures"]["requests_running"] >= 1]
    print(f"\n{len(seen)} answers in {busy_for:.1f} s of streaming, {len(busy)} with requests running")
    assert busy, seen
    assert max(f["kv_cache_usage"] for f in busy) > 0
    assert all(0 <= f["kv_cache_usage"] <= 1 for f in busy)
    assert (after["state"], after["engine"], after["note"]) == ("ready", "xllamacpp", None)
    f = after["figures"]
    assert (f["requests_running"], f["requests_waiting"], f["kv_cache_usage"], f["preemptions"]) == (0, 0, 0, None)
    assert f["tokens_generated"] >= 8 + 3 * 100 and f["prefix_cache_queries"] >= f["prefix_cache_hits"] >= 0
    assert after["memory_bytes"] > 0
    assert 'llmctl_engine_requests_running{model="tiny"} 0.0' in prom
    assert 'llmctl_engine_kv_cache_usage_ratio{model="tiny"} 0.0' in prom


def test_one_request_may_use_the_whole_pool_the_slots_share(controller) -> None:
    """On default settings the tiny model (trained on 2,048 tokens) gets one KV pool of 2,048 cells shared by 4
    slots (--kv-unified), not 4 fixed shares of 512: a single 1,500-token prompt is served, and llama.cpp
    allocated the pool once (n_ctx 2048, not 4 × 2048)."""
    proc = controller(LLMCTL_BACKENDS__CTX_SIZE="auto")  # the default (the harness pins 2048 for other tests)
    prompt = [1 + (i * 7) % 500 for i in range(1500)]  # token ids: more than a quarter of the pool, less than all
    with proc.client() as c:
        r = c.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == 1500
    backend = proc.backend("tiny")
    assert (backend["ctx_size"], backend["parallel"]) == (2048, 4)
    assert backend["context"]["why"] == "trained"  # what `llmctl ps` shows: the trained length, memory allowing
    log = (proc.home / "state" / "logs" / "tiny.log").read_text()
    assert "--ctx-size 2048 --parallel 4 --kv-unified" in log.splitlines()[0]
    assert re.search(r"n_ctx\s+= 2048\n", log) and re.search(r"kv_unified\s+= true", log), log[-3000:]

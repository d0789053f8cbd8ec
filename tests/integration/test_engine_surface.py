"""The engine's own surface through llmctl, against a real controller and a real llama.cpp engine: n > 1 and
prompt lists (the openai SDK), each counted as that many requests by rate limits, queues and records, capped by
server.max_fanout; /tokenize, /detokenize, /apply-template, /props, rerank and /infill routed by model; the OpenAI
routes without /v1; an unknown route's JSON error; x-request-id kept or made, returned and recorded."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from harness import ControllerProcess

from llmctl.catalog.store import ModelStore

METER, SMALL, FREE, APP, PLAIN = "meter-secret-1", "small-secret-2", "free-secret-3", "app-secret-4", "plain-secret-5"
CONFIG = f"""
[[server.keys]]
name = "plain"
key = "{PLAIN}"
[[server.keys]]
name = "app"
key = "{APP}"
requests_per_minute = 3

[[server.keys]]
name = "free"
key = "{FREE}"
role = "admin"  # reads /llmctl/v1/keys, /metrics and /llmctl/v1/requests below

[[server.keys]]
name = "meter"
key = "{METER}"
requests_per_minute = 10

[[server.keys]]
name = "small"
key = "{SMALL}"
requests_per_minute = 4

[models.tiny-q]
parallel = 1
max_queue = 1
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, tiny_gguf: Path):
    home = tmp_path_factory.mktemp("surface")
    store = ModelStore(home / "data")
    store.import_file(tiny_gguf, "tiny")
    store.import_file(tiny_gguf, "tiny-q")
    (home / "extra.toml").write_text(CONFIG)
    proc = ControllerProcess(home, LLMCTL_CONFIG=str(home / "extra.toml")).start()
    yield proc
    proc.kill_everything()


def _oai(ctl, key: str = FREE, v1: bool = True) -> openai.OpenAI:
    return openai.OpenAI(base_url=ctl.url + ("/v1" if v1 else ""), api_key=key, max_retries=0, timeout=60)


def _post(ctl, path: str, body: dict, key: str = FREE, **headers: str) -> httpx.Response:
    return httpx.post(ctl.url + path, json=body, headers={"Authorization": f"Bearer {key}", **headers}, timeout=60)


def test_n_and_prompt_lists_are_served(ctl) -> None:
    oai = _oai(ctl)
    chat = oai.chat.completions.create(model="tiny", messages=HI, n=2, max_tokens=3)
    assert sorted(c.index for c in chat.choices) == [0, 1] and all(c.message.content for c in chat.choices)
    texts = oai.completions.create(model="tiny", prompt=["a", "b", "c"], max_tokens=2)
    assert sorted(c.index for c in texts.choices) == [0, 1, 2]
    ids = oai.completions.create(model="tiny", prompt=[[5, 6, 7], [8, 9]], max_tokens=2)
    assert len(ids.choices) == 2
    one = oai.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=2)  # one prompt of token ids
    assert len(one.choices) == 1


def test_a_huge_prompt_list_is_refused_naming_the_cap(ctl) -> None:
    oai = _oai(ctl)
    with pytest.raises(openai.BadRequestError) as err:
        oai.completions.create(model="tiny", prompt=["a"] * 5000, max_tokens=1)
    assert err.value.body["code"] == "fanout_too_large" and "server.max_fanout = 8" in err.value.body["message"]
    assert "5000" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="tiny", input=["a"] * 10_000)  # inputs count in batches of 32: 313 > 8
    assert err.value.body["code"] == "fanout_too_large" and err.value.body["param"] == "input"
    docs = _post(ctl, "/v1/rerank", {"model": "tiny", "query": "q", "documents": ["d"] * 10_000})
    assert docs.status_code == 400 and docs.json()["error"]["param"] == "documents"
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="tiny", messages=HI, n=9, max_tokens=1)
    assert err.value.body["code"] == "fanout_too_large" and err.value.body["param"] == "n"


def test_a_prompt_list_counts_against_the_keys_request_limit(ctl) -> None:
    eight = {"model": "tiny", "prompt": ["a"] * 8, "max_tokens": 1}
    first = _post(ctl, "/v1/completions", eight, METER)
    assert first.status_code == 200 and len(first.json()["choices"]) == 8
    assert first.headers["x-ratelimit-remaining-requests"] in ("2", "3")  # 10 - 8 (+ what refilled meanwhile)
    second = _post(ctl, "/v1/completions", eight, METER)
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    more = _post(ctl, "/v1/completions", {**eight, "prompt": ["a"] * 5}, SMALL)
    assert more.status_code == 400 and "(4)" in more.json()["error"]["message"]  # more than the key's whole minute
    keys = {k["name"]: k for k in httpx.get(ctl.url + "/llmctl/v1/keys",
                                            headers={"Authorization": f"Bearer {FREE}"}).json()["keys"]}
    assert keys["meter"]["requests"] == 8


def test_n_and_prompts_count_in_the_models_queue(ctl) -> None:
    # tiny-q, loaded: one slot, and one request may wait: three prompts are two waiting, one too many
    loaded = _post(ctl, "/llmctl/v1/backends/tiny-q/load", {})
    assert loaded.status_code == 200 and loaded.json()["state"] == "ready"
    full = _post(ctl, "/v1/completions", {"model": "tiny-q", "prompt": ["a", "b", "c"], "max_tokens": 1})
    assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
    two = _post(ctl, "/v1/completions", {"model": "tiny-q", "prompt": ["a", "b"], "max_tokens": 1})
    assert two.status_code == 200 and len(two.json()["choices"]) == 2
    metrics = httpx.get(ctl.url + "/metrics", headers={"Authorization": f"Bearer {FREE}"}).text
    assert 'llmctl_requests_total{endpoint="/v1/completions",model="tiny-q",status="200"} 2.0' in metrics
    n3 = _post(ctl, "/v1/chat/completions", {"model": "tiny-q", "messages": HI, "n": 3, "max_tokens": 1})
    assert n3.status_code == 429 and n3.json()["error"]["code"] == "queue_full"


def test_engine_routes_are_routed_by_model(ctl) -> None:
    tokens = _post(ctl, "/tokenize", {"model": "tiny", "content": "hello"})
    assert tokens.status_code == 200 and tokens.json()["tokens"]
    text = _post(ctl, "/detokenize", {"model": "tiny", "tokens": tokens.json()["tokens"]})
    assert text.status_code == 200 and text.json()["content"].strip() == "hello"
    prompt = _post(ctl, "/apply-template", {"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
    assert prompt.json()["prompt"] == "<|user|>x\n<|assistant|>"  # the tiny model's own template
    props = httpx.get(ctl.url + "/props", params={"model": "tiny"}, headers={"Authorization": f"Bearer {FREE}"})
    assert props.status_code == 200 and "default_generation_settings" in props.json()
    # the engine's own answers: this deployment was not started with --reranking, and has no FIM tokens
    for path in ("/v1/rerank", "/rerank", "/v1/reranking"):
        rerank = _post(ctl, path, {"model": "tiny", "query": "a", "documents": ["b"]})
        assert rerank.status_code == 501 and "--reranking" in rerank.json()["error"]["message"]
    infill = _post(ctl, "/infill", {"model": "tiny", "input_prefix": "a", "input_suffix": "b"})
    assert infill.status_code == 501 and "Infill" in infill.json()["error"]["message"]
    missing = _post(ctl, "/tokenize", {"content": "hello"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_model"
    unknown = _post(ctl, "/tokenize", {"model": "nope", "content": "x"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]


def test_openai_routes_without_v1(ctl) -> None:
    oai = _oai(ctl, v1=False)
    assert "tiny" in [m.id for m in oai.models.list().data]
    r = oai.chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    assert r.choices[0].message.content


def test_an_unknown_route_answers_json_naming_it(ctl) -> None:
    r = _post(ctl, "/v1/responsez", {"model": "tiny"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "unknown_route" and "POST /v1/responsez" in err["message"]
    wrong = httpx.get(ctl.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {FREE}"})
    assert wrong.status_code == 405 and "GET /v1/chat/completions" in wrong.json()["error"]["message"]


def test_request_ids_are_kept_or_made_returned_and_recorded(ctl) -> None:
    kept = _post(ctl, "/v1/completions", {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 1},
                 **{"X-Request-Id": "client-id-42"})
    assert kept.status_code == 200 and kept.headers["x-request-id"] == "client-id-42"
    made = _post(ctl, "/v1/completions", {"model": "tiny", "prompt": "a", "max_tokens": 1},
                 **{"X-Request-Id": "bad id\twith spaces" + "x" * 200})
    assert made.headers["x-request-id"].startswith("req_")
    refused = httpx.get(ctl.url + "/v1/models")  # no key: the guard's 401 carries one too
    assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")
    recs = httpx.get(ctl.url + "/llmctl/v1/requests", headers={"Authorization": f"Bearer {FREE}"}).json()["requests"]
    rec = next(r for r in recs if r["request_id"] == "client-id-42")
    assert rec["count"] == 2 and rec["endpoint"] == "/v1/completions"
    assert any(r["request_id"] == made.headers["x-request-id"] for r in recs)


def _records(ctl) -> list[dict]:
    return httpx.get(ctl.url + "/llmctl/v1/requests", headers={"Authorization": f"Bearer {FREE}"}).json()["requests"]


def test_an_app_key_loads_models_only_as_requests_it_is_counted_for(ctl) -> None:
    # the load-only Ollama request and GET /props: admitted under the key's rate limit and recorded
    load = _post(ctl, "/api/generate", {"model": "tiny", "keep_alive": "5m"}, APP)
    assert load.status_code == 200 and load.json()["done_reason"] == "load"
    props = httpx.get(ctl.url + "/props", params={"model": "tiny"}, headers={"Authorization": f"Bearer {APP}"})
    assert props.status_code == 200 and props.json()["model_path"] == "tiny"  # no path on the owner's disk
    assert props.headers["x-ratelimit-remaining-requests"] in ("1", "2")
    chat = _post(ctl, "/api/chat", {"model": "tiny"}, APP)
    assert chat.status_code == 200 and chat.json()["done_reason"] == "load"
    refused = _post(ctl, "/api/chat", {"model": "tiny"}, APP)
    assert refused.status_code == 429 and "requests" in refused.json()["error"]
    mine = [r for r in _records(ctl) if r["key"] == "app"]
    assert {r["endpoint"] for r in mine} >= {"/api/generate", "/props", "/api/chat"}
    show = _post(ctl, "/api/show", {"model": "tiny"}, FREE)
    assert show.json()["modelfile"].endswith("FROM tiny\n")  # the name, not the file's absolute path


def test_an_app_key_may_not_pin_or_unload_a_model(ctl) -> None:
    for body in ({"model": "tiny", "keep_alive": -1}, {"model": "tiny", "keep_alive": 0},
                 {"model": "tiny", "prompt": "a", "keep_alive": "-1m", "options": {"num_predict": 1}},
                 {"model": "tiny", "keep_alive": "8760h"}, {"model": "tiny", "keep_alive": 1e12}):
        r = _post(ctl, "/api/generate", body, PLAIN)
        assert r.status_code == 403 and "admin scope" in r.json()["error"] and "'plain'" in r.json()["error"]
    for keep_alive in (-1, 10 ** 9):
        pinned = _post(ctl, "/v1/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 1,
                                                      "keep_alive": keep_alive}, PLAIN)
        assert pinned.status_code == 403 and pinned.json()["error"]["code"] == "insufficient_scope"
    day = _post(ctl, "/api/generate", {"model": "tiny", "keep_alive": "24h"}, PLAIN)  # a day is an app's to ask
    assert day.status_code == 200 and day.json()["done_reason"] == "load"


def test_an_unload_waits_for_the_requests_in_flight(ctl) -> None:
    assert _post(ctl, "/api/generate", {"model": "tiny", "keep_alive": "5m"}).status_code == 200
    body = {"model": "tiny", "prompt": "a", "max_tokens": 1500, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", ctl.url + "/v1/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {FREE}"}) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert first.startswith("data: {")  # the request is in flight
        unloaded = _post(ctl, "/api/generate", {"model": "tiny", "keep_alive": 0})
        assert unloaded.status_code == 200 and unloaded.json()["done_reason"] == "unload"
        rest = [line for line in lines if line.startswith("data: ")]
    # not killed by the unload: every token came, then the end
    assert rest[-1] == "data: [DONE]" and '"finish_reason":"length"' in rest[-2].replace(" ", "")


def test_an_engines_refusal_is_kept_in_the_request_record(ctl) -> None:
    # more prompt than the model's context: llama.cpp refuses it with a 400 that says why
    r = _post(ctl, "/v1/completions", {"model": "tiny", "prompt": [1] * 40000, "max_tokens": 1}, FREE)
    assert r.status_code == 400
    said = r.json()["error"]["message"]
    record = next(x for x in reversed(_records(ctl)) if x["endpoint"] == "/v1/completions" and x["status"] == 400)
    assert record["error"] == "the model server answered: " + said  # GET /llmctl/v1/requests shows why it failed

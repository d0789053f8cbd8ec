"""Engine-native request fields against the real llama.cpp engine (xllamacpp): bounded by llmctl or dropped."""

from __future__ import annotations

import httpx
import openai
from harness import ControllerProcess

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}


def test_engine_native_fields_are_bounded_or_dropped(shared_controller: ControllerProcess) -> None:
    url = shared_controller.url + "/v1/chat/completions"
    # n_predict would override max_tokens (the slot generating for minutes): it is capped at max_tokens
    r = httpx.post(url, json={**CHAT, "n_predict": 1000}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 2
    # past llmctl's bounds: 400 naming the field, nothing reaches the engine
    for field, value in (("n_predict", 100_000_000), ("n_predict", -1), ("n_probs", 100_000), ("min_tokens", 5)):
        r = httpx.post(url, json={**CHAT, field: value}, timeout=30)
        assert r.status_code == 400, (field, value, r.text)
        assert r.json()["error"]["param"] == field
    # n_probs within its bound passes (the engine answers with its probabilities)
    r = httpx.post(url, json={**CHAT, "n_probs": 3}, timeout=120)
    assert r.status_code == 200 and "x-llmctl-dropped-fields" not in r.headers
    # id_slot, vLLM's chat_template and an unknown field never reach the engine: dropped and named
    client = openai.OpenAI(base_url=shared_controller.url + "/v1", api_key="none")
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_body={"id_slot": 1, "chat_template": "{{ 7 * 7 }}", "surprise\r\nx": 1, "cache_prompt": True})
    assert raw.headers["x-llmctl-dropped-fields"] == "id_slot, chat_template, 1 other(s)"
    assert raw.parse().usage.completion_tokens == 2


def test_an_engines_own_routes_keep_their_fields_within_the_same_bounds(shared_controller: ControllerProcess) -> None:
    url = shared_controller.url
    r = httpx.post(url + "/tokenize", json={"model": "tiny", "content": "hello", "id_slot": 0}, timeout=120)
    assert r.status_code == 200 and r.json()["tokens"], r.text  # its own field kept
    assert r.headers["x-llmctl-dropped-fields"] == "id_slot"
    r = httpx.post(url + "/infill", json={"model": "tiny", "input_prefix": "a", "input_suffix": "b",
                                          "n_predict": 100_000_000}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n_predict", r.text
    # OpenAI's length and probability fields on an engine's own route: the chat routes' bounds (llama.cpp reads
    # max_tokens as n_predict on /infill)
    for field, value in (("max_tokens", 1_000_000_000), ("max_completion_tokens", 0), ("top_logprobs", 1_000_000),
                         ("n_probs", 1_000_000)):
        r = httpx.post(url + "/infill", json={"model": "tiny", "input_prefix": "a", "input_suffix": "b",
                                              field: value}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == field, (field, r.text)
    r = httpx.post(url + "/tokenize", json={"model": "tiny", "content": "a", "max_tokens": 1e9}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", r.text

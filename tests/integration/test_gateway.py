"""The OpenAI endpoint, driven with the official SDK against a real controller and a real llama.cpp backend."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def oai(shared_controller) -> openai.OpenAI:
    return openai.OpenAI(base_url=shared_controller.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_list(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert oai.models.retrieve("tiny").id == "tiny"


def test_chat_plain(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                    temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage.completion_tokens == 8
    assert r.choices[0].finish_reason == "length"


def test_chat_streamed_matches_plain(oai: openai.OpenAI) -> None:
    kw = dict(model="tiny", messages=[{"role": "user", "content": "stream"}], max_tokens=12, temperature=0)
    plain = oai.chat.completions.create(**kw).choices[0].message.content
    chunks = list(oai.chat.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="tiny", prompt="Once upon", max_tokens=5, temperature=0)
    assert r.choices[0].text and r.usage.completion_tokens == 5
    streamed = list(oai.completions.create(model="tiny", prompt="Once upon", max_tokens=5, temperature=0,
                                           stream=True))
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_unknown_model_is_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "model_not_found"
    assert "tiny" in err.value.body["message"]  # says what exists


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(b"{not json", 400, "invalid_json"), (b"[1,2]", 400, "invalid_json"),
     (json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}).encode(),
      400, "invalid_value"),
     (json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 9}).encode(),
      400, "fanout_too_large"),
     (json.dumps({"messages": []}).encode(), 400, "missing_model"),
     (json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x" * 70000}]}).encode(),
      413, "request_too_large")],
)
def test_bad_requests_get_openai_shaped_errors(shared_controller, body: bytes, status: int, code: str) -> None:
    r = httpx.post(shared_controller.url + "/v1/chat/completions", content=body,
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"]


def test_embeddings_say_clearly_they_are_not_served(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        oai.embeddings.create(model="tiny", input="hello")


def test_request_metrics_are_recorded(shared_controller, oai: openai.OpenAI) -> None:
    list(oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "m"}], max_tokens=20,
                                     temperature=0, stream=True))
    with shared_controller.client() as c:
        recent = c.get("/llmctl/v1/requests", params={"limit": 1}).json()["requests"][-1]
        prom = c.get("/metrics").text
    assert recent["model"] == "tiny" and recent["stream"] and recent["status"] == 200, recent
    assert recent["completion_tokens"] == 20
    assert recent["ttft_ms"] > 0 and recent["duration_ms"] >= recent["ttft_ms"]
    # 20 streamed tokens: a rate over the 19 gaps after the first, no faster than those gaps fit in the stream
    assert recent["itl_ms"] > 0 and recent["tokens_per_s"] > 0
    # both are rounded (ITL to the microsecond, rate to 0.01): the rate lies within what the ITL's rounding allows,
    # which on a fast tiny model (gaps of ~20 µs) is a few percent
    itl = recent["itl_ms"]
    assert 1000 / (itl + 0.0005) - 0.01 <= recent["tokens_per_s"] <= 1000 / max(itl - 0.0005, 1e-9) + 0.01, recent
    # duration and TTFT are rounded to 0.01 ms each: the span between them may read up to 0.01 ms short
    assert recent["tokens_per_s"] >= 19 / ((recent["duration_ms"] - recent["ttft_ms"] + 0.01) / 1000) * 0.99
    assert 'llmctl_requests_total{endpoint="/v1/chat/completions",model="tiny",status="200"}' in prom
    assert "llmctl_time_to_first_token_seconds_bucket" in prom


def test_stream_headers(shared_controller) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "h"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", shared_controller.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert "access-control-allow-origin" not in r.headers  # CORS is off by default
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"


def test_concurrent_streams_all_complete_in_order(shared_controller) -> None:
    """Eight streams at once, every one complete and identical to its plain twin."""
    client = openai.AsyncOpenAI(base_url=shared_controller.url + "/v1", api_key="x", max_retries=0, timeout=120)

    async def one(i: int) -> tuple[str, str]:
        kw = dict(model="tiny", messages=[{"role": "user", "content": f"prompt {i}"}], max_tokens=16,
                  temperature=0)
        plain = (await client.chat.completions.create(**kw)).choices[0].message.content
        parts = []
        async for chunk in await client.chat.completions.create(stream=True, **kw):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return plain, "".join(parts)

    async def main():
        try:
            return await asyncio.gather(*(one(i) for i in range(8)))
        finally:
            await client.close()

    results = asyncio.run(main())
    for plain, streamed in results:
        assert streamed == plain and plain


def test_dns_rebinding_host_is_refused(shared_controller) -> None:
    r = httpx.get(shared_controller.url + "/v1/models", headers={"Host": "evil.example:7878"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "bad_host"
    ok = httpx.get(shared_controller.url + "/v1/models", headers={"Host": "localhost"}, timeout=10)
    assert ok.status_code == 200


def test_client_hanging_up_after_done_is_a_complete_request(shared_controller) -> None:
    """The openai SDK closes the connection as soon as it reads [DONE]; that stream was delivered whole."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "bye"}], "max_tokens": 3, "stream": True}
    with httpx.Client(base_url=shared_controller.url, timeout=30) as c:
        for _ in range(20):
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        break
            # leaving the block closes the connection before the final chunk is read
        statuses = [rec["status"] for rec in c.get("/llmctl/v1/requests", params={"limit": 20}).json()["requests"]]
    assert statuses == [200] * 20

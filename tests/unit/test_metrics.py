"""Stream metering counts token events across arbitrary chunk boundaries, without re-encoding."""

from __future__ import annotations

import json

import pytest

from llmctl.app.controller.metrics import Metrics, StreamMeter


def _event(content: str | None, **extra) -> bytes:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    return b"data: " + json.dumps({"choices": [{"delta": delta}], **extra}).encode() + b"\r\n\r\n"


def test_counts_tokens_split_anywhere() -> None:
    stream = (_event(None) + b"".join(_event(c) for c in ["a", "b", "", "c"]) +
              b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n' + b"data: [DONE]\n\n")
    for size in (1, 7, 64, len(stream)):
        meter = StreamMeter(t0=0.0)
        for i in range(0, len(stream), size):
            meter.feed(stream[i : i + size], now=float(i))
        assert meter.tokens == 4  # the role-only event carries no token; an empty content (half a UTF-8 char) does
        assert meter.usage == {"prompt_tokens": 3, "completion_tokens": 3}


def test_role_announcements_are_not_tokens() -> None:
    meter = StreamMeter(t0=0.0)
    meter.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n', now=0.5)
    meter.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n', now=1.0)
    meter.feed(b'data: {"choices":[{"text":"x"}]}\n\n', now=2.0)
    assert (meter.tokens, meter.first) == (1, 2.0)


def test_ollama_puts_the_role_on_every_token_and_each_still_counts() -> None:
    """Ollama's /v1 stream as recorded from 0.23.0: role and content on every chunk, the last with a finish."""
    from ollama_fixture import load_transcript

    rec = next(r for r in load_transcript("06-openai.jsonl") if (r["request_body"] or {}).get("stream"))
    lines = rec["response_body"]  # the stream's data lines, in order
    body = "".join(line + "\n\n" for line in lines).encode()
    texts = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines
             if line.startswith("data: {") and json.loads(line[6:])["choices"]]
    meter = StreamMeter(t0=0.0)
    meter.feed(body, now=1.0)
    assert meter.tokens == sum(1 for t in texts if t) > 3, texts


def test_finish_records_ttft_itl_and_rate() -> None:
    metrics = Metrics()
    rec = metrics.begin("m", "/v1/chat/completions", stream=True)
    meter = StreamMeter(t0=0.0)
    gaps = []
    for i, t in enumerate([0.5, 0.6, 0.7, 0.9]):
        gaps += meter.feed(_event(str(i)), now=t)
    metrics.observe_gaps("m", gaps)
    metrics.finish(rec, 200, meter)
    assert rec.ttft_ms == 500.0
    assert abs(rec.itl_ms - 133.333) < 0.01
    assert rec.tokens_per_s == 7.5  # 3 gaps over 0.4 s
    assert rec.completion_tokens == 4
    text = metrics.exposition().decode()
    assert 'llmctl_requests_total{endpoint="/v1/chat/completions",model="m",status="200"} 1.0' in text
    assert 'llmctl_inter_token_latency_seconds_count{model="m"} 3.0' in text


def test_all_tokens_in_one_chunk_are_timed_to_the_end_of_the_stream() -> None:
    """A fast engine's tokens may all arrive in one read: no division by zero, and the rate runs from that read to
    the end of the stream (here ~0.9 s for the one gap between two tokens)."""
    import time

    metrics = Metrics()
    rec = metrics.begin("m", "/v1/chat/completions", stream=True)
    t0 = time.perf_counter() - 1.0
    meter = StreamMeter(t0=t0)
    meter.feed(_event("a") + _event("b"), now=t0 + 0.1)
    metrics.finish(rec, 200, meter)
    assert rec.completion_tokens == 2 and 0.5 < rec.tokens_per_s < 1.5, rec
    assert rec.itl_ms == pytest.approx(1000 / rec.tokens_per_s, rel=0.01)

"""The policy's pure parts with time injected: token buckets, named keys and their headers, model queues, the
response cache's bounds."""

from __future__ import annotations

import pytest

from llmctl.app.controller.cache import ResponseCache, cache_key, cacheable
from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.limits import Bucket, Keys, ModelQueue, duration
from llmctl.app.controller.metrics import Metrics, key_families


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_continuously_and_may_go_into_debt() -> None:
    b = Bucket(60, at=0.0)  # one per second
    assert all(b.take(1, 0.0) for _ in range(60))
    assert not b.take(1, 0.0) and b.wait_for(1, 0.0) == pytest.approx(1.0)
    assert b.take(1, 1.0) and b.remaining(1.0) == 0
    assert b.remaining(31.0) == 30 and b.reset_after(31.0) == pytest.approx(30.0)
    assert b.remaining(1000.0) == 60  # never above its limit
    b.charge(100, 1000.0)  # a long answer: 40 in debt
    assert not b.has(1, 1000.0) and b.wait_for(1, 1000.0) == pytest.approx(41.0)


def test_durations_are_written_as_openai_writes_them() -> None:
    assert (duration(0.02), duration(1), duration(1.5), duration(360), duration(0)) == \
        ("20ms", "1s", "1.5s", "6m0s", "0ms")


def test_keys_are_identified_by_secret_and_limited_by_name() -> None:
    clock = Clock()
    keys = Keys([("alice", "alice-secret", 2, None), ("bob", "bob-secret", None, 100)], clock=clock)
    alice, bob = keys.identify("alice-secret"), keys.identify("bob-secret")
    assert (alice.name, bob.name) == ("alice", "bob")
    assert keys.identify("alice-secre") is None and keys.identify("") is None
    first = keys.admit(alice)
    assert first == {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1",
                     "x-ratelimit-reset-requests": "30s"}
    keys.admit(alice)
    with pytest.raises(ApiError) as refused:
        keys.admit(alice)
    err = refused.value
    assert err.status == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    assert err.retry_after == 30 and err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "alice" in err.message and "2" in err.message
    clock.now += 30
    assert keys.admit(alice)["x-ratelimit-remaining-requests"] == "0"  # one came back, and was taken
    assert keys.admit(bob) == {"x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "100",
                               "x-ratelimit-reset-tokens": "0ms"}


def test_tokens_are_charged_after_the_answer_and_refuse_until_refilled() -> None:
    clock = Clock()
    keys = Keys([("bob", "bob-secret", None, 100)], clock=clock)
    bob = keys.identify("bob-secret")
    keys.admit(bob)
    keys.charge(bob, 30, 90)  # 120 > 100: 20 in debt
    with pytest.raises(ApiError) as refused:
        keys.admit(bob)
    assert refused.value.type == "tokens" and refused.value.retry_after == 13  # 21 tokens at 100/min
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now += 13
    assert keys.admit(bob)["x-ratelimit-remaining-tokens"] == "1"
    snap = keys.snapshot()[0]
    assert (snap["requests"], snap["prompt_tokens"], snap["completion_tokens"], snap["rate_limited"]) == \
        (2, 30, 90, {"requests": 0, "tokens": 1})


def test_key_metrics_carry_names_never_secrets() -> None:
    keys = Keys([("alice", "alice-secret", 5, 50)])
    keys.admit(keys.identify("alice-secret"))
    metrics = Metrics()
    metrics.watch(lambda: key_families(keys.snapshot()))
    text = metrics.exposition().decode()
    assert 'llmctl_key_requests_total{key="alice"} 1.0' in text
    assert 'llmctl_key_remaining{key="alice",limit="requests"} 4.0' in text
    assert "alice-secret" not in text


def test_a_queue_counts_only_what_waits_beyond_the_slots() -> None:
    q = ModelQueue("m", max_queue=1, max_concurrent=None)
    q.admit(slots=2, loading=False)
    q.admit(slots=2, loading=False)  # both served
    q.admit(slots=2, loading=False)  # one waits
    with pytest.raises(ApiError) as refused:
        q.admit(slots=2, loading=False)
    err = refused.value
    assert err.status == 429 and err.code == "queue_full" and err.retry_after == 1 and "max_queue 1" in err.message
    q.leave()
    q.admit(slots=2, loading=False)
    assert (q.inside, q.rejected) == (3, 1)


def test_while_a_model_loads_every_request_waits() -> None:
    q = ModelQueue("m", max_queue=2, max_concurrent=None)
    q.admit(slots=0, loading=True)
    q.admit(slots=0, loading=True)
    with pytest.raises(ApiError) as refused:
        q.admit(slots=0, loading=True)
    assert refused.value.retry_after == 5 and "is loading" in refused.value.message


def test_max_concurrent_caps_the_slots() -> None:
    q = ModelQueue("m", max_queue=1, max_concurrent=1)
    q.admit(slots=4, loading=False)
    q.admit(slots=4, loading=False)
    with pytest.raises(ApiError, match="max_concurrent 1"):
        q.admit(slots=4, loading=False)


async def test_max_concurrent_holds_the_extra_request_back() -> None:
    import asyncio

    q = ModelQueue("m", max_queue=4, max_concurrent=1)
    await q.acquire()
    second = asyncio.ensure_future(q.acquire())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.release()
    await asyncio.wait_for(second, 1)
    q.release()


def test_only_deterministic_requests_are_cacheable() -> None:
    chat = {"model": "m", "messages": [], "temperature": 0}
    assert cacheable("/v1/chat/completions", chat)
    assert cacheable("/v1/completions", {**chat, "n": 1, "temperature": 0.0})
    assert not cacheable("/v1/chat/completions", {**chat, "temperature": 0.7})
    assert not cacheable("/v1/chat/completions", {k: v for k, v in chat.items() if k != "temperature"})
    assert not cacheable("/v1/chat/completions", {**chat, "temperature": False})
    assert not cacheable("/v1/chat/completions", {**chat, "stream": True})
    assert not cacheable("/v1/chat/completions", {**chat, "n": 2})
    assert not cacheable("/v1/embeddings", {**chat, "input": "x"})


def test_the_cache_key_is_canonical() -> None:
    a = cache_key("/v1/chat/completions", "m", "/f.gguf", None,
                  {"model": "alias", "temperature": 0, "messages": [{"role": "user", "content": "x"}]})
    b = cache_key("/v1/chat/completions", "m", "/f.gguf", None,
                  {"messages": [{"content": "x", "role": "user"}], "temperature": 0, "model": "m", "keep_alive": 0})
    assert a == b  # key order, the alias and keep_alive do not matter
    assert a != cache_key("/v1/chat/completions", "m", "/other.gguf", None,
                          {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "x"}]})
    assert a != cache_key("/v1/chat/completions", "m", "/f.gguf", "alice",
                          {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "x"}]})


def test_the_cache_is_bounded_in_entries_and_bytes_least_recently_used_first() -> None:
    clock = Clock()
    cache = ResponseCache(entries=2, max_bytes=1000, ttl=60, clock=clock)
    cache.put("a", b"A" * 100, "application/json", None)
    cache.put("b", b"B" * 100, "application/json", None)
    assert cache.get("a") is not None  # b is now the least recently used
    cache.put("c", b"C" * 100, "application/json", None)
    assert cache.get("b") is None and cache.evictions == 1 and len(cache) == 2
    cache.put("d", b"D" * 800, "application/json", None)  # a and c no longer fit beside it
    assert cache.get("a") is None and cache.get("c") is None and cache.get("d") is not None
    assert cache.evictions == 3 and cache.bytes <= 1000
    assert not cache.put("e", b"E" * 1000, "application/json", None)  # larger than the whole cache
    clock.now += 61
    assert cache.get("d") is None and len(cache) == 0 and cache.bytes == 0  # expired
    assert (cache.hits, cache.misses) == (2, 4)

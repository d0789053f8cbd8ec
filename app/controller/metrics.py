"""Per-request measurements (TTFT, inter-token latency, tokens, tokens/s) and their Prometheus export.

Streams are measured without re-encoding: the gateway hands every chunk it forwards to ``StreamMeter.feed``,
which splits server-sent events on blank lines and counts the ones that carry generated text.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# an event carries a token when it has a "content" (chat), "reasoning_content"/"reasoning" (a reasoning model's
# thinking, as llama.cpp and vLLM name it) or
# "text" (completions) string, even an empty one (a byte-fallback token that ends mid-UTF-8 arrives as ""), and is
# not the opening role announcement: an event with a "role" counts only when its text is not empty (vLLM and
# llama.cpp open with a role and "" or null; Ollama puts the role on every chunk, its tokens included). The same rule
# as the bench's ``is_token_chunk``. Servers may merge tokens into one event (llama.cpp holds back a partial UTF-8
# sequence), so the final count comes from the stream's own figures when it gives them (see _usage_of).
_TOKEN_RE = re.compile(rb'"(?:content|reasoning_content|reasoning|text)"\s*:\s*"')
_TEXT_RE = re.compile(rb'"(?:content|reasoning_content|reasoning|text)"\s*:\s*"[^"]')  # a non-empty one
_EVENT_SPLIT = re.compile(rb"\r?\n\r?\n")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)


@dataclass(slots=True)
class RequestRecord:
    id: int
    model: str
    endpoint: str
    stream: bool
    started_at: float  # wall clock
    status: int = 0
    ttft_ms: float | None = None
    itl_ms: float | None = None
    duration_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    error: str | None = None
    key: str | None = None  # the API key's name
    cache: str | None = None  # hit | miss | bypass, with the response cache on
    served_by: str | None = None  # the model that answered when it was not the one asked for (a failover)
    count: int = 1  # the requests it counts as: the answers it asked for (n × prompts)
    request_id: str | None = None  # the client's x-request-id, or the one llmctl gave it

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class StreamMeter:
    """Counts token-bearing SSE events as they pass; notes when the first and last arrived."""

    t0: float = field(default_factory=time.perf_counter)
    first: float | None = None
    last: float | None = None
    tokens: int = 0
    usage: dict | None = None
    done: bool = False  # the stream's closing ``data: [DONE]`` has passed
    sent: bool = False  # the request went to an upstream (which may have processed it without saying how much)
    _partial: bytes = b""

    def feed(self, chunk: bytes, now: float | None = None) -> list[float]:
        """Account for one forwarded chunk; returns the inter-token gaps it closed (seconds)."""
        now = time.perf_counter() if now is None else now
        if not self._partial and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1 and b"\r" not in chunk:
            events = [chunk]  # the usual chunk: one whole event (no split, no copy)
        else:
            events = _EVENT_SPLIT.split(self._partial + chunk)
            self._partial = events.pop()[-65536:]
        gaps = []
        for event in events:
            if b"[DONE]" in event and event.strip() == b"data: [DONE]":
                self.done = True
            if _TOKEN_RE.search(event) and (b'"role"' not in event or _TEXT_RE.search(event)):
                if self.first is None:
                    self.first = now
                elif self.last is not None:
                    gaps.append(now - self.last)
                self.last = now
                self.tokens += 1
            if (b'"usage"' in event and b'"completion_tokens"' in event) or b'"timings"' in event:
                self.usage = _usage_of(event.removeprefix(b"data:").strip()) or self.usage
        return gaps


def _usage_of(payload: bytes) -> dict | None:
    """The OpenAI ``usage`` of an event, or the same counts from llama.cpp's ``timings`` (its last event carries
    ``predicted_n`` and ``prompt_n`` when the client did not ask for usage)."""
    try:
        data = json.loads(payload)
        usage, timings = data.get("usage"), data.get("timings")
    except (ValueError, AttributeError):
        return None
    if isinstance(usage, dict):
        return usage
    if isinstance(timings, dict) and isinstance(timings.get("predicted_n"), int):
        counts = [timings.get("prompt_n"), timings.get("cache_n", 0)]  # evaluated + reused from the cache
        prompt = sum(counts) if all(isinstance(c, int) for c in counts) else None
        return {"completion_tokens": timings["predicted_n"], "prompt_tokens": prompt}
    return None


class Metrics:
    """Prometheus series on a private registry plus the most recent requests for the control API."""

    def __init__(self, recent: int = 500) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple, Any] = {}  # (metric, labels) -> its labelled child (``_child``)
        self.requests = Counter(
            "llmctl_requests", "Gateway requests", ["model", "endpoint", "status"], registry=self.registry
        )
        self.tokens = Counter("llmctl_tokens", "Tokens processed", ["model", "kind"], registry=self.registry)
        self.ttft = Histogram(
            "llmctl_time_to_first_token_seconds", "Time to first token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.itl = Histogram(
            "llmctl_inter_token_latency_seconds", "Gap between streamed tokens", ["model"],
            buckets=_ITL_BUCKETS, registry=self.registry,
        )
        self.duration = Histogram(
            "llmctl_request_duration_seconds", "Whole request", ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge("llmctl_requests_in_flight", "Requests being served", registry=self.registry)
        self.recent: deque[RequestRecord] = deque(maxlen=recent)
        self.active = 0  # requests in flight, for the control API (the gauge is for Prometheus)
        self._ids = itertools.count(1)

    def begin(self, model: str, endpoint: str, stream: bool) -> RequestRecord:
        self.in_flight.inc()
        self.active += 1
        return RequestRecord(next(self._ids), model, endpoint, stream, time.time())

    def finish(
        self,
        rec: RequestRecord,
        status: int,
        meter: StreamMeter,
        *,
        usage: dict | None = None,
        error: str | None = None,
    ) -> None:
        end = time.perf_counter()
        self.in_flight.dec()
        self.active -= 1
        rec.status = status
        rec.error = error
        rec.duration_ms = round((end - meter.t0) * 1000, 2)
        usage = usage or meter.usage or {}
        rec.prompt_tokens = usage.get("prompt_tokens")
        rec.completion_tokens = usage.get("completion_tokens", meter.tokens if rec.stream else None)
        if rec.stream and meter.first is not None:
            rec.ttft_ms = round((meter.first - meter.t0) * 1000, 2)
            # the server's own count when it gave one: an engine may merge several tokens into one event
            n = rec.completion_tokens if isinstance(rec.completion_tokens, int) else meter.tokens
            # from the first token to the last; when a fast engine's tokens all arrived in one read, to the end
            last = meter.last if meter.last is not None and meter.last > meter.first else end
            if n > 1 and last > meter.first:
                rec.itl_ms = round((last - meter.first) / (n - 1) * 1000, 3)
                rec.tokens_per_s = round((n - 1) / (last - meter.first), 2)
        elif not rec.stream and status == 200:
            rec.ttft_ms = rec.duration_ms  # nothing arrives before the whole answer
            if rec.completion_tokens:
                rec.tokens_per_s = round(rec.completion_tokens / max(end - meter.t0, 1e-9), 2)
        self._child(self.requests, rec.model, rec.endpoint, str(status)).inc(rec.count)
        self._child(self.duration, rec.model, rec.endpoint).observe(end - meter.t0)
        if rec.ttft_ms is not None:
            self._child(self.ttft, rec.model).observe(rec.ttft_ms / 1000)
        if rec.prompt_tokens:
            self._child(self.tokens, rec.model, "prompt").inc(rec.prompt_tokens)
        if rec.completion_tokens:
            self._child(self.tokens, rec.model, "completion").inc(rec.completion_tokens)
        self.recent.append(rec)

    def _child(self, metric, *labels: str):
        """``metric.labels(*labels)``, looked up once per label set rather than on every request."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def watch(self, collect: Callable[[], Iterable]) -> None:
        """Export series read live from elsewhere (``collect`` yields metric families) on every scrape."""
        self.registry.register(_Live(collect))

    def observe_gaps(self, model: str, gaps: list[float]) -> None:
        if gaps:
            child = self._child(self.itl, model)
            for gap in gaps:
                child.observe(gap)

    def exposition(self, extra: list | None = None) -> bytes:
        """llmctl's series, then ``extra`` metric families (engines' own, relabelled) when given."""
        if not extra:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        registry.register(_Families(extra))
        return generate_latest(self.registry) + generate_latest(registry)


def key_families(snapshot: list[dict]) -> Iterable:
    """``llmctl_key_*`` from ``Keys.snapshot()``: labelled by the key's name, never its secret."""
    requests = CounterMetricFamily("llmctl_key_requests", "Inference requests admitted per API key", labels=["key"])
    tokens = CounterMetricFamily("llmctl_key_tokens", "Tokens charged per API key", labels=["key", "kind"])
    limited = CounterMetricFamily("llmctl_key_rate_limited", "Requests refused with 429 per API key and limit",
                                  labels=["key", "limit"])
    remaining = GaugeMetricFamily("llmctl_key_remaining", "What is left of a key's per-minute limit",
                                  labels=["key", "limit"])
    for k in snapshot:
        requests.add_metric([k["name"]], k["requests"])
        tokens.add_metric([k["name"], "prompt"], k["prompt_tokens"])
        tokens.add_metric([k["name"], "completion"], k["completion_tokens"])
        for kind, n in k["rate_limited"].items():
            limited.add_metric([k["name"], kind], n)
        for kind in ("requests", "tokens"):
            if k[f"remaining_{kind}"] is not None:
                remaining.add_metric([k["name"], kind], k[f"remaining_{kind}"])
    return [requests, tokens, limited, remaining]


def cache_families(hits: int, misses: int, evictions: int, entries: int, size: int) -> Iterable:
    """``llmctl_response_cache_*``."""
    out = []
    for name, doc, value in (("hits", "Answers served from the response cache", hits),
                             ("misses", "Cacheable requests not in the response cache", misses),
                             ("evictions", "Answers dropped to keep the cache within its bounds", evictions)):
        family = CounterMetricFamily(f"llmctl_response_cache_{name}", doc)
        family.add_metric([], value)
        out.append(family)
    for name, doc, value in (("entries", "Answers in the response cache", entries),
                             ("bytes", "Bytes of answers in the response cache", size)):
        family = GaugeMetricFamily(f"llmctl_response_cache_{name}", doc)
        family.add_metric([], value)
        out.append(family)
    return out


def queue_families(rejected: dict[str, int], inside: dict[str, int]) -> Iterable:
    """``llmctl_queue_*`` per model."""
    refused = CounterMetricFamily("llmctl_queue_rejected", "Requests refused with 429: the model's queue was full",
                                  labels=["model"])
    held = GaugeMetricFamily("llmctl_queue_requests", "Requests in the gateway for a model (waiting or served)",
                             labels=["model"])
    for model, n in rejected.items():
        refused.add_metric([model], n)
    for model, n in inside.items():
        held.add_metric([model], n)
    return [refused, held]


class _Live:
    def __init__(self, collect: Callable[[], Iterable]) -> None:
        self.collect_fn = collect

    def collect(self):
        return iter(self.collect_fn())


class _Families:
    """A collector that yields metric families built elsewhere (engines' series)."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)

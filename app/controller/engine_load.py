"""Each deployment's load as its engine reports it, under llmctl's engine-neutral names: what the monitor shows per
model (``GET /llmctl/v1/engine-metrics``), ``?engine_metrics=1`` on the backends route, and llmctl's own
``llmctl_engine_*`` gauges on ``/metrics``.

The engine's ``/metrics`` is scraped by ``engine_metrics.scrape``; an engine that needs more (llama.cpp's ``/slots``
for its KV share) names those JSON routes in ``load_paths``, fetched here at the same time and the same way: with
the per-launch key, a short timeout and a size bound, a route that does not answer left out. What the series and
routes mean is the engine module's business (``runtimes.base.ReportsLoad``); nothing here knows an engine's name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from prometheus_client.core import GaugeMetricFamily, Metric

from llmctl.app.controller.engine_metrics import get_page, scrape
from llmctl.runtimes.base import EngineLoad, RunningDeployment

NO_METRICS = "engine reports no metrics"
NO_ANSWER = "the engine's /metrics did not answer"
REMOTE = "a remote model: its metrics are its own server's"
# llmctl's own gauges: the signals an autoscaler reads (running, waiting, KV cache use), in base units, one prefix
GAUGES = (
    ("requests_running", "llmctl_engine_requests_running", "Requests the engine is running, as it reports them"),
    ("requests_waiting", "llmctl_engine_requests_waiting", "Requests queued inside the engine, as it reports them"),
    ("kv_cache_usage", "llmctl_engine_kv_cache_usage_ratio", "Share of the engine's KV cache held by running requests"),
)


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """One deployment's figures, or why there are none (``note``)."""

    model: str
    engine: str
    state: str
    load: EngineLoad | None
    note: str | None
    memory_bytes: int | None

    def to_json(self) -> dict:
        return {"model": self.model, "engine": self.engine, "state": self.state,
                "figures": None if self.load is None else self.load.to_json(), "note": self.note,
                "memory_bytes": self.memory_bytes}


def series_of(families: Iterable[Metric]) -> dict[str, list[float]]:
    """Sample name -> its values, one per label set (``_created`` timestamps left out)."""
    out: dict[str, list[float]] = {}
    for fam in families:
        for s in fam.samples:
            if not s.name.endswith("_created"):
                out.setdefault(s.name, []).append(s.value)
    return out


def _scraped(backend: RunningDeployment) -> bool:
    return backend.state.value == "ready" and not backend.remote


async def _page(session_for: Callable[[object], aiohttp.ClientSession], backend, path: str,
                ) -> tuple[str, object] | None:
    raw = await get_page(session_for, backend, path)
    if raw is None:
        return None
    try:
        return path, json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError included), or nested past the stack
        return None


async def _pages(session_for: Callable[[object], aiohttp.ClientSession], backends: list,
                 ) -> dict[str, dict[str, object]]:
    """model name -> {path: decoded JSON} for every ready backend whose engine asks for routes beside /metrics."""
    wanted = [(b, path) for b in backends if _scraped(b) and (e := b.load_reporter) is not None
              for path in e.load_paths]
    answers = await asyncio.gather(*(_page(session_for, b, path) for b, path in wanted))
    out: dict[str, dict[str, object]] = {}
    for (b, _path), answer in zip(wanted, answers, strict=True):
        if answer is not None:
            out.setdefault(b.name, {})[answer[0]] = answer[1]
    return out


def _model_load(backend, families: list[Metric] | None, pages: dict[str, object]) -> ModelLoad:
    status = backend.status()
    load, note = None, None
    if backend.remote:
        note = REMOTE
    elif (engine := backend.load_reporter) is None:
        note = NO_METRICS
    elif backend.state.value != "ready":
        note = f"the model is {backend.state.value}"
    else:
        load = engine.read_load(series_of(families or []), pages)
        note = NO_ANSWER if load is None else None
    return ModelLoad(backend.name, status["engine"], status["state"], load, note, status.get("memory_bytes"))


QUIET_FOR = 60.0
"""Seconds an idle engine's last answer is served again instead of asking it: every ask is a task for llama.cpp's
loop, which logs ``update_slots: all slots are idle`` for each (13 lines per 10 s under the Monitor's polling, which
buried the rest of the engine log). While nothing went through it since (no request in flight, its ``last_used``
unchanged), nothing it reports can have moved."""


@dataclass
class _Quiet:
    backend: object
    mark: tuple
    at: float
    families: list[Metric]
    pages: dict[str, object]


_quiet: dict[str, _Quiet] = {}  # model name -> its engine's last answer, taken while it was idle


def _mark(backend: RunningDeployment) -> tuple | None:
    """What changes when a request goes through ``backend`` (None: it does not say, so it is always asked)."""
    if backend.in_flight is None or backend.last_used is None:
        return None
    return backend.in_flight, backend.last_used


def _idle(families: list[Metric], pages: dict[str, object], backend: RunningDeployment) -> bool:
    engine = backend.load_reporter
    load = engine.read_load(series_of(families), pages) if engine is not None and families else None
    return load is not None and not load.requests_running and not load.requests_waiting


async def collect(session_for: Callable[[object], aiohttp.ClientSession] | None, backends: Iterable,
                  ) -> tuple[dict[str, list[Metric]], list[ModelLoad]]:
    """The engines' own series by model (for the ``/metrics`` pass-through) and every deployment's load, each
    backend reached through ``session_for(backend)`` (over its Unix socket when it serves on one); None before the
    gateway's sessions are open. An engine idle since it last answered is not asked again (``QUIET_FOR``)."""
    backends = list(backends)
    if session_for is None:
        return {}, [_model_load(b, None, {}) for b in backends]
    now = time.monotonic()
    for name in [n for n in _quiet if n not in {b.name for b in backends}]:
        del _quiet[name]  # stopped: its answer goes with it
    reused = {b.name: q for b in backends if (q := _quiet.get(b.name)) is not None and q.backend is b
              and _scraped(b) and q.mark == _mark(b) and q.mark[0] == 0 and now - q.at < QUIET_FOR}
    asked = [b for b in backends if b.name not in reused]
    scraped, pages = await asyncio.gather(scrape(session_for, asked), _pages(session_for, asked))
    for b in asked:
        mark, families, got = _mark(b), scraped.get(b.name), pages.get(b.name, {})
        if mark is not None and mark[0] == 0 and families and _idle(families, got, b):
            _quiet[b.name] = _Quiet(b, mark, now, families, got)
        else:
            _quiet.pop(b.name, None)
    for name, q in reused.items():
        scraped[name], pages[name] = q.families, q.pages
    return scraped, [_model_load(b, scraped.get(b.name), pages.get(b.name, {})) for b in backends]


def gauge_families(loads: Iterable[ModelLoad]) -> list[Metric]:
    """``llmctl_engine_requests_running|waiting`` and ``llmctl_engine_kv_cache_usage_ratio`` per model, for the
    engines that report them: one name across engines for dashboards and autoscalers."""
    families = {key: GaugeMetricFamily(name, doc, labels=["model"]) for key, name, doc in GAUGES}
    for m in loads:
        if m.load is None:
            continue
        for key, family in families.items():
            value = getattr(m.load, key)
            if value is not None:
                family.add_metric([m.model], value)
    return [f for f in families.values() if f.samples]

"""Engines' own Prometheus series, passed through on llmctl's ``/metrics`` under their own names (``llamacpp:*``,
``vllm:*``) with a ``model`` label added (CONVENTIONS.md), and a few of them summarised for the control API.

Each ready backend's ``/metrics`` is fetched with its per-launch key, concurrently, with a short timeout and a
size bound; a backend that does not answer in time is left out of that scrape, never waited for. The text is
parsed with prometheus-client's own parser (an engine's answer is not trusted to be well-formed: a malformed one
is dropped whole).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

MAX_BYTES = 4 << 20
TIMEOUT = 1.5


async def _fetch(session: aiohttp.ClientSession, backend) -> tuple[str, list[Metric]]:
    try:
        async with session.get(backend.base_url + "/metrics", headers=backend.auth_headers,
                               timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as r:
            if r.status != 200:
                return backend.name, []
            raw = await r.content.read(MAX_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return backend.name, []
    if len(raw) > MAX_BYTES:
        return backend.name, []
    try:
        return backend.name, list(text_string_to_metric_families(raw.decode("utf-8", "replace")))
    except (ValueError, TypeError, IndexError):  # not Prometheus text
        return backend.name, []


async def scrape(session_for: Callable[[object], aiohttp.ClientSession], backends: Iterable,
                 ) -> dict[str, list[Metric]]:
    """model name -> its engine's metric families, for every ready backend that answered in time, each fetched
    through ``session_for(backend)`` (over its Unix socket when it serves on one). A remote's deployments are left
    out: its ``/metrics`` (if any) is its own operator's, and scraping it costs a round trip over the network on
    every scrape of ours."""
    ready = [b for b in backends if b.state.value == "ready" and not getattr(b, "remote", False)]
    return dict(await asyncio.gather(*(_fetch(session_for(b), b) for b in ready)))


def relabel(scraped: dict[str, list[Metric]]) -> list[Metric]:
    """One family per engine series name, each sample labelled with the model it came from."""
    merged: dict[str, Metric] = {}
    for model, families in scraped.items():
        for fam in families:
            out = merged.get(fam.name)
            if out is None:
                out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            elif out.type != fam.type:
                continue  # two engines disagree on a name's type: keep the first
            for s in fam.samples:
                out.add_sample(s.name, {**s.labels, "model": model}, s.value, s.timestamp)
    return list(merged.values())


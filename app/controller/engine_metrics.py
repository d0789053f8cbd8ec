"""Engines' own Prometheus series, passed through on llmctl's ``/metrics`` under their own names (``llamacpp:*``,
``vllm:*``) with a ``model`` label added (one series per engine metric, a label per model, as Prometheus
prefers), and a few of them summarised for the control API.

Each ready backend's ``/metrics`` is fetched with its per-launch key, concurrently, with a short timeout and a
size bound; a backend that does not answer in time is left out of that scrape, never waited for. The text is
parsed with prometheus-client's own parser (an engine's answer is not trusted to be well-formed: a malformed one
is dropped whole). One backend's failure, whatever it is, leaves that backend out; it never fails the scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

MAX_BYTES = 4 << 20
CHUNK = 1 << 16
TIMEOUT = 1.5


async def get_page(session_for: Callable[[object], aiohttp.ClientSession], backend, path: str) -> bytes | None:
    """The whole body of ``GET path`` on ``backend``, or None when the backend did not answer it: not ready any
    more, not 200, a compressed body, over ``MAX_BYTES``, not in time, or its session closed because it stopped
    meanwhile (``Upstreams.forget``: aiohttp says so with a RuntimeError). The session is taken here, right before
    the request, not when the scrape starts."""
    if backend.state.value != "ready":
        return None
    try:
        session = session_for(backend)
        async with session.get(backend.base_url + path,
                               headers={**backend.auth_headers, "Accept-Encoding": "identity"},
                               timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as r:
            if r.status != 200 or r.headers.get("Content-Encoding", "identity").lower() != "identity":
                return None  # sessions do not decompress (auto_decompress=False)
            body = bytearray()
            async for chunk in r.content.iter_chunked(CHUNK):  # to the end of the stream, not what is buffered
                body += chunk
                if len(body) > MAX_BYTES:
                    return None
            return bytes(body)
    except (aiohttp.ClientError, TimeoutError, OSError, RuntimeError, ValueError):
        return None


async def _fetch(session_for: Callable[[object], aiohttp.ClientSession], backend) -> tuple[str, list[Metric]]:
    raw = await get_page(session_for, backend, "/metrics")
    if raw is None:
        return backend.name, []
    try:
        return backend.name, list(text_string_to_metric_families(raw.decode("utf-8", "replace")))
    except Exception:  # not Prometheus text: an engine's answer is untrusted input to a third-party parser
        return backend.name, []


async def scrape(session_for: Callable[[object], aiohttp.ClientSession], backends: Iterable,
                 ) -> dict[str, list[Metric]]:
    """model name -> its engine's metric families, for every ready backend that answered in time, each fetched
    through ``session_for(backend)`` (over its Unix socket when it serves on one). A remote's deployments are left
    out: its ``/metrics`` (if any) is its own operator's, and scraping it costs a round trip over the network on
    every scrape of ours."""
    ready = [b for b in backends if b.state.value == "ready" and not b.remote]
    return dict(await asyncio.gather(*(_fetch(session_for, b) for b in ready)))


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


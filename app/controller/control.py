"""The control API under ``/llmctl/v1``: what the CLI and the TUI call (status, load/unload, logs, metrics)."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from llmctl.app.controller.engine_load import collect, gauge_families
from llmctl.app.controller.engine_metrics import relabel
from llmctl.app.controller.errors import ApiError
from llmctl.catalog.errors import LlmctlError
from llmctl.runtimes.base import BackendFailed, log_file_name
from llmctl.runtimes.scheduler import ModelLoading

if TYPE_CHECKING:
    from llmctl.app.controller.cache import ResponseCache
    from llmctl.app.controller.directory import ModelDirectory
    from llmctl.app.controller.gateway import Gateway
    from llmctl.app.controller.limits import Keys
    from llmctl.app.controller.metrics import Metrics
    from llmctl.app.settings import ModelProfile, Settings
    from llmctl.runtimes.remote import RemoteServer
    from llmctl.runtimes.scheduler import Scheduler

PREFIX = "/llmctl/v1"
MAX_LOG_LINES = 5000


class ControlApi:
    """Given what it reads: the scheduler's deployments, the model directory, the gateway (its queues, failovers and
    engine sessions), the request metrics, the keys and the response cache; the controller's own description, memory
    ledger, shutdown and config reading come as functions, so this module never imports the controller."""

    def __init__(self, scheduler: Scheduler, models: ModelDirectory, gateway: Gateway, metrics: Metrics, keys: Keys,
                 *, remotes: list[RemoteServer], response_cache: ResponseCache | None, logs_dir: Path,
                 ready_timeout: float, profiles: dict[str, ModelProfile], read_config: Callable[[], Settings],
                 describe: Callable[[], dict], ledger: Callable[[], dict], request_shutdown: Callable[[], None],
                 ) -> None:
        self.scheduler = scheduler
        self.models = models
        self.gateway = gateway
        self.metrics = metrics
        self.api_keys = keys
        self.remote_servers = remotes
        self.response_cache = response_cache
        self.logs_dir = logs_dir
        self.ready_timeout = ready_timeout
        self.profiles = profiles  # the controller's [models.NAME] profiles, which a reload replaces one by one
        self.read_config = read_config  # the settings as the config file says now (blocking)
        self.describe = describe
        self.ledger = ledger
        self.request_shutdown = request_shutdown

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/ready", self.ready),
            web.get("/metrics", self.prometheus),
            web.get(f"{PREFIX}/status", self.status),
            web.get(f"{PREFIX}/backends", self.backends),
            web.post(f"{PREFIX}/backends/{{model}}/load", self.load),
            web.post(f"{PREFIX}/backends/{{model}}/unload", self.unload),
            web.get(f"{PREFIX}/backends/{{model}}/logs", self.logs),
            web.get(f"{PREFIX}/requests", self.requests),
            web.get(f"{PREFIX}/engine-metrics", self.engine_metrics),
            web.get(f"{PREFIX}/keys", self.keys),
            web.get(f"{PREFIX}/remotes", self.remotes),
            web.post(f"{PREFIX}/shutdown", self.shutdown),
        ]

    async def health(self, request: web.Request) -> web.Response:
        """The controller is alive (for supervisors and load balancers)."""
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        """200 when at least one model is ready (``?model=NAME``: that one), else 503 with what is there."""
        ready = sorted(b.name for b in self.scheduler.backends.values() if b.state.value == "ready")
        wanted = request.query.get("model")
        ok = (wanted.lower() in ready) if wanted else bool(ready)
        return web.json_response({"status": "ready" if ok else "not ready", "ready": ready}, status=200 if ok else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        """llmctl's own series (with ``llmctl_engine_*``: what engines report, under one name), then every ready
        engine's own (``llamacpp:*``, ``vllm:*``) labelled by model."""
        scraped, loads = await self._collect()
        body = self.metrics.exposition(gauge_families(loads) + relabel(scraped))
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _collect(self):
        upstreams = self.gateway.upstreams
        return await collect(upstreams.session if upstreams.opened else None,
                             list(self.scheduler.backends.values()))

    async def engine_metrics(self, request: web.Request) -> web.Response:
        """Each deployment's load as its engine reports it (requests running and waiting, KV cache use, prefix-cache
        hits, preemptions), under engine-neutral names; ``figures`` is null with a ``note`` saying why when its
        engine reports nothing (Ollama, llama-cpp-python), it is not ready, or it did not answer in time."""
        await self.models.refresh()  # engines hosting their own models (Ollama): their /api/ps, now
        _scraped, loads = await self._collect()
        return web.json_response({"models": [m.to_json() for m in loads]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({**self.describe(), "memory": await asyncio.to_thread(self.ledger)})

    async def backends(self, request: web.Request) -> web.Response:
        """Every backend's state; ``?engine_metrics=1`` adds what its engine reports (slots busy, queue, KV use)."""
        await self.models.refresh()  # engines hosting their own models (Ollama): their /api/ps, now
        out = [b.status() for b in self.scheduler.backends.values()]
        if request.query.get("engine_metrics") in ("1", "true"):
            _scraped, loads = await self._collect()
            figures = {m.model: m.load.to_json() if m.load else {} for m in loads}
            for item in out:
                item["engine_metrics"] = {k: v for k, v in figures.get(item["model"], {}).items() if v is not None}
        return web.json_response({"backends": out})

    async def _entry(self, request: web.Request):
        name = request.match_info["model"]
        try:
            entry = await self.models.get(name)
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="invalid_model") from None
        if entry is None:
            raise ApiError(404, f"no model named '{name}'; see `llmctl models list`", code="model_not_found")
        return entry

    async def load(self, request: web.Request) -> web.Response:
        """Start a model (retrying a failed one). ``?wait=false`` returns at once; otherwise waits for ready.
        ``?profile=reload`` first reads the model's ``[models.NAME]`` again from the config file, so a change
        `llmctl models config` made (`llmctl launch` setting ``ctx-size``) applies to this start."""
        entry = await self._entry(request)
        wait = request.query.get("wait", "true").lower() != "false"
        if request.query.get("profile") == "reload":
            await self._reload_profile(entry.name)
        try:
            backend = await self.scheduler.start(entry, force=True)
            if wait:
                await backend.wait_ready(self.ready_timeout)
        except (BackendFailed, ModelLoading, TimeoutError) as exc:
            tail = exc.log_tail if isinstance(exc, BackendFailed) else []
            raise ApiError(503, f"{entry.name} did not become ready: {exc}"
                           + ("\nlast log lines:\n" + "\n".join(tail[-10:]) if tail else ""),
                           code="backend_failed") from None
        except LlmctlError as exc:
            raise ApiError(409, f"{exc.title}: {exc.message}", code="cannot_start") from None
        return web.json_response(backend.status())

    async def _reload_profile(self, name: str) -> None:
        try:
            fresh = await asyncio.to_thread(self.read_config)
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="invalid_config") from None
        if name in fresh.models:
            self.profiles[name] = fresh.models[name]
        else:
            self.profiles.pop(name, None)

    async def unload(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        backend = await self.scheduler.stop(name) or await self.scheduler.stop(name.lower())
        if backend is None:
            raise ApiError(404, f"'{name}' is not running", code="not_running")
        return web.json_response(backend.status())

    async def logs(self, request: web.Request) -> web.Response:
        """``?tail=N``: the last N lines. ``?since=K``: what was written after byte K (``next`` is the new K),
        for ``logs -f``. Read from the log file, so it works for stopped models too."""
        name = request.match_info["model"]
        name = name if self.scheduler.get(name) is not None else name.lower()
        try:
            tail = max(0, min(int(request.query.get("tail", "100")), MAX_LOG_LINES))
            since = max(0, int(request.query["since"])) if "since" in request.query else None
        except ValueError:
            raise ApiError(400, "tail and since must be whole numbers", code="invalid_value") from None
        backend = self.scheduler.get(name)
        logs_dir = self.logs_dir
        fallback = logs_dir / log_file_name(name)
        path = backend.log_path if backend is not None else fallback

        def read() -> tuple[list[str], int] | None:  # a file read (up to a MiB): off the loop, streams go on
            if not _inside(path, logs_dir) or not path.is_file():
                return None
            return _read_log(path, tail, since)

        found = await asyncio.to_thread(read)
        if found is None:
            raise ApiError(404, f"no logs for '{name}': it has not run under this controller", code="no_logs")
        lines, end = found
        return web.json_response({"model": name, "lines": lines, "next": end, "log_path": str(path),
                                  "state": backend.state.value if backend is not None else "stopped"})

    async def requests(self, request: web.Request) -> web.Response:
        try:
            limit = max(0, min(int(request.query.get("limit", "50")), 500))
        except ValueError:
            raise ApiError(400, "limit must be a whole number", code="invalid_value") from None
        recent = list(self.metrics.recent)[-limit:] if limit else []
        return web.json_response({"requests": [r.to_json() for r in recent], "in_flight": self.metrics.active})

    async def keys(self, request: web.Request) -> web.Response:
        """Every API key by name (never its secret): its limits, what is left of them, its usage; the response
        cache's counts and each model's queue."""
        cache = self.response_cache
        queues = {name: {"inside": q.inside, "max_queue": q.max_queue, "max_concurrent": q.max_concurrent,
                         "rejected": q.rejected} for name, q in self.gateway.queues.items()}
        return web.json_response({
            "keys": self.api_keys.snapshot(),
            "response_cache": None if cache is None else {
                "entries": len(cache), "bytes": cache.bytes, "max_entries": cache.max_entries,
                "max_bytes": cache.max_bytes, "hits": cache.hits, "misses": cache.misses,
                "evictions": cache.evictions},
            "queues": queues,
        })

    async def remotes(self, request: web.Request) -> web.Response:
        """Each remote's health (ready, failed with why, skipped with why), and the latest failovers."""
        failovers = [{"asked": a, "failed": f, "served_by": n, "why": w} for a, f, n, w in self.gateway.failovers]
        return web.json_response({"remotes": [r.status() for r in self.remote_servers], "failovers": failovers[-20:]})

    async def shutdown(self, request: web.Request) -> web.Response:
        self.request_shutdown()
        return web.json_response({"status": "stopping"})


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([path.resolve(), root.resolve()]) == str(root.resolve())


def _read_log(path: Path, tail: int, since: int | None, window: int = 1 << 20) -> tuple[list[str], int]:
    """Complete lines from a log file: the last ``tail`` ones, or those after byte ``since``."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if since is None:
            f.seek(max(0, size - window))
            return [b.decode("utf-8", "replace") for b in deque(f.read().splitlines(), maxlen=tail)], size
        if since > size:  # the log was rotated by a restart: start over
            since = 0
        f.seek(since)
        chunk = f.read(window)
    complete = chunk[: chunk.rfind(b"\n") + 1]
    return [b.decode("utf-8", "replace") for b in complete.splitlines()], since + len(complete)

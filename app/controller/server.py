"""The controller: one per user. Composes the model store, the scheduler and supervisor, the gateway and the
control API on one aiohttp server, and owns every backend it starts.

Start-up reaps orphans a SIGKILLed predecessor left (state file + start-time check), refuses a non-loopback
bind without an API key, and refuses a port held by another process. SIGINT/SIGTERM stop every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
from aiohttp import web

from llmctl import __version__
from llmctl.app.controller.cache import ResponseCache
from llmctl.app.controller.control import ControlApi
from llmctl.app.controller.directory import ModelDirectory
from llmctl.app.controller.gateway import Gateway
from llmctl.app.controller.hello import hello_routes
from llmctl.app.controller.inventory import InventoryApi
from llmctl.app.controller.limits import Keys
from llmctl.app.controller.lock import ControllerLock
from llmctl.app.controller.metrics import Metrics, cache_families, key_families
from llmctl.app.controller.protocols.engine_routes import EngineRoutes
from llmctl.app.controller.protocols.ollama_api import OllamaApi
from llmctl.app.controller.protocols.requests import add_request_id
from llmctl.app.controller.protocols.routes import ProtocolRoutes, anthropic_errors
from llmctl.app.controller.pulls import PullsApi
from llmctl.app.controller.security import add_cors_headers, build_middlewares
from llmctl.app.deployments import LaunchPlan, launch_plan, profile_for
from llmctl.app.handshake import new_secret, write_state
from llmctl.app.paths import Paths
from llmctl.app.settings import UNNAMED_KEY, Settings, is_loopback, load_settings
from llmctl.catalog.errors import ConfigError, LlmctlError, StoreError
from llmctl.catalog.estimate import Budget
from llmctl.catalog.store import ModelEntry, ModelStore
from llmctl.runtimes.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    VISION,
    ChecksDeployment,
    PortInUseError,
    RunningDeployment,
    ServesNative,
)
from llmctl.runtimes.hardware import GpuProbe
from llmctl.runtimes.ledger import UNIFIED, device_bytes, holding_now
from llmctl.runtimes.process import Backend, RestartPolicy, describe_port_owner, free_port, port_is_free
from llmctl.runtimes.scheduler import Scheduler
from llmctl.runtimes.state_file import StateFile


def _safe(name: str) -> str:
    """A model name as one path component (ollama/NAME:TAG has a slash and a colon)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class ControllerEvent:
    """Something the foreground ``llmctl serve`` prints."""

    kind: str  # listening | reaped | backend | stopping | stopped
    message: str


class Controller:
    def __init__(
        self,
        settings: Settings,
        paths: Paths,
        *,
        on_event: Callable[[ControllerEvent], None] | None = None,
        gpu_probe: GpuProbe | None = None,
    ) -> None:
        self.settings = settings
        from llmctl.app.fit_inputs import host_and_probe

        self.host, default_probe = host_and_probe()
        self.gpu_probe = gpu_probe or default_probe
        self.paths = paths
        self.on_event = on_event or (lambda e: None)
        self.store = ModelStore(paths.data_dir)
        self.state = StateFile(paths.backends_state)
        self.lock = ControllerLock(paths.state_dir)
        self.metrics = Metrics()
        b = settings.backends
        self.policy = RestartPolicy(
            max_restarts=b.max_restarts, window=b.restart_window, backoff_initial=b.backoff_initial,
            backoff_max=b.backoff_max, ready_timeout=b.ready_timeout, stop_grace=b.stop_grace,
            load_memory_slack=int(b.load_memory_slack),
        )
        self.scheduler = Scheduler(
            self._make_backend, max_loaded=b.max_loaded, load_wait=b.load_wait,
            retry_failed_after=b.retry_failed_after, capacity=self._capacity, margin=int(b.memory_margin),
        )
        from llmctl.app.ollama import make_server
        from llmctl.app.remotes import make_remotes

        self.ollama = make_server(settings, paths, state=self.state, policy=self.policy)
        self.remotes = make_remotes(settings, on_change=self._remote_changed)
        self.models = ModelDirectory(self.store, [*([self.ollama] if self.ollama is not None else []), *self.remotes])
        self.owner_secret = new_secret()  # the CLI's and TUI's key (admin), proved and read through controller.json
        self.keys = Keys(api_keys(settings), owner=self.owner_secret)
        rc = settings.server.response_cache
        self.response_cache = ResponseCache(rc.entries, int(rc.max_bytes), rc.ttl) if rc.enabled else None
        self.gateway = Gateway(self.models, self.scheduler, self.metrics, self.capabilities, aliases={
            alias.strip().lower(): name for name, prof in settings.models.items() for alias in prof.aliases},
            keys=self.keys, cache=self.response_cache, cache_per_key=rc.per_key, queue_limits=self.queue_limits,
            fallbacks=fallbacks(settings), max_fanout=settings.server.max_fanout)
        self.metrics.watch(lambda: key_families(self.keys.snapshot()))
        if self.response_cache is not None:
            cache = self.response_cache
            self.metrics.watch(lambda: cache_families(cache.hits, cache.misses, cache.evictions, len(cache),
                                                      cache.bytes))
        self.control = ControlApi(
            self.scheduler, self.models, self.gateway, self.metrics, self.keys, remotes=self.remotes,
            response_cache=self.response_cache, logs_dir=paths.logs_dir, ready_timeout=b.ready_timeout,
            profiles=settings.models, read_config=functools.partial(load_settings, paths), describe=self.describe,
            ledger=self.ledger, request_shutdown=self.request_shutdown)
        self.inventory = InventoryApi(settings, self.store, self.models, self.scheduler, models_dir=paths.models_dir,
                                      gpu_probe=self.gpu_probe, host=self.host)
        self.pulls = PullsApi(settings, self.store)
        self.ollama_api = OllamaApi(self.gateway, self.pulls)  # the Ollama API over every engine
        self.protocols = ProtocolRoutes(self.gateway)  # OpenAI Responses and Anthropic Messages, through the gateway
        self.engine_routes = EngineRoutes(self.gateway)  # /tokenize, /props, /v1/rerank, … routed by model
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._idle_task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._ollama_probe: asyncio.Task[None] | None = None
        self.port = settings.server.port
        self._natives: dict[str, frozenset[str]] = {}  # model name -> its engine's own routes (``_native``)

    # composition -------------------------------------------------------------------------------------------
    async def _make_backend(self, entry: ModelEntry) -> RunningDeployment:
        """The deployment for a model. One of an engine that hosts its own models (Ollama) comes from that
        engine. A registered model gets its launch plan (engine, settings), this launch's port and secret key,
        and, when unset, as many GPU layers as the estimate says fit (read off the thread: it parses the GGUF
        header and asks the GPU)."""
        source = self.models.source_for(entry.name)
        prof = profile_for(self.settings, entry.name)
        ttl = prof.ttl if prof.ttl is not None else self.settings.backends.ttl
        if source is not None:
            hosted = source.deployment(entry, ttl=ttl, log_dir=self.paths.logs_dir, on_change=self._backend_changed)
            hosted.pinned = prof.pinned
            hosted.unified = await asyncio.to_thread(self._unified)
            return hosted
        plan = await asyncio.to_thread(self._plan, entry)  # may ask an engine's python its version
        plan, est = await asyncio.to_thread(self._estimate, entry, plan)
        layers = plan.n_gpu_layers if plan.n_gpu_layers is not None else (est.gpu_layers if est else 0)
        port = free_port()
        deployment = plan.deployment(entry.name, Path(entry.path), port=port, n_gpu_layers=layers,
                                     threads=self.settings.backends.threads or physical_cores(),
                                     api_key=secrets.token_urlsafe(32),
                                     run_dir=self.paths.run_dir / f"{_safe(entry.name)}-{port}")
        if isinstance(plan.engine, ChecksDeployment):
            # what the engine would accept and then crash on is refused now, with why (DeploymentRefused)
            await asyncio.to_thread(plan.engine.preflight, deployment)
        backend = Backend(deployment, plan.engine, log_dir=self.paths.logs_dir, state=self.state,
                          policy=self.policy, on_change=self._backend_changed)
        backend.unified = est is not None and est.memory == "unified"
        if est is not None:
            backend.footprint.reserved = device_bytes(est.cpu_bytes, est.gpu_bytes, unified=backend.unified)
        backend.pinned = prof.pinned
        backend.ttl = ttl
        return backend

    def _plan(self, entry: ModelEntry) -> LaunchPlan:
        """The launch plan of a registered model, refused when the model was removed since the request found it
        (its removal stops its backend once; nothing may start it again). Blocking: reads the store's index."""
        if self.store.get(entry.name) is None:
            raise StoreError(f"no model named {entry.name!r}", "it was removed while this request waited.")
        return launch_plan(self.settings, entry, store=self.store, data_dir=self.paths.data_dir)

    def queue_limits(self, entry: ModelEntry) -> tuple[int, int | None]:
        """A model's ``max_queue`` and ``max_concurrent``: its profile's, else the defaults."""
        prof = profile_for(self.settings, entry.name)
        return (prof.max_queue if prof.max_queue is not None else self.settings.backends.max_queue,
                prof.max_concurrent)

    def capabilities(self, entry: ModelEntry) -> frozenset[str]:
        """What the model's deployment serves (known before it starts): what its engine said (Ollama's models),
        else from its profile."""
        if entry.facts.get("capabilities"):
            return frozenset(entry.facts["capabilities"])
        if profile_for(self.settings, entry.name).embeddings:
            return frozenset({EMBEDDINGS}) | self._native(entry)
        seeing = {VISION} if entry.projector or entry.facts.get("projector") else set()  # it has a projector
        return frozenset({CHAT, COMPLETIONS, *seeing}) | self._native(entry)

    def _native(self, entry: ModelEntry) -> frozenset[str]:
        """What the model's engine serves beyond the OpenAI routes (``ServesNative``), worked out once a model."""
        known = self._natives.get(entry.name)
        if known is None:
            try:
                engine = launch_plan(self.settings, entry, store=self.store, data_dir=self.paths.data_dir).engine
            except LlmctlError:  # no engine for it here: its first request says why
                return frozenset()
            known = self._natives[entry.name] = engine.native if isinstance(engine, ServesNative) else frozenset()
        return known

    def _estimate(self, entry: ModelEntry, plan: LaunchPlan):
        """(the plan with its ``auto`` context decided, the estimate of that launch): its memory per device, and as
        many GPU layers as fit in the first GPU's free VRAM when the plan leaves them to llmctl. The context is
        the trained length capped by what the ledger can give the model beside the live deployments, keeping
        the margin free. The estimate is None when the file cannot be read (the engine will say why it cannot
        load it; the plan keeps the trained length). Blocking: reads the GGUF header and asks the GPU."""
        from llmctl.app.fit_inputs import engine_baseline, machine_budget
        from llmctl.catalog.estimate import estimate
        from llmctl.catalog.facts import facts_from_gguf
        from llmctl.catalog.gguf import read_gguf
        from llmctl.catalog.safetensors_dir import facts_from_model_dir

        gpus, _status, _detail = self.gpu_probe.read()
        budget = machine_budget(gpus, self.host.memory()[1], self.settings)
        overrides = {"baseline_bytes": engine_baseline(plan.engine.memory_profile())}
        if not gpus:
            overrides["gpu_layers"] = 0
        try:
            path = Path(entry.path)
            facts = facts_from_model_dir(path) if entry.format == "safetensors" else facts_from_gguf(read_gguf(path))
            plan = plan.settle(facts, self._room(entry.name, budget), **overrides)
            return plan, estimate(facts, plan.fit_request(**overrides), budget)
        except (LlmctlError, OSError, ValueError):
            return plan, None

    def _room(self, name: str, budget: Budget) -> Budget:
        """What the ledger can give model ``name`` now: per device what models may use in all, less what the
        other live deployments hold (``ledger``); the margin stays the budget's. Blocking (reads RAM and GPUs)."""
        others = [b for b in self.scheduler.backends.values() if b.alive and b.name != name]
        capacity = self._capacity(holding_now(others))
        free = {dev: cap - sum(b.footprint.held().get(dev, 0) for b in others) for dev, cap in capacity.items()}
        host = UNIFIED if UNIFIED in free else "ram"
        gpus = tuple(max(0, free[f"gpu{i}"]) for i in range(len(budget.vram_free)) if f"gpu{i}" in free)
        return replace(budget, ram_available=max(0, free[host]), vram_free=gpus or budget.vram_free)

    def ledger(self) -> dict:
        """Per device: what models may use in all, what every live deployment reserved (its estimate), measured
        and holds (the larger), and the margin kept free. Blocking (reads RAM and the GPUs)."""
        live = [b for b in self.scheduler.backends.values() if b.alive]
        for b in live:
            b.memory_bytes()
        devices = {}
        capacity = self._capacity(holding_now(live))
        for dev, cap in capacity.items():
            devices[dev] = {
                **({"within": UNIFIED} if dev == "gpu0" and UNIFIED in capacity else {}),
                "capacity": cap, "margin": int(self.settings.backends.memory_margin),
                "reserved": sum(b.footprint.reserved.get(dev, 0) for b in live),
                "measured": sum(b.footprint.measured.get(dev, 0) for b in live),
                "held": sum(b.footprint.held().get(dev, 0) for b in live),
                "models": {b.name: b.footprint.to_json() for b in live if dev in b.footprint.held()},
            }
        return devices

    def _unified(self) -> bool:
        return any(g.unified for g in self.gpu_probe.read()[0])

    def _capacity(self, ours: dict[str, int]) -> dict[str, int]:
        """Bytes per device that models may use in all: the RAM budget if one is set, else the RAM available now
        plus what llmctl's models hold of it; each GPU's free VRAM plus what they hold there (blocking).

        Unified memory (Apple Silicon) is one device, ``unified``: the pool, where each deployment holds its whole
        footprint (GPU and CPU parts, once), so no byte is counted twice. ``gpu0`` stays as a limit *within* it:
        the GPU's working-set limit, against the GPU parts only. A launch must fit both."""
        budget = self.settings.backends.ram_budget
        gpus, _status, _detail = self.gpu_probe.read()
        unified = next((g for g in gpus if g.unified), None)
        host = UNIFIED if unified is not None else "ram"
        pool = int(budget) if budget is not None else self.host.memory()[1] + ours.get(host, 0)
        room = {host: pool}
        if unified is not None:
            room["gpu0"] = min(unified.vram_total, pool)
            return room
        for i, gpu in enumerate(gpus):
            room[f"gpu{i}"] = gpu.vram_free + ours.get(f"gpu{i}", 0)
        return room

    def _remote_changed(self, remote) -> None:
        if remote.up:
            self.on_event(ControllerEvent("remote", f"{remote.name} at {remote.base_url}: ready, "
                                                    f"{len(remote.ids or ())} model(s)"))
        else:
            self.on_event(ControllerEvent("remote", f"{remote.name} at {remote.base_url}: {remote.state} "
                                                    f"({remote.error})"))

    def _backend_changed(self, backend: RunningDeployment) -> None:
        self.gateway.backend_changed(backend)
        detail = f" ({backend.error})" if backend.error else ""
        self.on_event(ControllerEvent("backend", f"{backend.name}: {backend.state.value}{detail}"))

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=build_middlewares(self.settings.server, self.keys, reshape=anthropic_errors),
            client_max_size=self.settings.server.max_body_bytes,
            handler_args={"access_log": None},
        )
        app.add_routes(self.gateway.routes())
        app.add_routes(self.control.routes())
        app.add_routes(self.inventory.routes())
        app.add_routes(self.pulls.routes())
        app.add_routes(self.ollama_api.routes())
        app.add_routes(self.protocols.routes())
        app.add_routes(self.engine_routes.routes())
        app.add_routes(hello_routes(self.owner_secret))
        app.on_response_prepare.append(add_cors_headers)
        app.on_response_prepare.append(add_request_id)
        return app

    @property
    def url(self) -> str:
        host = self.settings.server.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def describe(self) -> dict:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "url": self.url,
            "endpoint": self.url + "/v1",
            "started_at": self.started_at,
            "backends": [b.status() for b in self.scheduler.backends.values()],
            "models": [e.name for e in self.store.list()],
            "engines": {"ollama": None if self.ollama is None else self.ollama.status()},
            "remotes": [r.status() for r in self.remotes],
        }

    # lifecycle ---------------------------------------------------------------------------------------------
    def check_bind(self) -> None:
        server = self.settings.server
        if not is_loopback(server.host) and not server.needs_key:
            raise ConfigError(
                f"refusing to listen on {server.host} without an API key",
                "anyone who can reach this machine could use and manage your models. "
                "Pass --api-key (or set LLMCTL_SERVER__API_KEY), or bind 127.0.0.1.",
            )
        if server.port and not port_is_free(server.host if server.host != "localhost" else "127.0.0.1", server.port):
            raise PortInUseError(
                f"port {server.port} is already in use by {describe_port_owner(server.port)}",
                "is llmctl already running? (`llmctl ps`) Otherwise choose another port with --port.",
            )

    async def start(self) -> None:
        """Take the lock, check the address, reap orphans and listen. Whatever fails on the way (a refused or taken
        address, a bind that loses a race) undoes what was done, the lock included: nothing is left held."""
        self.lock.acquire()  # before reaping: another live controller's backends are not orphans
        try:
            await self._start()
        except BaseException:
            await self._abandon_start()
            raise

    async def _start(self) -> None:
        self.check_bind()
        reaped = await asyncio.to_thread(self.state.reap, self.settings.backends.stop_grace, self.paths.run_dir)
        # run folders a killed controller left (its backends are reaped above; no other controller owns this dir)
        await asyncio.to_thread(shutil.rmtree, self.paths.run_dir, True)
        for rec in reaped:
            self.on_event(ControllerEvent("reaped", f"stopped orphaned backend {rec['name']} (pid {rec['pid']}) "
                                                    "left by a controller that did not exit cleanly"))
        self._stop = asyncio.Event()
        await self.gateway.open()
        self._idle_task = asyncio.get_running_loop().create_task(self.scheduler.run_idle_unloads(), name="idle")
        # keepalive_timeout also closes a connection that has not sent a whole request by then (slow headers)
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, shutdown_timeout=5,
                                     keepalive_timeout=self.settings.server.header_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.server.host, self.settings.server.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the real port when port 0 was asked for
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._write_state()
        self.on_event(ControllerEvent("listening", self.url + "/v1"))
        if self.settings.server.ollama_address:
            from llmctl.app.controller.protocols.ollama_address import open_site

            _site, note = await open_site(self.settings, self._runner, engine=self.ollama is not None)
            self.on_event(ControllerEvent("engine", note))
        if self.ollama is not None:
            self._ollama_probe = asyncio.get_running_loop().create_task(self._attach_ollama())
        for remote in self.remotes:
            if remote.spec.unusable:
                self.on_event(ControllerEvent("remote", f"{remote.name}: skipped, {remote.spec.unusable}"))
            remote.start_monitoring()

    async def _abandon_start(self) -> None:
        """Undo a start that failed part-way (no backend has been started yet), then drop the lock."""
        try:
            for task in (self._idle_task, self._ollama_probe):
                if task is not None:
                    task.cancel()
            self._idle_task = self._ollama_probe = None
            if self.ollama is not None:
                with contextlib.suppress(Exception):
                    await self.ollama.close()
            for remote in self.remotes:
                with contextlib.suppress(Exception):
                    await remote.close()
            if self._runner is not None:
                with contextlib.suppress(Exception):
                    await self._runner.cleanup()
                self._runner = None
            with contextlib.suppress(Exception):
                await self.gateway.close()
            self._forget_state()
        finally:
            self.lock.release()

    async def _attach_ollama(self) -> None:
        """Find (or, in spawn mode, start) Ollama now, so its models are listed at once; say where."""
        assert self.ollama is not None
        self.on_event(ControllerEvent("engine", await self.ollama.announce()))

    def _write_state(self) -> None:
        write_state(self.paths.controller_state, {
            "pid": os.getpid(), "create_time": psutil.Process().create_time(), "url": self.url,
            "host": self.settings.server.host, "port": self.port, "started_at": self.started_at,
            "secret": self.owner_secret,
        })

    def _forget_state(self) -> None:
        """Remove ``controller.json`` if this controller wrote it."""
        with contextlib.suppress(FileNotFoundError, ValueError, AttributeError):
            data = json.loads(self.paths.controller_state.read_text())
            if data.get("pid") == os.getpid():
                self.paths.controller_state.unlink()

    def request_shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def preload(self, names: list[str]) -> None:
        """Start the named models now instead of at their first request."""
        for name in names:
            entry = await self.models.get(name)
            if entry is None:
                self.on_event(ControllerEvent("backend", f"{name}: no such model"))
                continue
            try:
                await self.scheduler.start(entry)
            except LlmctlError as exc:
                self.on_event(ControllerEvent("backend", f"{entry.name}: {exc}"))

    async def wait_stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def close(self) -> None:
        self.on_event(ControllerEvent("stopping", "stopping every backend"))
        self.scheduler.closing = True  # a request arriving now gets a 503, never a new backend nobody will stop
        await self.pulls.close()
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self.scheduler.shutdown()
        if self._ollama_probe is not None:
            self._ollama_probe.cancel()
        if self.ollama is not None:
            await self.ollama.close()  # stops Ollama only if llmctl started it
        for remote in self.remotes:
            await remote.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.gateway.close()
        self._forget_state()
        self.lock.release()
        self.on_event(ControllerEvent("stopped", "all backends stopped"))


def api_keys(settings: Settings) -> list[tuple[str, str, int | None, int | None, str]]:
    """Every key the gateway accepts: ``server.api_key`` (unnamed: ``default``, no limits, admin), then
    ``[[server.keys]]`` with their secrets read (from ``key_env`` when given) and their role. Two keys may not share
    a secret: each request must be charged to one name."""
    out: list[tuple[str, str, int | None, int | None, str]] = []
    server = settings.server
    if server.api_key is not None:
        out.append((UNNAMED_KEY, server.api_key.get_secret_value(), None, None, "admin"))
    for key in server.keys:
        out.append((key.name, key.secret(), key.requests_per_minute, key.tokens_per_minute, key.role))
    secrets_seen: dict[str, str] = {}
    for name, secret, *_rest in out:
        if secret in secrets_seen:
            raise ConfigError(f"API keys '{secrets_seen[secret]}' and '{name}' have the same secret",
                              "give each key its own secret, so every request is charged to one name.")
        secrets_seen[secret] = name
    return out


def fallbacks(settings: Settings) -> dict[str, list[str]]:
    """Model name -> the models a request may fail over to: each profile's ``fallback``, both ways."""
    out: dict[str, list[str]] = {}
    for name, prof in settings.models.items():
        if prof.fallback and prof.fallback != name:
            out.setdefault(name, []).append(prof.fallback)
            out.setdefault(prof.fallback, []).append(name)
    return {name: list(dict.fromkeys(alts)) for name, alts in out.items()}


# SIGHUP too: closing the terminal that runs `llmctl serve` must not orphan its model servers
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def serve_forever(controller: Controller, preload: list[str]) -> None:
    """Run until SIGINT/SIGTERM/SIGHUP or a shutdown request; then stop every backend."""
    loop = asyncio.get_running_loop()
    await controller.start()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, controller.request_shutdown)
    try:
        await controller.preload(preload)
        await controller.wait_stopped()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await controller.close()


def run(controller: Controller, preload: list[str]) -> None:
    try:
        import uvloop
    except ImportError:  # not on Windows
        asyncio.run(serve_forever(controller, preload))
    else:
        uvloop.run(serve_forever(controller, preload))

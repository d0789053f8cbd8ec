"""The controller: one per user. Composes the model store, the scheduler and supervisor, the gateway and the
control API on one aiohttp server, and owns every backend it starts.

Start-up reaps orphans a SIGKILLed predecessor left (state file + start-time check), refuses a non-loopback
bind without an API key, and refuses a port held by another process. SIGINT/SIGTERM stop every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from aiohttp import web

from llmctl import __version__
from llmctl.app.controller.control import ControlApi
from llmctl.app.controller.gateway import Gateway
from llmctl.app.controller.inventory import InventoryApi
from llmctl.app.controller.metrics import Metrics
from llmctl.app.controller.security import add_cors_headers, build_middlewares
from llmctl.app.deployments import LaunchPlan, launch_plan, profile_for
from llmctl.app.paths import Paths
from llmctl.app.settings import Settings, is_loopback
from llmctl.catalog.errors import ConfigError, LlmctlError
from llmctl.catalog.store import ModelEntry, ModelStore
from llmctl.runtimes.base import CHAT, COMPLETIONS, EMBEDDINGS, PortInUseError
from llmctl.runtimes.hardware import GpuProbe, NvmlProbe
from llmctl.runtimes.process import (
    Backend,
    RestartPolicy,
    StateFile,
    describe_port_owner,
    free_port,
    port_is_free,
)
from llmctl.runtimes.scheduler import Scheduler


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
        self.gpu_probe = gpu_probe or NvmlProbe()
        self.paths = paths
        self.on_event = on_event or (lambda e: None)
        self.store = ModelStore(paths.data_dir)
        self.state = StateFile(paths.backends_state)
        self.metrics = Metrics()
        b = settings.backends
        self.policy = RestartPolicy(
            max_restarts=b.max_restarts, window=b.restart_window, backoff_initial=b.backoff_initial,
            backoff_max=b.backoff_max, ready_timeout=b.ready_timeout, stop_grace=b.stop_grace,
        )
        self.scheduler = Scheduler(
            self._make_backend, max_loaded=b.max_loaded, load_wait=b.load_wait,
            retry_failed_after=b.retry_failed_after,
        )
        self.gateway = Gateway(self.store, self.scheduler, self.metrics, self.capabilities)
        self.control = ControlApi(self)
        self.inventory = InventoryApi(self)
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self.port = settings.server.port

    # composition -------------------------------------------------------------------------------------------
    async def _make_backend(self, entry: ModelEntry) -> Backend:
        """The deployment for a registered model: its launch plan (engine, settings), this launch's port and
        secret key, and, when unset, as many GPU layers as the estimate says fit (read off the thread: it parses
        the GGUF header and asks the GPU)."""
        plan = launch_plan(self.settings, entry, store=self.store)
        layers = plan.n_gpu_layers
        if layers is None:
            layers = await asyncio.to_thread(self._auto_gpu_layers, entry, plan)
        deployment = plan.deployment(entry.name, Path(entry.path), port=free_port(), n_gpu_layers=layers,
                                     threads=self.settings.backends.threads or physical_cores(),
                                     api_key=secrets.token_urlsafe(32))
        return Backend(deployment, plan.engine, log_dir=self.paths.logs_dir, state=self.state, policy=self.policy,
                       on_change=self._backend_changed)

    def capabilities(self, entry: ModelEntry) -> frozenset[str]:
        """What the model's deployment serves, from its profile (known before it starts)."""
        return frozenset({EMBEDDINGS}) if profile_for(self.settings, entry.name).embeddings \
            else frozenset({CHAT, COMPLETIONS})

    def _auto_gpu_layers(self, entry: ModelEntry, plan: LaunchPlan) -> int:
        """As many layers as the estimator says fit in the first GPU's free VRAM; 0 without a GPU."""
        from llmctl.app.fitting import machine_budget
        from llmctl.catalog.estimate import estimate
        from llmctl.catalog.facts import facts_from_gguf
        from llmctl.catalog.gguf import read_gguf

        gpus, _status, _detail = self.gpu_probe.read()
        if not gpus:
            return 0
        budget = machine_budget(gpus, psutil.virtual_memory().available)
        return estimate(facts_from_gguf(read_gguf(Path(entry.path))), plan.fit_request(), budget).gpu_layers

    def _backend_changed(self, backend: Backend) -> None:
        detail = f" ({backend.error})" if backend.error else ""
        self.on_event(ControllerEvent("backend", f"{backend.name}: {backend.state.value}{detail}"))

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=build_middlewares(self.settings.server),
            client_max_size=self.settings.server.max_body_bytes,
            handler_args={"access_log": None},
        )
        app.add_routes(self.gateway.routes())
        app.add_routes(self.control.routes())
        app.add_routes(self.inventory.routes())
        app.on_response_prepare.append(add_cors_headers)
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
        }

    # lifecycle ---------------------------------------------------------------------------------------------
    def check_bind(self) -> None:
        server = self.settings.server
        if not is_loopback(server.host) and server.api_key is None:
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
        self.check_bind()
        reaped = await asyncio.to_thread(self.state.reap, self.settings.backends.stop_grace)
        for rec in reaped:
            self.on_event(ControllerEvent("reaped", f"stopped orphaned backend {rec['name']} (pid {rec['pid']}) "
                                                    "left by a controller that did not exit cleanly"))
        self._stop = asyncio.Event()
        await self.gateway.open()
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.server.host, self.settings.server.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the real port when port 0 was asked for
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._write_state()
        self.on_event(ControllerEvent("listening", self.url + "/v1"))

    def _write_state(self) -> None:
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.controller_state.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "pid": os.getpid(), "create_time": psutil.Process().create_time(), "url": self.url,
            "host": self.settings.server.host, "port": self.port, "started_at": self.started_at,
        }))
        os.replace(tmp, self.paths.controller_state)

    def request_shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def preload(self, names: list[str]) -> None:
        """Start the named models now instead of at their first request."""
        for name in names:
            entry = self.store.require(name)
            try:
                await self.scheduler.start(entry)
            except LlmctlError as exc:
                self.on_event(ControllerEvent("backend", f"{entry.name}: {exc}"))

    async def wait_stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def close(self) -> None:
        self.on_event(ControllerEvent("stopping", "stopping every backend"))
        await self.scheduler.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.gateway.close()
        with contextlib.suppress(FileNotFoundError):
            data = json.loads(self.paths.controller_state.read_text())
            if data.get("pid") == os.getpid():
                self.paths.controller_state.unlink()
        self.on_event(ControllerEvent("stopped", "all backends stopped"))


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

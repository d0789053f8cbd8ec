"""Settings: defaults < the user's config.toml < the file named by ``LLMCTL_CONFIG`` < ``LLMCTL_<SECTION>__<KEY>``
environment variables < command-line flags. Validated with pydantic; field docstrings are the documentation.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ByteSize, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from llmctl.app.paths import Paths
from llmctl.catalog.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    """Address the gateway binds. Anything but loopback requires ``api_key``."""
    port: int = Field(7878, ge=1, le=65535)
    """Port of the OpenAI-compatible endpoint and the control API."""
    api_key: SecretStr | None = None
    """When set, every route needs ``Authorization: Bearer <key>`` (or ``x-api-key``)."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    allowed_hosts: list[str] = []
    """Extra Host header names accepted when bound to loopback (DNS-rebinding guard)."""
    log_max_bytes: int = Field(5 * 1024 * 1024, ge=64 * 1024)
    """Size at which the background controller's log (``logs/controller.log``) is rotated; two older copies are
    kept."""
    cors_origins: list[str] = []
    """Web origins (``https://app.example``) allowed to call llmctl from a browser. A request carrying any other
    ``Origin`` header is refused with 403. Empty (the default) refuses every browser page."""


EngineChoice = Literal["auto", "xllamacpp", "llama-server", "llama-cpp-python", "vllm"]
KvType = Literal["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]


class BackendSettings(BaseModel):
    engine: EngineChoice = "auto"
    """The engine for GGUF models (safetensors folders run on vLLM). ``auto``: a native ``llama-server`` you
    configured or put on PATH (your own CUDA/Metal build), else llama.cpp's server from the prebuilt
    ``xllamacpp`` wheel, else llama-cpp-python."""
    llama_server: str | None = None
    """Path (or name on PATH) of a native ``llama-server``; found on PATH when unset."""
    ctx_size: int = Field(4096, ge=256, le=1 << 20)
    """Context length per request slot (capped at the model's trained length unless set per model)."""
    parallel: int = Field(2, ge=1, le=64)
    """Concurrent request slots, batched together (llama-cpp-python serves one at a time)."""
    kv_type: KvType = "f16"
    """KV cache type (llama.cpp ``--cache-type-k``/``-v``); a quantized V cache turns flash attention on."""
    flash_attn: Literal["auto", "on", "off"] = "auto"
    """Flash attention (llama.cpp ``--flash-attn``)."""
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads; default: the number of physical cores."""
    n_gpu_layers: int | None = Field(None, ge=-1)
    """Layers offloaded to the GPU (-1 = all). Unset: as many as `llmctl fit` says fit in the free VRAM."""
    prompt_cache_mib: int = Field(1024, ge=0)
    """RAM llama-server may use to keep recent prompts for reuse (its own default is 8 GiB, which a soak test
    watched it fill); counted by `llmctl fit`. 0 turns the cache off."""
    max_loaded: int | None = Field(None, ge=1, le=64)
    """An optional cap on models loaded at once (placement is by memory: see ``ram_budget``)."""
    ram_budget: ByteSize | None = None
    """RAM models may use in all ("12GiB"); unset: what is available now plus what llmctl's models hold. A model
    loads when its estimate fits beside the loaded ones; idle ones are unloaded, least recently used first."""
    memory_margin: ByteSize = ByteSize(1 << 30)
    """Kept free on every device (llama.cpp's own --fit keeps 1 GiB)."""
    ttl: float = Field(600.0, ge=-1)
    """Seconds a model may sit idle before it is unloaded (0: after each request; -1: never)."""
    load_wait: float = Field(120.0, gt=0)
    """Seconds a request waits for its model to load before getting 503 with Retry-After."""
    ready_timeout: float = Field(300.0, gt=0)
    """Seconds a backend may take to load before it is stopped and marked failed."""
    max_restarts: int = Field(3, ge=0)
    """Crashes tolerated within ``restart_window`` before a backend is marked failed."""
    restart_window: float = Field(120.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    stop_grace: float = Field(10.0, gt=0)
    """Seconds between SIGTERM and SIGKILL when stopping a backend."""
    retry_failed_after: float = Field(30.0, ge=0)
    """A failed model is tried again by a new request after this many seconds."""


class ModelProfile(BaseModel):
    """``[models.NAME]``: one model's own settings, over ``[backends]``. Keys take llama.cpp's long flag names too
    (``ctx-size``, ``n-gpu-layers``, ``cache-type-k``, ``model-draft``), so a ``llama-server`` line pastes in."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    engine: EngineChoice | None = None
    ctx_size: int | None = Field(None, ge=256, le=1 << 20, validation_alias=AliasChoices("ctx_size", "ctx-size"))
    """Context per slot; unlike the global default it may exceed the trained length (llama.cpp warns)."""
    parallel: int | None = Field(None, ge=1, le=64)
    n_gpu_layers: int | None = Field(None, ge=-1, validation_alias=AliasChoices("n_gpu_layers", "n-gpu-layers"))
    cache_type_k: KvType | None = Field(None, validation_alias=AliasChoices("cache_type_k", "cache-type-k"))
    cache_type_v: KvType | None = Field(None, validation_alias=AliasChoices("cache_type_v", "cache-type-v"))
    flash_attn: Literal["auto", "on", "off"] | None = Field(
        None, validation_alias=AliasChoices("flash_attn", "flash-attn"))
    model_draft: str | None = Field(
        None, validation_alias=AliasChoices("model_draft", "model-draft", "spec-draft-model"))
    """A registered model name or a GGUF path: a small model of the same vocabulary for speculative decoding."""
    embeddings: bool = False
    """Serve this model for ``/v1/embeddings`` (llama.cpp ``--embeddings``) instead of chat."""
    pooling: Literal["mean", "cls", "last", "rank"] | None = None
    """How embeddings pool token vectors; unset: the model's own (a chat model has none: set ``mean``)."""
    args: list[str] = []
    """Extra engine arguments, passed as they are."""
    aliases: list[str] = []
    """Other names clients may ask for (``gpt-4o-mini``, ``coder``)."""
    ttl: float | None = Field(None, ge=-1)
    """Idle seconds before unloading (overrides ``backends.ttl``; 0: after each request; -1: never). Ollama
    deployments pass it as ``keep_alive``."""
    pinned: bool = False
    """Never unloaded to make room or when idle (only by `llmctl stop`)."""
    speculative: Literal["ngram"] | None = None
    """vLLM: speculative decoding from n-grams of the prompt (no draft model; ``model-draft`` takes precedence)."""
    tensor_parallel: int | None = Field(None, ge=1, le=64, validation_alias=AliasChoices(
        "tensor_parallel", "tensor-parallel-size"))
    """vLLM: ranks the model's layers are split across (GPUs, or CPU core groups)."""
    pipeline_parallel: int | None = Field(None, ge=1, le=64, validation_alias=AliasChoices(
        "pipeline_parallel", "pipeline-parallel-size"))
    """vLLM: pipeline stages."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, validation_alias=AliasChoices(
        "gpu_memory_utilization", "gpu-memory-utilization"))
    """vLLM on a GPU: the share of VRAM it takes for weights and KV cache (its default 0.9)."""


class OllamaSettings(BaseModel):
    """``[engines.ollama]``: Ollama as an engine (its models appear as ``ollama/NAME:TAG``)."""

    mode: Literal["attach", "spawn", "off"] = "attach"
    """``attach``: use the Ollama that answers at ``host`` (llmctl never stops it). ``spawn``: the same when one
    answers, else llmctl starts a private ``ollama serve`` on a loopback port with ``models_dir`` as its store, and
    stops it on exit. ``off``: no Ollama."""
    host: str | None = None
    """Where Ollama listens, as ``OLLAMA_HOST`` is written; unset: ``OLLAMA_HOST``, else 127.0.0.1:11434."""
    models_dir: Path | None = None
    """The spawned server's ``OLLAMA_MODELS``; unset: ``ollama`` under llmctl's data folder."""
    executable: str | None = None
    """The ``ollama`` binary to spawn; unset: ``ollama`` on PATH."""


class VllmSettings(BaseModel):
    """``[engines.vllm]``: vLLM serves safetensors models (incl. AWQ/GPTQ/FP8)."""

    python: str | None = None
    """The python of an environment that has vLLM, used as it is; unset: the venv `llmctl runtimes install vllm`
    made under llmctl's data folder, else a ``vllm`` on PATH."""


class EngineSettings(BaseModel):
    ollama: OllamaSettings = OllamaSettings()
    vllm: VllmSettings = VllmSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMCTL_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = ServerSettings()
    backends: BackendSettings = BackendSettings()
    engines: EngineSettings = EngineSettings()
    """Engines that host models themselves (Ollama)."""
    models: dict[str, ModelProfile] = {}
    """Per-model profiles, by registered model name (``"ollama/NAME:TAG"`` for an Ollama model)."""
    offline: bool = False
    """Never open a network connection beyond loopback."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [Path(f) for f in settings_cls.model_config.get("toml_file") or () if Path(f).is_file()]
        # later files win in TomlConfigSettingsSource's deep merge; the user's file comes first
        toml = TomlConfigSettingsSource(settings_cls, toml_file=files, deep_merge=True)
        return (init_settings, env_settings, toml)


def _deep_set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def flag_name(key: str, flag_names: dict[str, str] | None = None) -> str:
    """The command-line flag that sets a dotted settings key: given, or ``--`` and the last part with dashes."""
    return (flag_names or {}).get(key) or "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def load_settings(paths: Paths, overrides: dict[str, Any] | None = None,
                  flag_names: dict[str, str] | None = None) -> Settings:
    """Load and validate settings. ``overrides`` are dotted keys from CLI flags (``{"server.port": 9000}``); an
    invalid one is reported by its flag (``flag_names``, by default ``--port`` for ``server.port``)."""
    files = [paths.config_file]
    extra = os.environ.get("LLMCTL_CONFIG")
    if extra:
        extra_path = Path(extra).expanduser()
        if not extra_path.is_file():
            raise ConfigError(f"LLMCTL_CONFIG points at {extra_path}, which is not a file", "fix or unset it.")
        files.append(extra_path)
    init: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _deep_set(init, key, value)
    layered = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": files}})
    try:
        return layered(**init)
    except ValidationError as exc:
        flagged = {key for key, value in (overrides or {}).items() if value is not None}
        flags, others = [], []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            if key in flagged:
                flags.append(f"{flag_name(key, flag_names)}: {err['msg'].lower()}")
            else:
                others.append(f"{key}: {err['msg']}")
        if flags and not others:
            raise ConfigError("; ".join(flags), "fix the value on the command line.") from None
        fix = "Fix the flags on the command line; check " if flags else "Check "
        raise ConfigError("the configuration is invalid", "; ".join(flags + others) + f". {fix}"
                          f"{', '.join(map(str, files))} and LLMCTL_* environment variables.") from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError("a config file cannot be parsed", f"{exc}. Check {', '.join(map(str, files))}.") from None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and for an IP literal in a loopback range (127.0.0.0/8, ::1, ::ffff:127.x).
    Parsed, never prefix-matched: ``127.evil.com`` is a name anyone can point anywhere."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in ("localhost", "localhost."):
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback

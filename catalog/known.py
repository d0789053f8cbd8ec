"""The bundled model catalog (``assets/catalog.json``) and GPU table (``assets/gpus.json``), validated with
pydantic, and the facts the estimator needs for a catalog model at a given quant. Works offline."""

from __future__ import annotations

import functools
import json
import math
import re
from importlib import resources

from pydantic import BaseModel, Field, ValidationError, model_validator

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.facts import ModelFacts, swa_layout

# effective bits per weight of a whole GGUF file per quant. From llama.cpp's quantize table (tools/quantize,
# QUANT_OPTIONS): where it gives a file size for Llama-3-8B, size × 8 / 8.03e9 parameters (Q4_0 4.34G -> 4.64,
# Q4_1 4.78G -> 5.11, Q5_0 5.21G -> 5.57, Q4_K_M 4.58G -> 4.89, Q6_K 6.14G -> 6.56, Q8_0 7.96G -> 8.50); where it
# gives bits per weight (the i-quants: IQ4_XS 4.25, IQ3_M 3.66 "quantization mix"), that figure. k-quants keep
# some tensors at higher precision, which the file sizes include.
QUANT_BITS = {
    "Q2_K": 3.00, "Q3_K_S": 3.50, "IQ3_M": 3.66, "Q3_K_M": 3.91, "Q3_K_L": 4.27, "IQ4_XS": 4.25, "Q4_0": 4.64,
    "Q4_K_S": 4.58, "Q4_K_M": 4.89, "Q4_1": 5.11, "Q5_0": 5.57, "Q5_K_S": 5.54, "Q5_K_M": 5.70, "Q6_K": 6.56,
    "Q8_0": 8.50, "F16": 16.0, "BF16": 16.0, "MXFP4_MOE": 4.63,
}
# relative quality of a quant (1.0 = unquantized), from llama.cpp's published perplexity increases (the same
# table: Q3_K_L +0.556, Q4_0 +0.469, Q4_1 +0.451, Q4_K_S +0.269, Q4_K_M +0.175, Q5_0 +0.132, Q5_K_M +0.057 on
# Llama-3-8B), interpolated between the k-quants' values; IQ3_M is rated like Q3_K_M, IQ4_XS just under Q4_K_S
QUANT_QUALITY = {
    "Q2_K": 0.82, "Q3_K_S": 0.88, "IQ3_M": 0.92, "Q3_K_M": 0.92, "Q3_K_L": 0.93, "IQ4_XS": 0.96, "Q4_0": 0.94,
    "Q4_1": 0.945, "Q4_K_S": 0.965, "Q4_K_M": 0.97, "Q5_0": 0.975, "Q5_K_S": 0.98, "Q5_K_M": 0.985, "Q6_K": 0.995,
    "Q8_0": 0.999, "F16": 1.0, "BF16": 1.0,
    "MXFP4_MOE": 1.0,  # gpt-oss is trained for MXFP4
}
# share of a block's weights the CPU backend repacks, per quant (Q4_K_M keeps some tensors at Q6_K)
REPACK_SHARE = {"Q4_0": 1.0, "Q4_K_S": 0.9, "Q4_K_M": 0.7, "IQ4_NL": 1.0}
# bytes per parameter of safetensors variants served by vLLM (4-bit with group-128 scales and zeros)
SAFETENSORS_BITS = {"awq": 4.25, "gptq": 4.25, "fp8": 8.0}


class CatalogArch(BaseModel):
    n_layers: int = Field(gt=0)
    n_embd: int = Field(gt=0)
    n_head: int = Field(gt=0)
    n_head_kv: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    n_ff: int = Field(gt=0)
    n_vocab: int = Field(gt=0)
    ctx_max: int = Field(gt=0)
    tied_embeddings: bool = False
    swa_window: int = 0
    swa_every: int = 0
    n_expert: int = 0
    n_expert_used: int = 0


class GgufSource(BaseModel):
    repo: str
    quants: list[str]
    bytes: dict[str, int] = {}
    """Exact file sizes where known; others are computed from QUANT_BITS."""


class CatalogModel(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    family: str
    architecture: str
    hf_repo: str
    license: str
    uses: list[str]
    params_b: float = Field(gt=0)
    active_params_b: float | None = None
    arch: CatalogArch
    gguf: GgufSource
    safetensors: dict[str, str] = {}

    @property
    def effective_params_b(self) -> float:
        """For mixture-of-experts, the geometric mean of total and active parameters (a common rule of thumb
        for the dense model of equal quality); otherwise the parameter count."""
        if self.active_params_b:
            return math.sqrt(self.params_b * self.active_params_b)
        return self.params_b

    def gguf_bytes(self, quant: str) -> int:
        if quant in self.gguf.bytes:
            return self.gguf.bytes[quant]
        return int(self.params_b * 1e9 * QUANT_BITS[quant] / 8)


class Catalog(BaseModel):
    schema_: int = Field(alias="schema")
    note: str = ""
    models: list[CatalogModel]


class GpuSpec(BaseModel):
    name: str
    vram_gib: float = Field(0, ge=0)
    """A card's own memory; for unified memory, the configuration chosen by ``find_gpu`` (0 in the table)."""
    bandwidth_gbs: float = Field(gt=0)
    vendor: str = "nvidia"
    unified: bool = False
    """Apple Silicon: the GPU shares the host's memory (one pool)."""
    memory_gib: list[float] = []
    """Unified-memory configurations sold (Apple)."""
    gpu_cores: list[int] = []
    backends: list[str] = ["CUDA", "Vulkan"]

    @model_validator(mode="after")
    def _has_memory(self) -> GpuSpec:
        if not self.vram_gib and not self.memory_gib:
            raise ValueError(f"{self.name}: give vram_gib or memory_gib")
        return self


class GpuTable(BaseModel):
    schema_: int = Field(alias="schema")
    note: str = ""
    gpus: list[GpuSpec]


def _asset(name: str) -> dict:
    return json.loads(resources.files("llmctl.assets").joinpath(name).read_text("utf-8"))


@functools.cache
def load_catalog() -> Catalog:
    try:
        return Catalog.model_validate(_asset("catalog.json"))
    except (ValidationError, ValueError) as exc:
        raise LlmctlError("the bundled model catalog is invalid", f"{exc}. Reinstall llmctl.") from None


@functools.cache
def load_gpus() -> GpuTable:
    return GpuTable.model_validate(_asset("gpus.json"))


_VENDOR_WORDS = re.compile(r"\(r\)|\(tm\)|\b(nvidia|geforce|amd|radeon(?! pro)|intel|apple|graphics)\b")
_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:gb|gib|g)\s*$")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _VENDOR_WORDS.sub("", text.lower()))


def _match(wanted: str, gpus: list[GpuSpec]) -> list[GpuSpec]:
    exact = [g for g in gpus if _norm(g.name) == wanted or _norm("RTX " + g.name) == wanted]
    if exact:
        return exact
    close = {g.name for g in gpus if wanted and (wanted in _norm(g.name) or _norm(g.name) in wanted)}
    return [g for g in gpus if g.name in close] if len(close) == 1 else []


def find_gpu(name: str) -> GpuSpec:
    """A GPU by name ("RTX 3090", "RX 7900 XTX", "Arc A770", "Intel(R) Arc(TM) A770 Graphics"). Apple chips take
    their memory configuration after the name ("M3 Max 64GB"); without it, the smallest one sold."""
    gpus = load_gpus().gpus
    known = "known: " + ", ".join(dict.fromkeys(g.name for g in gpus)) + ". Or give --vram and --ram directly."
    found = _match(_norm(name), gpus)
    memory = None
    if not found:  # "M3 Max 64GB": the chip, then its memory
        m = _MEMORY.search(name.lower())
        if m:
            memory = float(m.group(1))
            found = _match(_norm(name[: m.start()]), gpus)
    if not found:
        raise LlmctlError(f"unknown GPU {name!r}", known)
    if not found[0].unified:
        return found[0]
    options = sorted({mem for g in found for mem in g.memory_gib})
    if memory is None:
        memory = options[0]
    spec = next((g for g in found if memory in g.memory_gib), None)
    if spec is None:
        raise LlmctlError(f"{found[0].name} was not sold with {memory:g} GB",
                          f"its memory configurations: {', '.join(f'{o:g}GB' for o in options)}")
    return spec.model_copy(update={"vram_gib": memory})


def find_model(query: str) -> tuple[CatalogModel, str | None]:
    """``name[:QUANT]`` or the Hub repo id (original, GGUF or safetensors), case-insensitive."""
    base, _, quant = query.partition(":")
    q = base.strip().lower()
    for model in load_catalog().models:
        repos = [model.hf_repo, model.gguf.repo, *model.safetensors.values()]
        if q == model.name or q in (r.lower() for r in repos):
            if quant:
                wanted = quant.upper()
                if wanted not in model.gguf.quants:
                    raise LlmctlError(f"{model.name} has no {quant} quant in the catalog",
                                      f"available: {', '.join(model.gguf.quants)}")
                return model, wanted
            return model, None
    names = [m.name for m in load_catalog().models]
    hints = [n for n in names if q and q.split("-")[0] in n][:6]
    raise LlmctlError(f"{query!r} is neither a catalog model nor a .gguf file",
                      f"{'did you mean: ' + ', '.join(hints) + '? ' if hints else ''}"
                      "`llmctl recommend` lists what the catalog has.")


def default_quant(model: CatalogModel) -> str:
    return "Q4_K_M" if "Q4_K_M" in model.gguf.quants else model.gguf.quants[0]


def facts_for(model: CatalogModel, quant: str) -> ModelFacts:
    """Facts for a catalog model at a GGUF quant (sizes computed unless the catalog gives exact bytes)."""
    a = model.arch
    bits = QUANT_BITS.get(quant, 16.0)
    weights = model.gguf_bytes(quant)
    embd = int(a.n_vocab * a.n_embd * bits / 8)
    output = 0 if a.tied_embeddings else embd
    body = max(0, weights - embd - output)
    per_layer = body // a.n_layers
    return ModelFacts(
        architecture=model.architecture,
        n_layers=a.n_layers, n_embd=a.n_embd, n_head=a.n_head, n_head_kv=a.n_head_kv,
        head_dim_k=a.head_dim, head_dim_v=a.head_dim,
        n_ff=a.n_ff * max(1, a.n_expert_used),  # MoE: the experts a token visits share the compute buffer
        n_vocab=a.n_vocab, ctx_train=a.ctx_max, weights_bytes=weights,
        layer_bytes=tuple([per_layer] * a.n_layers), output_bytes=output, input_bytes=embd,
        repack_bytes=int(body * REPACK_SHARE.get(quant, 0.0)),
        swa_window=a.swa_window,
        swa_layers=tuple((i + 1) % a.swa_every != 0 for i in range(a.n_layers)) if a.swa_every
        else swa_layout(model.architecture, a.n_layers, a.swa_window),
        n_expert=a.n_expert, n_expert_used=a.n_expert_used,
        parameter_count=int(model.params_b * 1e9), quant=quant, source=f"catalog:{model.name}",
    )


def facts_for_safetensors(model: CatalogModel, variant: str) -> ModelFacts:
    """Facts for a vLLM-served AWQ/GPTQ/FP8 variant."""
    a = model.arch
    weights = int(model.params_b * 1e9 * SAFETENSORS_BITS[variant] / 8)
    return ModelFacts(
        architecture=model.architecture, n_layers=a.n_layers, n_embd=a.n_embd, n_head=a.n_head,
        n_head_kv=a.n_head_kv, head_dim_k=a.head_dim, head_dim_v=a.head_dim,
        n_ff=a.n_ff * max(1, a.n_expert_used), n_vocab=a.n_vocab, ctx_train=a.ctx_max, weights_bytes=weights,
        parameter_count=int(model.params_b * 1e9), quant=variant.upper(), source=f"catalog:{model.name}",
    )

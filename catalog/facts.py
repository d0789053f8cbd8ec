"""The architecture facts a memory estimate needs, from a GGUF header or from the bundled catalog.

One shape for both sources, so ``llmctl fit`` treats a file on disk and a catalog entry the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmctl.catalog.gguf import GGUFInfo

# llama.cpp's hard-coded sliding-window layouts (llama-model.cpp: hparams.set_swa_pattern(n)): a layer is a
# sliding-window layer unless (index + 1) is a multiple of n
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "llama4": 4}
# weight types llama.cpp's CPU backend repacks into interleaved copies on x86 AVX2 / ARM NEON (ggml-cpu repack)
REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})


@dataclass(frozen=True, slots=True)
class ModelFacts:
    architecture: str
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    ctx_train: int
    weights_bytes: int
    layer_bytes: tuple[int, ...] = ()  # per block, for partial offload; empty: weights spread evenly
    output_bytes: int = 0  # output.weight + output_norm: offloaded with the last "layer" (-ngl n_layers+1)
    input_bytes: int = 0  # token_embd: llama.cpp keeps input embeddings on the CPU
    repack_bytes: int = 0  # bytes of tensors the CPU backend repacks (an extra copy in RAM)
    swa_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    n_expert: int = 0
    n_expert_used: int = 0
    parameter_count: int = 0
    quant: str = "unknown"
    source: str = "gguf"
    extra: dict = field(default_factory=dict)

    @property
    def n_embd_k_gqa(self) -> int:
        return self.n_head_kv * self.head_dim_k

    @property
    def n_embd_v_gqa(self) -> int:
        return self.n_head_kv * self.head_dim_v

    @property
    def n_swa_layers(self) -> int:
        return sum(self.swa_layers)


def swa_layout(architecture: str, n_layers: int, window: int, pattern: list | None = None) -> tuple[bool, ...]:
    if not window:
        return ()
    if pattern and len(pattern) == n_layers:
        return tuple(bool(p) for p in pattern)
    every = SWA_PATTERNS.get(architecture)
    if every is None:
        return tuple(True for _ in range(n_layers))  # a window with no known layout: every layer uses it
    return tuple((i + 1) % every != 0 for i in range(n_layers))


def facts_from_gguf(info: GGUFInfo) -> ModelFacts:
    """Facts from a header: exact tensor bytes, per-layer bytes, and llama.cpp's key names."""
    arch = info.architecture
    n_layers = info.n_layers or 0
    n_embd = info.n_embd or 0
    n_head = info.n_heads or 1
    n_head_kv = info.n_kv_heads or n_head
    head_k = _int(info.arch_value("attention.key_length")) or (n_embd // n_head if n_head else 0)
    head_v = _int(info.arch_value("attention.value_length")) or head_k
    layer_bytes = [0] * n_layers
    output_bytes = input_bytes = repack = 0
    for t in info.tensors:
        if t.name.startswith("blk."):
            idx = t.name.split(".", 2)[1]
            if idx.isdigit() and int(idx) < n_layers:
                layer_bytes[int(idx)] += t.n_bytes
            if t.ggml_type in REPACKED_TYPES and len(t.shape) >= 2 and t.shape[1] % 8 == 0:
                repack += t.n_bytes
        elif t.name.startswith("token_embd"):
            input_bytes += t.n_bytes
        else:
            output_bytes += t.n_bytes
    window = _int(info.arch_value("attention.sliding_window")) or 0
    pattern = info.arch_value("attention.sliding_window_pattern")
    return ModelFacts(
        architecture=arch,
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_k,
        head_dim_v=head_v,
        n_ff=_int(info.arch_value("feed_forward_length")) or 4 * n_embd,
        n_vocab=info.vocab_size or _int(info.arch_value("vocab_size")) or 0,
        ctx_train=info.context_length or 0,
        weights_bytes=info.tensor_bytes,
        layer_bytes=tuple(layer_bytes),
        output_bytes=output_bytes,
        input_bytes=input_bytes,
        repack_bytes=repack,
        swa_window=window,
        swa_layers=swa_layout(arch, n_layers, window, pattern if isinstance(pattern, list) else None),
        n_expert=_int(info.arch_value("expert_count")) or 0,
        n_expert_used=_int(info.arch_value("expert_used_count")) or 0,
        parameter_count=info.parameter_count,
        quant=info.quant,
        source=str(info.path),
    )


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return max(value)
    return None

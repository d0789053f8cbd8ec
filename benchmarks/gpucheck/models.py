"""Random-weight llama GGUFs of real model shapes, written fast enough for a timed check: the sizes are real (the
same tensors, types and vocabulary length as the model named), the text is not.

Q8_0 tensors are written as raw blocks (an f16 scale and 32 int8 quants per 32 weights) from random bytes, one
array per distinct shape reused by every layer, so an 8B file (~8.5 GB) costs its disk write and little memory.
The tokenizer is tests/tiny_gguf.py's SentencePiece one (specials, 256 byte tokens, pieces), grown to the shape's
vocabulary; the EOS row of the output matrix is zero, so generation runs to max_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from tiny_gguf import CHAT_TEMPLATE, _letters  # tests/ is on the path (benchmarks/gpu_check.py puts it there)

Q8_0 = gguf.GGMLQuantizationType.Q8_0
F16 = gguf.GGMLQuantizationType.F16


@dataclass(frozen=True)
class Shape:
    name: str
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    ctx_train: int
    qtype: str = "q8_0"  # q8_0 | f16


# real shapes (Meta's config.json): the GPU run; the dry run's are small, for 2 CPU cores in seconds
LLAMA3_8B = Shape("llama3-8b-q8_0", 32, 4096, 32, 8, 14336, 128256, 131072)
LLAMA32_1B = Shape("llama3.2-1b-f16", 16, 2048, 32, 8, 8192, 128256, 131072, "f16")
DRY_SMALL = Shape("dry-4L-512-q8_0", 4, 512, 8, 2, 1536, 8000, 32768)
DRY_TINY = Shape("dry-2L-256-f16", 2, 256, 4, 2, 768, 2000, 32768, "f16")


def _q8_0(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Raw Q8_0 blocks of a (rows, cols) matrix: per 32 weights an f16 scale then 32 random int8."""
    blocks = rng.integers(0, 256, size=(rows, cols // 32, 34), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.02 / 73).tobytes(), dtype=np.uint8)  # int8 std ~73: weights std ~0.02
    blocks[:, :, 0:2] = scale
    return blocks.reshape(rows, cols // 32 * 34)


def write_llama(path: Path, s: Shape, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(s.name)
    w.add_context_length(s.ctx_train)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layers)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_rope_dimension_count(s.n_embd // s.n_head)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(7 if s.qtype == "q8_0" else 1)  # LLAMA_FTYPE_MOSTLY_Q8_0 / MOSTLY_F16

    tokens, scores, types = [b"<unk>", b"<s>", b"</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    scores += [0.0] * 256
    types += [6] * 256
    i = 0
    while len(tokens) < s.n_vocab:
        tokens.append(("\u2581" + _letters(i)).encode())
        scores.append(-float(i))
        types.append(1)
        i += 1
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(CHAT_TEMPLATE)

    cache: dict[tuple[int, int], np.ndarray] = {}

    def matrix(name: str, rows: int, cols: int) -> None:
        if (rows, cols) not in cache:
            if s.qtype == "q8_0":
                cache[rows, cols] = _q8_0(rows, cols, rng)
            else:
                cache[rows, cols] = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)
        data = cache[rows, cols]
        w.add_tensor(name, data, raw_dtype=Q8_0 if s.qtype == "q8_0" else None)

    ones = np.ones(s.n_embd, dtype=np.float32)
    kv = s.n_head_kv * (s.n_embd // s.n_head)
    matrix("token_embd.weight", s.n_vocab, s.n_embd)
    w.add_tensor("output_norm.weight", ones)
    out = (_q8_0(s.n_vocab, s.n_embd, rng) if s.qtype == "q8_0"
           else (rng.standard_normal((s.n_vocab, s.n_embd), dtype=np.float32) * 0.02).astype(np.float16))
    out[2] = 0  # EOS never wins under greedy decoding
    w.add_tensor("output.weight", out, raw_dtype=Q8_0 if s.qtype == "q8_0" else None)
    for layer in range(s.n_layers):
        p = f"blk.{layer}."
        w.add_tensor(p + "attn_norm.weight", ones)
        matrix(p + "attn_q.weight", s.n_embd, s.n_embd)
        matrix(p + "attn_k.weight", kv, s.n_embd)
        matrix(p + "attn_v.weight", kv, s.n_embd)
        matrix(p + "attn_output.weight", s.n_embd, s.n_embd)
        w.add_tensor(p + "ffn_norm.weight", ones)
        matrix(p + "ffn_gate.weight", s.n_ff, s.n_embd)
        matrix(p + "ffn_up.weight", s.n_ff, s.n_embd)
        matrix(p + "ffn_down.weight", s.n_embd, s.n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

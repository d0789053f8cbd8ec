"""Writes tiny random-weight llama GGUFs that real llama.cpp loads in well under a second.

A 2-layer llama with a 512-token SentencePiece vocab (3 specials, 256 byte-fallback tokens, 253 pieces) and a
small chat template. The EOS row of the output matrix is zero, so greedy decoding never picks EOS and a
request generates exactly ``max_tokens`` tokens.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _letters(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(97 + r) + out
    return out


def write_tiny_llama(
    path: Path,
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_vocab: int = 512,
    ctx: int = 2048,
    dtype: type = np.float32,
    seed: int = 0,
    name: str = "tiny-llama",
    omit_tensor: str | None = None,
    split_max_tensors: int = 0,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Write the model; ``omit_tensor`` leaves one out, giving a file whose header is fine but that
    llama.cpp refuses to load. ``split_max_tensors`` writes a split model as llama.cpp's gguf-split does
    (``STEM-0000k-of-0000N.gguf`` beside ``path``, metadata in the first part) and returns the first part."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1 if dtype == np.float16 else 0)

    tokens, scores, types = [b"<unk>", b"<s>", b"</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>".encode())
        scores.append(0.0)
        types.append(6)
    i = 0
    while len(tokens) < n_vocab:
        tokens.append(("\u2581" + _letters(i)).encode())  # unique pieces: a..z, aa..zz, aaa..
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
    w.add_chat_template(chat_template)

    def t(name: str, *shape: int, scale: float = 0.02) -> None:
        data = (rng.standard_normal(shape) * scale).astype(dtype)
        if name != omit_tensor:
            w.add_tensor(name, data)

    def ones(name: str, n: int) -> None:
        if name != omit_tensor:
            w.add_tensor(name, np.ones(n, dtype=np.float32))

    head_dim = n_embd // n_head
    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    ones("output_norm.weight", n_embd)
    out = (rng.standard_normal((n_vocab, n_embd)) * 1.0).astype(dtype)
    out[2] = 0  # EOS never wins under greedy decoding
    w.add_tensor("output.weight", out)
    for layer in range(n_layers):
        p = f"blk.{layer}."
        ones(p + "attn_norm.weight", n_embd)
        t(p + "attn_q.weight", n_embd, n_embd)
        t(p + "attn_k.weight", n_head_kv * head_dim, n_embd)
        t(p + "attn_v.weight", n_head_kv * head_dim, n_embd)
        t(p + "attn_output.weight", n_embd, n_embd)
        ones(p + "ffn_norm.weight", n_embd)
        t(p + "ffn_gate.weight", n_ff, n_embd)
        t(p + "ffn_up.weight", n_ff, n_embd)
        t(p + "ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))[0]
    return path

"""Writes a tiny random-weight Llama in Hugging Face format that real vLLM (CPU) loads in seconds.

A folder with ``config.json`` (written by hand, the keys transformers' ``LlamaConfig`` reads), ``model.safetensors``
(numpy arrays through ``safetensors.numpy``, the tensor names of ``LlamaForCausalLM``), and a byte-level BPE tokenizer
trained by ``tokenizers`` on text written here (``tokenizer.json`` + ``tokenizer_config.json`` with a chat template).
transformers and torch are not needed: they live only in the vLLM engine's own venv.

Defaults: hidden 128, 4 attention heads (head_dim 32, the smallest vLLM's CPU attention kernels take), 2 KV heads,
2 layers, intermediate 256. The EOS row of ``lm_head`` is zero so greedy decoding practically never stops early.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS, EOS = "<s>", "</s>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TEXT = ("the quick brown fox jumps over a lazy dog while tiny models answer every question about memory, "
         "tokens, caches and engines; hello world, how are you today? fine thanks. 0123456789")
_WORDS = tuple(_TEXT.split(" "))


def _corpus(lines: int = 400) -> list[str]:
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(_WORDS, size=12)) for _ in range(lines)]


def write_tokenizer(folder: Path, vocab_size: int = 512) -> int:
    """Train a byte-level BPE tokenizer on text this function writes; returns its vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_corpus()) + "\n", encoding="utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(corpus)], trainer)
    corpus.unlink()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "add_bos_token": False,
        "model_max_length": 2048,
        "chat_template": CHAT_TEMPLATE,
    }, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}),
                                                   encoding="utf-8")
    return tok.get_vocab_size()


def write_tiny_hf_llama(
    folder: Path,
    *,
    hidden: int = 128,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    n_layers: int = 2,
    intermediate: int = 256,
    ctx: int = 2048,
    head_dim: int | None = None,
    seed: int = 0,
) -> Path:
    """Write the model folder and return it. ``head_dim`` defaults to hidden / n_heads."""
    head_dim = head_dim or hidden // n_heads
    vocab = write_tokenizer(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": head_dim,
        "num_hidden_layers": n_layers,
        "vocab_size": vocab,
        "max_position_embeddings": ctx,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
        "transformers_version": "4.57.0",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos}),
                                                   encoding="utf-8")
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": w(vocab, hidden), "model.norm.weight": np.ones(hidden, np.float32)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": w(n_heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": w(n_kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": w(n_kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": w(hidden, n_heads * head_dim),
            p + "mlp.gate_proj.weight": w(intermediate, hidden),
            p + "mlp.up_proj.weight": w(intermediate, hidden),
            p + "mlp.down_proj.weight": w(hidden, intermediate),
            p + "input_layernorm.weight": np.ones(hidden, np.float32),
            p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        }
    head = w(vocab, hidden)
    head[eos] = 0.0
    tensors["lm_head.weight"] = head
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder

"""The bundled catalog validates, its facts are self-consistent, lookups work, and the recommender is sane."""

from __future__ import annotations

import pytest

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import Budget
from llmctl.catalog.known import (
    QUANT_BITS,
    QUANT_QUALITY,
    facts_for,
    find_gpu,
    find_model,
    load_catalog,
    load_gpus,
)
from llmctl.catalog.recommend import recommend

GiB = 1 << 30
REQUIRED = [
    "llama-3.1-8b-instruct", "llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "llama-3.3-70b-instruct",
    "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "qwen2.5-32b-instruct",
    "qwen2.5-coder-7b-instruct", "qwen3-0.6b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b",
    "gemma-2-9b-it", "gemma-3-270m-it", "gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it",
    "mistral-7b-instruct-v0.3", "mixtral-8x7b-instruct-v0.1", "phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct",
    "phi-4", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b", "gpt-oss-20b", "gpt-oss-120b",
    "smollm2-360m-instruct",
]


def test_catalog_has_the_required_models() -> None:
    names = {m.name for m in load_catalog().models}
    assert set(REQUIRED) <= names
    assert len(names) == len(load_catalog().models)  # no duplicates


@pytest.mark.parametrize("model", load_catalog().models, ids=lambda m: m.name)
def test_every_entry_is_self_consistent(model) -> None:
    a = model.arch
    assert a.n_head % a.n_head_kv == 0, "query heads group evenly over KV heads"
    assert a.head_dim in (64, 96, 128, 256)
    assert set(model.uses) <= {"chat", "code", "reasoning", "small"}
    assert all(q in QUANT_BITS and q in QUANT_QUALITY for q in model.gguf.quants)
    assert "/" in model.hf_repo and "/" in model.gguf.repo
    if a.n_expert:
        assert 0 < a.n_expert_used < a.n_expert and model.active_params_b < model.params_b
    # parameters implied by the shape are within reach of the stated count (embeddings + blocks)
    attn = a.n_embd * a.head_dim * (a.n_head * 2 + a.n_head_kv * 2)
    ffn = 3 * a.n_embd * a.n_ff * max(1, a.n_expert)
    implied = a.n_layers * (attn + ffn) + a.n_vocab * a.n_embd * (1 if a.tied_embeddings else 2)
    assert 0.6 < implied / (model.params_b * 1e9) < 1.45, implied / 1e9
    f = facts_for(model, model.gguf.quants[0])
    assert f.weights_bytes > 0 and f.ctx_train == a.ctx_max


@pytest.mark.parametrize(
    ("query", "name", "quant"),
    [("Llama-3.1-8B-Instruct:q4_k_m", "llama-3.1-8b-instruct", "Q4_K_M"),
     ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b-instruct", None),
     ("bartowski/Qwen2.5-7B-Instruct-GGUF:Q8_0", "qwen2.5-7b-instruct", "Q8_0"),
     ("Qwen/Qwen2.5-7B-Instruct-AWQ", "qwen2.5-7b-instruct", None)],
)
def test_find_model(query: str, name: str, quant: str | None) -> None:
    model, q = find_model(query)
    assert (model.name, q) == (name, quant)


def test_find_model_errors_help() -> None:
    with pytest.raises(LlmctlError, match="no Q1_X quant") as err:
        find_model("qwen3-8b:Q1_X")
    assert "Q4_K_M" in err.value.message
    with pytest.raises(LlmctlError, match="neither a catalog model") as err:
        find_model("qwen-9b")
    assert "qwen" in err.value.message


def test_gpu_table() -> None:
    assert find_gpu("RTX 3090").vram_gib == 24
    assert find_gpu("NVIDIA GeForce RTX 4090").bandwidth_gbs == 1008
    assert find_gpu("rtx3060").vram_gib == 12
    assert len(load_gpus().gpus) >= 30
    with pytest.raises(LlmctlError, match="unknown GPU"):
        find_gpu("Voodoo 2")


def test_a_3090_gets_a_30b_class_model_at_q4_or_a_14b_at_q8() -> None:
    options, _ = recommend(Budget(vram_free=(24 * GiB,), ram_available=64 * GiB), ctx=8192, gpu_bandwidth_gbs=936)
    top = options[0]
    model, _ = find_model(top.model)
    assert top.gpu_layers == top.n_layers, "fully on the GPU"
    assert (model.params_b >= 24 and top.quant in ("Q4_K_M", "Q5_K_M", "Q3_K_M")) or (
        model.params_b >= 12 and top.quant in ("Q8_0", "Q6_K"))
    assert top.ctx == 8192
    scores = [o.score for o in options]
    assert scores == sorted(scores, reverse=True)
    assert all(o.why for o in options)


def test_a_small_laptop_gets_small_models_and_reasons_for_the_rest() -> None:
    options, left_out = recommend(Budget(ram_available=4 * GiB), ctx=4096)
    assert find_model(options[0].model)[0].params_b < 5 and options[0].fits == "yes"
    assert all(find_model(o.model)[0].params_b < 9 for o in options)
    assert any("llama-3.3-70b" in line and "does not fit" in line for line in left_out)
    assert all(o.model != "gpt-oss-120b" for o in options)
    chat_only = recommend(Budget(ram_available=4 * GiB), use="code", ctx=4096)[0]
    assert all("code" in find_model(o.model)[0].uses for o in chat_only)

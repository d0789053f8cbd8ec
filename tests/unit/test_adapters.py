"""Golden argv and environment for the llama.cpp engines, the launcher's mapping onto xllamacpp, and which
engine the registry picks."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from llmctl.runtimes.base import Deployment, EngineUnavailable
from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, XLlamaCpp
from llmctl.runtimes.registry import describe_engines, pick_engine

D = Deployment(model_name="tiny", model_path=Path("/models/tiny.gguf"), port=40001, ctx_size=2048,
               n_gpu_layers=0, threads=2, parallel=4, api_key="s3cret")

# --ctx-size is the one KV pool the 4 slots share (--kv-unified), not 4 × 2048 split into fixed shares
FLAGS = [
    "--model", "/models/tiny.gguf", "--alias", "tiny", "--host", "127.0.0.1", "--port", "40001",
    "--ctx-size", "2048", "--parallel", "4", "--kv-unified", "--threads", "2", "--threads-batch", "2",
    "--n-gpu-layers", "0",
    "--cache-type-k", "f16", "--cache-type-v", "f16", "--flash-attn", "auto", "--fit", "off", "--metrics",
    "--jinja", "--no-webui",
]


def test_native_llama_server_argv() -> None:
    assert LlamaServer("/usr/bin/llama-server").build_command(D) == ["/usr/bin/llama-server", *FLAGS]
    assert LlamaServer("llama-server").health_path() == "/health"


def test_xllamacpp_takes_the_same_flags_in_its_own_process() -> None:
    assert XLlamaCpp("/venv/bin/python").build_command(D) == [
        "/venv/bin/python", "-m", "llmctl.runtimes.xllamacpp_server", *FLAGS]


def test_the_secret_key_travels_in_the_environment_never_argv() -> None:
    for engine in (XLlamaCpp("py"), LlamaServer("ls"), LlamaCppPython("py")):
        assert not any("s3cret" in a for a in engine.build_command(D)), engine.key
        assert "s3cret" in engine.build_env(D).values()
    assert XLlamaCpp("py").build_env(D) == {"LLAMA_API_KEY": "s3cret"}  # what llama-server's --api-key reads
    assert XLlamaCpp("py").build_env(Deployment("m", Path("/m.gguf"), 1)) == {}


def test_llama_cpp_python_argv() -> None:
    assert LlamaCppPython("/venv/bin/python").build_command(D) == [
        "/venv/bin/python", "-m", "llama_cpp.server", "--model", "/models/tiny.gguf", "--model_alias", "tiny",
        "--host", "127.0.0.1", "--port", "40001", "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2",
        "--n_gpu_layers", "0", "--interrupt_requests", "false",
    ]


def test_deployment_features_reach_the_argv() -> None:
    d = Deployment(model_name="m", model_path=Path("/m.gguf"), port=1, prompt_cache_mib=1024, kv_type="q8_0",
                   draft_model=Path("/draft.gguf"), embeddings=True, chat_template="chatml",
                   extra_args=("--top-k", "20"))
    argv = XLlamaCpp("py").build_command(d)
    assert argv[argv.index("--cache-ram") + 1] == "1024"
    assert argv[argv.index("--cache-type-v") + 1] == "q8_0"
    assert argv[argv.index("--flash-attn") + 1] == "on"  # a quantized V cache needs flash attention
    assert argv[argv.index("--model-draft") + 1] == "/draft.gguf"
    assert "--embeddings" in argv
    assert argv[argv.index("--chat-template") + 1] == "chatml"
    assert argv[-2:] == ["--top-k", "20"]  # extra arguments come last, so they win
    assert "--cache-ram" not in LlamaCppPython("py").build_command(d)  # it has no such cache
    assert LlamaCppPython("py").build_command(d)[-6:] == ["--chat_format", "chatml", "--embedding", "true",
                                                          "--top-k", "20"]


def test_the_launcher_maps_every_flag_onto_xllamacpp() -> None:
    pytest.importorskip("xllamacpp")
    import xllamacpp as x

    from llmctl.runtimes import xllamacpp_server

    d = Deployment(model_name="m", model_path=Path("/m.gguf"), port=4321, ctx_size=1024, parallel=3, threads=2,
                   kv_type="q8_0", kv_type_v="q4_0", prompt_cache_mib=256, draft_model=Path("/d.gguf"),
                   embeddings=True, pooling="mean", chat_template="gemma")
    p = xllamacpp_server.build_params(XLlamaCpp("py").build_command(d)[3:], "k")
    assert (p.model.path, p.model_alias, p.port, p.hostnames) == ("/m.gguf", {"m"}, 4321, ["127.0.0.1"])
    assert (p.n_ctx, p.n_parallel, p.kv_unified, p.cpuparams.n_threads, p.n_gpu_layers) == (1024, 3, True, 2, 0)
    assert (p.cache_type_k, p.cache_type_v) == (x.ggml_type.GGML_TYPE_Q8_0, x.ggml_type.GGML_TYPE_Q4_0)
    assert p.flash_attn_type == x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert (p.fit_params, p.cache_ram_mib, p.endpoint_metrics, p.embedding) == (False, 256, True, True)
    assert (p.chat_template, p.api_keys, p.ui) == ("gemma", ["k"], False)
    assert p.pooling_type == x.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    assert p.speculative.draft.mparams.path == "/d.gguf"
    assert p.speculative.types == [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]


def _fake_llama_server(folder: Path) -> Path:
    fake = folder / "llama-server"
    fake.write_text("#!/bin/sh\necho 'version: 6410 (abc1234)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def test_a_native_llama_server_on_path_is_preferred(tmp_path: Path, monkeypatch) -> None:
    fake = _fake_llama_server(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    engine = pick_engine("gguf")
    assert isinstance(engine, LlamaServer) and engine.executable == str(fake)
    info = next(i for i in describe_engines() if i.engine == "llama-server")
    assert info.found and info.version == "6410 (abc1234)"
    assert isinstance(pick_engine("gguf", "xllamacpp"), XLlamaCpp)  # the user's choice wins


def test_xllamacpp_is_the_default_without_a_native_build(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("xllamacpp")
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = pick_engine("gguf")
    assert isinstance(engine, XLlamaCpp) and engine.python == sys.executable
    assert isinstance(pick_engine("gguf", llama_server=str(tmp_path / "missing")), XLlamaCpp)
    with pytest.raises(EngineUnavailable, match="not an executable file"):
        pick_engine("gguf", "llama-server", llama_server=str(tmp_path / "missing"))


def test_formats_no_engine_serves_get_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm on PATH either
    with pytest.raises(EngineUnavailable, match="vLLM engine is not installed") as err:
        pick_engine("safetensors")
    assert "llmctl runtimes install vllm" in err.value.message
    with pytest.raises(EngineUnavailable, match="no engine here serves onnx"):
        pick_engine("onnx")
    with pytest.raises(EngineUnavailable, match="unknown engine"):
        pick_engine("gguf", "tgi")


def test_load_failure_reason_is_llama_cpp_own_words() -> None:
    lines = ["llama_model_loader: - kv 0", "llama_model_load: error loading model: check_tensor_dims: tensor "
             "'output_norm.weight' not found", "llama_model_load_from_file_impl: failed to load model",
             "ValueError: Failed to load model from file: /m.gguf"]
    assert LlamaServer("x").failure_reason(lines) == "check_tensor_dims: tensor 'output_norm.weight' not found"
    assert LlamaCppPython("x").failure_reason(["all fine"]) is None
    garbage = ["E gguf_init_from_reader: invalid magic characters: 'garb', expected 'GGUF'",
               "E llama_model_load: error loading model: llama_model_loader: failed to load model from /m.gguf",
               "error: Failed to init server, please check the input params."]
    assert XLlamaCpp("x").failure_reason(garbage) == "invalid magic characters: 'garb', expected 'GGUF'"


def test_files_without_a_template_get_their_family_template() -> None:
    from llmctl.runtimes.llama_cpp import template_family

    assert template_family("gemma3", has_template=False) == "gemma"
    assert template_family("qwen2", has_template=False) == "chatml"
    assert template_family("gemma3", has_template=True) is None  # the file's own template wins
    assert template_family("llama", has_template=False) is None  # the engine's default
    d = Deployment(model_name="g", model_path=Path("/g.gguf"), port=1, chat_template="gemma")
    assert LlamaServer("ls").build_command(d)[-2:] == ["--chat-template", "gemma"]
    assert LlamaCppPython("py").build_command(d)[-2:] == ["--chat_format", "gemma"]

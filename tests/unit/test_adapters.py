"""Golden argv for both llama.cpp launchers, and which one is picked."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from llmctl.runtimes.base import LaunchSpec
from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, pick_adapter

SPEC = LaunchSpec(model_name="tiny", model_path=Path("/models/tiny.gguf"), port=40001, ctx_size=2048,
                  n_gpu_layers=0, threads=2, parallel=4)


def test_native_llama_server_argv() -> None:
    assert LlamaServer("/usr/bin/llama-server").build_command(SPEC) == [
        "/usr/bin/llama-server", "--model", "/models/tiny.gguf", "--alias", "tiny", "--host", "127.0.0.1",
        "--port", "40001", "--ctx-size", "8192", "--parallel", "4", "--threads", "2", "--n-gpu-layers", "0",
        "--jinja", "--no-webui",
    ]
    assert LlamaServer("llama-server").health_path() == "/health"


def test_llama_cpp_python_argv() -> None:
    assert LlamaCppPython("/venv/bin/python").build_command(SPEC) == [
        "/venv/bin/python", "-m", "llama_cpp.server", "--model", "/models/tiny.gguf", "--model_alias", "tiny",
        "--host", "127.0.0.1", "--port", "40001", "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2",
        "--n_gpu_layers", "0", "--interrupt_requests", "false",
    ]


def test_prompt_cache_is_capped_on_the_native_server() -> None:
    spec = LaunchSpec(model_name="m", model_path=Path("/m.gguf"), port=1, prompt_cache_mib=1024)
    argv = LlamaServer("ls").build_command(spec)
    assert argv[argv.index("--cache-ram") + 1] == "1024"
    assert "--cache-ram" not in LlamaCppPython("py").build_command(spec)  # it has no such cache


def test_chat_template_and_extra_args_are_passed() -> None:
    spec = LaunchSpec(model_name="m", model_path=Path("/m.gguf"), port=1, chat_template="chatml",
                      extra_args=("--flash-attn", "on"))
    assert LlamaServer("ls").build_command(spec)[-4:] == ["--chat-template", "chatml", "--flash-attn", "on"]
    assert LlamaCppPython("py").build_command(spec)[-4:] == ["--chat_format", "chatml", "--flash-attn", "on"]


def test_native_is_preferred_when_found(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    adapter = pick_adapter()
    assert isinstance(adapter, LlamaServer) and adapter.executable == str(fake)
    assert isinstance(pick_adapter(prefer_native=False), LlamaCppPython)


def test_python_server_is_the_fallback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    adapter = pick_adapter()
    assert isinstance(adapter, LlamaCppPython) and adapter.python == sys.executable
    assert isinstance(pick_adapter(configured=str(tmp_path / "missing")), LlamaCppPython)


def test_load_failure_reason_is_llama_cpp_own_words() -> None:
    lines = ["llama_model_loader: - kv 0", "llama_model_load: error loading model: check_tensor_dims: tensor "
             "'output_norm.weight' not found", "llama_model_load_from_file_impl: failed to load model",
             "ValueError: Failed to load model from file: /m.gguf"]
    assert LlamaServer("x").failure_reason(lines) == "check_tensor_dims: tensor 'output_norm.weight' not found"
    assert LlamaCppPython("x").failure_reason(["all fine"]) is None


def test_files_without_a_template_get_their_family_template() -> None:
    from llmctl.runtimes.llama_cpp import template_family

    assert template_family("gemma3", has_template=False) == "gemma"
    assert template_family("qwen2", has_template=False) == "chatml"
    assert template_family("gemma3", has_template=True) is None  # the file's own template wins
    assert template_family("llama", has_template=False) is None  # the runtime's default
    spec = LaunchSpec(model_name="g", model_path=Path("/g.gguf"), port=1, chat_template="gemma")
    assert LlamaServer("ls").build_command(spec)[-2:] == ["--chat-template", "gemma"]
    assert LlamaCppPython("py").build_command(spec)[-2:] == ["--chat_format", "gemma"]

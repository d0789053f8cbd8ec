"""llama.cpp, two ways: the native ``llama-server`` (preferred: batches parallel requests, faster on few
cores) and ``python -m llama_cpp.server`` from llama-cpp-python (always installed with llmctl).

Both adapters are pure argv builders. The thread count is always set explicitly: llama-cpp-python defaults
to half the logical cores, which on a 2-core machine made a 128-token completion take 4.4 s instead of 2.6 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from llmctl.runtimes.base import LaunchSpec, RuntimeInfo

# llama.cpp's own words for a load failure, e.g.
# "llama_model_load: error loading model: check_tensor_dims: tensor 'output_norm.weight' not found"
_LOAD_ERROR = re.compile(r"error loading model(?: architecture)?: (.+)|failed to allocate (.+)|"
                         r"unknown model architecture: (.+)|error: (.+)", re.IGNORECASE)


# a model file without a chat template gets its family's built-in one: (llama-server name, llama-cpp-python name)
_FAMILY_TEMPLATES = {"gemma": ("gemma", "gemma"), "chatml": ("chatml", "chatml")}
_ARCH_FAMILY = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
                "qwen": "chatml", "qwen2": "chatml", "qwen3": "chatml", "qwen2moe": "chatml", "qwen3moe": "chatml"}


def template_family(architecture: str | None, has_template: bool) -> str | None:
    """For a file with no chat template of its own, the built-in template family of its architecture."""
    if has_template or not architecture:
        return None
    return _ARCH_FAMILY.get(architecture)


def llama_failure_reason(lines: list[str]) -> str | None:
    """The first line in which llama.cpp says why loading failed."""
    for line in lines:
        m = _LOAD_ERROR.search(line)
        if m:
            return next(g for g in m.groups() if g).strip()
    return None


@dataclass(frozen=True, slots=True)
class LlamaServer:
    """The native ``llama-server`` binary."""

    executable: str
    name: str = "llama.cpp"
    launcher: str = "llama-server"

    def build_command(self, spec: LaunchSpec) -> list[str]:
        # llama-server splits -c across its --parallel slots; give every slot the full context asked for
        argv = [
            self.executable,
            "--model", str(spec.model_path),
            "--alias", spec.model_name,
            "--host", spec.host,
            "--port", str(spec.port),
            "--ctx-size", str(spec.ctx_size * spec.parallel),
            "--parallel", str(spec.parallel),
            "--threads", str(spec.threads),
            "--n-gpu-layers", str(spec.n_gpu_layers),
            "--jinja",
            "--no-webui",
        ]
        if spec.prompt_cache_mib is not None:
            argv += ["--cache-ram", str(spec.prompt_cache_mib)]
        if spec.chat_template:
            argv += ["--chat-template", _FAMILY_TEMPLATES.get(spec.chat_template, (spec.chat_template,))[0]]
        return argv + list(spec.extra_args)

    def health_path(self) -> str:
        return "/health"  # 503 while the model loads, 200 once it can serve

    def supports_embeddings(self) -> bool:
        return False  # llama-server's --embeddings restricts it to embedding models

    def failure_reason(self, lines: list[str]) -> str | None:
        return llama_failure_reason(lines)


@dataclass(frozen=True, slots=True)
class LlamaCppPython:
    """``python -m llama_cpp.server``: one request at a time, but always available."""

    python: str = sys.executable
    name: str = "llama.cpp"
    launcher: str = "llama_cpp.server"

    def build_command(self, spec: LaunchSpec) -> list[str]:
        argv = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(spec.model_path),
            "--model_alias", spec.model_name,
            "--host", spec.host,
            "--port", str(spec.port),
            "--n_ctx", str(spec.ctx_size),
            "--n_threads", str(spec.threads),
            "--n_threads_batch", str(spec.threads),
            "--n_gpu_layers", str(spec.n_gpu_layers),
            # its default lets every new request cut off the one streaming: queue them instead
            "--interrupt_requests", "false",
        ]
        if spec.chat_template:
            argv += ["--chat_format", _FAMILY_TEMPLATES.get(spec.chat_template, (spec.chat_template,) * 2)[1]]
        return argv + list(spec.extra_args)

    def health_path(self) -> str:
        # llama_cpp.server loads the model before it starts listening, so any 200 means loaded
        return "/v1/models"

    def supports_embeddings(self) -> bool:
        return False

    def failure_reason(self, lines: list[str]) -> str | None:
        return llama_failure_reason(lines)


def find_llama_server(configured: str | None = None) -> RuntimeInfo | None:
    """The native server: the configured path if it is executable, else ``llama-server`` on PATH."""
    exe = shutil.which(configured) if configured else shutil.which("llama-server")
    return RuntimeInfo("llama-server", exe) if exe else None


def pick_adapter(configured: str | None = None, prefer_native: bool = True) -> LlamaServer | LlamaCppPython:
    """The native server when found (or configured), otherwise llama-cpp-python's server."""
    if prefer_native:
        found = find_llama_server(configured)
        if found:
            return LlamaServer(found.executable)
    return LlamaCppPython()


_BASELINE_PROBE = "import psutil, llama_cpp.server.app; print(psutil.Process().memory_info().rss)"


def python_server_baseline(python: str = sys.executable) -> int | None:
    """RSS of a Python that has imported llama-cpp-python's server stack, before any model: the process
    baseline of the ``llama_cpp.server`` launcher. It varies with the environment's package versions (68-76 MiB
    seen here), so `llmctl fit` measures it instead of guessing. None when it cannot be measured."""
    try:
        out = subprocess.run([python, "-c", _BASELINE_PROBE], capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None

"""`llmctl serve` offloads as many layers as fit when a GPU is there, none when it is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_hardware import RTX_3090, RecordedNvml

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.store import ModelStore
from llmctl.runtimes.hardware import NvmlProbe

GiB = 1 << 30


def _spec(tiny_gguf: Path, probe, **overrides):
    paths = resolve_paths()
    entry = ModelStore(paths.data_dir).import_file(tiny_gguf, "tiny")
    controller = Controller(load_settings(paths, overrides), paths, gpu_probe=probe)
    return asyncio.run(controller._make_backend(entry)).spec


def test_all_layers_on_a_roomy_gpu(tiny_gguf: Path) -> None:
    spec = _spec(tiny_gguf, NvmlProbe(RecordedNvml([RTX_3090])))
    assert spec.n_gpu_layers == 3  # 2 blocks + the output layer


def test_none_without_a_gpu_or_room(tiny_gguf: Path) -> None:
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([]))).n_gpu_layers == 0
    full = {**RTX_3090, "free": 100 * (1 << 20)}  # 100 MiB free: the CUDA context alone does not fit
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([full]))).n_gpu_layers == 0


def test_configured_layers_win(tiny_gguf: Path) -> None:
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([RTX_3090])), **{"backends.n_gpu_layers": 1}).n_gpu_layers == 1


def test_a_model_profile_reaches_the_deployment(tiny_gguf: Path, tmp_path: Path) -> None:
    """[models.NAME] keys (llama.cpp's own flag names work) become the deployment's settings; the secret key is
    fresh for every launch."""
    overrides = {"models": {"tiny": {"ctx-size": 16384, "parallel": 3, "cache-type-k": "q8_0",
                                     "model-draft": str(tiny_gguf), "args": ["--top-k", "5"]}}}
    spec = _spec(tiny_gguf, NvmlProbe(RecordedNvml([])), **overrides)
    assert (spec.ctx_size, spec.parallel, spec.kv_type, spec.kv_type_v) == (16384, 3, "q8_0", "f16")
    assert spec.draft_model == tiny_gguf and spec.extra_args == ("--top-k", "5")
    assert spec.api_key and len(spec.api_key) >= 32
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([]))).api_key != spec.api_key
    # without a profile the global default context is capped at the trained 2048
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([])), **{"backends.ctx_size": 65536}).ctx_size == 2048

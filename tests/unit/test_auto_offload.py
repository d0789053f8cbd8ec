"""`llmctl serve` offloads as many layers as fit when a GPU is there, none when it is not."""

from __future__ import annotations

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
    return controller._make_backend(entry).spec


def test_all_layers_on_a_roomy_gpu(tiny_gguf: Path) -> None:
    spec = _spec(tiny_gguf, NvmlProbe(RecordedNvml([RTX_3090])))
    assert spec.n_gpu_layers == 3  # 2 blocks + the output layer


def test_none_without_a_gpu_or_room(tiny_gguf: Path) -> None:
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([]))).n_gpu_layers == 0
    full = {**RTX_3090, "free": 100 * (1 << 20)}  # 100 MiB free: the CUDA context alone does not fit
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([full]))).n_gpu_layers == 0


def test_configured_layers_win(tiny_gguf: Path) -> None:
    assert _spec(tiny_gguf, NvmlProbe(RecordedNvml([RTX_3090])), **{"backends.n_gpu_layers": 1}).n_gpu_layers == 1

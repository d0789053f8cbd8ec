"""The one place that turns settings and a hardware reading into the estimator's inputs, so `fit`, `models
info`, the TUI's fit badges and `serve`'s automatic offload all estimate the same launch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmctl.app.settings import Settings
from llmctl.catalog.estimate import Budget, FitRequest
from llmctl.runtimes.hardware import GpuInfo
from llmctl.runtimes.llama_cpp import pick_adapter


def machine_budget(gpus: Iterable[GpuInfo], ram_available: int) -> Budget:
    return Budget(tuple(g.vram_free for g in gpus), ram_available)


def serving_request(settings: Settings, ctx: int, **overrides: Any) -> FitRequest:
    """What `llmctl serve` would launch: its launcher, slots and prompt-cache cap at context ``ctx``."""
    b = settings.backends
    fields: dict[str, Any] = {
        "ctx": ctx,
        "parallel": b.parallel,
        "launcher": pick_adapter(b.llama_server, b.prefer_native).launcher,
        "prompt_cache_bytes": b.prompt_cache_mib << 20,
    }
    fields.update(overrides)
    return FitRequest(**fields)

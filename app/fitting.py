"""The one place that turns settings and a hardware reading into the estimator's inputs, so `fit`, `models
info`, the TUI's fit badges and `serve`'s automatic offload all estimate the same launch (``app.deployments``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from llmctl.app.deployments import launch_plan
from llmctl.app.settings import Settings
from llmctl.catalog.estimate import VLLM_PROFILE, Budget, FitRequest
from llmctl.runtimes.base import EngineUnavailable
from llmctl.runtimes.hardware import GpuInfo
from llmctl.runtimes.llama_cpp import XLlamaCpp


def machine_budget(gpus: Iterable[GpuInfo], ram_available: int) -> Budget:
    return Budget(tuple(g.vram_free for g in gpus), ram_available)


def serving_request(settings: Settings, ctx: int, *, runtime: str = "llama.cpp", **overrides: Any) -> FitRequest:
    """What `llmctl serve` would launch for a GGUF at context ``ctx``: its engine's memory rules, slots, KV type,
    flash attention and prompt-cache cap. With no llama.cpp engine installed, the default engine's rules."""
    if runtime == "vllm":  # what serve gives a vLLM deployment: backends.parallel requests of ctx in its KV space
        return FitRequest(**{"ctx": ctx, "parallel": settings.backends.parallel, "profile": VLLM_PROFILE,
                             **overrides})
    try:
        plan = launch_plan(settings)
    except EngineUnavailable:
        plan = None
    if plan is None:
        b = settings.backends
        return FitRequest(ctx=ctx, parallel=b.parallel, kv_type=b.kv_type, profile=XLlamaCpp().memory_profile(),
                          prompt_cache_bytes=b.prompt_cache_mib << 20, **overrides)
    return plan.fit_request(ctx=ctx, **overrides)


def entry_request(settings: Settings, entry, **overrides: Any) -> FitRequest:
    """What `serve` would launch for a registered model (its [models.NAME] profile included)."""
    try:
        return launch_plan(settings, entry).fit_request(**overrides)
    except EngineUnavailable:
        return serving_request(settings, settings.backends.ctx_size, **overrides)


@functools.lru_cache(maxsize=8)
def engine_baseline(profile) -> int | None:
    """The measured process baseline of the engine behind ``profile`` when it is Python-hosted, else None.
    Measured once per process (about a second: a Python imports the engine and reports its RSS)."""
    from llmctl.runtimes.llama_cpp import python_engine_baseline
    from llmctl.runtimes.registry import ENGINE_KEYS, make_engine

    for key in ENGINE_KEYS:
        try:
            engine = make_engine(key)
        except EngineUnavailable:
            continue
        if engine.name == profile.name:
            return python_engine_baseline(key)
    return None

"""The one place that turns settings and a hardware reading into the estimator's inputs, so `fit`, `models
info`, the TUI's fit badges and `serve`'s automatic offload all estimate the same launch (``app.deployments``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from llmctl.app.deployments import launch_plan
from llmctl.app.settings import Settings
from llmctl.catalog.context import UNKNOWN_TRAINED, ContextChoice, auto_context, fixed_context
from llmctl.catalog.estimate import Budget, FitRequest
from llmctl.catalog.facts import ModelFacts
from llmctl.runtimes.base import EngineUnavailable
from llmctl.runtimes.hardware import GpuInfo
from llmctl.runtimes.registry import fit_family, process_baseline

RECORDING_ENV = "LLMCTL_HW_RECORDING"  # a folder recorded from another machine (tests; see runtimes.hardware.recorded)


def machine_budget(gpus: Iterable[GpuInfo], ram_available: int, settings: Settings | None = None) -> Budget:
    """The budget of a machine as read, keeping ``backends.memory_margin`` free on each device (1 GiB without
    settings). With unified memory (Apple Silicon) one pool: the RAM available, of which the GPU may take up to its
    working-set limit (``vram_total``); its free share is not added to the RAM."""
    gpus = list(gpus)
    margin = {} if settings is None else {"margin": int(settings.backends.memory_margin)}
    if any(g.unified for g in gpus):
        limit = next(g.vram_total for g in gpus if g.unified)
        return Budget((limit,), ram_available, unified=True, **margin)
    return Budget(tuple(g.vram_free for g in gpus), ram_available, **margin)


def host_and_probe():
    """(Host, GpuProbe) of this machine, or of the recording ``LLMCTL_HW_RECORDING`` names."""
    import os
    from pathlib import Path

    from llmctl.runtimes.hardware import probes_for, this_host
    from llmctl.runtimes.hardware.recorded import recorded_host

    folder = os.environ.get(RECORDING_ENV)
    host = recorded_host(Path(folder)) if folder else this_host()
    return host, probes_for(host)


def fill_vram_from_table(gpus: Iterable[GpuInfo]) -> list[GpuInfo]:
    """A GPU read from a list that does not report memory (Vulkan's) gets its card's VRAM from llmctl's table,
    and says so."""

    from llmctl.catalog.errors import LlmctlError
    from llmctl.catalog.known import find_gpu

    out = []
    for g in gpus:
        if not g.vram_total and not g.unified:
            try:
                spec = find_gpu(g.name)
            except LlmctlError:
                out.append(g)
                continue
            vram = int(spec.vram_gib * (1 << 30))
            g = replace(g, vram_total=vram, vram_free=vram,
                        note=f"{g.note}; VRAM {spec.vram_gib:g} GiB from llmctl's table of {spec.name} "
                             "(assumed all free)")
        out.append(g)
    return out


def serving_request(settings: Settings, ctx: int, *, runtime: str | None = None, **overrides: Any) -> FitRequest:
    """What `llmctl serve` would launch at context ``ctx`` for a model of the engine family ``runtime`` (default:
    llama.cpp, for a GGUF): the launch plan when the family is planned (its engine's memory rules, slots, KV type,
    flash attention and prompt-cache cap), else, or with none of its engines installed, the family's launch at the
    backend defaults (``registry.FitFamily``)."""
    family = fit_family(runtime)
    plan = None
    if family.planned:
        try:
            plan = launch_plan(settings)
        except EngineUnavailable:
            plan = None
    if plan is None:
        b = settings.backends
        return family.default_request(ctx, parallel=b.parallel, kv_type=b.kv_type,
                                      prompt_cache_mib=b.prompt_cache_mib, overrides=overrides)
    return plan.fit_request(ctx=ctx, **overrides)


def entry_request(settings: Settings, entry, facts: ModelFacts, budget: Budget,
                  **overrides: Any) -> tuple[FitRequest, ContextChoice]:
    """What `serve` would launch for a registered model (its [models.NAME] profile included) with ``budget`` at
    hand, and the context it would get and why (``LaunchPlan.settle``)."""
    try:
        plan = launch_plan(settings, entry).settle(facts, budget, **overrides)
        assert plan.context is not None  # launch_plan always says why
        return plan.fit_request(**overrides), plan.context
    except EngineUnavailable:
        return serving_context(settings, facts, budget, entry.facts.get("context_length"), **overrides)


def serving_context(settings: Settings, facts: ModelFacts, budget: Budget, trained: int | None = None, *,
                    runtime: str | None = None, **overrides: Any) -> tuple[FitRequest, ContextChoice]:
    """What `serve` would launch for a model of these facts with ``budget`` at hand, without a registered entry
    (`llmctl fit` of a file or a catalog model): the launch at the context ``backends.ctx_size`` gives it."""
    trained = trained if isinstance(trained, int) and trained > 0 else (facts.ctx_train or None)
    asked = settings.backends.ctx_size
    if asked != "auto":
        choice = fixed_context(asked, trained, profile=False)
        return serving_request(settings, choice.ctx, runtime=runtime, **overrides), choice
    req = serving_request(settings, trained or UNKNOWN_TRAINED, runtime=runtime, **overrides)
    choice = auto_context(facts, req, budget, trained)
    return replace(req, ctx=choice.ctx), choice


@functools.lru_cache(maxsize=8)
def engine_baseline(profile) -> int | None:
    """The measured process baseline of the engine behind ``profile`` when it is Python-hosted, else None.
    Measured once per process (about a second: a Python imports the engine and reports its RSS)."""
    return process_baseline(profile)

"""The context a deployment gets (``catalog.context``, ``LaunchPlan.settle``): the trained length, capped by the
memory at hand with the margin kept free, never below llama.cpp's --fit floor; a profile's ctx-size wins; and the
pool the slots share is counted once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from llmctl.app.deployments import launch_plan
from llmctl.app.settings import BackendSettings, ModelProfile, Settings
from llmctl.catalog.context import AUTO_FLOOR, auto_context, fixed_context
from llmctl.catalog.estimate import KV_PAD, Budget, FitRequest, estimate
from llmctl.catalog.known import facts_for, find_model
from llmctl.catalog.store import ModelStore

GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture(scope="module")
def llama8b():
    model, _ = find_model("llama-3.1-8b-instruct")
    return facts_for(model, "Q4_K_M")  # trained on 131,072 tokens


REQ = FitRequest(parallel=4, gpu_layers=0)


def test_the_trained_length_when_memory_allows(llama8b) -> None:
    choice = auto_context(llama8b, REQ, Budget(ram_available=1 << 40), 131072)
    assert (choice.ctx, choice.why) == (131072, "trained")
    assert "trained length" in choice.detail


def test_memory_caps_it_keeping_the_margin(llama8b) -> None:
    """The largest pool (in whole 256-cell pads, as llama.cpp pads it) that leaves the margin free: one pad more
    would eat into the margin."""
    need_20k = estimate(llama8b, replace(REQ, ctx=20480), Budget(ram_available=1 << 40)).total_bytes
    budget = Budget(ram_available=need_20k + GiB + 100 * 1024, margin=GiB)  # 20,480 fits, 20,736 would not
    choice = auto_context(llama8b, REQ, budget, 131072)
    assert (choice.ctx, choice.why) == (20480, "memory")
    assert "keeping the 1.0 GiB margin free" in choice.detail
    assert estimate(llama8b, replace(REQ, ctx=choice.ctx), budget).fits == "yes"
    assert estimate(llama8b, replace(REQ, ctx=choice.ctx + KV_PAD), budget).fits == "tight"
    # a larger margin gives a smaller context from the same memory
    assert auto_context(llama8b, REQ, replace(budget, margin=2 * GiB), 131072).ctx < 20480


def test_never_below_the_floor_and_a_short_trained_length_is_kept(llama8b) -> None:
    starved = auto_context(llama8b, REQ, Budget(ram_available=2 * GiB), 131072)
    assert (starved.ctx, starved.why) == (AUTO_FLOOR, "memory")  # placement then says it does not fit
    assert "less than the 1.0 GiB margin" in starved.detail
    short = auto_context(llama8b, REQ, Budget(ram_available=2 * GiB), 2048)
    assert (short.ctx, short.why) == (2048, "memory")  # the floor is never above the trained length


def test_gpu_layers_are_not_traded_for_context(llama8b) -> None:
    """With a GPU the layers that fit at the floor stay on it: a longer context never moves layers to the CPU."""
    budget = Budget(vram_free=(8 * GiB,), ram_available=64 * GiB)
    at_floor = estimate(llama8b, FitRequest(ctx=AUTO_FLOOR, parallel=4), budget)
    choice = auto_context(llama8b, FitRequest(parallel=4), budget, 131072)
    got = estimate(llama8b, FitRequest(ctx=choice.ctx, parallel=4, gpu_layers=at_floor.gpu_layers), budget)
    assert at_floor.gpu_layers == llama8b.n_layers + 1 and got.gpu_layers == at_floor.gpu_layers
    assert got.fits == "yes" and AUTO_FLOOR < choice.ctx < 131072 and choice.why == "memory"


def test_the_pool_is_counted_once_whatever_the_slots(llama8b) -> None:
    one, four = (estimate(llama8b, FitRequest(ctx=8192, parallel=n, gpu_layers=0), Budget(ram_available=1 << 40))
                 for n in (1, 4))
    assert one.kv_cache_bytes == four.kv_cache_bytes == 32 * 8192 * 1024 * 2 * 2  # 32 layers x 8 KV heads x 128
    assert one.kv_cells == four.kv_cells == 8192
    # what more slots add is one output row each (and their logits in the compute graph), not more KV
    assert 0 < four.total_bytes - one.total_bytes < 8 * MiB


def test_fixed_contexts() -> None:
    assert fixed_context(65536, 8192, profile=True).ctx == 65536  # a profile's ctx-size is honoured as given
    assert "above the 8,192 it was trained on" in fixed_context(65536, 8192, profile=True).detail
    assert (fixed_context(65536, 8192, profile=False).ctx, fixed_context(65536, 8192, profile=False).why) == \
        (8192, "trained")  # backends.ctx_size is capped at the trained length
    assert fixed_context(2048, 8192, profile=False).why == "setting"


def test_the_launch_plan_settles_auto_and_a_profile_wins(llama8b, tmp_path: Path) -> None:
    small = Budget(ram_available=6 * GiB)
    plan = launch_plan(Settings(), ctx_train=131072)
    assert plan.ctx_auto and plan.ctx_size == 131072 and plan.parallel == 4  # the defaults
    settled = plan.settle(llama8b, small, gpu_layers=0)
    assert settled.context is not None and settled.context.why == "memory"
    assert AUTO_FLOOR <= settled.ctx_size < 131072 and not settled.ctx_auto
    launched = settled.deployment("m", Path("/m.gguf"), port=1, n_gpu_layers=0, threads=1, api_key=None)
    assert (launched.ctx_size, launched.context) == (settled.ctx_size, settled.context)  # what ps shows
    entry = ModelStore(tmp_path / "data").import_file(write_tiny_llama(tmp_path / "t.gguf", ctx=8192), "m")
    assert launch_plan(Settings(), entry).ctx_size == 8192  # auto starts from the file's trained length
    pinned = launch_plan(Settings(models={"m": ModelProfile(ctx_size=1024)}), entry)
    assert pinned.ctx_size == 1024 and not pinned.ctx_auto  # the profile wins over auto ...
    assert pinned.settle(llama8b, small) is pinned  # ... and memory does not touch it
    assert pinned.context is not None and pinned.context.why == "profile"
    fixed = launch_plan(Settings(backends=BackendSettings(ctx_size=2048)), ctx_train=131072)
    assert (fixed.ctx_size, fixed.ctx_auto, fixed.context and fixed.context.why) == (2048, False, "setting")

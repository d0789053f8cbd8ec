"""The largest context that fits: found with the estimator itself, at its edge."""

from __future__ import annotations

from llmctl.catalog.context_fit import STEP, fits_at, largest_context
from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.known import facts_for, find_model

GiB = 1 << 30


def test_the_largest_context_is_the_estimators_edge() -> None:
    model, _ = find_model("llama-3.1-8b-instruct")
    facts = facts_for(model, "Q4_K_M")
    req = FitRequest(parallel=2, gpu_layers=0)
    budget = Budget(ram_available=20 * GiB)  # the weights and 2 x 32k of KV fit, 2 x 128k do not
    ctx = largest_context(facts, req, budget, upper=131072)
    assert ctx is not None and ctx % STEP == 0 and 32768 < ctx < 131072
    assert fits_at(facts, req, budget, ctx) and not fits_at(facts, req, budget, ctx + STEP)
    assert estimate(facts, FitRequest(ctx=ctx, parallel=2, gpu_layers=0), budget).fits == "yes"


def test_the_trained_length_when_it_fits_and_none_when_nothing_does() -> None:
    model, _ = find_model("llama-3.1-8b-instruct")
    facts = facts_for(model, "Q4_K_M")
    assert largest_context(facts, FitRequest(gpu_layers=0), Budget(ram_available=1 << 40), upper=131072) == 131072
    assert largest_context(facts, FitRequest(gpu_layers=0), Budget(ram_available=2 * GiB), upper=131072) is None

"""The largest context a launch can have on a machine: the estimator asked at a few context lengths (it grows with the
context, so a bisection finds the edge). No arithmetic of its own: what fits is what ``estimate`` says fits."""

from __future__ import annotations

from dataclasses import replace

from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.facts import ModelFacts

STEP = 256  # contexts are tried in multiples of this (llama.cpp pads the KV cache to 256 cells)


def fits_at(facts: ModelFacts, req: FitRequest, budget: Budget, ctx: int) -> bool:
    """Whether the launch ``req`` at context ``ctx`` (per slot) fits with the margin kept free (a "yes")."""
    return estimate(facts, replace(req, ctx=ctx), budget).fits == "yes"


def largest_context(facts: ModelFacts, req: FitRequest, budget: Budget, *, upper: int,
                    lower: int = STEP) -> int | None:
    """The largest context per slot in ``[lower, upper]`` at which ``req`` fits: ``upper`` itself when it does,
    else a multiple of :data:`STEP`; None when not even ``lower`` fits."""
    if fits_at(facts, req, budget, upper):
        return upper
    if not fits_at(facts, req, budget, lower):
        return None
    lo, hi = -(-lower // STEP), upper // STEP  # lo*STEP fits (or is lower's step), hi*STEP may not
    if lo * STEP > upper or not fits_at(facts, req, budget, lo * STEP):
        return lower
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits_at(facts, req, budget, mid * STEP):
            lo = mid
        else:
            hi = mid - 1
    return lo * STEP

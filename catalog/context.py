"""The context a deployment gets, and why: the decision behind ``ctx-size = auto`` (the default).

A profile's explicit ``ctx-size`` wins as given. A global ``backends.ctx_size`` number is capped at the model's
trained length. ``auto`` takes the model's trained length, capped by what fits in the memory the ledger can give
the model while keeping the margin free (the anchors: llama-server's ``--fit``, which shrinks the context to
leave 1 GiB per device, never below ``--fit-ctx`` 4096; vLLM's ``--max-model-len auto``, the trained length or
what the KV cache holds). The context is the KV pool that every slot shares, so a long request may use all of
it. Pure: the caller supplies the model's facts, the launch (``FitRequest``) and the memory (``Budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from llmctl.catalog.context_fit import largest_context
from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.facts import ModelFacts

AUTO_FLOOR = 4096  # llama.cpp's --fit never shrinks the context below --fit-ctx (4096): nor does auto
UNKNOWN_TRAINED = 4096  # a model whose file does not say its trained length (as llmctl's old fixed default)
Why = Literal["profile", "setting", "trained", "memory"]


@dataclass(frozen=True, slots=True)
class ContextChoice:
    """The context a deployment gets (the shared KV pool, in tokens) and why, in words for ``ps`` and the TUI."""

    ctx: int
    why: Why
    detail: str

    def to_json(self) -> dict:
        return {"ctx": self.ctx, "why": self.why, "detail": self.detail}


def fixed_context(asked: int, trained: int | None, *, profile: bool) -> ContextChoice:
    """A context someone wrote down: a profile's is honoured as given (llama.cpp warns past the trained
    length); the global setting is capped at the trained length."""
    if profile:
        over = f", above the {trained:,} it was trained on" if trained and asked > trained else ""
        return ContextChoice(asked, "profile", f"{asked:,}: the model's profile sets ctx-size{over}")
    if trained and asked > trained:
        return ContextChoice(trained, "trained", f"{trained:,}: the model's trained length (backends.ctx_size "
                                                 f"{asked:,} is above it)")
    return ContextChoice(asked, "setting", f"{asked:,}: backends.ctx_size")


def auto_context(facts: ModelFacts, req: FitRequest, budget: Budget, trained: int | None = None) -> ContextChoice:
    """The largest context up to the trained length whose launch (``req`` at that context) leaves the budget's
    margin free on every device: "yes" in the estimator's words. With a GPU the layers the estimate puts there at
    the floor stay there (a longer context is never bought by moving layers to the CPU). Never below
    ``AUTO_FLOOR`` (or the trained length when shorter): when even that leaves less than the margin, the floor
    is chosen and placement says whether it fits."""
    top = trained or facts.ctx_train or 0
    if top <= 0:
        top = UNKNOWN_TRAINED
    floor = min(top, AUTO_FLOOR)
    at_floor = estimate(facts, replace(req, ctx=floor), budget)
    if req.gpu_layers is None and at_floor.gpu_layers:
        req = replace(req, gpu_layers=at_floor.gpu_layers)

    got = largest_context(facts, req, budget, upper=top, lower=floor)
    if got == top:
        return ContextChoice(top, "trained", f"{top:,}: the model's trained length")
    margin = _gib(budget.margin)
    if got is None:
        return ContextChoice(floor, "memory", f"{floor:,}: the floor; less than the {margin} margin would be left "
                                              "even at this context")
    return ContextChoice(got, "memory", f"{got:,} of the trained {top:,}: the most that fits in the memory "
                                        f"models may use, keeping the {margin} margin free")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"

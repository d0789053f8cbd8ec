"""Which catalog model, quant and context to run on a given machine, best quality first, with the reasons.

Quality is judged by (effective) parameters and the quant's quality; a model that fits only tightly, or that
would run slower than a reading pace because layers stay on the CPU, ranks lower. Speed is a rough guide:
token generation reads every active weight once per token, so tokens/s ≈ efficiency × memory bandwidth / bytes
read per token, with the GPU part at the GPU's bandwidth and the rest at RAM's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from llmctl.catalog.estimate import Budget, Estimate, FitRequest, estimate
from llmctl.catalog.facts import ModelFacts
from llmctl.catalog.known import QUANT_QUALITY, CatalogModel, facts_for, load_catalog

GPU_EFFICIENCY = 0.7  # share of peak bandwidth llama.cpp's decode reaches on a GPU
CPU_EFFICIENCY = 0.6
READING_PACE = 8.0  # tokens/s below which a chat feels slow


@dataclass(slots=True)
class Option:
    model: str
    quant: str
    ctx: int
    runtime: str
    fits: str
    gpu_layers: int
    n_layers: int
    total_bytes: int
    gpu_bytes: int
    cpu_bytes: int
    headroom_bytes: int
    tokens_per_s: float
    score: float
    license: str
    why: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def expected_tokens_per_s(model: CatalogModel, facts: ModelFacts, est: Estimate, gpu_bandwidth_gbs: float,
                          ram_bandwidth_gbs: float) -> float:
    active = (model.active_params_b or model.params_b) / model.params_b
    per_token = facts.weights_bytes * active
    gpu_share = est.gpu_layers / (facts.n_layers + 1) if est.gpu_layers else 0.0
    seconds = 0.0
    if gpu_share:
        seconds += per_token * gpu_share / (gpu_bandwidth_gbs * 1e9 * GPU_EFFICIENCY)
    seconds += per_token * (1 - gpu_share) / (ram_bandwidth_gbs * 1e9 * CPU_EFFICIENCY)
    return round(1 / seconds, 1) if seconds else 0.0


def _score(model: CatalogModel, quant: str, fits: str, tps: float, partial_offload: bool) -> float:
    """log2 of effective parameters (each doubling is worth a point), minus the quant's quality loss (weighted so
    that Q4_K_M of a model beats Q8_0 of one half its size), minus penalties for a tight fit (less than the margin
    the engines keep stays free: it counts as a model half its size, so an option with room ranks first), for
    layers left on the CPU and for running below reading pace."""
    score = math.log2(model.effective_params_b) + 6 * math.log2(QUANT_QUALITY.get(quant, 0.9))
    if fits == "tight":
        score -= 1.0
    if partial_offload:
        score -= 0.5
    if tps < READING_PACE:
        score -= 3 * (1 - tps / READING_PACE)
    return round(score, 3)


def model_request(model: CatalogModel, launch: FitRequest, ctx: int) -> FitRequest:
    """The launch a catalog model is judged at: ``launch`` at ``ctx`` capped at the model's trained length (as
    `serve` caps the default context). ``llmctl fit NAME:QUANT --ctx N`` with the option's ctx asks the same."""
    return replace(launch, ctx=min(ctx, model.arch.ctx_max))


def quant_options(model: CatalogModel, budget: Budget, launch: FitRequest, *, ctx: int = 8192,
                  gpu_bandwidth_gbs: float = 0.0, ram_bandwidth_gbs: float = 50.0) -> list[Option]:
    """Every quant of ``model`` that fits, best first: one ``estimate`` per quant, the same one `fit` makes."""
    req = model_request(model, launch, ctx)
    options = []
    for quant in model.gguf.quants:
        facts = facts_for(model, quant)
        est = estimate(facts, req, budget)
        if est.fits == "no":
            continue
        tps = expected_tokens_per_s(model, facts, est, gpu_bandwidth_gbs, ram_bandwidth_gbs)
        partial = bool(budget.vram_free) and est.gpu_layers <= est.n_layers
        options.append(Option(model.name, quant, req.ctx, est.runtime, est.fits, est.gpu_layers, est.n_layers + 1,
                              est.total_bytes, est.gpu_bytes, est.cpu_bytes, est.headroom_bytes, tps,
                              _score(model, quant, est.fits, tps, partial), model.license))
    options.sort(key=lambda o: o.score, reverse=True)
    return options


def recommend(
    budget: Budget,
    *,
    use: str | None = None,
    ctx: int = 8192,
    gpu_bandwidth_gbs: float = 0.0,
    ram_bandwidth_gbs: float = 50.0,
    launch: FitRequest | None = None,
) -> tuple[list[Option], list[str]]:
    """(ranked options that fit, one per model; reasons for models left out). ``launch`` is how the models would
    be started (launcher, slots, caches); its context is replaced by each model's share of ``ctx``."""
    launch = launch or FitRequest()
    options: list[Option] = []
    left_out: list[str] = []
    over: dict[str, str] = {}  # why a model's higher-precision quant lost, when one did
    for model in load_catalog().models:
        if use and use not in model.uses:
            continue
        ranked = quant_options(model, budget, launch, ctx=ctx, gpu_bandwidth_gbs=gpu_bandwidth_gbs,
                               ram_bandwidth_gbs=ram_bandwidth_gbs)
        if ranked:
            options.append(ranked[0])
            if len(ranked) > 1 and QUANT_QUALITY.get(ranked[1].quant, 0) > QUANT_QUALITY.get(ranked[0].quant, 0):
                over[model.name] = f"{ranked[0].quant} over {ranked[1].quant}: {_loss(ranked[1], ranked[0])}"
        else:
            smallest = min(model.gguf.quants, key=model.gguf_bytes)
            need = estimate(facts_for(model, smallest), model_request(model, launch, ctx), budget)
            left_out.append(f"{model.name}: even {smallest} does not fit ({need.reason})")
    options.sort(key=lambda o: o.score, reverse=True)
    _explain(options)
    for o in options:
        if o.model in over:
            o.why.append(over[o.model])
    return options, left_out


def _loss(better: Option, chosen: Option) -> str:
    """Why the higher-precision quant ``better`` lost to ``chosen``."""
    if better.gpu_layers < better.n_layers and chosen.gpu_layers >= chosen.n_layers:
        return f"{better.quant} would leave {better.n_layers - better.gpu_layers} layers on the CPU"
    if better.fits == "tight" and chosen.fits == "yes":
        return f"{better.quant} would fit only tightly"
    if better.tokens_per_s < READING_PACE:
        return f"{better.quant} would run at ~{better.tokens_per_s:g} tok/s"
    return f"{better.quant} scores lower here"


def _explain(options: list[Option]) -> None:
    if not options:
        return
    top = options[0]
    top.why.insert(0, f"best quality that fits: {_where(top)}")
    catalog = {m.name: m for m in load_catalog().models}
    for o in options[1:]:
        m, t = catalog[o.model], catalog[top.model]
        if m.effective_params_b < t.effective_params_b * 0.9:
            o.why.append(f"smaller model ({m.effective_params_b:.1f}B effective vs {t.effective_params_b:.1f}B)")
        if QUANT_QUALITY.get(o.quant, 1) < QUANT_QUALITY.get(top.quant, 1) - 0.005:
            o.why.append(f"lower-precision quant ({o.quant} vs {top.quant})")
        if o.fits == "tight":
            o.why.append("fits only tightly")
        if o.gpu_layers and o.gpu_layers < o.n_layers:
            o.why.append(f"only {o.gpu_layers} of {o.n_layers} layers on the GPU")
        if o.tokens_per_s < READING_PACE:
            o.why.append(f"slow here (~{o.tokens_per_s} tok/s)")
        if not o.why:
            o.why.append(f"as good as #1: {_where(o)}")


def _where(o: Option) -> str:
    place = ("all on the GPU" if o.gpu_layers >= o.n_layers else f"{o.gpu_layers} of {o.n_layers} layers on the GPU"
             ) if o.gpu_layers else "on the CPU"
    return f"{o.quant}, {place}, {o.headroom_bytes / (1 << 30):.1f} GiB left, ~{o.tokens_per_s:g} tok/s"

"""From settings and a registered model to what will be launched: the engine and the deployment's settings.

One place, so `serve`, `fit`, `models info`, the TUI's fit badges and automatic offload all plan the same launch.
Precedence: ``[models.NAME]`` over ``[backends]`` over the engine's defaults. The context is the KV pool the
slots share; a per-model ``ctx-size`` is honoured as given (llama.cpp warns), a global number is capped at the
model's trained length, and ``auto`` (the default) is the trained length until ``LaunchPlan.settle`` caps it by
the memory at hand (``catalog.context``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from llmctl.app.settings import ModelProfile, Settings
from llmctl.catalog.context import UNKNOWN_TRAINED, ContextChoice, auto_context, fixed_context
from llmctl.catalog.errors import ConfigError, LlmctlError
from llmctl.catalog.estimate import Budget, FitRequest
from llmctl.catalog.facts import ModelFacts
from llmctl.catalog.store import ModelEntry, ModelStore
from llmctl.runtimes.base import ChecksArgs, Deployment, Engine, EngineUnavailable
from llmctl.runtimes.llama_cpp import template_family
from llmctl.runtimes.registry import VllmWhere, pick_engine

_FLASH = {"auto": None, "on": True, "off": False}


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Everything about a deployment that does not depend on this launch (port, key) or on the GPU."""

    engine: Engine
    ctx_size: int
    parallel: int
    kv_type: str
    kv_type_v: str | None
    flash_attn: bool | None
    n_gpu_layers: int | None  # None: as many as the estimate says fit
    prompt_cache_mib: int | None
    chat_template: str | None = None
    draft_model: Path | None = None
    embeddings: bool = False
    pooling: str | None = None
    mmproj: Path | None = None
    extra_args: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # engines that place themselves on devices (vLLM)
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    gpu_memory_utilization: float | None = None
    speculative_ngram: bool = False
    context: ContextChoice | None = None  # why ctx_size is what it is; None only for plans made by hand
    ctx_auto: bool = False  # ctx_size is the trained length, to be capped by memory (``settle``)

    def settle(self, facts: ModelFacts, budget: Budget, **overrides) -> LaunchPlan:
        """This plan with an ``auto`` context decided against ``budget`` (what the ledger can give the model, or
        the machine's free memory for `fit`): the trained length, or less where memory is short."""
        if not self.ctx_auto:
            return self
        choice = auto_context(facts, self.fit_request(**overrides), budget, self.ctx_size)
        return replace(self, ctx_size=choice.ctx, context=choice, ctx_auto=False)

    def fit_request(self, **overrides) -> FitRequest:
        """The estimator's input for exactly this launch."""
        profile = self.engine.memory_profile()
        fields = {
            "ctx": self.ctx_size, "parallel": self.parallel, "kv_type": self.kv_type, "kv_type_v": self.kv_type_v,
            "flash_attn": self.flash_attn, "profile": profile,
            "prompt_cache_bytes": (self.prompt_cache_mib or 0) << 20 if profile.prompt_cache else 0,
            "gpu_layers": self.n_gpu_layers, "tensor_parallel": self.tensor_parallel,
        }
        if self.gpu_memory_utilization is not None:
            fields["gpu_memory_utilization"] = self.gpu_memory_utilization
        fields.update(overrides)
        return FitRequest(**fields)

    def deployment(self, name: str, path: Path, *, port: int, n_gpu_layers: int, threads: int,
                   api_key: str | None, run_dir: Path | None = None) -> Deployment:
        """This plan as one launch: the per-launch facts (port, key, private run folder) and the GPU layers and
        threads decided for this machine. ``serve`` and tests/fit_probe.py both launch through here."""
        return Deployment(
            model_name=name, model_path=path, port=port, ctx_size=self.ctx_size, parallel=self.parallel,
            n_gpu_layers=n_gpu_layers, threads=threads, kv_type=self.kv_type, kv_type_v=self.kv_type_v,
            flash_attn=self.flash_attn, prompt_cache_mib=self.prompt_cache_mib, chat_template=self.chat_template,
            draft_model=self.draft_model, embeddings=self.embeddings, pooling=self.pooling, mmproj=self.mmproj,
            api_key=api_key, extra_args=self.extra_args, tensor_parallel=self.tensor_parallel,
            pipeline_parallel=self.pipeline_parallel, gpu_memory_utilization=self.gpu_memory_utilization,
            speculative_ngram=self.speculative_ngram, run_dir=run_dir, context=self.context,
        )


_NO_PROFILE = ModelProfile()  # read-only: made once, not per request (the gateway asks on every one)


def profile_for(settings: Settings, name: str | None) -> ModelProfile:
    return settings.models.get(name or "") or _NO_PROFILE


def vllm_where(settings: Settings, data_dir: Path | None = None) -> VllmWhere:
    """Where vLLM is looked for: ``engines.vllm.python``, else the managed venv under the data folder."""
    if data_dir is None:
        from llmctl.app.paths import resolve_paths

        data_dir = resolve_paths().data_dir
    return VllmWhere(data_dir, settings.engines.vllm.python)


def launch_plan(settings: Settings, entry: ModelEntry | None = None, *, fmt: str = "gguf",
                ctx_train: int | None = None, store: ModelStore | None = None,
                data_dir: Path | None = None) -> LaunchPlan:
    """The plan for ``entry`` (or, with no entry, for a model of format ``fmt`` and trained context ``ctx_train``:
    what `fit` asks about catalog models). ``backends.engine`` chooses among GGUF engines; a safetensors model
    goes to its profile's engine or the one engine that serves the format (vLLM)."""
    b = settings.backends
    prof = profile_for(settings, entry.name if entry else None)
    fmt = entry.format if entry else fmt
    choice = prof.engine or (b.engine if fmt == "gguf" else "auto")
    engine = pick_engine(fmt, choice, llama_server=b.llama_server,
                         vllm=vllm_where(settings, data_dir or (store.root if store else None)))
    multi_slot = engine.memory_profile().multi_slot
    notes: list[str] = []
    trained = entry.facts.get("context_length") if entry else ctx_train
    trained = trained if isinstance(trained, int) and trained > 0 else None
    if prof.ctx_size is not None:
        context = fixed_context(prof.ctx_size, trained, profile=True)
        if trained and trained < prof.ctx_size:
            notes.append(f"ctx-size {prof.ctx_size} is above the {trained} tokens it was trained on (set in [models])")
    elif b.ctx_size != "auto":
        context = fixed_context(b.ctx_size, trained, profile=False)
    else:
        top = trained or UNKNOWN_TRAINED
        context = ContextChoice(top, "trained", f"{top:,}: the model's trained length" if trained else
                                f"{top:,}: the model does not say its trained length")
    ctx = context.ctx
    kv_k = prof.cache_type_k or b.kv_type
    kv_v = prof.cache_type_v or b.kv_type
    draft = _resolve_draft(prof.model_draft, store) if prof.model_draft else None
    return LaunchPlan(
        engine=engine,
        ctx_size=ctx,
        parallel=(prof.parallel or b.parallel) if multi_slot else 1,
        kv_type=kv_k,
        kv_type_v=kv_v if kv_v and kv_v != kv_k else None,
        flash_attn=_FLASH[prof.flash_attn or b.flash_attn],
        n_gpu_layers=prof.n_gpu_layers if prof.n_gpu_layers is not None else b.n_gpu_layers,
        prompt_cache_mib=b.prompt_cache_mib,
        chat_template=template_family(entry.facts.get("architecture"), entry.facts.get("has_chat_template", True))
        if entry else None,
        draft_model=draft,
        embeddings=prof.embeddings,
        pooling=prof.pooling,
        mmproj=Path(entry.projector) if entry is not None and entry.projector else None,
        extra_args=tuple(prof.args),
        notes=tuple(notes),
        tensor_parallel=prof.tensor_parallel or 1,
        pipeline_parallel=prof.pipeline_parallel or 1,
        gpu_memory_utilization=prof.gpu_memory_utilization,
        speculative_ngram=prof.speculative == "ngram",
        context=context,
        ctx_auto=prof.ctx_size is None and b.ctx_size == "auto",
    )


def check_profile_args(settings: Settings, name: str, prof: ModelProfile, store: ModelStore | None = None,
                       data_dir: Path | None = None) -> None:
    """ConfigError when the engine that would serve ``name`` with profile ``prof`` cannot take its ``args`` (asked
    of the engine; one that cannot say, or is not installed here, is not asked). A model not registered yet is
    taken for a GGUF, what `llmctl pull` and `import` register."""
    if not prof.args:
        return
    entry = store.get(name) if store is not None else None
    fmt = entry.format if entry is not None else "gguf"
    choice = prof.engine or (settings.backends.engine if fmt == "gguf" else "auto")
    try:
        engine = pick_engine(fmt, choice, llama_server=settings.backends.llama_server,
                             vllm=vllm_where(settings, data_dir or (store.root if store else None)))
    except EngineUnavailable:
        return
    if isinstance(engine, ChecksArgs):
        engine.check_args(prof.args)


def _resolve_draft(ref: str, store: ModelStore | None) -> Path:
    """A draft model given as a registered name, a path to a GGUF, or a Hugging Face model folder (vLLM)."""
    if store is not None:
        try:
            entry = store.get(ref)
        except LlmctlError:  # not a valid model name: a path
            entry = None
        if entry is not None:
            return Path(entry.path)
    path = Path(ref).expanduser()
    if not path.is_file() and not (path / "config.json").is_file():
        raise ConfigError(f"model-draft {ref!r} is neither a registered model nor a model file or folder",
                          "set it to a name from `llmctl models list`, a path to a GGUF, or (vLLM) a model folder.")
    return path

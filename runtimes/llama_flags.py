"""llama-server's flags as ``xllamacpp.CommonParams`` fields: one table, read by the default engine's wrapper
(``runtimes.xllamacpp_server``) to build its parameters and by the engine (``llama_cpp.XLlamaCpp.check_args``) to
refuse, when a profile is written and again before a launch, a flag the wheel cannot express.

Pure: :func:`parse` turns an argv into ``(field path, value)`` assignments without importing xllamacpp; values
that name something only the wheel has (an enum member, a LoRA adapter, a file to read) are small records the
wrapper resolves (:func:`apply`). Each row keeps llama-server's own long and short names (llama.cpp
``common/arg.cpp``), so a ``llama-server`` command line pastes into ``args``; a later flag wins over an earlier one,
as in llama-server, which is how a profile's ``args`` override what llmctl sets.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmctl.catalog.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Member:
    """An enum member of the wheel, by its class and member name (``llama_pooling_type.LLAMA_POOLING_TYPE_RANK``)."""

    cls: str
    name: str


@dataclass(frozen=True, slots=True)
class Lora:
    """A LoRA adapter appended to ``lora_adapters``."""

    path: str
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class FileText:
    """The text of a file, read by the wrapper when it builds the parameters (``--chat-template-file``)."""

    path: str


@dataclass(frozen=True, slots=True)
class Grammar:
    """A grammar for ``sampling.grammar`` (GBNF text, or a JSON schema the wheel converts)."""

    text: str
    schema: bool = False


@dataclass(frozen=True, slots=True)
class Prefix:
    """The leading entries of a fixed-length list field (``tensor_split``, ``fit_params_target``)."""

    values: tuple[float | int, ...]


Assignment = tuple[str, Any]


def _int(text: str) -> int:
    return int(text, 0)


def _bool01(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _choice(cls: str, prefix: str, words: dict[str, str]) -> Callable[[str], Member]:
    def convert(text: str) -> Member:
        if text not in words:
            raise ValueError(f"one of {', '.join(words)}")
        return Member(cls, prefix + words[text])
    return convert


def _loras(text: str) -> list[Lora]:
    """``FNAME[,FNAME...]`` (``--lora``) or ``FNAME:SCALE[,...]`` (``--lora-scaled``)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        path, sep, scale = part.rpartition(":")
        out.append(Lora(path, float(scale)) if sep and path else Lora(part))
    return out


def _floats(text: str) -> Prefix:
    return Prefix(tuple(float(v) for v in text.replace("/", ",").split(",") if v.strip()))


def _mib_list(text: str) -> Prefix:
    return Prefix(tuple(int(v) << 20 for v in text.split(",") if v.strip()))


def _kwargs(text: str) -> dict[str, str]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a JSON object")
    return {str(k): json.dumps(v) for k, v in data.items()}


_KV = {t: t.upper() for t in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")}
_kv = _choice("ggml_type", "GGML_TYPE_", _KV)
_flash = _choice("llama_flash_attn_type", "LLAMA_FLASH_ATTN_TYPE_",
                 {"auto": "AUTO", "on": "ENABLED", "off": "DISABLED", "1": "ENABLED", "0": "DISABLED"})
_pool = _choice("llama_pooling_type", "LLAMA_POOLING_TYPE_",
                {"none": "NONE", "mean": "MEAN", "cls": "CLS", "last": "LAST", "rank": "RANK"})
_SPEC_TYPES = {"none": "NONE", "draft": "DRAFT_SIMPLE", "eagle3": "DRAFT_EAGLE3", "mtp": "DRAFT_MTP",
               "ngram-simple": "NGRAM_SIMPLE", "ngram-map-k": "NGRAM_MAP_K", "ngram-map-k4v": "NGRAM_MAP_K4V",
               "ngram-mod": "NGRAM_MOD", "ngram-cache": "NGRAM_CACHE"}


def _spec_types(text: str) -> list[Member]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words or any(w not in _SPEC_TYPES for w in words):
        raise ValueError(f"one or more of {', '.join(_SPEC_TYPES)}")
    return [Member("common_speculative_type", "COMMON_SPECULATIVE_TYPE_" + _SPEC_TYPES[w]) for w in words]


def _on_off(word: str) -> bool:
    if word not in ("on", "off", "auto", "1", "0"):
        raise ValueError("on, off or auto")
    return word in ("on", "1")


@dataclass(frozen=True, slots=True)
class Flag:
    """One llama-server flag: its names, how its value converts (None: a switch), the fields it sets, and for a
    switch the value each field gets."""

    names: tuple[str, ...]
    fields: tuple[str, ...]
    convert: Callable[[str], Any] | None = None
    const: tuple[Any, ...] = (True,)


def _v(names: str, fields: str, convert: Callable[[str], Any]) -> Flag:
    return Flag(tuple(names.split()), tuple(fields.split()), convert)


def _s(names: str, fields: str, *const: Any) -> Flag:
    """A switch; ``const`` per field (one value given: every field gets it)."""
    fs = tuple(fields.split())
    const = const or (True,)
    return Flag(tuple(names.split()), fs, None, const * len(fs) if len(const) == 1 else const)


_CPU = "cpuparams"
_DRAFT = "speculative.draft"
_S = "sampling"

# llama-server flag -> CommonParams field(s). Flags xllamacpp has no field for (--mlock's siblings excepted, through
# load_mode) are absent, so they are refused by name rather than silently dropped.
FLAGS: tuple[Flag, ...] = (
    # the model and the server (llmctl sets these itself; see OWNED)
    _v("-m --model", "model.path", str),
    _v("-a --alias", "model_alias", lambda t: {a.strip() for a in t.split(",") if a.strip()}),
    _v("--host", "hostnames", lambda t: [t]),
    _v("--port", "port", _int),
    _v("--api-prefix", "api_prefix", str),
    _v("--path", "public_path", str),
    _v("--media-path", "media_path", str),
    _s("--metrics", "endpoint_metrics"),
    _s("--props", "endpoint_props"),
    _s("--slots", "endpoint_slots"), _s("--no-slots", "endpoint_slots", False),
    _v("--slot-save-path", "slot_save_path", str),
    _s("--webui", "ui"), _s("--no-webui", "ui", False),
    _v("--webui-config", "ui_config_json", str),
    _v("-to --timeout", "timeout_read timeout_write", _int),
    _v("--threads-http", "n_threads_http", _int),
    _v("--sleep-idle-seconds", "sleep_idle_seconds", _int),
    _v("-lv --verbosity --log-verbosity", "verbosity", _int),
    _s("-v --verbose --log-verbose", "verbosity", 1 << 30),
    _s("--offline", "offline"),
    _s("--no-warmup", "warmup", False), _s("--warmup", "warmup"),
    # context, batching, slots, cache
    _v("-c --ctx-size", "n_ctx", _int),
    _v("-n --predict --n-predict", "n_predict", _int),
    _v("-b --batch-size", "n_batch", _int),
    _v("-ub --ubatch-size", "n_ubatch", _int),
    _v("--keep", "n_keep", _int),
    _v("-np --parallel", "n_parallel", _int),
    _s("-cb --cont-batching", "cont_batching"), _s("-nocb --no-cont-batching", "cont_batching", False),
    _s("-kvu --kv-unified", "kv_unified"),
    _s("--swa-full", "swa_full"),
    _s("--context-shift", "ctx_shift"), _s("--no-context-shift", "ctx_shift", False),
    _s("--cache-prompt", "cache_prompt"), _s("--no-cache-prompt", "cache_prompt", False),
    _v("--cache-reuse", "n_cache_reuse", _int),
    _v("-cram --cache-ram", "cache_ram_mib", _int),
    _v("-ctxcp --ctx-checkpoints --swa-checkpoints", "n_ctx_checkpoints", _int),
    _v("-sps --slot-prompt-similarity", "slot_prompt_similarity", float),
    _v("-ctk --cache-type-k", "cache_type_k", _kv),
    _v("-ctv --cache-type-v", "cache_type_v", _kv),
    _v("-fa --flash-attn", "flash_attn_type", _flash),
    _s("-nkvo --no-kv-offload", "no_kv_offload"), _s("-kvo --kv-offload", "no_kv_offload", False),
    # threads and placement
    _v("-t --threads", f"{_CPU}.n_threads", _int),
    _v("-tb --threads-batch", f"{_CPU}_batch.n_threads", _int),
    _v("--cpu-strict", f"{_CPU}.strict_cpu", _bool01),
    _v("--cpu-strict-batch", f"{_CPU}_batch.strict_cpu", _bool01),
    _v("--poll", f"{_CPU}.poll", _int), _v("--poll-batch", f"{_CPU}_batch.poll", _int),
    _v("--prio", f"{_CPU}.priority", _choice("ggml_sched_priority", "GGML_SCHED_PRIO_", {
        "-1": "LOW", "0": "NORMAL", "1": "MEDIUM", "2": "HIGH", "3": "REALTIME"})),
    _v("--numa", "numa", _choice("ggml_numa_strategy", "GGML_NUMA_STRATEGY_",
                                 {"distribute": "DISTRIBUTE", "isolate": "ISOLATE", "numactl": "NUMACTL"})),
    _v("-ngl --gpu-layers --n-gpu-layers", "n_gpu_layers", lambda t: -1 if t == "auto" else _int(t)),
    _v("-sm --split-mode", "split_mode", _choice("llama_split_mode", "LLAMA_SPLIT_MODE_",
                                                 {"none": "NONE", "layer": "LAYER", "row": "ROW",
                                                  "tensor": "TENSOR"})),
    _v("-ts --tensor-split", "tensor_split", _floats),
    _v("-mg --main-gpu", "main_gpu", _int),
    _v("-ot --override-tensor", "tensor_buft_overrides", str),
    _s("-nr --no-repack", "no_extra_bufts"),
    _s("--no-host", "no_host"),
    _s("--no-op-offload", "no_op_offload"), _s("--op-offload", "no_op_offload", False),
    _s("--check-tensors", "check_tensors"),
    _s("--mlock", "load_mode", Member("llama_load_mode", "LLAMA_LOAD_MODE_MMAP_MLOCK")),
    _s("--mmap", "load_mode", Member("llama_load_mode", "LLAMA_LOAD_MODE_MMAP")),
    _s("--no-mmap", "load_mode", Member("llama_load_mode", "LLAMA_LOAD_MODE_NONE")),
    _s("-dio --direct-io", "load_mode", Member("llama_load_mode", "LLAMA_LOAD_MODE_DIRECT_IO")),
    _v("-fit --fit", "fit_params", _on_off),
    _v("-fitc --fit-ctx", "fit_params_min_ctx", _int),
    _v("-fitt --fit-target", "fit_params_target", _mib_list),
    # rope and attention
    _v("--rope-scaling", "rope_scaling_type", _choice("llama_rope_scaling_type", "LLAMA_ROPE_SCALING_TYPE_",
                                                      {"none": "NONE", "linear": "LINEAR", "yarn": "YARN"})),
    _v("--rope-scale", "rope_freq_scale", lambda t: 1.0 / float(t)),
    _v("--rope-freq-base", "rope_freq_base", float),
    _v("--rope-freq-scale", "rope_freq_scale", float),
    _v("--yarn-orig-ctx", "yarn_orig_ctx", _int),
    _v("--yarn-ext-factor", "yarn_ext_factor", float),
    _v("--yarn-attn-factor", "yarn_attn_factor", float),
    _v("--yarn-beta-slow", "yarn_beta_slow", float),
    _v("--yarn-beta-fast", "yarn_beta_fast", float),
    _v("--attention", "attention_type", _choice("llama_attention_type", "LLAMA_ATTENTION_TYPE_",
                                                {"causal": "CAUSAL", "non-causal": "NON_CAUSAL"})),
    # embeddings and reranking
    _s("--embedding --embeddings", "embedding"),
    _v("--pooling", "pooling_type", _pool),
    _s("--rerank --reranking", "embedding pooling_type", True, Member("llama_pooling_type", "LLAMA_POOLING_TYPE_RANK")),
    # chat templates and reasoning
    _s("--jinja", "use_jinja"), _s("--no-jinja", "use_jinja", False),
    _v("--chat-template", "chat_template", str),
    _v("--chat-template-file", "chat_template", FileText),
    _v("--chat-template-kwargs", "default_template_kwargs", _kwargs),
    _s("--no-prefill-assistant", "prefill_assistant", False),
    _v("--reasoning-format", "reasoning_format", _choice("common_reasoning_format", "COMMON_REASONING_FORMAT_",
                                                         {"none": "NONE", "auto": "AUTO", "deepseek": "DEEPSEEK",
                                                          "deepseek-legacy": "DEEPSEEK_LEGACY"})),
    _v("-rea --reasoning", "enable_reasoning", lambda t: {"on": 1, "off": 0, "auto": -1}[t]),
    _v("--reasoning-budget", f"{_S}.reasoning_budget_tokens", _int),
    _v("--reasoning-budget-message", f"{_S}.reasoning_budget_message", str),
    _s("-sp --special", "special"),
    _s("--verbose-prompt", "verbose_prompt"),
    _s("--no-perf", f"no_perf {_S}.no_perf"), _s("--perf", f"no_perf {_S}.no_perf", False),
    _s("-e --escape", "escape"), _s("--no-escape", "escape", False),
    # LoRA
    _v("--lora", "lora_adapters", _loras),
    _v("--lora-scaled", "lora_adapters", _loras),
    _s("--lora-init-without-apply", "lora_init_without_apply"),
    # multimodal
    _v("-mm --mmproj", "mmproj.path", str),
    _v("-mmu --mmproj-url", "mmproj.url", str),
    _s("--no-mmproj", "no_mmproj"),
    _s("--no-mmproj-offload", "mmproj_use_gpu", False), _s("--mmproj-offload", "mmproj_use_gpu"),
    _v("--image-min-tokens", "image_min_tokens", _int),
    _v("--image-max-tokens", "image_max_tokens", _int),
    # sampling defaults (a request's own fields still win)
    _v("-s --seed", f"{_S}.seed", lambda t: _int(t) & 0xFFFFFFFF),
    _v("--samplers", f"{_S}.samplers", str),
    _s("--ignore-eos", f"{_S}.ignore_eos"),
    _v("--temp --temperature", f"{_S}.temp", float),
    _v("--top-k", f"{_S}.top_k", _int),
    _v("--top-p", f"{_S}.top_p", float),
    _v("--min-p", f"{_S}.min_p", float),
    _v("--typical --typical-p", f"{_S}.typ_p", float),
    _v("--xtc-probability", f"{_S}.xtc_probability", float),
    _v("--xtc-threshold", f"{_S}.xtc_threshold", float),
    _v("--repeat-last-n", f"{_S}.penalty_last_n", _int),
    _v("--repeat-penalty", f"{_S}.penalty_repeat", float),
    _v("--presence-penalty", f"{_S}.penalty_present", float),
    _v("--frequency-penalty", f"{_S}.penalty_freq", float),
    _v("--dry-multiplier", f"{_S}.dry_multiplier", float),
    _v("--dry-base", f"{_S}.dry_base", float),
    _v("--dry-allowed-length", f"{_S}.dry_allowed_length", _int),
    _v("--dry-penalty-last-n", f"{_S}.dry_penalty_last_n", _int),
    _v("--dynatemp-range", f"{_S}.dynatemp_range", float),
    _v("--dynatemp-exp", f"{_S}.dynatemp_exponent", float),
    _v("--mirostat", f"{_S}.mirostat", _int),
    _v("--mirostat-lr", f"{_S}.mirostat_eta", float),
    _v("--mirostat-ent", f"{_S}.mirostat_tau", float),
    _v("--adaptive-target", f"{_S}.adaptive_target", float),
    _v("--adaptive-decay", f"{_S}.adaptive_decay", float),
    _s("--backend-sampling", f"{_S}.backend_sampling"),
    _v("--grammar", f"{_S}.grammar", Grammar),
    _v("--grammar-file", f"{_S}.grammar", FileText),
    _v("-j --json-schema", f"{_S}.grammar", lambda t: Grammar(t, schema=True)),
    # speculative decoding
    _v("-md --model-draft --spec-draft-model", f"{_DRAFT}.mparams.path", str),
    _v("-ngld --gpu-layers-draft --n-gpu-layers-draft", f"{_DRAFT}.n_gpu_layers",
       lambda t: -1 if t == "auto" else _int(t)),
    _v("-td --threads-draft", f"{_DRAFT}.cpuparams.n_threads", _int),
    _v("-tbd --threads-batch-draft", f"{_DRAFT}.cpuparams_batch.n_threads", _int),
    _v("-ctkd --cache-type-k-draft", f"{_DRAFT}.cache_type_k", _kv),
    _v("-ctvd --cache-type-v-draft", f"{_DRAFT}.cache_type_v", _kv),
    _v("--draft --draft-n --draft-max --spec-draft-n-max", f"{_DRAFT}.n_max", _int),
    _v("--draft-min --draft-n-min --spec-draft-n-min", f"{_DRAFT}.n_min", _int),
    _v("--draft-p-min --spec-draft-p-min", f"{_DRAFT}.p_min", float),
    _v("--draft-p-split --spec-draft-p-split", f"{_DRAFT}.p_split", float),
    _v("-otd --override-tensor-draft", f"{_DRAFT}.tensor_buft_overrides", str),
    _v("--spec-type", "speculative.types", _spec_types),
    _v("-lcs --lookup-cache-static", "speculative.ngram_cache.lookup_cache_static", str),
    _v("-lcd --lookup-cache-dynamic", "speculative.ngram_cache.lookup_cache_dynamic", str),
)

BY_NAME: dict[str, Flag] = {name: flag for flag in FLAGS for name in flag.names}

# flags llmctl sets for every launch, or that would take the engine out of llmctl's hands: refused in a profile's
# args with why (the wrapper itself takes the first group, from llmctl's own argv)
OWNED = {
    **dict.fromkeys(("-m", "--model", "--host", "--port", "-a", "--alias"),
                    "llmctl sets it for every launch (the model's file, a loopback port and the model's name)"),
    **dict.fromkeys(("--api-key", "--api-key-file"),
                    "llmctl gives every launch a key of its own; set clients' keys with server.api_key"),
    **dict.fromkeys(("--ssl-key-file", "--ssl-cert-file"),
                    "llmctl reaches its engines over plain HTTP on loopback; put TLS in front of llmctl instead"),
    **dict.fromkeys(("-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-mu", "--model-url", "--models-dir",
                     "--models-preset", "--models-max", "--no-models-autoload"),
                    "llmctl runs one registered model per engine; get models with `llmctl pull` or `llmctl import`"),
}


def _split(argv: Sequence[str]) -> Iterable[tuple[str, str | None, int]]:
    """``(flag, value or None, index)``, a value taken from ``--flag=value`` or the next item."""
    i = 0
    while i < len(argv):
        item = argv[i]
        name, eq, inline = item.partition("=") if item.startswith("--") else (item, "", "")
        flag = BY_NAME.get(name)
        if flag is None or flag.convert is None:
            yield name, (inline if eq else None), i
            i += 1
            continue
        if eq:
            yield name, inline, i
            i += 1
        elif i + 1 < len(argv):
            yield name, argv[i + 1], i
            i += 2
        else:
            raise ConfigError(f"llama.cpp flag {name} needs a value", f"write e.g. [\"{name}\", \"VALUE\"].")


def _unknown(name: str) -> ConfigError:
    near = difflib.get_close_matches(name, list(BY_NAME), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return ConfigError(
        f"llama.cpp flag {name} cannot be given to the default engine (xllamacpp){hint}",
        "the xllamacpp wheel has no setting for it: remove it from the model's args, or serve the model with your "
        "own llama-server build, which takes every flag (engine = \"llama-server\" in [models.NAME], "
        "backends.llama_server = its path).")


def parse(argv: Sequence[str]) -> list[Assignment]:
    """The field assignments of a llama-server argv, in order; ConfigError naming the first flag the wheel cannot
    express or a value that does not convert."""
    out: list[Assignment] = []
    for name, value, _ in _split(argv):
        flag = BY_NAME.get(name)
        if flag is None:
            if not name.startswith("-"):
                raise ConfigError(f"{name!r} is not a llama.cpp flag", "args holds flags and their values, e.g. "
                                  "[\"--top-k\", \"20\"].")
            raise _unknown(name)
        if flag.convert is None:
            if value is not None:
                raise ConfigError(f"llama.cpp flag {name} takes no value", f"write just \"{name}\".")
            out += list(zip(flag.fields, flag.const, strict=True))
            continue
        try:
            converted = flag.convert(value)  # type: ignore[arg-type]
        except (ValueError, KeyError, ZeroDivisionError, json.JSONDecodeError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) and " " in str(exc) else "a value of its kind"
            raise ConfigError(f"llama.cpp flag {name} does not take {value!r}", f"it takes {detail}.") from None
        out += [(field, converted) for field in flag.fields]
    return out


def check_user_args(args: Sequence[str]) -> None:
    """What a model profile's ``args`` may hold for the default engine: flags the wheel can express, none of those
    llmctl sets itself. ConfigError naming the first that is not."""
    for name, _, _ in _split(args):
        if name in OWNED:
            raise ConfigError(f"llama.cpp flag {name} cannot be set in a model's args", OWNED[name] + ".")
    parse(args)


# the wrapper's own defaults where CommonParams' differ from what llmctl plans: no fitting of its own (llmctl's
# estimate planned the launch), no GPU layers unless asked, load lines printed (verbosity 4)
DEFAULTS = ("--ctx-size", "4096", "--n-gpu-layers", "0", "--fit", "off", "--verbosity", "4")

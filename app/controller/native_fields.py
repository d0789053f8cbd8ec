"""What the gateway forwards of a request body: OpenAI's fields, engine-native fields within llmctl's bounds, nothing
else.

llama.cpp and vLLM read fields of their own from the same JSON body, and some act past every bound the gateway
sets: ``n_predict`` overrides ``max_tokens`` (a 2-token request generating for minutes), ``n_probs: 100000`` turns a
2-token reply into megabytes, ``id_slot`` pins requests to one busy slot until the engine's HTTP threads are all
waiting, vLLM's ``chat_template`` has the engine render a client's Jinja. So each body is sorted:

- OpenAI's fields (and llmctl's ``keep_alive``) pass; ``validation`` checks their types and ranges.
- Engine-native fields in ``NATIVE`` either pass within bounds llmctl owns (400 outside them, naming the field), or
  are dropped.
- Any other field is dropped: an engine may read it, and llmctl cannot bound what it does not know. (An engine's
  own routes, ``/infill`` and ``/tokenize`` among them, keep their own fields; ``NATIVE`` applies to them too.)

Dropped fields are named in the answer's ``x-llmctl-dropped-fields`` header. The README's table says which native
field is bounded and which dropped (``test_engine_native_fields_are_bounded_or_dropped`` pins it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.validation import MAX_TOKENS_LIMIT

DROPPED_HEADER = "x-llmctl-dropped-fields"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# OpenAI's request fields (chat, completions, embeddings) and llmctl's keep_alive: passed on
OPENAI = frozenset({
    "model", "messages", "prompt", "input", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n",
    "temperature", "top_p", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "seed", "user", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
    "response_format", "reasoning_effort", "metadata", "store", "service_tier", "modalities", "audio", "prediction",
    "web_search_options", "verbosity", "prompt_cache_key", "safety_identifier", "suffix", "echo", "best_of",
    "encoding_format", "dimensions", "keep_alive",
    # sampling fields both engines (and most OpenAI-compatible servers) take; validation bounds them
    "top_k", "min_p",
})


def _bad(name: str, allowed: str, value: Any) -> ApiError:
    return ApiError(400, f"{name}: must be {allowed}, got {value!r:.80}", code="invalid_value", param=name)


def _int(lo: int, hi: int) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise _bad(name, f"a whole number from {lo} to {hi}", v)
        return v
    return check


def _num(lo: float, hi: float) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise _bad(name, f"a number from {lo:g} to {hi:g}", v)
        return v
    return check


def _bool(name: str, v: Any) -> Any:
    if not isinstance(v, bool):
        raise _bad(name, "true or false", v)
    return v


def _strings(most: int, longest: int = 256) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, list) or len(v) > most or not all(isinstance(s, str) and len(s) <= longest for s in v):
            raise _bad(name, f"a list of at most {most} strings", v)
        return v
    return check


def _ints(most: int) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, list) or len(v) > most or not all(isinstance(i, int) and not isinstance(i, bool)
                                                               for i in v):
            raise _bad(name, f"a list of at most {most} token ids", v)
        return v
    return check


def _text(longest: int) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, str) or len(v) > longest:
            raise _bad(name, f"a string of at most {longest} characters", v)
        return v
    return check


def _object(name: str, v: Any) -> Any:
    if not isinstance(v, dict):
        raise _bad(name, "an object", v)
    return v


_TOKENS = _int(1, MAX_TOKENS_LIMIT)
DROP = None  # the field never reaches an engine

# engine-native fields: a check (the value passes within llmctl's bounds, else 400) or DROP, with the reason
NATIVE: dict[str, tuple[Callable[[str, Any], Any] | None, str]] = {
    # llama.cpp
    "n_predict": (_TOKENS, "bounded like max_tokens, and never above the request's max_tokens"),
    "n_probs": (_int(0, 20), "bounded like top_logprobs (0-20): a large one turns a short reply into megabytes"),
    "id_slot": (DROP, "llmctl's queue places requests; pinning one busy slot starves the engine's HTTP threads"),
    "n_keep": (DROP, "context-shift control: the engine's own setting"),
    "n_discard": (DROP, "context-shift control: the engine's own setting"),
    "n_indent": (DROP, "code-infill control with no bound of its own"),
    "t_max_predict_ms": (DROP, "the engine's time budget; llmctl bounds requests itself"),
    "t_max_prompt_ms": (DROP, "the engine's time budget; llmctl bounds requests itself"),
    "lora": (DROP, "adapters are the deployment's, not a request's"),
    "response_fields": (DROP, "reshapes the answer llmctl meters"),
    "return_tokens": (DROP, "answer size with no bound"),
    "post_sampling_probs": (DROP, "answer size; n_probs covers what is needed"),
    "cache_prompt": (_bool, "passes: reuses the slot's prompt cache, no extra work"),
    "timings_per_token": (_bool, "passes: timings on each chunk"),
    "ignore_eos": (_bool, "passes: generation stays bounded by max_tokens and the context (the benchmark uses it)"),
    "samplers": (_strings(16, 32), "passes: the order of llama.cpp's samplers, at most 16"),
    "typical_p": (_num(0, 1), "passes within 0-1"),
    "repeat_penalty": (_num(0, 10), "passes within 0-10"),
    "repeat_last_n": (_int(-1, MAX_TOKENS_LIMIT), "passes within -1 (the context) to max_tokens' bound"),
    "dynatemp_range": (_num(0, 2), "passes within 0-2"),
    "dynatemp_exponent": (_num(0, 10), "passes within 0-10"),
    "mirostat": (_int(0, 2), "passes: 0, 1 or 2"),
    "mirostat_tau": (_num(0, 100), "passes within 0-100"),
    "mirostat_eta": (_num(0, 1), "passes within 0-1"),
    "xtc_probability": (_num(0, 1), "passes within 0-1"),
    "xtc_threshold": (_num(0, 1), "passes within 0-1"),
    "top_n_sigma": (_num(-1, 100), "passes within -1-100"),
    "dry_multiplier": (_num(0, 10), "passes within 0-10"),
    "dry_base": (_num(1, 10), "passes within 1-10"),
    "dry_allowed_length": (_int(0, 1024), "passes within 0-1024"),
    "dry_penalty_last_n": (_int(-1, MAX_TOKENS_LIMIT), "passes within -1 to max_tokens' bound"),
    "dry_sequence_breakers": (_strings(16, 64), "passes: at most 16 strings"),
    "grammar": (_text(64 << 10), "passes: a GBNF grammar of at most 64 KiB"),
    "json_schema": (_object, "passes: a JSON schema (the body's size bound applies)"),
    "reasoning_format": (_text(32), "passes: how a reasoning model's thinking is returned"),
    "chat_template_kwargs": (_object, "passes: the template's variables (enable_thinking and the like)"),
    # vLLM
    "min_tokens": (_int(0, MAX_TOKENS_LIMIT), "bounded, and never above the request's max_tokens"),
    "repetition_penalty": (_num(0, 10), "passes within 0-10"),
    "stop_token_ids": (_ints(16), "passes: at most 16 token ids"),
    "skip_special_tokens": (_bool, "passes"),
    "spaces_between_special_tokens": (_bool, "passes"),
    "include_stop_str_in_output": (_bool, "passes"),
    "add_generation_prompt": (_bool, "passes"),
    "continue_final_message": (_bool, "passes"),
    "add_special_tokens": (_bool, "passes"),
    "guided_json": (lambda n, v: v if isinstance(v, (dict, str)) else _object(n, v), "passes: structured output"),
    "guided_regex": (_text(4096), "passes: a regular expression of at most 4096 characters"),
    "guided_choice": (_strings(256), "passes: at most 256 choices"),
    "guided_grammar": (_text(64 << 10), "passes: a grammar of at most 64 KiB"),
    "structured_outputs": (_object, "passes: vLLM's structured-output options"),
    "chat_template": (DROP, "a client's Jinja rendered by the engine: templates are the model's"),
    "prompt_logprobs": (DROP, "log-probabilities of every prompt token: answer size grows with the prompt"),
    "use_beam_search": (DROP, "beam search multiplies the work of one request"),
    "length_penalty": (DROP, "beam search only"),
    "priority": (DROP, "a client raising its own priority over others"),
    "request_id": (DROP, "llmctl's own request ids are the ones recorded"),
    "cache_salt": (DROP, "the engine's prefix-cache partitioning is not a client's"),
    "kv_transfer_params": (DROP, "disaggregated serving internals"),
    "vllm_xargs": (DROP, "free-form engine arguments"),
    "mm_processor_kwargs": (DROP, "free-form processor arguments"),
    "truncate_prompt_tokens": (DROP, "llmctl does not silently shorten prompts"),
    "allowed_token_ids": (DROP, "no bound of its own"),
    "bad_words": (DROP, "no bound of its own"),
    "documents": (DROP, "retrieval documents rendered into the template"),
    "return_tokens_as_token_ids": (DROP, "reshapes the answer llmctl meters"),
    # Ollama (its OpenAI-compatible endpoint)
    "options": (DROP, "Ollama's options (num_ctx reloads the model bigger): set them under [models.NAME]"),
}


# fields an engine's own route takes as its own, though vLLM's chat reads a field of the same name
ROUTE_OWN = frozenset({"documents"})  # rerank's documents

# OpenAI's fields an engine's own route also reads (llama.cpp takes max_tokens as n_predict on /infill): checked
# there as ``validation`` checks them on the chat routes, same bounds
OPENAI_ON_NATIVE = {"max_tokens": _TOKENS, "max_completion_tokens": _TOKENS, "top_logprobs": _int(0, 20)}


def _cap_to_max_tokens(body: dict, name: str) -> None:
    """An engine-native length never goes above the OpenAI one the request also gives."""
    limits = [body[k] for k in ("max_tokens", "max_completion_tokens") if isinstance(body.get(k), int)]
    if name in body and limits:
        if name == "min_tokens" and body[name] > min(limits):
            raise _bad(name, f"at most max_tokens ({min(limits)})", body[name])
        body[name] = min(body[name], *limits)


def screen(raw: bytes, body: dict, *, openai: bool = True) -> tuple[bytes, dict, list[str]]:
    """The body to forward (the same bytes when nothing changed), and the fields dropped. ApiError(400) for a
    native field outside its bounds. ``openai``: an OpenAI route, whose unknown fields are dropped; an engine's own
    route (``/infill``, ``/tokenize``...) keeps the fields ``NATIVE`` does not name, which are its own."""
    dropped: list[str] = []
    kept: dict = {}
    for name, value in body.items():
        if name in OPENAI or (not openai and (name not in NATIVE or name in ROUTE_OWN)):
            if not openai and name in OPENAI_ON_NATIVE and value is not None:
                OPENAI_ON_NATIVE[name](name, value)
            kept[name] = value
            continue
        check, _why = NATIVE.get(name, (DROP, ""))
        if check is DROP or value is None:
            dropped.append(name)
            continue
        kept[name] = check(name, value)
    changed = bool(dropped)
    for name in ("n_predict", "min_tokens"):
        if name in kept:
            before = kept[name]
            _cap_to_max_tokens(kept, name)
            changed = changed or kept[name] != before
    if not changed:
        return raw, body, []
    return json.dumps(kept, ensure_ascii=False).encode(), kept, dropped


def dropped_header(dropped: list[str]) -> str:
    """The header's value: the names dropped, those that are not plain words (a client's text) only counted."""
    plain = [n for n in dropped if _PLAIN_NAME.fullmatch(n)]
    other = len(dropped) - len(plain)
    return ", ".join(plain + ([f"{other} other(s)"] if other else []))

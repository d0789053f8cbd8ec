"""Request checks made before anything reaches a backend, so a malformed or out-of-range field is a 400 in
OpenAI's error shape rather than an engine crash.

Types and ranges of the OpenAI fields the backends act on; unknown fields pass through untouched (clients
send vendor extensions). Each failure names the field and what is allowed. Media in chat messages must be inline
(``media_urls``: an engine would fetch a URL itself).
"""

from __future__ import annotations

from typing import Any

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.media_urls import check_chat_media

MAX_TOKENS_LIMIT = 1 << 17


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", code="invalid_value", param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_range(body: dict, key: str, lo: int, hi: int) -> None:
    if key in body and body[key] is not None:
        v = body[key]
        if not _is_int(v) or not lo <= v <= hi:
            raise _bad(key, f"must be a whole number from {lo} to {hi}, got {v!r}")


def _num_range(body: dict, key: str, lo: float, hi: float) -> None:
    if key in body and body[key] is not None:
        v = body[key]
        if not _is_num(v) or not lo <= v <= hi:
            raise _bad(key, f"must be a number from {lo} to {hi}, got {v!r}")


def _check_common(body: dict) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model: a model name is required (see GET /v1/models)", code="missing_model",
                       param="model")
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise _bad("stream", "must be true or false")
    _int_range(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    _int_range(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    _int_range(body, "n", 1, 128)  # OpenAI's bound; server.max_fanout bounds n × prompts below it
    _num_range(body, "temperature", 0, 2)
    _num_range(body, "top_p", 0, 1)
    _num_range(body, "min_p", 0, 1)
    _int_range(body, "top_k", 0, 1 << 20)
    _num_range(body, "presence_penalty", -2, 2)
    _num_range(body, "frequency_penalty", -2, 2)
    _int_range(body, "top_logprobs", 0, 20)
    _int_range(body, "seed", -(1 << 63), (1 << 64) - 1)
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 16 and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop", "must be a string or a list of at most 16 strings")


def check_chat(body: dict) -> None:
    _check_common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad(f"messages[{i}]", "must be an object with a string 'role'")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"messages[{i}].content", "must be a string or a list of content parts")
    check_chat_media(messages)


def check_completion(body: dict) -> None:
    _check_common(body)
    prompt = body.get("prompt")
    if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt and (
        all(isinstance(p, str) for p in prompt) or all(_is_int(p) for p in prompt)
        or all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt)
    ))):
        raise _bad("prompt", "must be a string, a list of strings, a list of token ids or a list of token-id lists")


def check_embeddings(body: dict) -> None:
    _check_common(body)
    inp = body.get("input")
    if not (isinstance(inp, str) or (isinstance(inp, list) and inp)):
        raise _bad("input", "must be a string or a non-empty list")

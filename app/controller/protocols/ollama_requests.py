"""Ollama API requests as OpenAI requests: ``/api/chat`` and ``/api/generate`` become chat completions (raw
generate: a completion), ``/api/embed`` and ``/api/embeddings`` become embeddings. ``options`` map to the OpenAI
fields (``num_predict`` → ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, …) and to llama.cpp's
sampling extensions (``top_k``, ``min_p``, ``typical_p``, ``repeat_penalty``, ``repeat_last_n``, ``mirostat*``),
which other engines ignore. ``num_ctx`` is not a per-request setting in llmctl (a deployment's context is its
profile's ``ctx_size``, shared by every client), so it is read and not sent. ``format`` is ``"json"`` (a JSON object)
or a JSON schema. ``keep_alive`` is passed on: the gateway honours it as it does for every request."""

from __future__ import annotations

import json
from typing import Any

from llmctl.app.controller.errors import ApiError

_OPENAI_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
                   "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
_LLAMA_OPTIONS = ("top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat", "mirostat_tau",
                  "mirostat_eta", "penalize_newline", "num_keep")


def bad(message: str, status: int = 400) -> ApiError:
    """An error the Ollama handlers answer as ``{"error": message}``."""
    return ApiError(status, message, code="invalid_value")


def _obj(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"{key} must be an object")
    return value


def options(body: dict) -> dict[str, Any]:
    """The OpenAI fields of a request's ``options``."""
    opts = _obj(body, "options")
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None:
            continue
        if key == "num_predict":
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad("options.num_predict must be a whole number")
            if value > 0:  # -1 (and Ollama's -2): until the model stops or the context is full
                out["max_tokens"] = value
        elif key in _OPENAI_OPTIONS:
            out[_OPENAI_OPTIONS[key]] = value
        elif key in _LLAMA_OPTIONS:
            out[key] = value
        # the rest (num_ctx, num_gpu, use_mmap, ...) set up Ollama's runner: ignored, as Ollama ignores options it
        # does not know (clients send many)
    return out


def response_format(body: dict) -> dict | None:
    fmt = body.get("format")
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt, "strict": True}}
    raise bad('format must be "json" or a JSON schema object')


def _images(images: Any) -> list[dict]:
    if images is None:
        return []
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise bad("images must be a list of base64-encoded images")
    return [{"type": "image_url", "image_url": {"url": i if i.startswith("data:") else f"data:image/png;base64,{i}"}}
            for i in images]


def _tool_calls(calls: Any, at: int) -> list[dict]:
    if not isinstance(calls, list):
        raise bad(f"messages[{at}].tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad(f"messages[{at}].tool_calls[{j}] must be {{\"function\": {{\"name\", \"arguments\"}}}}")
        args = fn.get("arguments") or {}
        out.append({"id": call.get("id") or f"call_{at}_{j}", "type": "function",
                    "function": {"name": fn["name"], "arguments": args if isinstance(args, str) else json.dumps(args)}})
    return out


def messages(raw: Any) -> list[dict]:
    """Ollama's messages as OpenAI's: images as content parts, tool calls with string arguments, a tool's answer
    tied to the call it answers."""
    if not isinstance(raw, list):
        raise bad("messages must be a list of {role, content} objects")
    out: list[dict] = []
    calls: dict[str, str] = {}  # tool name -> the id of its latest call
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad(f"messages[{i}] must be an object with a string role")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise bad(f"messages[{i}].content must be a string")
        msg: dict[str, Any] = {"role": m["role"], "content": content}
        parts = _images(m.get("images"))
        if parts:
            msg["content"] = [{"type": "text", "text": content}, *parts]
        if m.get("tool_calls"):
            msg["tool_calls"] = _tool_calls(m["tool_calls"], i)
            calls.update({c["function"]["name"]: c["id"] for c in msg["tool_calls"]})
        if m["role"] == "tool":
            name = m.get("tool_name") or m.get("name")
            msg["tool_call_id"] = m.get("tool_call_id") or calls.get(name, f"call_{name}")
        if isinstance(m.get("thinking"), str) and m["role"] == "assistant":
            msg["reasoning_content"] = m["thinking"]
        out.append(msg)
    return out


def _common(body: dict, model: str, stream: bool) -> dict:
    out: dict[str, Any] = {"model": model, **options(body)}
    fmt = response_format(body)
    if fmt is not None:
        out["response_format"] = fmt
    if body.get("keep_alive") is not None:
        out["keep_alive"] = body["keep_alive"]
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # the last line's counts
    return out


def chat_body(body: dict, model: str, stream: bool) -> dict:
    out = {**_common(body, model, stream), "messages": messages(body.get("messages"))}
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            raise bad("tools must be a list")
        out["tools"] = body["tools"]
    return out


def generate_body(body: dict, model: str, stream: bool) -> tuple[str, dict]:
    """The OpenAI route and body of an ``/api/generate``: raw prompts go to completions as they are; others get the
    model's chat template, as Ollama's template would apply (``system`` as a system message)."""
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise bad("prompt must be a string")
    if body.get("raw"):
        return "/v1/completions", {**_common(body, model, stream), "prompt": prompt}
    msgs: list[dict] = []
    if body.get("system"):
        if not isinstance(body["system"], str):
            raise bad("system must be a string")
        msgs.append({"role": "system", "content": body["system"]})
    parts = _images(body.get("images"))
    msgs.append({"role": "user", "content": [{"type": "text", "text": prompt}, *parts] if parts else prompt})
    return "/v1/chat/completions", {**_common(body, model, stream), "messages": msgs}


def embed_input(body: dict, key: str) -> str | list[str]:
    value = body.get(key)
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return value
    raise bad(f"{key} must be a string or a non-empty list of strings")


def embed_body(body: dict, model: str, key: str = "input") -> dict:
    out: dict[str, Any] = {"model": model, "input": embed_input(body, key)}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    if body.get("keep_alive") is not None:
        out["keep_alive"] = body["keep_alive"]
    return out


def pull_ref(name: str) -> str:
    """An Ollama model name as llmctl's pull reference: ``hf.co/ORG/REPO:QUANT`` → ``ORG/REPO:QUANT``; a
    ``:latest`` tag dropped."""
    for prefix in ("hf.co/", "huggingface.co/", "https://huggingface.co/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name[: -len(":latest")] if name.endswith(":latest") else name

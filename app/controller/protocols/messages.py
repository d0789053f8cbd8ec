"""Anthropic Messages (``POST /v1/messages``) as a chat completion, and the chat answer back as a Message.

The request: ``system`` (a string or text blocks) becomes the system message, and a ``system`` message within
``messages`` is folded into the turn before it (``_fold_system``); ``messages`` with text, image
(base64, sent as an ``image_url`` data URL to a model with a projector; a model without one gets a 400, and so
does a URL source that is not ``data:``, as an engine would fetch it: ``media_urls``), ``tool_use`` and
``tool_result`` blocks become chat messages with ``tool_calls`` and ``tool`` messages; ``tools`` with an
``input_schema`` become function tools (Anthropic's server tools, ``web_search_*``, ``bash_*``, ``text_editor_*``,
... are dropped with one log line); ``tool_choice``, ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``
and ``top_k`` map onto chat fields, ``output_config.format`` (a JSON schema) onto ``response_format``.
``thinking`` blocks and settings are ignored.

The answer: a Message with ``thinking`` (a reasoning model's, with an empty signature: nothing local signs it),
``text`` and ``tool_use`` blocks, ``stop_reason`` and ``usage``; a stream becomes the
events the ``anthropic`` SDK types define: ``message_start``, ``ping``, per block ``content_block_start``,
``content_block_delta`` (``thinking_delta`` and ``signature_delta``, ``text_delta``,
``input_json_delta``) and ``content_block_stop``, then ``message_delta``
(``stop_reason``, ``usage``) and ``message_stop``; a stream that breaks ends with an ``error`` event.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.media_urls import inline_only
from llmctl.app.controller.protocols.stream import reasoning_of, sse
from llmctl.app.controller.validation import MAX_TOKENS_LIMIT

log = logging.getLogger("llmctl.controller")

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}

# Anthropic's error types by HTTP status (its API reference, "Errors")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large",
               415: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
               529: "overloaded_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", code="invalid_value", param=param)


INLINE = 'a base64 source: {"type": "base64", "media_type": "image/png", "data": "..."}'


def _image(block: dict, param: str, vision: bool, model: str) -> dict:
    if not vision:
        raise ApiError(400, f"{param}: '{model}' cannot read images: it has no vision projector (mmproj). Use a "
                       "vision model, or import this one with its projector (`llmctl import MODEL.gguf "
                       "--projector MMPROJ.gguf`)", code="unsupported_capability", param=param)
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") if isinstance(source.get("media_type"), str) else "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        inline_only(source["url"], f"{param}.source.url", INLINE)  # an engine would fetch it (media_urls)
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _bad(f"{param}.source", f"an image needs {INLINE}")


def _text(content, param: str) -> str:
    """The text of a tool result or system prompt: a string or text blocks (other blocks are left out)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "must be a string or a list of content blocks")
    return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")


def _message(m: dict, i: int, vision: bool, model: str) -> list[dict]:
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"messages[{i}].role", "must be user or assistant")
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"messages[{i}].content", "must be a string or a list of content blocks")
    parts: list[dict] = []
    calls: list[dict] = []
    results: list[dict] = []
    for j, block in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        if not isinstance(block, dict):
            raise _bad(param, "must be an object")
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block, param, vision, model))
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("name"), str):
                raise _bad(f"{param}.name", "a tool_use block needs a name")
            calls.append({"id": str(block.get("id") or _id("toolu")), "type": "function",
                          "function": {"name": block["name"], "arguments": json.dumps(block.get("input") or {})}})
        elif kind == "tool_result" and role == "user":
            text = _text(block.get("content"), f"{param}.content")
            results.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                            "content": f"Error: {text}" if block.get("is_error") else text})
        elif kind == "document" and isinstance(block.get("source"), dict) and block["source"].get("type") == "text":
            parts.append({"type": "text", "text": str(block["source"].get("data", ""))})
        # thinking, redacted_thinking, server tool blocks: nothing a local chat template takes
    out: list[dict] = list(results)  # a tool's result answers the call before anything the user adds
    if parts or calls:
        text_only = all(p["type"] == "text" for p in parts)
        msg: dict = {"role": role, "content": "".join(p["text"] for p in parts) if text_only else parts}
        if calls:
            msg["tool_calls"] = calls
            if not msg["content"]:
                msg["content"] = None
        out.append(msg)
    return out


def _fold_system(chat: list[dict], text: str) -> None:
    """A system message in ``messages`` (Anthropic's mid-conversation system message: instructions that apply from
    that point on; Claude Code 2.1 sends one after the first user turn) added to the chat where every chat template
    takes it: before any turn, to the system prompt; after a user turn, to that turn as a paragraph of its own;
    after anything else (tool results), as a user message. Not a chat ``system`` message at its position: many
    templates refuse a system message that is not the first (Qwen3's raises "System message must be at the
    beginning"); nor moved up into the system prompt: that would change the prompt's start at every such message,
    and the engine would evaluate the whole conversation again instead of reusing its cache."""
    if not text:
        return
    last = chat[-1] if chat else None
    if last is None:
        chat.append({"role": "system", "content": text})
    elif last["role"] == "system":  # only the system prompt so far
        last["content"] = f"{last['content']}\n\n{text}"
    elif last["role"] == "user" and isinstance(last.get("content"), str):
        last["content"] = f"{last['content']}\n\n{text}" if last["content"] else text
    elif last["role"] == "user" and isinstance(last.get("content"), list):
        last["content"] = [*last["content"], {"type": "text", "text": text}]
    else:
        chat.append({"role": "user", "content": text})


def _tools(tools, note: Callable[[str], None]) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list")
    out, dropped = [], []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"tools[{i}]", "must be an object")
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            dropped.append(str(tool.get("type") or tool.get("name")))
            continue
        if not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}].name", "a tool needs a name")
        fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    if dropped:
        note(f"messages: tools {', '.join(sorted(set(dropped)))} dropped (a local model cannot run server tools)")
    return out


def to_chat(body: dict, *, vision: bool, count_only: bool = False, note: Callable[[str], None] = log.info) -> dict:
    """The chat request for a Messages request (``count_only``: for count_tokens, which has no max_tokens;
    ``note``: told what was left out)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model", "a model name is required (see GET /v1/models)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of {role, content} objects")
    if not count_only:
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_TOKENS_LIMIT:
            raise _bad("max_tokens", f"is required: a whole number from 1 to {MAX_TOKENS_LIMIT}")
    chat_messages: list[dict] = []
    system = _text(body.get("system"), "system")
    if system:
        chat_messages.append({"role": "system", "content": system})
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", "must be an object")
        if m.get("role") == "system":
            _fold_system(chat_messages, _text(m.get("content"), f"messages[{i}].content"))
        else:
            chat_messages.extend(_message(m, i, vision, model))
    chat: dict = {"model": model, "messages": chat_messages}
    tools = _tools(body.get("tools"), note)
    if tools:
        chat["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            kind = choice.get("type")
            if kind == "any":
                chat["tool_choice"] = "required"
            elif kind == "none":
                chat["tool_choice"] = "none"
            elif kind == "tool" and isinstance(choice.get("name"), str):
                chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            if choice.get("disable_parallel_tool_use") is True:
                chat["parallel_tool_calls"] = False
    if count_only:
        chat["max_tokens"] = 1
        return chat
    chat["max_tokens"] = body["max_tokens"]
    chat["stream"] = bool(body.get("stream"))
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "must be a list of strings")
        chat["stop"] = stops
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _usage(usage) -> dict:
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {"input_tokens": prompt if isinstance(prompt, int) else 0,
            "output_tokens": completion if isinstance(completion, int) else 0}


def _input(args) -> dict:
    """A tool call's arguments as the object Anthropic's ``input`` must be."""
    if isinstance(args, dict):
        return args
    try:
        value = json.loads(args) if isinstance(args, str) and args.strip() else {}
    except ValueError:
        log.info("messages: a tool call's arguments are not JSON; passed as {'arguments': ...}")
        return {"arguments": args}
    return value if isinstance(value, dict) else {"value": value}


def _stop(finish: object, choice: dict, stops: Sequence[str]) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for an engine's finish: ``stop_sequence`` and the string
    when one of the request's ``stop_sequences`` ended it. Only an engine that says which string matched can tell:
    vLLM puts it in the choice's ``stop_reason``; llama-server's chat answers do not say (its recorded streams end
    with ``finish_reason: "stop"`` alone, and the matched text is cut from the answer), so there it is ``end_turn``."""
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return _STOP.get(str(finish), "end_turn"), None


def from_chat(chat: dict, model: str, stops: Sequence[str] = ()) -> dict:
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict] = []
    thought = reasoning_of(message)
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            content.append({"type": "tool_use", "id": str(call.get("id") or _id("toolu")), "name": fn["name"],
                            "input": _input(fn.get("arguments"))})
    stop, sequence = _stop(choice.get("finish_reason"), choice, stops)
    return {"id": _id("msg"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": sequence, "usage": _usage(chat.get("usage"))}


class MessagesStream:
    """Chat-completion chunks in, Anthropic stream events out (a ``stream.Translator``)."""

    def __init__(self, model: str, stops: Sequence[str] = ()) -> None:
        self.model = model
        self.stops = tuple(stops)  # the request's stop_sequences
        self.stopped_by: str | None = None  # the stop string the engine says ended it (vLLM: ``stop_reason``)
        self.index = -1  # of the open content block
        self.open: str | None = None  # "thinking" | "text" | "tool_use"
        self.call: int | None = None  # the chat tool-call index of the open tool_use block
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.started = False
        self.finished = False

    def _start(self) -> Iterable[bytes]:
        if not self.started:
            self.started = True
            message = {"id": _id("msg"), "type": "message", "role": "assistant", "model": self.model,
                       "content": [], "stop_reason": None, "stop_sequence": None,
                       "usage": {"input_tokens": 0, "output_tokens": 0}}
            yield sse("message_start", {"type": "message_start", "message": message})
            yield sse("ping", {"type": "ping"})

    def _close(self) -> Iterable[bytes]:
        if self.open == "thinking":  # a local model signs nothing: an empty signature, as the block requires one
            yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                              "delta": {"type": "signature_delta", "signature": ""}})
        if self.open is not None:
            yield sse("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.open, self.call = None, None

    def _block(self, block: dict) -> Iterable[bytes]:
        yield from self._close()
        self.index += 1
        self.open = block["type"]
        yield sse("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})

    def feed(self, chunk: dict) -> Iterable[bytes]:
        if self.finished:
            return
        yield from self._start()
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            self.finished = True
            yield sse("error", {"type": "error", "error": {"type": "api_error",
                                                           "message": str(message or "the stream broke")}})
            return
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        thought = reasoning_of(delta)
        if thought:
            if self.open != "thinking":
                yield from self._block({"type": "thinking", "thinking": "", "signature": ""})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                              "delta": {"type": "thinking_delta", "thinking": thought}})
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.open != "text":
                yield from self._block({"type": "text", "text": ""})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                              "delta": {"type": "text_delta", "text": text}})
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            index = call.get("index", 0)
            if self.open != "tool_use" or self.call != index:
                yield from self._block({"type": "tool_use", "id": str(call.get("id") or _id("toolu")),
                                        "name": str(fn.get("name") or ""), "input": {}})
                self.call = index
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                  "delta": {"type": "input_json_delta", "partial_json": args}})
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
            self.stopped_by = _stop(self.finish_reason, choice, self.stops)[1]

    def finish(self) -> Iterable[bytes]:
        if self.finished:
            return
        yield from self._start()
        self.finished = True
        if self.finish_reason is None and self.index < 0:
            yield sse("error", {"type": "error", "error": {
                "type": "api_error", "message": "the model server ended its stream without an answer"}})
            return
        yield from self._close()
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        yield sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": "stop_sequence" if self.stopped_by is not None
                                              else _STOP.get(str(self.finish_reason), "end_turn"),
                                              "stop_sequence": self.stopped_by},
                                    "usage": {"output_tokens": usage["output_tokens"],
                                              "input_tokens": usage["input_tokens"]}})
        yield sse("message_stop", {"type": "message_stop"})

"""A chat completion's answer reshaped into another protocol's (an ``AnswerShape``): a whole answer rebuilt at once,
an event stream event by event as it is forwarded.

The gateway forwards the engine's chat stream chunk by chunk (metering it first); ``TranslatedShape.feed`` splits
the chunks into events, parses each and hands it to a translator, whose events leave at once (nothing is held beyond
an incomplete event). A stream the engine broke off ends with the translator's own failure event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import web

from llmctl.app.controller.errors import ApiError

_SPLIT = re.compile(rb"\r?\n\r?\n")
MAX_PARTIAL = 1 << 22  # an event this long without an end is not a chat chunk: dropped rather than held


class Translator(Protocol):
    def feed(self, chunk: dict) -> Iterable[bytes]:
        """The events one chat chunk becomes (possibly none); a chunk ``{"error": ...}`` ends the stream failed."""
        ...

    def finish(self) -> Iterable[bytes]:
        """The events that close the stream (once; later calls yield nothing)."""
        ...


def sse(event: str | None, data: dict) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chat_events(buffer: bytes, chunk: bytes) -> tuple[list[dict | None], bytes]:
    """The parsed ``data:`` payloads of the whole events in ``buffer + chunk`` (None for ``[DONE]``), and what is left
    of an event not yet whole. Payloads that are not JSON objects are skipped."""
    parts = _SPLIT.split(buffer + chunk)
    rest = parts.pop()
    if len(rest) > MAX_PARTIAL:
        rest = b""
    out: list[dict | None] = []
    for part in parts:
        data = b"".join(line[5:].strip() for line in part.splitlines() if line.startswith(b"data:"))
        if not data:
            continue
        if data == b"[DONE]":
            out.append(None)
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out, rest


def as_chunk(chat: dict) -> dict:
    """A whole chat completion as the one stream chunk that says the same (for an engine that ignored stream)."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    delta = {**message, "tool_calls": [{**c, "index": i} for i, c in enumerate(message.get("tool_calls") or [])
                                       if isinstance(c, dict)]}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason") or "stop"}],
            "usage": chat.get("usage")}


def chat_of(response: web.Response) -> dict:
    """The JSON object of a whole chat answer."""
    try:
        chat = json.loads(response.body)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApiError(502, "the model server's answer is not JSON", code="backend_error") from None
    if not isinstance(chat, dict):
        raise ApiError(502, "the model server's answer is not a JSON object", code="backend_error")
    return chat


def kept_headers(response: web.StreamResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("x-llmctl")}


class TranslatedShape:
    """An ``AnswerShape`` made of a stream ``translator`` (None for a request that was not streamed) and ``answer``,
    which rebuilds a whole chat completion. Errors of the engine pass as they came (the routes' own error handling
    shapes them)."""

    content_type = "text/event-stream"

    def __init__(self, endpoint: str, translator: Translator | None, answer: Callable[[dict], dict]) -> None:
        self.endpoint = endpoint
        self.translator = translator
        self.answer = answer
        self._buffer = b""

    def whole(self, response: web.Response) -> web.Response:
        if response.status != 200:
            return response
        chat = chat_of(response)
        if self.translator is None:
            return web.json_response(self.answer(chat), headers=kept_headers(response))
        body = self.feed(sse(None, as_chunk(chat))) + self.end()
        return web.Response(body=body, content_type=self.content_type, headers=kept_headers(response))

    def feed(self, chunk: bytes) -> bytes:
        assert self.translator is not None
        events, self._buffer = chat_events(self._buffer, chunk)
        out = b""
        for event in events:
            out += b"".join(self.translator.finish() if event is None else self.translator.feed(event))
        return out

    def end(self) -> bytes:
        assert self.translator is not None
        return b"".join(self.translator.finish())

    def error(self, message: str) -> bytes:
        assert self.translator is not None
        return b"".join(self.translator.feed({"error": {"message": message}}))


def reasoning_of(message: dict) -> str | None:
    """A reasoning model's thinking, as llama.cpp (``reasoning_content``) or vLLM (``reasoning``) names it."""
    for name in ("reasoning_content", "reasoning"):
        if isinstance(message.get(name), str) and message[name]:
            return message[name]
    return None

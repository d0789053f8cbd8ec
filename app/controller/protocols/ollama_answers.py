"""OpenAI answers as Ollama's (the shapes of Ollama 0.23.0's recorded transcripts): a whole answer as one JSON
object, a stream as NDJSON, one line per piece of text, whose last line has ``done: true``, ``done_reason`` and the
counts and durations (nanoseconds). Durations are the engine's own where it reports them (llama.cpp's ``timings``),
else measured here; ``load_duration`` is the rest of the wall time (loading and waiting for the model). An error
is ``{"error": message}``: with the engine's status for a whole answer, as the last line of a stream."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from llmctl.app.controller.protocols.stream import reasoning_of

NDJSON = "application/x-ndjson"
_EVENT_SPLIT = re.compile(rb"\r?\n\r?\n")
_REASONS = {"length": "length", "stop": "stop", "tool_calls": "stop", "function_call": "stop"}


def created_at(now: float | None = None) -> str:
    """Ollama's timestamp: RFC 3339 with nanoseconds, in UTC."""
    ns = time.time_ns() if now is None else int(now * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def json_answer(data: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", charset="utf-8")


def error_message(data: bytes) -> str:
    """The message of an engine's error answer, whatever its shape."""
    try:
        err = json.loads(data).get("error")
    except (ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested past Python's stack
        return data.decode("utf-8", "replace")[:500] or "the model server failed"
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def error_answer(response: web.Response) -> web.Response:
    return json_answer({"error": error_message(response.body if isinstance(response.body, bytes) else b"")},
                       response.status)


def _arguments(text: Any) -> dict:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def tool_calls(calls: list[dict]) -> list[dict]:
    """OpenAI tool calls (arguments as JSON text) as Ollama's (arguments as an object)."""
    out = []
    for i, c in enumerate(calls):
        fn = c.get("function") or {}
        out.append({"id": c.get("id") or f"call_{i}",
                    "function": {"index": i, "name": fn.get("name", ""), "arguments": _arguments(fn.get("arguments"))}})
    return out


class _Ollama:
    """The common part of the chat and generate shapes: counts, durations, the stream's parsing."""

    content_type = NDJSON

    def __init__(self, endpoint: str, model: str) -> None:
        self.endpoint = endpoint
        self.model = model  # as the client named it
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.usage: dict = {}
        self.timings: dict = {}
        self.reason: str | None = None
        self.pieces = 0
        self._partial = b""
        self._calls: dict[int, dict] = {}  # streamed tool calls, by index, their arguments in pieces
        self.failed = False  # an error line was sent: the stream's last line (Ollama's clients stop on it)

    # answers ---------------------------------------------------------------------------------------------------
    def _line(self, **fields: Any) -> bytes:
        return json.dumps({"model": self.model, "created_at": created_at(), **fields}, ensure_ascii=False,
                          separators=(",", ":")).encode() + b"\n"

    def _done(self) -> dict[str, Any]:
        end = time.perf_counter()
        total = int((end - self.t0) * 1e9)
        first = self.first if self.first is not None else end
        prompt_ns = int(self.timings["prompt_ms"] * 1e6) if _num(self.timings.get("prompt_ms")) \
            else int((first - self.t0) * 1e9)
        eval_ns = int(self.timings["predicted_ms"] * 1e6) if _num(self.timings.get("predicted_ms")) \
            else max(1, int((end - first) * 1e9))  # never 0: clients divide by it for tokens per second
        prompt_n = self.usage.get("prompt_tokens", self.timings.get("prompt_n", 0))
        eval_n = self.usage.get("completion_tokens", self.timings.get("predicted_n", self.pieces))
        return {"done": True, "done_reason": _REASONS.get(self.reason or "stop", self.reason or "stop"),
                "total_duration": total, "load_duration": max(0, total - prompt_ns - eval_ns),
                "prompt_eval_count": prompt_n or 0, "prompt_eval_duration": prompt_ns,
                "eval_count": eval_n or 0, "eval_duration": eval_ns}

    def whole(self, response: web.Response) -> web.Response:
        if response.status != 200:
            return error_answer(response)
        try:
            data = json.loads(response.body)
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            return json_answer({"error": "the model server's answer could not be read"}, 502)
        self.usage = data.get("usage") or {}
        self.timings = data.get("timings") or {}
        self.reason = choice.get("finish_reason")
        self.first = self.t0  # without the engine's timings, the whole wait counts as evaluation
        body = {"model": self.model, "created_at": created_at(), **self._whole(choice)}
        return json_answer({**body, **self._done()})

    def _whole(self, choice: dict) -> dict:
        raise NotImplementedError

    # streams ---------------------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        if self.failed:
            return b""
        events = _EVENT_SPLIT.split(self._partial + chunk)
        self._partial = events.pop()[-(1 << 20):]
        out = b""
        for e in events:
            out += self._event(e)
            if self.failed:  # nothing after the error line, the engine's [DONE] included
                break
        return out

    def _event(self, event: bytes) -> bytes:
        data = next((line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")), None)
        if not data or data == b"[DONE]":
            return b""
        try:
            obj = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(obj, dict):
            return b""
        if obj.get("error") is not None:
            return self.error(error_message(data))
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]
        choices = obj.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.reason = choice["finish_reason"]
        out = self._piece(choice)
        if out and self.first is None:
            self.first = time.perf_counter()
        return out

    def _piece(self, choice: dict) -> bytes:
        raise NotImplementedError

    def _collect_calls(self, delta: dict) -> None:
        for c in delta.get("tool_calls") or ():
            if not isinstance(c, dict):
                continue
            slot = self._calls.setdefault(c.get("index", len(self._calls)), {"function": {"name": "", "arguments": ""}})
            if c.get("id"):
                slot["id"] = c["id"]
            fn = c.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""

    def end(self) -> bytes:
        return b"" if self.failed else self._final()

    def _final(self) -> bytes:
        raise NotImplementedError

    def error(self, message: str) -> bytes:
        if self.failed:
            return b""
        self.failed = True
        return json.dumps({"error": message}, ensure_ascii=False).encode() + b"\n"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class ChatShape(_Ollama):
    def __init__(self, model: str) -> None:
        super().__init__("/api/chat", model)

    def _whole(self, choice: dict) -> dict:
        msg = choice.get("message") or {}
        out: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
        if thought := reasoning_of(msg):
            out["thinking"] = thought
        if msg.get("tool_calls"):
            out["tool_calls"] = tool_calls(msg["tool_calls"])
        return {"message": out}

    def _piece(self, choice: dict) -> bytes:
        delta = choice.get("delta") or {}
        self._collect_calls(delta)
        out = b""
        if thought := reasoning_of(delta):
            out += self._line(message={"role": "assistant", "content": "", "thinking": thought}, done=False)
        if delta.get("content"):
            self.pieces += 1
            out += self._line(message={"role": "assistant", "content": delta["content"]}, done=False)
        return out

    def _final(self) -> bytes:
        out = b""
        if self._calls:
            calls = tool_calls([self._calls[i] for i in sorted(self._calls)])
            out += self._line(message={"role": "assistant", "content": "", "tool_calls": calls}, done=False)
        return out + self._line(message={"role": "assistant", "content": ""}, **self._done())


class GenerateShape(_Ollama):
    def __init__(self, model: str, raw: bool) -> None:
        super().__init__("/api/generate", model)
        self.raw = raw  # answered by /v1/completions (text) rather than chat (message)

    def _whole(self, choice: dict) -> dict:
        if self.raw:
            return {"response": choice.get("text") or ""}
        msg = choice.get("message") or {}
        out = {"response": msg.get("content") or ""}
        if thought := reasoning_of(msg):
            out["thinking"] = thought
        return out

    def _piece(self, choice: dict) -> bytes:
        if self.raw:
            text = choice.get("text") or ""
            thinking = ""
        else:
            delta = choice.get("delta") or {}
            text, thinking = delta.get("content") or "", reasoning_of(delta) or ""
        out = b""
        if thinking:
            out += self._line(response="", thinking=thinking, done=False)
        if text:
            self.pieces += 1
            out += self._line(response=text, done=False)
        return out

    def _final(self) -> bytes:
        return self._line(response="", **self._done())


class EmbedShape:
    """``/api/embed`` (``embeddings``, a list a input) or the older ``/api/embeddings`` (one ``embedding``)."""

    content_type = "application/json"

    def __init__(self, model: str, legacy: bool) -> None:
        self.endpoint = "/api/embeddings" if legacy else "/api/embed"
        self.model = model
        self.legacy = legacy
        self.t0 = time.perf_counter()

    def whole(self, response: web.Response) -> web.Response:
        if response.status != 200:
            return error_answer(response)
        try:
            data = json.loads(response.body)
            vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d.get("index", 0))]
        except (ValueError, KeyError, TypeError, AttributeError):
            return json_answer({"error": "the model server's answer could not be read"}, 502)
        if self.legacy:
            return json_answer({"embedding": vectors[0] if vectors else []})
        usage = data.get("usage") or {}
        return json_answer({"model": self.model, "embeddings": vectors,
                            "total_duration": int((time.perf_counter() - self.t0) * 1e9), "load_duration": 0,
                            "prompt_eval_count": usage.get("prompt_tokens", 0)})

    def feed(self, chunk: bytes) -> bytes:  # embeddings are never streamed
        return chunk

    def end(self) -> bytes:
        return b""

    def error(self, message: str) -> bytes:
        return json.dumps({"error": message}).encode()

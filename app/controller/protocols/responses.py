"""OpenAI Responses (``POST /v1/responses``) as a chat completion, and the chat answer back as a Response.

The request: ``instructions`` and ``input`` (a string, or items: messages of any role, ``function_call`` and
``function_call_output``) become chat ``messages``; function tools, ``tool_choice``, ``text.format`` (json_schema,
json_object), ``max_output_tokens``, ``temperature`` and ``top_p`` map onto their chat fields. Tool types a local
model cannot run (``web_search``, ``local_shell``, namespaces, freeform ``custom`` tools, ...) are dropped, with
their types named in one log line: a client that sends them (Codex does) still gets an answer. ``reasoning``,
``include``, ``truncation`` and the like are accepted and ignored.

The answer: a Response object whose ``output`` holds a ``reasoning`` item (a reasoning model's thinking, as the
engine separates it), a message item (its text) and a ``function_call`` item per tool call; ``usage`` in Responses'
terms. A stream becomes the events the ``openai`` SDK types define, numbered by ``sequence_number``:
``response.created``, ``response.in_progress``, per item ``response.output_item.added`` ...
``response.output_item.done`` (text through ``content_part``/``output_text`` events, thinking through
``reasoning_text`` events, arguments through ``function_call_arguments`` events), then ``response.completed``
(``response.incomplete`` when the token limit cut it, ``response.failed`` when the stream broke).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.media_urls import DATA_URL, inline_only
from llmctl.app.controller.protocols.stream import reasoning_of, sse
from llmctl.app.controller.validation import MAX_TOKENS_LIMIT

log = logging.getLogger("llmctl.controller")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", code="invalid_value", param=param)


_INLINE = f"a base64 data: URL ({DATA_URL})"


def _text_of(content, param: str) -> str | list:
    """A message's content in chat form: a string, or chat parts (text and images)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "must be a string or a list of content parts")
    parts: list[dict] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{param}[{i}]", "must be an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _bad(f"{param}[{i}]", f"an input_image needs an image_url: {_INLINE}; uploaded file ids "
                           "are not kept here")
            inline_only(url, f"{param}[{i}].image_url", _INLINE)  # an engine would fetch a URL (media_urls)
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _bad(f"{param}[{i}].type", f"{kind!r} is not supported here (input_text, input_image)")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
    return json.dumps(output)


def input_messages(items, param: str = "input", note: Callable[[str], None] = log.info) -> list[dict]:
    """Responses input (a string or a list of items) as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad(param, "must be a string or a list of input items")
    messages: list[dict] = []
    skipped: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"{param}[{i}]", "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{param}[{i}].role", "must be user, assistant, system or developer")
            messages.append({"role": "system" if role == "developer" else role,
                             "content": _text_of(item.get("content", ""), f"{param}[{i}].content")})
        elif kind == "function_call":
            name, args = item.get("name"), item.get("arguments", "")
            if not isinstance(name, str) or not isinstance(args, str):
                raise _bad(f"{param}[{i}]", "a function_call needs a string name and string arguments")
            call = {"id": str(item.get("call_id") or _id("call")), "type": "function",
                    "function": {"name": name, "arguments": args}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not isinstance(last.get("content"), list):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                             "content": _output_text(item.get("output", ""))})
        else:  # reasoning, item_reference, calls of tools that were dropped: nothing a chat template takes
            skipped.add(str(kind))
    if skipped:
        note(f"responses: input items of type {', '.join(sorted(skipped))} left out (no chat form)")
    return messages


def _tools(tools) -> tuple[list[dict], list[str]]:
    """Function tools in chat form, and the types of those dropped."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list")
    out, dropped = [], []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"tools[{i}]", "must be an object")
        if tool.get("type") != "function":
            dropped.append(str(tool.get("type")))
            continue
        if not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}].name", "a function tool needs a name")
        fn = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out, dropped


def _tool_choice(choice, names: set[str]):
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name") in names:
        return {"type": "function", "function": {"name": choice["name"]}}
    return "auto"  # a hosted tool, or one that was dropped: let the model choose among what is left


def _response_format(text) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type", "must be text, json_object or json_schema")


def to_chat(body: dict, history: list[dict], note: Callable[[str], None] = log.info) -> dict:
    """The chat request for a Responses request (``history``: the stored conversation of ``previous_response_id``;
    ``note``: told what was left out)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model: a model name is required (see GET /v1/models)", code="missing_model",
                       param="model")
    if "input" not in body:
        raise _bad("input", "is required: a string or a list of input items")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or not 1 <= limit <= MAX_TOKENS_LIMIT):
        raise _bad("max_output_tokens", f"must be a whole number from 1 to {MAX_TOKENS_LIMIT}")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        instructions = _text_of(instructions, "instructions") if isinstance(instructions, list) else None
    messages = [*history, *input_messages(body["input"], note=note)]
    system = [m for m in messages if m["role"] == "system" and isinstance(m.get("content"), str)]
    # one system message, first: many chat templates refuse a system message anywhere else
    if instructions or system:
        joined = "\n\n".join([*([instructions] if isinstance(instructions, str) and instructions else []),
                              *(m["content"] for m in system)])
        messages = [{"role": "system", "content": joined}, *(m for m in messages if m not in system)]
    if not messages:
        raise _bad("input", "holds nothing to answer")
    tools, dropped = _tools(body.get("tools"))
    if dropped:
        note(f"responses: tools of type {', '.join(sorted(set(dropped)))} dropped (a local model cannot run them)")
    chat: dict = {"model": model, "messages": messages, "stream": bool(body.get("stream"))}
    if tools:
        chat["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), {t["function"]["name"] for t in tools})
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if limit is not None:
        chat["max_tokens"] = limit
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return chat


def usage_of(usage) -> dict | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0,
                                     "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


class ResponseShell:
    """The fields of a Response that come from its request, and its id."""

    def __init__(self, body: dict, model: str) -> None:
        self.id = _id("resp")
        self.created_at = time.time()
        tools = body.get("tools")
        self.fields = {
            "instructions": body.get("instructions") if isinstance(body.get("instructions"), str) else None,
            "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
            "model": model,
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
            if isinstance(tools, list) else [],
            "max_output_tokens": body.get("max_output_tokens"),
            "previous_response_id": body.get("previous_response_id"),
            "store": body.get("store") is not False,
            "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
            "truncation": "disabled",
            "background": False,
        }
        for tool in self.fields["tools"]:
            tool.setdefault("strict", None)
            tool.setdefault("parameters", None)
        if not isinstance(self.fields["tool_choice"], (str, dict)) or (
                isinstance(self.fields["tool_choice"], dict) and self.fields["tool_choice"].get("type") != "function"):
            self.fields["tool_choice"] = "auto"

    def response(self, status: str, output: list[dict], usage: dict | None = None, *, error: dict | None = None,
                 incomplete: str | None = None) -> dict:
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
                "output": output, "usage": usage, **self.fields}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" \
        else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def _reasoning_item(item_id: str, text: str, status: str = "completed") -> dict:
    content = [{"type": "reasoning_text", "text": text}] if status == "completed" else []
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def answer_messages(output: list[dict]) -> list[dict]:
    """A Response's output as chat messages (for the conversation kept under its id)."""
    return input_messages(output, "output") if output else []


def from_chat(shell: ResponseShell, chat: dict) -> dict:
    """A whole chat completion as a Response."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output: list[dict] = []
    thought = reasoning_of(message)
    if thought:
        output.append(_reasoning_item(_id("rs"), thought))
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(_message_item(_id("msg"), text))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            args = fn.get("arguments")
            output.append(_call_item(_id("fc"), str(call.get("id") or _id("call")), fn["name"],
                                     args if isinstance(args, str) else json.dumps(args or {})))
    cut = choice.get("finish_reason") == "length"
    return shell.response("incomplete" if cut else "completed", output, usage_of(chat.get("usage")),
                          incomplete="max_output_tokens" if cut else None)


class ResponsesStream:
    """Chat-completion chunks in, Responses events out (a ``stream.Translator``). ``on_done`` gets the final
    Response (completed, incomplete or failed) once."""

    def __init__(self, shell: ResponseShell, on_done: Callable[[dict], None] | None = None) -> None:
        self.shell = shell
        self.on_done = on_done
        self.seq = 0
        self.output: list[dict] = []
        self.open: dict | None = None  # the item being streamed: {"item", "index", "text"|"args", "call"}
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.started = False
        self.finished = False

    def _event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(kind, data)

    def _start(self) -> Iterable[bytes]:
        if not self.started:
            self.started = True
            shell = self.shell.response("in_progress", [])
            yield self._event("response.created", response=shell)
            yield self._event("response.in_progress", response=shell)

    def _close_item(self) -> Iterable[bytes]:
        current, self.open = self.open, None
        if current is None:
            return
        item, index = current["item"], current["index"]
        if item["type"] == "reasoning":
            text = current["text"]
            yield self._event("response.reasoning_text.done", item_id=item["id"], output_index=index,
                              content_index=0, text=text)
            done = _reasoning_item(item["id"], text)
        elif item["type"] == "message":
            text = current["text"]
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            yield self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                              text=text, logprobs=[])
            yield self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                              part=part)
            done = _message_item(item["id"], text)
        else:
            args = current["args"]
            yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                              name=item["name"], arguments=args)
            done = _call_item(item["id"], item["call_id"], item["name"], args)
        self.output.append(done)
        yield self._event("response.output_item.done", output_index=index, item=done)

    def _open_item(self, item: dict, **state) -> Iterable[bytes]:
        yield from self._close_item()
        index = len(self.output)
        self.open = {"item": item, "index": index, **state}
        yield self._event("response.output_item.added", output_index=index, item=item)
        if item["type"] == "message":
            yield self._event("response.content_part.added", item_id=item["id"], output_index=index,
                              content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                     "logprobs": []})

    def feed(self, chunk: dict) -> Iterable[bytes]:
        if self.finished:
            return
        yield from self._start()
        if "error" in chunk and not chunk.get("choices"):
            yield from self._fail(chunk["error"])
            return
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        thought = reasoning_of(delta)
        if thought:
            if self.open is None or self.open["item"]["type"] != "reasoning":
                yield from self._open_item(_reasoning_item(_id("rs"), "", "in_progress"), text="")
            assert self.open is not None
            self.open["text"] += thought
            yield self._event("response.reasoning_text.delta", item_id=self.open["item"]["id"],
                              output_index=self.open["index"], content_index=0, delta=thought)
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.open is None or self.open["item"]["type"] != "message":
                yield from self._open_item(_message_item(_id("msg"), "", "in_progress"), text="")
            assert self.open is not None
            self.open["text"] += text
            yield self._event("response.output_text.delta", item_id=self.open["item"]["id"],
                              output_index=self.open["index"], content_index=0, delta=text, logprobs=[])
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            index = call.get("index", 0)
            current = self.open
            if current is None or current["item"]["type"] != "function_call" or current["call"] != index \
                    or (call.get("id") and call["id"] != current["item"]["call_id"]):
                item = _call_item(_id("fc"), str(call.get("id") or _id("call")), str(fn.get("name") or ""), "",
                                  "in_progress")
                yield from self._open_item(item, args="", call=index)
                current = self.open
            assert current is not None
            if fn.get("name") and not current["item"]["name"]:
                current["item"]["name"] = fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                current["args"] += args
                yield self._event("response.function_call_arguments.delta", item_id=current["item"]["id"],
                                  output_index=current["index"], delta=args)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _fail(self, error) -> Iterable[bytes]:
        yield from self._close_item()
        message = error.get("message") if isinstance(error, dict) else str(error)
        final = self.shell.response("failed", self.output, self.usage,
                                    error={"code": "server_error", "message": str(message or "the stream broke")})
        self.finished = True
        yield self._event("response.failed", response=final)
        if self.on_done is not None:
            self.on_done(final)

    def finish(self) -> Iterable[bytes]:
        if self.finished:
            return
        yield from self._start()
        if self.finish_reason is None and self.open is None and not self.output:
            yield from self._fail({"message": "the model server ended its stream without an answer"})
            return
        yield from self._close_item()
        self.finished = True
        cut = self.finish_reason == "length"
        final = self.shell.response("incomplete" if cut else "completed", self.output, self.usage,
                                    incomplete="max_output_tokens" if cut else None)
        yield self._event("response.incomplete" if cut else "response.completed", response=final)
        if self.on_done is not None:
            self.on_done(final)

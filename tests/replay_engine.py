"""A stand-in ``llama-server`` that replays recorded chat streams (``tests/fixtures/llamacpp/streams/``).

llmctl launches it as the ``llama-server`` engine (``backends.llama_server`` pointing at a wrapper that runs this
file), so a request goes through llmctl's real supervisor, scheduler, gateway and the engine's key. It takes
llama-server's argv (``--port`` and ``--alias`` are read, the rest ignored), checks ``LLAMA_API_KEY``, and answers
``/v1/chat/completions``: a request with tools whose last message is not a tool result gets ``tool_call.sse``
(``two_tool_calls.sse`` when the last user message says "two"), one whose last message says "think"
``reasoning.sse``, every other request ``after_tool.sse``; a request
without ``stream`` gets the same recording assembled into one chat completion. ``/v1/messages/count_tokens``
answers a stand-in count (one per word of the JSON of the messages). A last message saying "break" gets its stream
cut after three events, as an engine that dies mid-stream. Every request (path and body) is appended to the
JSON-lines file named by ``REPLAY_ENGINE_LOG``, so tests can read what the translation sent.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STREAMS = Path(__file__).parent / "fixtures" / "llamacpp" / "streams"
PROPS_TEMPLATE_CHARS = 200_000  # /props: a chat template this long (see ``_props``)


def recording(body: dict) -> str:
    messages = body.get("messages") or [{}]
    last = messages[-1]
    if body.get("tools") and last.get("role") != "tool":
        return "two_tool_calls" if "two" in str(last.get("content")) else "tool_call"
    return "reasoning" if "think" in str(last.get("content")) else "after_tool"


def events(name: str) -> list[bytes]:
    return [e + b"\n\n" for e in (STREAMS / f"{name}.sse").read_bytes().split(b"\n\n") if e.strip()]


def whole(name: str, model: str) -> dict:
    """The recording as llama-server answers without ``stream``."""
    text, calls, finish, usage, head, thought = "", {}, "stop", None, {}, None
    for event in events(name):
        data = event.strip()[6:]
        if data == b"[DONE]":
            continue
        chunk = json.loads(data)
        head = head or chunk
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            thought = (thought or "") + (delta.get("reasoning_content") or "") if "reasoning_content" in delta \
                else thought
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"id": call.get("id"), "type": "function",
                                                        "function": {"name": "", "arguments": ""}})
                slot["function"]["name"] += call.get("function", {}).get("name") or ""
                slot["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict = {"role": "assistant", "content": text or None}
    if thought:
        message["reasoning_content"] = thought
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"finish_reason": finish, "index": 0, "message": message}], "created": head.get("created"),
            "model": model, "system_fingerprint": head.get("system_fingerprint"), "object": "chat.completion",
            "usage": usage, "id": head.get("id")}


def serve(port: int, alias: str) -> None:
    key = os.environ.get("LLAMA_API_KEY")
    log = os.environ.get("REPLAY_ENGINE_LOG")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})
            elif self.path == "/props":
                self._props()
            else:
                self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

        def _props(self) -> None:
            """A large /props (a long chat template, as real models have), sent in pieces with pauses between: a
            reader that takes what has arrived instead of reading to the end gets a part of it."""
            data = json.dumps({"default_generation_settings": {"n_ctx": 4096}, "model_path": "/models/tiny.gguf",
                               "chat_template": "{# a long template #}" + "x" * PROPS_TEMPLATE_CHARS}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for at in range(0, len(data), 16384):
                self.wfile.write(data[at:at + 16384])
                self.wfile.flush()
                time.sleep(0.01)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})
                return
            if self.path not in ("/v1/chat/completions", "/v1/messages/count_tokens"):
                self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
                return
            body = json.loads(raw)
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps({"path": self.path, "body": body}) + "\n")
            if self.path == "/v1/messages/count_tokens":  # a stand-in count: one token per word of the messages
                self._send(200, {"input_tokens": len(json.dumps(body["messages"]).split())})
                return
            name = recording(body)
            if not body.get("stream"):
                self._send(200, whole(name, alias))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            played = events(name)
            if "break" in str((body.get("messages") or [{}])[-1].get("content")):
                played = played[:3]  # an engine that dies mid-stream: its body ends before [DONE]
            for event in played:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    print(f"main: server is listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv: list[str]) -> None:
    if "--version" in argv:
        print("version: 0 (replay)")
        return
    port = int(argv[argv.index("--port") + 1])
    alias = argv[argv.index("--alias") + 1] if "--alias" in argv else "model"
    serve(port, alias)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A fake remote for the remotes tests: an OpenAI-compatible server on loopback (aiohttp, in the test's own loop)
that records every request that reaches it (path, headers, body), can require an API key, and can be told to fail:
answer 503, redirect elsewhere, stop listening (connection refused) and come back on the same port, drop the
connection of the next N requests before answering, or accept a request and stall: before its first byte
(``mode = "stall"``), or after the first chunk of a stream (``mode = "stall-mid-stream"``)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from llmctl.runtimes.process import free_port


class FakeRemote:
    def __init__(self, ids: list | tuple = ("m1",), *, key: str | None = None, name: str = "fake") -> None:
        self.ids = list(ids)
        self.key = key
        self.name = name
        self.port = free_port()
        self.seen: list[tuple[str, str, dict[str, str], dict | None]] = []  # (method, path, headers, body)
        self.mode = "ok"  # ok | 503 | stall | stall-mid-stream | empty-stream | linger-after-done
        self.drops = 0  # the next this many chat requests lose their connection before any answer
        self.redirect_to: str | None = None
        self._unstall = asyncio.Event()  # set when it stops: a stalled handler ends, so stopping never waits on it
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auths(self) -> set[str | None]:
        return {headers.get("Authorization") for _m, _p, headers, _b in self.seen}

    async def start(self) -> FakeRemote:
        self._unstall = asyncio.Event()
        app = web.Application()
        app.add_routes([web.get("/v1/models", self._models), web.post("/v1/chat/completions", self._chat)])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        self._unstall.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": {"message": "bad key", "type": "auth", "code": 401}}, status=401)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        self.seen.append(("GET", request.path, dict(request.headers), None))
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": i, "object": "model"} for i in self.ids]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.seen.append(("POST", request.path, dict(request.headers), body))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(self.redirect_to + "/v1/chat/completions")
        if self.drops:
            self.drops -= 1
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection end before any answer
            return web.Response()
        if self.mode == "stall":
            await self._unstall.wait()
            return web.json_response({"error": {"message": "stopped", "type": "server", "code": 503}}, status=503)
        if self.mode == "503":
            return web.json_response({"error": {"message": "overloaded", "type": "server", "code": 503}}, status=503)
        text = f"{self.name} says hi to {body['model']}"
        if not body.get("stream"):
            return web.json_response({"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                   "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "empty-stream":  # a 200 event stream that ends before its first event
            await response.write_eof()
            return response
        for i, word in enumerate(text.split(" ")):
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if i == 0 and self.mode == "stall-mid-stream":
                await self._unstall.wait()
                return response
            if i == 0 and self.mode == "end-mid-stream":  # a clean end of body with no [DONE]: an engine that died
                await response.write_eof()
                return response
        await response.write(b"data: [DONE]\n\n")
        if self.mode == "linger-after-done":  # the stream is whole, but the body is kept open
            await self._unstall.wait()
            return response
        await response.write_eof()
        return response

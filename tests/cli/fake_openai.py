"""A small OpenAI-compatible chat server on loopback, standing in for the remote peer of ``llmctl chat``: it streams
``reasoning_content`` then ``content`` as reasoning models do, and can refuse (an HTTP error) or break a stream
(an error event) on chosen requests. It records every request body."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

from aiohttp import web
from stand_in import HELLO_PATH, claim, hello_answer


@dataclass
class Reply:
    """What one request gets: ``status`` >= 400 refuses; ``break_after`` sends an error event after that many
    pieces; ``delay`` seconds between pieces."""

    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=lambda: ["Hello", " there."])
    status: int = 200
    break_after: int | None = None
    delay: float = 0.0


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[Reply] = []  # one per request, in order; the default Reply when it runs out
        self.requests: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.port = 0
        self.secret: str | None = None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        reply = self.script.pop(0) if self.script else Reply()
        if reply.status >= 400:
            return web.json_response({"error": {"message": "the model is loading", "type": "unavailable",
                                                "code": "loading"}}, status=reply.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(payload: dict | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        await send(chunk({"role": "assistant", "content": None}))
        pieces = [{"reasoning_content": r} for r in reply.reasoning] + [{"content": c} for c in reply.content]
        for n, delta in enumerate(pieces):
            if reply.break_after is not None and n == reply.break_after:
                await send({"error": {"message": "the backend crashed", "type": "server_error"}})
                return response
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await send(chunk(delta))
        await send(chunk({}, "stop"))
        await send("[DONE]")
        return response

    async def hello(self, request: web.Request) -> web.Response:
        """Proves it is the controller its state file names (``as_controller``), as the real one does."""
        if self.secret is None:
            return web.json_response({"error": {"message": "not a controller"}}, status=404)
        return web.json_response(hello_answer(self.secret, request.headers))

    def as_controller(self, paths) -> FakeOpenAI:
        """Stand in for the controller of ``paths``' state folder, so the CLI will talk to it."""
        self.secret = claim(paths, self.port)
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get(HELLO_PATH, self.hello)
        self.runner = web.AppRunner(app, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def start(self) -> FakeOpenAI:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.started.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

"""How an answer leaves when the client spoke another protocol than the engine: the gateway forwards the OpenAI
request and hands each piece of the engine's answer to the request's ``AnswerShape`` (``SHAPE``), which rewrites it
into the client's protocol. Metering, limits and records see the engine's own answer, before it is reshaped."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class AnswerShape(Protocol):
    endpoint: str  # the route the client called, for the request record ("/api/chat")
    content_type: str  # of a streamed answer

    def whole(self, response: web.Response) -> web.Response:
        """A whole answer (or an error) of the engine, in the client's protocol."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Bytes of an event stream in; what to send the client now out (may be empty)."""
        ...

    def end(self) -> bytes:
        """The end of a whole stream: what is still to send."""
        ...

    def error(self, message: str) -> bytes:
        """A stream the engine broke off: the error to end it with."""
        ...


SHAPE = web.RequestKey("answer_shape", AnswerShape)

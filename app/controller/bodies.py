"""Request bodies, read with bounds before any handler sees them (issue 23, degraded transport).

- In total: every body in flight reserves its size (its ``Content-Length``; a chunked one ``max_body_bytes`` while
  it arrives, then its real size) from one budget, ``server.max_bodies_bytes``, until its request ends. A request
  that would pass the budget gets 503 with Retry-After at once, before a byte of its body is read: forty clients
  holding 8 MiB bodies open cannot take the controller from 170 MB to 600 MB.
- In time: the whole body must arrive within ``server.body_timeout`` seconds of the headers, else 408. (Slow
  headers are bounded by the server's keep-alive timeout, set from ``server.header_timeout``: aiohttp closes a
  connection that has not sent a whole request by then.)
- Its encoding: a ``Content-Encoding`` the body does not match (``gzip`` on bytes that are not gzip) is the client's
  error, 400, not an internal one.

Handlers then read the body as before (``request.read()`` returns what was read here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from llmctl.app.controller.errors import error_response
from llmctl.app.settings import ServerSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyBudget:
    """Bytes of request bodies held now, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


def body_middleware(server: ServerSettings, budget: BodyBudget | None = None):
    largest = server.max_body_bytes
    budget = budget or BodyBudget(max(int(server.max_bodies_bytes), largest))

    @web.middleware
    async def bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        declared = request.content_length
        if declared is not None and declared > largest:
            return error_response(413, f"request body is larger than {largest} bytes", code="request_too_large")
        reserved = declared if declared is not None else largest
        if not budget.take(reserved):
            return error_response(
                503, f"too many request bodies are being received at once ({budget.held} bytes of at most "
                f"{budget.limit}, server.max_bodies_bytes); retry shortly", code="server_busy", retry_after=1)
        try:
            try:
                body = await asyncio.wait_for(request.read(), server.body_timeout)
            except TimeoutError:
                return error_response(408, f"the request body did not arrive within {server.body_timeout:g} s "
                                      "(server.body_timeout)", code="request_timeout")
            except (HttpProcessingError, RequestPayloadError) as exc:  # Content-Encoding: gzip on bytes that are not
                encoding = request.headers.get("Content-Encoding", "none")
                why = " ".join(str(exc).split())
                return error_response(400, f"the request body cannot be read as its Content-Encoding ({encoding}) "
                                      f"says ({why}); send it as declared", code="bad_content_encoding")
            if declared is None:  # chunked: hold what it really is from now on
                budget.give(reserved - len(body))
                reserved = len(body)
            return await handler(request)
        finally:
            budget.give(reserved)

    return bodies

"""Request bodies, read with bounds before any handler sees them (issue 23, degraded transport).

- In total: every body in flight reserves its size (its ``Content-Length``; a chunked or compressed one
  ``max_body_bytes`` while it arrives, then its real, decompressed size) from one budget, ``server.max_bodies_bytes``,
  until its request ends. A request that would pass the budget gets 503 with Retry-After at once, before a byte of its
  body is read: forty clients holding 8 MiB bodies open cannot take the controller from 170 MB to 600 MB.
- In time: the whole body must arrive within ``server.body_timeout`` seconds of the headers, else 408. (Slow
  headers are bounded by the server's keep-alive timeout, set from ``server.header_timeout``: aiohttp closes a
  connection that has not sent a whole request by then.)
- Its encoding: a ``Content-Encoding`` the body does not match (``gzip`` on bytes that are not gzip) is the client's
  error, 400, not an internal one.

Handlers then read the body as before (``request.read()`` returns what was read here).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from llmctl.app.controller.errors import error_response
from llmctl.app.settings import ServerSettings


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


class BodyGate:
    """Reads a request's body within the budget and the time limit, before its handler runs. ``enter`` returns the
    refusal to send (413, 503, 408, 400) or None, and what it reserved; ``leave`` gives that back once the request
    is over. Called from the guard middleware, so no frame is added to every traceback."""

    def __init__(self, server: ServerSettings, budget: BodyBudget | None = None) -> None:
        self.largest = server.max_body_bytes
        self.timeout = server.body_timeout
        self.budget = budget or BodyBudget(max(int(server.max_bodies_bytes), self.largest))

    async def enter(self, request: web.Request) -> tuple[web.Response | None, int]:
        if not request.body_exists:
            return None, 0
        declared = request.content_length
        if declared is not None and declared > self.largest:
            return error_response(413, f"request body is larger than {self.largest} bytes",
                                  code="request_too_large"), 0
        # a compressed body's Content-Length says nothing of what it holds once decompressed (the budget counts
        # what is in memory): it reserves the largest body allowed, what aiohttp lets it decompress to
        # (test_a_gzip_body_is_charged_its_decompressed_size)
        encoded = request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        reserved = declared if declared is not None and not encoded else self.largest
        budget = self.budget
        if not budget.take(reserved):
            return error_response(
                503, f"too many request bodies are being received at once ({budget.held} bytes of at most "
                f"{budget.limit}, server.max_bodies_bytes); retry shortly", code="server_busy", retry_after=1), 0
        try:
            async with asyncio.timeout(self.timeout):  # a scope, not a task per request as wait_for makes
                body = await request.read()
        except TimeoutError:
            return error_response(408, f"the request body did not arrive within {self.timeout:g} s "
                                  "(server.body_timeout)", code="request_timeout"), reserved
        except (HttpProcessingError, RequestPayloadError) as exc:  # Content-Encoding: gzip on bytes that are not
            encoding = request.headers.get("Content-Encoding", "none")
            why = " ".join(str(exc).split())
            return error_response(400, f"the request body cannot be read as its Content-Encoding ({encoding}) "
                                  f"says ({why}); send it as declared", code="bad_content_encoding"), reserved
        except BaseException:
            budget.give(reserved)
            raise
        if reserved > len(body):  # chunked or compressed: hold what it really is from now on
            budget.give(reserved - len(body))
            reserved = len(body)
        return None, reserved

    def leave(self, reserved: int) -> None:
        self.budget.give(reserved)

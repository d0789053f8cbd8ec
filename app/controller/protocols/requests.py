"""What every route shares: a request id (the client's ``x-request-id`` when it is short and printable, else a new
one) returned on every answer and kept in the request record; and an unknown route answered as a JSON error in
OpenAI's shape naming the method and the path (a bare "Not Found" reads as a missing model to clients such as
langchain)."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from llmctl.app.controller.errors import error_response

REQUEST_ID = web.RequestKey("request_id", str)
HEADER = "X-Request-Id"
_GOOD_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces, at most 128 characters

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id(given: str | None) -> str:
    """The client's id when it is safe to echo and log, else a new one."""
    if given is not None and _GOOD_ID.match(given):
        return given
    return "req_" + os.urandom(16).hex()  # as random as a uuid4, without building one


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every answer, refusals of the guards included, carries the request's id."""
    request[REQUEST_ID] = request_id(request.headers.get(HEADER))
    return await handler(request)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: the request's id on every answer, streamed ones too."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[HEADER] = rid


def unknown_route(request: web.Request, exc: web.HTTPException) -> web.Response | None:
    """The JSON answer to a request no route matched (404) or whose method the route does not take (405)."""
    if exc.status not in (404, 405) or request.match_info.route.resource is not None:
        return None  # a handler's own 404 (a model that does not exist) keeps its message
    path = request.path if len(request.path) <= 200 else request.path[:200] + "…"
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return error_response(405, f"{request.method} {path} is not allowed" + (f"; use {allowed}" if allowed else ""),
                              code="method_not_allowed")
    return error_response(404, f"no route {request.method} {path}: llmctl serves the OpenAI API under /v1 "
                          "(/v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings), the Ollama API under "
                          "/api and its control API under /llmctl/v1", code="unknown_route")

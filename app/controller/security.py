"""The gateway's guards, applied to every route: a local endpoint must not be reachable by a web page or another
user's process just because it listens on 127.0.0.1.

- Host header: when bound to loopback only loopback names (plus ``allowed_hosts``) are accepted, which stops
  DNS rebinding: a web page cannot reach the endpoint through a name that resolves to 127.0.0.1.
- API keys: when any is set (``server.api_key`` or ``[[server.keys]]``), every route needs one; the presented key is
  compared with every secret in constant time, and the request carries which key it was (``KEY_STATE``) for the
  gateway's limits and usage. A key whose role does not cover the route gets 403 naming the scope needed
  (``controller.scopes``).
- Origin: a request with an ``Origin`` header comes from a web page; unless that origin is in
  ``server.cors_origins`` it is refused with 403 before it does anything. CORS headers go to listed origins only;
  backends' own headers are never forwarded.
- Content type: POST, PUT, PATCH and DELETE need ``Content-Type: application/json``. A page can send a ``text/plain``
  POST without a preflight (and without an Origin in some old browsers); it cannot send JSON without one.
- Errors: ``ApiError`` and aiohttp's HTTP errors leave as OpenAI-shaped JSON; anything unexpected is logged with
  its traceback and leaves as an OpenAI-shaped 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from llmctl.app.controller import scopes
from llmctl.app.controller.bodies import BodyGate
from llmctl.app.controller.errors import ApiError, error_response
from llmctl.app.controller.limits import Keys
from llmctl.app.controller.protocols.requests import request_ids, unknown_route
from llmctl.app.controller.request_keys import EXTRA_HEADERS, KEY_STATE
from llmctl.app.handshake import HELLO_PATH
from llmctl.app.settings import ServerSettings, is_loopback

log = logging.getLogger("llmctl.controller")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:7878
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def build_middlewares(server: ServerSettings, keys: Keys,
                      reshape: Callable[[web.Request, web.StreamResponse], web.StreamResponse] | None = None) -> list:
    """``reshape``: given every error response (the guards' own included), returns it in the shape of the route's
    protocol."""
    check_host = is_loopback(server.host)
    allowed = {h.lower() for h in server.allowed_hosts}
    hosts_ok: set[str] = set()  # Host headers already found loopback or allowed (parsed once, not per request)
    origins = set(server.cors_origins)
    bodies = BodyGate(server)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPRequestEntityTooLarge:
            response = error_response(413, f"request body is larger than {server.max_body_bytes} bytes",
                                      code="request_too_large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = unknown_route(request, exc) or error_response(exc.status, exc.reason or "request failed")
        except (asyncio.CancelledError, ConnectionResetError):
            raise  # the client went away: nothing to answer
        except Exception as exc:
            log.exception("unexpected error in %s %s", request.method, request.path)
            if request.get(STARTED_KEY):
                raise  # a stream already sent its headers: aiohttp closes the connection
            response = error_response(500, f"internal error in llmctl ({type(exc).__name__}: {exc}); the "
                                      "controller logged the traceback; please report it", code="internal_error")
        if response.status >= 400 and reshape is not None:
            return reshape(request, response)  # an error of a route whose protocol has its own error shape
        return response

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if check_host and (host := request.headers.get("Host", "")) not in hosts_ok:
            name = _host_name(host).lower()
            if not is_loopback(name) and name not in allowed:
                return error_response(403, "Host header not allowed: the endpoint is bound to loopback "
                                      "(add the name to server.allowed_hosts if this is intended)", code="bad_host")
            if len(hosts_ok) < 64:  # bounded: a client inventing Host headers cannot grow it
                hosts_ok.add(host)
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin not in origins:
                return error_response(403, f"requests from web pages at {origin} are refused; to allow that origin, "
                                      "add it to server.cors_origins", code="origin_not_allowed")
            request[CORS_KEY] = origin
            if request.method == "OPTIONS":
                return web.Response(status=204)
        if keys.enabled and request.path != HELLO_PATH:  # the handshake is answered before any key is sent
            given = request.headers.get("Authorization", "")
            token = given[7:] if given[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
            state = keys.identify(token.strip())
            if state is None:
                return error_response(401, "missing or wrong API key: send `Authorization: Bearer <key>` "
                                      "(or `x-api-key: <key>`)", code="invalid_api_key")
            scope = scopes.scope_needed(scopes.route_path(request))
            if not scopes.allowed(state.role, scope):
                return scopes.refusal(state.name, state.role, request.method, request.path, scope)
            request[KEY_STATE] = state
        if request.method in STATE_CHANGING and request.content_type != "application/json":
            given = request.headers.get("Content-Type") or "none"
            return error_response(415, f"{request.method} requests need `Content-Type: application/json` "
                                  f"(got {given}); send the body as JSON", code="unsupported_media_type")
        refused, reserved = await bodies.enter(request)  # bounded in total and in time (controller.bodies)
        try:
            return refused or await handler(request)
        finally:
            bodies.leave(reserved)

    return [request_ids, errors, guard]


CORS_KEY = web.RequestKey("cors_origin", str)
STARTED_KEY = web.RequestKey("response_started", bool)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: CORS headers for allowed origins only, on every response, streamed ones too.
    Also notes that the response has started, so the error middleware never answers a second time."""
    request[STARTED_KEY] = True
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        response.headers.setdefault(name, value)
    origin = request.get(CORS_KEY)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Api-Key"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"

"""The gateway's guards, applied to every route (RELIABILITY 8-10).

- Host header: when bound to loopback only loopback names (plus ``allowed_hosts``) are accepted, which stops
  DNS rebinding: a web page cannot reach the endpoint through a name that resolves to 127.0.0.1.
- API key: when one is set, every route needs it; compared in constant time.
- CORS: llmctl's own policy, off unless ``cors_origins`` lists origins. Backends' headers are never forwarded.
- Errors: ``ApiError`` and aiohttp's HTTP errors leave as OpenAI-shaped JSON.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from llmctl.app.controller.errors import ApiError, error_response
from llmctl.app.settings import LOOPBACK_HOSTS, ServerSettings, is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:7878
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def build_middlewares(server: ServerSettings) -> list:
    api_key = server.api_key.get_secret_value().encode() if server.api_key else None
    check_host = is_loopback(server.host)
    allowed = {h.lower() for h in (*LOOPBACK_HOSTS, *server.allowed_hosts)}
    origins = set(server.cors_origins)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"request body is larger than {server.max_body_bytes} bytes",
                                  code="request_too_large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(exc.status, exc.reason or "request failed")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if check_host and _host_name(request.headers.get("Host", "")).lower() not in allowed:
            return error_response(403, "Host header not allowed: the endpoint is bound to loopback "
                                  "(add the name to server.allowed_hosts if this is intended)", code="bad_host")
        origin = request.headers.get("Origin")
        if origin is not None and origin in origins:
            request[CORS_KEY] = origin
            if request.method == "OPTIONS":
                return web.Response(status=204)
        if api_key is not None:
            given = request.headers.get("Authorization", "")
            token = given[7:] if given[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
            if not hmac.compare_digest(token.encode(), api_key):
                return error_response(401, "missing or wrong API key: send `Authorization: Bearer <key>`",
                                      code="invalid_api_key")
        return await handler(request)

    return [errors, guard]


CORS_KEY = web.RequestKey("cors_origin", str)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: CORS headers for allowed origins only, on every response, streamed ones too."""
    origin = request.get(CORS_KEY)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Api-Key"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"

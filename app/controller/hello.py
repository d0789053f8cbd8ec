"""``GET /llmctl/v1/hello``: the controller proves it is the one its state file names (``app.handshake``). Needs
no key (the client sends none until this answer checks out); it answers an HMAC of the client's nonce, which tells
nothing about the secret."""

from __future__ import annotations

from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.handshake import HELLO_PATH, NONCE_HEADER, proof


def hello_routes(secret: str) -> list[web.AbstractRouteDef]:
    async def hello(request: web.Request) -> web.Response:
        nonce = request.headers.get(NONCE_HEADER, "")
        if not 16 <= len(nonce) <= 128:
            raise ApiError(400, f"send a random nonce of 16 to 128 characters in {NONCE_HEADER}", code="bad_nonce")
        return web.json_response({"proof": proof(secret, nonce)})

    return [web.get(HELLO_PATH, hello)]

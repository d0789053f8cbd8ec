"""An engine's own routes, routed by the request's ``model`` to a deployment whose engine serves them
(``ServesNative``: llama.cpp's ``/tokenize``, ``/detokenize``, ``/apply-template``, ``/infill``, ``/props``,
``/v1/rerank``; vLLM's tokenizer and rerank routes). POSTs go through the gateway's forwarding path (limits, queue,
records, on-demand load); ``GET /props?model=NAME`` reads the deployment's settings, admitted and recorded as one
request of the key (it may start the model), its ``model_path`` replaced by the model's name for a non-admin key.
A model whose engine does not serve the route gets 400 naming it."""

from __future__ import annotations

import json
from functools import partial

import aiohttp
from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.media_urls import check_chat_media
from llmctl.app.controller.protocols.admitted import admitted
from llmctl.app.controller.request_keys import KEY_STATE
from llmctl.app.controller.scopes import ADMIN
from llmctl.runtimes.base import PROPS

# the routes clients call -> the engine's route they are forwarded to (llama-server answers all four rerank names)
ROUTES = {
    "/tokenize": "/tokenize", "/detokenize": "/detokenize", "/apply-template": "/apply-template",
    "/infill": "/infill", "/v1/rerank": "/v1/rerank", "/rerank": "/v1/rerank", "/v1/reranking": "/v1/rerank",
    "/reranking": "/v1/rerank",
}
MAX_PROPS_BYTES = 1 << 20


def check_model(body: dict) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model: a model name is required to route this request (see GET /v1/models)",
                       code="missing_model", param="model")
    if "messages" in body:  # /apply-template and /tokenize render a conversation: its media would be fetched
        check_chat_media(body["messages"])


async def read_at_most(up: aiohttp.ClientResponse, limit: int) -> bytes:
    """An answer read to its end, or its first ``limit + 1`` bytes when it is longer (the caller refuses it):
    ``content.read(n)`` returns what has arrived so far, a part of an answer sent in pieces
    (``test_props_is_read_to_its_end``)."""
    body = bytearray()
    async for chunk in up.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[:limit + 1])


class EngineRoutes:
    def __init__(self, gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[web.AbstractRouteDef]:
        out = [web.post(path, partial(self.forward, upstream)) for path, upstream in ROUTES.items()]
        return [*out, web.get("/props", self.props)]

    async def forward(self, upstream: str, request: web.Request) -> web.StreamResponse:
        return await self.gateway._forward(request, upstream, check_model)

    async def props(self, request: web.Request) -> web.Response:
        """The settings of the model's running engine (started on demand), as the engine gives them."""
        name = request.query.get("model")
        if not name:
            raise ApiError(400, "model: GET /props needs ?model=NAME (see GET /v1/models)", code="missing_model",
                           param="model")
        entry = await self.gateway._entry(name)
        caps = self.gateway.capabilities(entry)
        if PROPS not in caps:
            raise ApiError(400, f"'{entry.name}' does not serve /props ({', '.join(sorted(caps))} only): its engine "
                           "does not serve this route (llama.cpp's engines do)", code="unsupported_capability",
                           param="model")

        async def read(backend) -> tuple[bytes, int]:
            session = self.gateway.upstreams.session(backend)
            async with session.get(backend.base_url + "/props", headers=backend.auth_headers,
                                   allow_redirects=False) as up:
                return await read_at_most(up, MAX_PROPS_BYTES), up.status

        # one request of the key: its rate limit, the model's queue, a record (it may start the model)
        data, status = await admitted(self.gateway, request, entry, "/props", read)
        if len(data) > MAX_PROPS_BYTES:
            raise ApiError(502, "the engine's /props answer is larger than 1 MiB; refused", code="backend_error")
        try:
            props = json.loads(data)
        except ValueError:
            raise ApiError(502, "the engine's /props answer is not JSON", code="backend_error") from None
        key = request.get(KEY_STATE)
        if isinstance(props, dict) and "model_path" in props and key is not None and key.role != ADMIN:
            props["model_path"] = entry.name  # where the file lies on the owner's disk is not an app's to know
            data = json.dumps(props).encode()
        return web.Response(body=data, status=status, content_type="application/json")

"""The routes of OpenAI Responses and Anthropic Messages, served by translating to chat completions.

Why translate for every engine, even one that serves these protocols itself (llama-server, vLLM): the translated
request goes through the gateway's one forwarding path, so keys, rate limits, the queue, metering (the engine's
chat stream is what the meter reads), request records, on-demand load and failover (to a remote that may speak only
chat) apply exactly as to chat; the events that leave are llmctl's own, checked against the SDKs' types, whatever
the engine's version emits; and ``previous_response_id`` needs the conversation llmctl keeps anyway (llama-server
keeps none). An engine's own implementation would add a second set of shapes to keep right and nothing a client
sees. The one request passed through as it came is ``count_tokens``, to an engine that declares Anthropic's
protocol (``ANTHROPIC_MESSAGES`` in its native capabilities): no stream, no state, nothing to meter, and the engine
counts without evaluating the prompt.

Errors on ``/v1/messages*`` leave in Anthropic's shape (``anthropic_errors``, the error middleware's ``reshape``, so
the chat routes pay for no extra middleware), whoever raised them: the key check, the body limit, the gateway's
policy, or the engine.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.gateway import Gateway
from llmctl.app.controller.media_urls import check_chat_media
from llmctl.app.controller.protocols import messages, responses
from llmctl.app.controller.protocols.store import ResponseStore
from llmctl.app.controller.protocols.stream import TranslatedShape, chat_of, kept_headers
from llmctl.app.controller.request_keys import KEY_STATE
from llmctl.app.controller.validation import check_chat
from llmctl.runtimes.base import ANTHROPIC_MESSAGES, VISION

_CHAT = "/v1/chat/completions"
_COUNT = "/v1/messages/count_tokens"
_ANTHROPIC = ("/v1/messages", "/messages")  # the routes whose errors are in Anthropic's shape
log = logging.getLogger("llmctl.controller")


def _partition(request: web.Request) -> str | None:
    key = request.get(KEY_STATE)
    return key.name if key is not None else None


def _checked(body: dict) -> None:
    """An Anthropic request the translation has already checked (what count_tokens sends as it came): its media too,
    at any depth (the translation counts only a ``tool_result``'s text, the engine would read its images)."""
    check_chat_media(body.get("messages"), how=messages.INLINE)


class _Count:
    """count_tokens answered by a one-token chat answer: its ``prompt_tokens``."""

    endpoint = _COUNT
    content_type = "application/json"

    def whole(self, response: web.Response) -> web.Response:
        if response.status != 200:
            return response
        usage = chat_of(response).get("usage")
        count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(count, int):
            raise ApiError(502, "the model server did not say how many tokens the prompt has", code="backend_error")
        return web.json_response({"input_tokens": count}, headers=kept_headers(response))

    def feed(self, chunk: bytes) -> bytes:  # never streamed
        return chunk

    def end(self) -> bytes:
        return b""

    def error(self, message: str) -> bytes:
        return b""


class ProtocolRoutes:
    def __init__(self, gateway: Gateway, store: ResponseStore | None = None) -> None:
        self.gateway = gateway
        self.store = store or ResponseStore()
        self._noted: set[str] = set()

    def _note(self, message: str) -> None:
        """What a translation left out, logged once per distinct message (Codex sends the same tools each turn)."""
        if message not in self._noted and len(self._noted) < 256:
            self._noted.add(message)
            log.warning("%s; said once", message)

    def routes(self) -> list[web.AbstractRouteDef]:
        out = []
        for prefix in ("/v1", ""):  # as the gateway's: clients given a base URL without /v1
            out += [
                web.post(prefix + "/responses", self.create_response),
                web.get(prefix + "/responses/{id}", self.get_response),
                web.delete(prefix + "/responses/{id}", self.delete_response),
                web.post(prefix + "/messages", self.create_message),  # ?beta=true (Claude Code) lands here too
                web.post(prefix + "/messages/count_tokens", self.count_tokens),
            ]
        return out

    async def _caps(self, model) -> frozenset[str]:
        if not isinstance(model, str) or not model.strip():
            return frozenset()
        return self.gateway.capabilities(await self.gateway._entry(model))

    # OpenAI Responses -----------------------------------------------------------------------------------------
    async def create_response(self, request: web.Request) -> web.StreamResponse:
        _raw, body = await Gateway._body(request)
        partition = _partition(request)
        history: list[dict] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            found = self.store.get(partition, previous) if isinstance(previous, str) else None
            if found is None:
                raise ApiError(404, f"Previous response with id '{previous}' not found.", param="previous_response_id",
                               code="previous_response_not_found")
            history = found.conversation
        chat = responses.to_chat(body, history, note=self._note)
        if any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in chat["messages"]) and VISION not in await self._caps(chat["model"]):
            raise ApiError(400, f"input: '{chat['model']}' cannot read images: it has no vision projector (mmproj). "
                           "Use a vision model, or import this one with its projector", param="input",
                           code="unsupported_capability")
        shell = responses.ResponseShell(body, chat["model"])
        asked = [m for m in chat["messages"] if m["role"] != "system"]

        def keep(final: dict) -> dict:
            if shell.fields["store"] and final["status"] != "failed":
                self.store.put(partition, final, [*asked, *responses.answer_messages(final["output"])])
            return final

        translator = responses.ResponsesStream(shell, keep) if chat["stream"] else None
        shape = TranslatedShape("/v1/responses", translator, lambda whole: keep(responses.from_chat(shell, whole)))
        return await self.gateway._forward(request, _CHAT, check_chat, body=chat, shape=shape)

    async def get_response(self, request: web.Request) -> web.Response:
        found = self.store.get(_partition(request), request.match_info["id"])
        if found is None:
            raise ApiError(404, f"No response found with id '{request.match_info['id']}'.", code="not_found")
        return web.json_response(found.response)

    async def delete_response(self, request: web.Request) -> web.Response:
        response_id = request.match_info["id"]
        if not self.store.delete(_partition(request), response_id):
            raise ApiError(404, f"No response found with id '{response_id}'.", code="not_found")
        return web.json_response({"id": response_id, "object": "response", "deleted": True})

    # Anthropic Messages ---------------------------------------------------------------------------------------
    async def create_message(self, request: web.Request) -> web.StreamResponse:
        _raw, body = await Gateway._body(request)
        vision = VISION in await self._caps(body.get("model"))
        chat = messages.to_chat(body, vision=vision, note=self._note)
        model = chat["model"]
        stops = chat.get("stop") or ()  # the request's stop_sequences: an answer says which one ended it
        translator = messages.MessagesStream(model, stops) if chat["stream"] else None
        shape = TranslatedShape("/v1/messages", translator, lambda whole: messages.from_chat(whole, model, stops))
        return await self.gateway._forward(request, _CHAT, check_chat, body=chat, shape=shape)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """Counted by the model's engine with its own tokenizer and chat template. An engine that serves Anthropic's
        protocol (llama-server, vLLM) counts the request as it came (its own ``count_tokens``, which tokenizes
        without evaluating); elsewhere the translated conversation is evaluated with a one-token answer and its
        ``prompt_tokens`` is the count (an engine's prompt cache keeps that work for the request that usually
        follows). Both are the engine's own figures; on llama-server they agree (24 and 24 for the same request,
        measured on the demo model)."""
        _raw, body = await Gateway._body(request)
        caps = await self._caps(body.get("model"))
        chat = messages.to_chat(body, vision=VISION in caps, count_only=True, note=self._note)  # checks it
        if ANTHROPIC_MESSAGES in caps:
            return await self.gateway._forward(request, _COUNT, _checked, body=body)
        return await self.gateway._forward(request, _CHAT, check_chat, body=chat, shape=_Count())


def anthropic_errors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """An error on Anthropic's routes in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``
    (``build_middlewares``' ``reshape``: it sees every error response, the guards' own included)."""
    if not request.path.startswith(_ANTHROPIC) or not isinstance(response, web.Response):
        return response
    try:
        body = json.loads(response.body)  # type: ignore[arg-type]
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else str(error or body)
    except (TypeError, ValueError, AttributeError, RecursionError):  # RecursionError: nested past the stack
        message = response.text or response.reason or "request failed"
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    return web.json_response({"type": "error", "error": {"type": messages.error_type(response.status),
                                                         "message": str(message)}},
                             status=response.status, headers=headers)

"""The Ollama API on llmctl's port, over every engine: ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings`` and ``/api/pull``.

Inference is translated to the OpenAI routes (``ollama_requests``) and goes through the gateway's one forwarding
path — API keys and their limits, the model's queue, metering and request records, on-demand loads, ``keep_alive``
— and its answer is translated back (``ollama_answers``). Models an attached Ollama engine serves are reached the
same way (through that engine's OpenAI routes), as they are on ``/v1``. Names are Ollama's ``NAME:TAG``: a model
llmctl calls ``tiny`` is ``tiny:latest`` (and ``tiny``); one of an attached Ollama, ``ollama/smollm2:135m``, is also
``smollm2:135m``. ``/api/pull`` runs llmctl's own pull (``hf.co/ORG/REPO:QUANT`` is ``ORG/REPO:QUANT``) and streams
its progress as Ollama does. Errors are Ollama's ``{"error": message}``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.protocols import ollama_requests as req
from llmctl.app.controller.protocols.admitted import admitted, check_keep_alive
from llmctl.app.controller.protocols.ollama_answers import (
    ChatShape,
    EmbedShape,
    GenerateShape,
    created_at,
    json_answer,
)
from llmctl.app.controller.request_keys import EXTRA_HEADERS
from llmctl.app.controller.validation import check_chat, check_completion, check_embeddings
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import CHAT, COMPLETIONS, EMBEDDINGS, TOOLS, VISION, BackendState
from llmctl.runtimes.ollama import keep_alive_seconds

OLLAMA_VERSION = "0.23.0"  # the Ollama API these answers follow (its recorded transcripts)
_CAPS = {CHAT: "completion", COMPLETIONS: "completion", EMBEDDINGS: "embedding", VISION: "vision", TOOLS: "tools",
}
_FAR = 4102444800.0  # 2100-01-01: a model kept loaded for ever


def tagged(name: str) -> str:
    """llmctl's name as Ollama shows names: ``NAME:TAG``, ``:latest`` when it has no tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _stamp(t: float) -> str:
    return created_at(t if t > 0 else None)


def _digest(entry: ModelEntry) -> str:
    known = entry.facts.get("sha256")
    if isinstance(known, str) and len(known) == 64:
        return known
    return hashlib.sha256(f"{entry.name}\0{entry.path}\0{entry.size}".encode()).hexdigest()


def _size_label(n: Any) -> str:
    if not isinstance(n, int) or n <= 0:
        return ""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}".replace(".00", "")
    return str(n)


def chat_template(entry: ModelEntry) -> str:
    """The chat template in a registered GGUF's header ("" when there is none, or no local GGUF). Blocking."""
    from llmctl.catalog.gguf import read_gguf

    path = Path(entry.path)
    if entry.format != "gguf" or not path.is_file():
        return ""
    try:
        return read_gguf(path).chat_template or ""
    except (LlmctlError, OSError, ValueError):
        return ""


def details(entry: ModelEntry) -> dict:
    arch = entry.facts.get("architecture") or ""
    return {"parent_model": "", "format": entry.format, "family": arch, "families": [arch] if arch else None,
            "parameter_size": _size_label(entry.facts.get("parameter_count")),
            "quantization_level": entry.facts.get("quant") or ""}


class OllamaApi:
    def __init__(self, gateway, pulls=None) -> None:
        self.gateway = gateway
        self.pulls = pulls  # llmctl's PullsApi, for /api/pull

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.root),
            web.get("/api/version", self.version),
            web.get("/api/tags", self.tags),
            web.get("/api/ps", self.ps),
            web.post("/api/show", self.answering(self.show)),
            web.post("/api/chat", self.answering(self.chat)),
            web.post("/api/generate", self.answering(self.generate)),
            web.post("/api/embed", self.answering(self.embed)),
            web.post("/api/embeddings", self.answering(self.embeddings)),
            web.post("/api/pull", self.answering(self.pull)),
        ]

    @staticmethod
    def answering(handler):
        """Errors in Ollama's shape: ``{"error": message}`` with the status (and headers) the gateway chose."""
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiError as exc:
                response = json_answer({"error": exc.message}, exc.status)
                for k, v in (exc.headers or {}).items():
                    response.headers[k] = v
                if exc.retry_after is not None:
                    response.headers["Retry-After"] = str(exc.retry_after)
                return response
        return handle

    # listing -----------------------------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="llmctl is running (the Ollama API is under /api, the OpenAI API under /v1)")

    async def version(self, request: web.Request) -> web.Response:
        return json_answer({"version": OLLAMA_VERSION})

    def _listed(self, entry: ModelEntry) -> dict:
        name = tagged(entry.name)
        return {"name": name, "model": name, "modified_at": _stamp(entry.added_at), "size": entry.size,
                "digest": _digest(entry), "details": details(entry)}

    async def tags(self, request: web.Request) -> web.Response:
        return json_answer({"models": [self._listed(e) for e in await self.gateway.models.list()]})

    async def ps(self, request: web.Request) -> web.Response:
        out = []
        for backend in list(self.gateway.scheduler.backends.values()):
            if backend.state is not BackendState.READY:
                continue
            entry = await self.gateway.models.get(backend.name)
            if entry is None:
                continue
            status = backend.status()
            held = status.get("memory", {}).get("held", {})
            ttl = status.get("ttl")
            expires = _FAR if ttl is None else time.time() + max(0.0, ttl - (status.get("idle_for") or 0.0))
            out.append({**self._listed(entry), "expires_at": _stamp(expires), "size": sum(held.values()),
                        "size_vram": sum(v for k, v in held.items() if k.startswith("gpu")),
                        "context_length": status.get("ctx_size") or 0})
        return json_answer({"models": out})

    async def show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        entry, _asked = await self._model(body)
        f = entry.facts
        arch = f.get("architecture") or "unknown"
        info = {"general.architecture": arch, "general.parameter_count": f.get("parameter_count"),
                "general.name": f.get("name"), f"{arch}.context_length": f.get("context_length"),
                f"{arch}.embedding_length": f.get("n_embd"), f"{arch}.block_count": f.get("n_layers"),
                f"{arch}.attention.head_count": f.get("n_heads"),
                f"{arch}.attention.head_count_kv": f.get("n_kv_heads"), f"{arch}.vocab_size": f.get("vocab_size")}
        caps = {_CAPS[c] for c in self.gateway.capabilities(entry) if c in _CAPS}
        template = await asyncio.to_thread(chat_template, entry)
        if "completion" in caps and "tools" in template:  # the template renders tools: the model can call them
            caps.add("tools")
        return json_answer({"modelfile": f"# served by llmctl\nFROM {entry.name}\n", "parameters": "",
                            "template": template,
                            "details": details(entry), "model_info": {k: v for k, v in info.items() if v is not None},
                            "capabilities": sorted(caps), "modified_at": _stamp(entry.added_at)})

    # inference ---------------------------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        entry, asked = await self._model(body)
        if not body.get("messages"):
            return await self._load(request, entry, asked, body)
        stream = body.get("stream") is not False  # Ollama streams unless told not to
        shape = ChatShape(asked)
        oai = req.chat_body(body, entry.name, stream)
        return await self.gateway._forward(request, "/v1/chat/completions", check_chat, body=oai, shape=shape)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        entry, asked = await self._model(body)
        if not body.get("prompt") and not body.get("images"):
            return await self._load(request, entry, asked, body)
        stream = body.get("stream") is not False
        path, oai = req.generate_body(body, entry.name, stream)
        shape = GenerateShape(asked, raw=path == "/v1/completions")
        check = check_completion if path == "/v1/completions" else check_chat
        return await self.gateway._forward(request, path, check, body=oai, shape=shape)

    async def embed(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        entry, asked = await self._model(body)
        return await self.gateway._forward(request, "/v1/embeddings", check_embeddings,
                                           body=req.embed_body(body, entry.name), shape=EmbedShape(asked, legacy=False))

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        entry, asked = await self._model(body)
        return await self.gateway._forward(request, "/v1/embeddings", check_embeddings,
                                           body=req.embed_body(body, entry.name, "prompt"),
                                           shape=EmbedShape(asked, legacy=True))

    async def _load(self, request: web.Request, entry: ModelEntry, asked: str, body: dict) -> web.Response:
        """A request with nothing to answer loads the model (``done_reason: "load"``), or with ``keep_alive: 0``
        unloads it (``"unload"``), as Ollama does. Either is one request of the key (``admitted``: its rate limit,
        the model's queue, a record); an unload waits for the requests in flight, as a request's ``keep_alive 0``
        does; pinning (``keep_alive < 0``) and unloading need the admin scope."""
        keep_alive = None
        if body.get("keep_alive") is not None:
            try:
                keep_alive = keep_alive_seconds(body["keep_alive"])
            except LlmctlError as exc:  # its message says what is allowed
                raise req.bad(f"keep_alive: {exc.message}") from None
        request[EXTRA_HEADERS] = {}
        check_keep_alive(request, keep_alive, unload=keep_alive == 0)

        async def nothing(backend) -> None:
            return None

        if keep_alive == 0:
            current = self.gateway.scheduler.get(entry.name)
            if current is not None and current.alive:  # unloaded once idle: never under a request in flight
                await admitted(self.gateway, request, entry, request.path, nothing, keep_alive=0)
                await self.gateway.scheduler.unloads_done()  # its own, when nothing else was in flight
            reason = "unload"
        else:
            await admitted(self.gateway, request, entry, request.path, nothing, keep_alive=keep_alive)
            reason = "load"
        tail = {"message": {"role": "assistant", "content": ""}} if request.path == "/api/chat" else {"response": ""}
        return json_answer({"model": asked, "created_at": created_at(), **tail, "done": True, "done_reason": reason})

    # pull --------------------------------------------------------------------------------------------------
    async def pull(self, request: web.Request) -> web.StreamResponse:
        from llmctl.app.controller.protocols.ollama_pull import pull

        body = await self._body(request)
        return await pull(self, request, body)

    # helpers -----------------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: web.Request) -> dict:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise req.bad("invalid JSON body") from None
        if not isinstance(body, dict):
            raise req.bad("the request body must be a JSON object")
        return body

    async def find(self, name: str) -> ModelEntry | None:
        """The model an Ollama name means: llmctl's name or alias, without ``:latest``, or an attached Ollama's."""
        tries = [name]
        if name.endswith(":latest"):
            tries.append(name[: -len(":latest")])
        tries.append(f"ollama/{name}")
        for candidate in tries:
            try:
                return await self.gateway._entry(candidate)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return None

    async def _model(self, body: dict) -> tuple[ModelEntry, str]:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise req.bad("model is required")
        entry = await self.find(name.strip())
        if entry is None:
            raise ApiError(404, f"model '{name}' not found", code="model_not_found")
        return entry, name

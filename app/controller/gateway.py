"""The OpenAI-compatible gateway: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

A request is checked, routed by its ``model`` to that model's backend (started on demand, waited for within a
bound), and forwarded as the bytes it came in. Streams go back chunk by chunk as they arrive, never buffered
(RELIABILITY 12); a backend that dies mid-stream ends the client's stream with an error event (RELIABILITY 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import aiohttp
from aiohttp import web

from llmctl.app.controller.directory import ModelDirectory
from llmctl.app.controller.errors import ApiError, error_body
from llmctl.app.controller.metrics import Metrics, StreamMeter
from llmctl.app.controller.validation import check_chat, check_completion, check_embeddings
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import CHAT, COMPLETIONS, EMBEDDINGS, BackendFailed, BackendState, DeploymentRefused
from llmctl.runtimes.ledger import DoesNotFit
from llmctl.runtimes.ollama import keep_alive_seconds
from llmctl.runtimes.scheduler import ModelLoading, Scheduler

_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


_NEEDS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS}


class BackendGone(Exception):
    """The backend refused the connection before answering: it died; the request may be sent again."""


class Gateway:
    def __init__(self, models: ModelDirectory, scheduler: Scheduler, metrics: Metrics,
                 capabilities: Callable[[ModelEntry], frozenset[str]], aliases: dict[str, str] | None = None) -> None:
        self.models = models
        self.scheduler = scheduler
        self.metrics = metrics
        self.capabilities = capabilities  # what a model's deployment serves, known before it is started
        self.aliases = aliases or {}  # other names clients may use -> registered model name
        self.session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),  # ollama/NAME:TAG has a slash
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
        ]

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        # auto_decompress off: bytes pass through exactly as the backend sent them
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    # models ------------------------------------------------------------------------------------------------
    def _model_object(self, entry: ModelEntry) -> dict:
        backend = self.scheduler.get(entry.name)
        source = entry.facts.get("source", "llmctl")
        return {
            "id": entry.name,
            "object": "model",
            "created": int(entry.added_at),
            "owned_by": source,
            "llmctl": {
                "source": source,
                "state": backend.state.value if backend else "stopped",
                "format": entry.format,
                "quant": entry.facts.get("quant"),
                "architecture": entry.facts.get("architecture"),
                "context_length": entry.facts.get("context_length"),
                "size": entry.size,
            },
        }

    async def list_models(self, request: web.Request) -> web.Response:
        entries = await self.models.list()
        return web.json_response({"object": "list", "data": [self._model_object(e) for e in entries]})

    async def get_model(self, request: web.Request) -> web.Response:
        return web.json_response(self._model_object(await self._entry(request.match_info["model"])))

    # inference ---------------------------------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "/v1/chat/completions", check_chat)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "/v1/completions", check_completion)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "/v1/embeddings", check_embeddings)

    async def _entry(self, name: str) -> ModelEntry:
        if not isinstance(name, str):
            raise ApiError(400, "model must be a string", code="invalid_value", param="model")
        name = self.aliases.get(name.strip().lower(), name)
        try:
            entry = await self.models.get(name)
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="invalid_model", param="model") from None
        if entry is None:
            known = ", ".join(e.name for e in await self.models.list()) or "none"
            raise ApiError(404, f"The model '{name}' does not exist. Available: {known}. "
                           "Register one with `llmctl import PATH`.", code="model_not_found", param="model")
        return entry

    @staticmethod
    async def _body(request: web.Request) -> tuple[bytes, dict]:
        raw = await request.read()  # bounded by client_max_size: larger bodies raise 413
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        return raw, body

    async def _forward(self, request: web.Request, path: str, check) -> web.StreamResponse:
        raw, body = await self._body(request)
        check(body)
        entry = await self._entry(body["model"])
        caps = self.capabilities(entry)
        if _NEEDS[path] not in caps:
            hint = (f"set `embeddings = true` under [models.{entry.name}] in config.toml to serve it for embeddings"
                    if path == "/v1/embeddings" else "it is configured as an embeddings model")
            raise ApiError(400, f"'{entry.name}' does not serve {path} ({', '.join(sorted(caps))} only): {hint}",
                           code="unsupported_capability", param="model")
        keep_alive = None
        if body.get("keep_alive") is not None:
            try:
                keep_alive = keep_alive_seconds(body["keep_alive"])
            except LlmctlError as exc:
                raise ApiError(400, f"keep_alive: {exc.message}", code="invalid_value", param="keep_alive") from None
        stream = bool(body.get("stream"))
        rec = self.metrics.begin(entry.name, path, stream)
        meter = StreamMeter()
        status, error, usage = 500, None, None
        try:
            for attempt in (1, 2):
                try:
                    async with self.scheduler.use(entry, keep_alive=keep_alive) as backend:
                        url, auth = backend.base_url + path, backend.auth_headers
                        sent = _renamed(raw, body, backend.upstream_model)
                        if stream:
                            response, status, error = await self._stream(request, url, auth, sent, meter, entry.name)
                        else:
                            response, status, usage = await self._unary(url, auth, sent)
                        return response
                except BackendGone:
                    # it died before a byte was sent back: inference has no side effects, so once the supervisor
                    # has noticed (and restarts it), the request goes again, invisibly
                    if attempt == 2:
                        raise ApiError(502, f"the model server for '{entry.name}' refused the request twice; see "
                                       f"`llmctl logs {entry.name}`", code="backend_error") from None
                    await _noticed(backend)
            raise AssertionError("unreachable")
        except DoesNotFit as exc:
            status, error = 503, exc.title
            raise ApiError(503, f"{exc.title}. {exc.message}", code="insufficient_memory",
                           retry_after=10 if exc.busy else None) from None
        except ModelLoading as exc:
            status, error = 503, f"model is still {exc.state}"
            raise ApiError(503, f"'{entry.name}' is still loading; retry shortly", code="model_loading",
                           retry_after=5) from None
        except BackendFailed as exc:
            status, error = 503, exc.message
            detail = f" Last log line: {exc.log_tail[-1]}" if exc.log_tail else ""
            raise ApiError(503, f"{exc.title}: {exc.message}.{detail}", code="backend_failed") from None
        except ApiError as exc:
            status, error = exc.status, exc.message
            raise
        except DeploymentRefused as exc:  # its engine would crash on it here: not transient, so no 503
            status, error = 409, exc.title
            raise ApiError(409, f"{exc.title}. {exc.message}", code="model_unsupported", param="model") from None
        except LlmctlError as exc:
            status, error = 503, exc.message
            raise ApiError(503, f"{exc.title}: {exc.message}", code="backend_unavailable") from None
        finally:
            self.metrics.finish(rec, status, meter, usage=usage, error=error)

    async def _post(self, url: str, auth: dict[str, str], raw: bytes) -> aiohttp.ClientResponse:
        """POST to a backend. A pooled connection the backend closed between requests (llama-server's HTTP
        library does so after a number of keep-alive requests) fails before any answer; inference has no side
        effects, so that one case is retried once on a fresh connection."""
        assert self.session is not None
        headers = {"Content-Type": "application/json", **auth}
        try:
            return await self.session.post(url, data=raw, headers=headers)
        except aiohttp.ClientConnectorError:
            raise BackendGone from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            try:
                return await self.session.post(url, data=raw, headers=headers)
            except aiohttp.ClientConnectorError:
                raise BackendGone from None

    async def _unary(self, url: str, auth: dict[str, str], raw: bytes) -> tuple[web.Response, int, dict | None]:
        try:
            async with await self._post(url, auth, raw) as up:
                data = await up.read()
                status, ctype = up.status, up.headers.get("Content-Type", "application/json")
        except _UPSTREAM_ERRORS as exc:
            raise ApiError(502, f"the model server failed while answering ({type(exc).__name__}); "
                           "see `llmctl logs`", code="backend_error") from None
        usage = None
        if status == 200:
            try:
                usage = json.loads(data).get("usage")
            except (ValueError, AttributeError):
                usage = None
        return web.Response(body=data, status=status, headers={"Content-Type": ctype}), status, usage

    async def _stream(
        self, request: web.Request, url: str, auth: dict[str, str], raw: bytes, meter: StreamMeter, model: str
    ) -> tuple[web.StreamResponse, int, str | None]:
        try:
            upstream = await self._post(url, auth, raw)
        except _UPSTREAM_ERRORS as exc:
            raise ApiError(502, f"the model server did not answer ({type(exc).__name__})",
                           code="backend_error") from None
        finished = False
        try:
            ctype = upstream.headers.get("Content-Type", "application/json")
            if upstream.status != 200 or not ctype.startswith("text/event-stream"):
                data = await upstream.read()  # an error (or a server that ignored stream): pass it on whole
                finished = True
                return web.Response(body=data, status=upstream.status, headers={"Content-Type": ctype}), \
                    upstream.status, None
            response = web.StreamResponse(status=200, headers=_STREAM_HEADERS)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    gaps = meter.feed(chunk)
                    await response.write(chunk)
                    if gaps:
                        self.metrics.observe_gaps(model, gaps)
            except _UPSTREAM_ERRORS as exc:
                if request.transport is None or request.transport.is_closing():
                    return response, 499, "the client went away"
                message = f"the model server stopped mid-stream ({type(exc).__name__}); see `llmctl logs {model}`"
                with contextlib.suppress(*_UPSTREAM_ERRORS):
                    err = json.dumps(error_body(message, 502, code="backend_error")).encode()
                    await response.write(b"data: " + err + b"\n\n")
                    await response.write_eof()
                return response, 502, message
            finished = True
            # clients (the openai SDK among them) may hang up as soon as they read [DONE]; the stream was whole
            with contextlib.suppress(*_UPSTREAM_ERRORS):
                await response.write_eof()
            return response, 200, None
        finally:
            if finished:
                upstream.release()  # back to the pool
            else:
                upstream.close()  # a stream cut short closes the backend connection, which stops generation


async def _noticed(backend, within: float = 3.0) -> None:
    """Wait (bounded) until the supervisor has seen a backend that refused connections exit."""
    deadline = asyncio.get_running_loop().time() + within
    while backend.state is BackendState.READY and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def _renamed(raw: bytes, body: dict, upstream: str | None) -> bytes:
    """The body to forward: as it came, or with ``model`` set to the engine's own name for it (an engine that
    hosts many models knows ``ollama/smollm2:135m`` as ``smollm2:135m``)."""
    if upstream is None or body.get("model") == upstream:
        return raw
    return json.dumps({**body, "model": upstream}, ensure_ascii=False).encode()

"""The OpenAI-compatible gateway: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

A request is checked, routed by its ``model`` to that model's backend (started on demand, waited for within a
bound), and forwarded as the bytes it came in. Streams go back chunk by chunk as they arrive, never buffered
(through the gateway the first token comes as soon as it would directly); a backend that dies mid-stream ends the
client's stream with an error event, never a hang.

Policy, in the order a request meets it: its API key's per-minute limits (``limits.Keys``: 429 with OpenAI's
``x-ratelimit-*`` headers, which successful answers carry too), the response cache (``cache``: an exact-match hit
never reaches the backend), the model's bounded queue (``limits.ModelQueue``: 429 with Retry-After). The tokens an
answer used are charged to its key afterwards.

Failover: a model whose profile names a ``fallback`` (a remote's copy, ``REMOTE/MODEL``, or the other way round)
hands a request to it when it cannot take it before the first byte: failed or unreachable, does not fit, still
loading past the wait, refused or dropped the connection twice, sent nothing within its first-byte bound, or
(upstream) answered 502/503/504. Which model answered is in the ``X-Llmctl-Served-By`` header and the request
record. Once a byte has gone back, nothing fails over.

Bounds: a deployment may carry ``RequestTimeouts`` (a remote's, from its settings): connecting, the first byte (a
stream's first chunk, which is why a stream's headers go back with its first chunk, not before), and each wait for
more after that; a stream that stalls past the last ends with an error event. A supervised local engine has none:
its process is watched instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable

import aiohttp
from aiohttp import web

from llmctl.app.controller.cache import ResponseCache, cache_key, cacheable
from llmctl.app.controller.charging import charged
from llmctl.app.controller.departure import ANSWERED, ClientGone, gone, while_present
from llmctl.app.controller.directory import ModelDirectory
from llmctl.app.controller.engine_link import Dropped, EngineLink, EngineResponse, NotConnected
from llmctl.app.controller.errors import ApiError, error_body
from llmctl.app.controller.limits import Keys, ModelQueue
from llmctl.app.controller.metrics import Metrics, StreamMeter, queue_families
from llmctl.app.controller.native_fields import DROPPED_HEADER, dropped_header, screen
from llmctl.app.controller.protocols.admitted import check_keep_alive
from llmctl.app.controller.protocols.fanout import check_fanout, check_served, fanout
from llmctl.app.controller.protocols.requests import REQUEST_ID
from llmctl.app.controller.protocols.shape import SHAPE, AnswerShape
from llmctl.app.controller.request_keys import EXTRA_HEADERS, KEY_STATE
from llmctl.app.controller.upstream import Upstreams
from llmctl.app.controller.validation import check_chat, check_completion, check_embeddings
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry
from llmctl.catalog.text import printable
from llmctl.runtimes.base import (
    ANTHROPIC_MESSAGES,
    APPLY_TEMPLATE,
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    EMBEDDINGS,
    INFILL,
    RERANK,
    TOKENIZE,
    BackendFailed,
    BackendState,
    DeploymentRefused,
    RequestTimeouts,
)
from llmctl.runtimes.ledger import DoesNotFit
from llmctl.runtimes.ollama import keep_alive_seconds
from llmctl.runtimes.scheduler import ModelLoading, Scheduler

_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)
# no connection was made (refused, unreachable, timed out connecting): nothing was sent, so it may go again
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, NotConnected)


_OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")  # unknown fields dropped
_NEEDS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS,
          # an engine's own routes (``ServesNative``), forwarded to a deployment whose engine serves them
          "/tokenize": TOKENIZE, "/detokenize": DETOKENIZE, "/apply-template": APPLY_TEMPLATE, "/infill": INFILL,
          "/v1/rerank": RERANK, "/v1/messages/count_tokens": ANTHROPIC_MESSAGES}


_DOWN = (502, 503, 504)  # an upstream that says it cannot serve now: another model may, before the first byte


class BackendGone(Exception):
    """The backend refused the connection before answering: it died; the request may be sent again."""


class _Refused(Exception):
    """A backend refused the connection twice (nothing was sent back to the client)."""


class _NoAnswer(ApiError):
    """The upstream gave no answer (it dropped the connection on the retry too, or sent nothing within its first-byte
    bound): nothing was sent back, so another model may take the request; with none left, the client gets this."""


class _Stalled(Exception):
    """The upstream sent nothing within a bound (``RequestTimeouts``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"sent nothing for {seconds:g} s")
        self.seconds = seconds


_UNBOUNDED = RequestTimeouts()  # a supervised engine: its process is watched, its requests are not timed


class _UpstreamDown(Exception):
    """The upstream answered 502/503/504 and another model may take the request (nothing was sent back)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"it answered {status}")
        self.status = status


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LlmctlError):
        return f"{exc.title}: {exc.message}" if exc.message else exc.title
    return str(exc) or type(exc).__name__


class Gateway:
    def __init__(self, models: ModelDirectory, scheduler: Scheduler, metrics: Metrics,
                 capabilities: Callable[[ModelEntry], frozenset[str]], aliases: dict[str, str] | None = None, *,
                 keys: Keys | None = None, cache: ResponseCache | None = None, cache_per_key: bool = True,
                 queue_limits: Callable[[ModelEntry], tuple[int, int | None]] | None = None,
                 fallbacks: dict[str, list[str]] | None = None, max_fanout: int = 8) -> None:
        self.models = models
        self.scheduler = scheduler
        self.metrics = metrics
        self.capabilities = capabilities  # what a model's deployment serves, known before it is started
        self.aliases = aliases or {}  # other names clients may use -> registered model name
        self.keys = keys or Keys([])
        self.cache = cache
        self.cache_per_key = cache_per_key
        self.queue_limits = queue_limits or (lambda entry: (32, None))  # (max_queue, max_concurrent) of a model
        self.queues: dict[str, ModelQueue] = {}
        self.fallbacks = fallbacks or {}  # model name -> models serving the same weights elsewhere
        self.max_fanout = max_fanout  # most answers (n × prompts) one request may ask for
        self.failovers: deque[tuple[str, str, str, str]] = deque(maxlen=100)  # (asked, failed, next, why)
        self.upstreams = Upstreams()  # the client sessions to backends: a TCP pool, one per Unix socket
        metrics.watch(lambda: queue_families({n: q.rejected for n, q in self.queues.items()},
                                             {n: q.inside for n, q in self.queues.items()}))

    def routes(self) -> list[web.AbstractRouteDef]:
        out = []
        for prefix in ("/v1", ""):  # clients given a base URL without /v1 call /chat/completions
            out += [
                web.get(prefix + "/models", self.list_models),
                web.get(prefix + "/models/{model:.+}", self.get_model),  # ollama/NAME:TAG has a slash
                web.post(prefix + "/chat/completions", self.chat_completions),
                web.post(prefix + "/completions", self.completions),
                web.post(prefix + "/embeddings", self.embeddings),
            ]
        return out

    async def open(self) -> None:
        self.upstreams.open()

    async def close(self) -> None:
        await self.upstreams.close()

    def backend_changed(self, backend) -> None:
        """A backend that stopped (or crashed) leaves no session to its Unix socket behind."""
        if backend.state in (BackendState.STOPPED, BackendState.FAILED, BackendState.RESTARTING):
            self.upstreams.drop(backend)

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

    def _queue(self, entry: ModelEntry) -> ModelQueue:
        queue = self.queues.get(entry.name)
        if queue is None:
            queue = self.queues[entry.name] = ModelQueue(entry.name, *self.queue_limits(entry))
        return queue

    async def _forward(self, request: web.Request, path: str, check, *, body: dict | None = None,
                       shape: AnswerShape | None = None) -> web.StreamResponse:
        """Forward a request to ``path`` of its model's backend. ``body``: the OpenAI request another protocol's
        handler translated (else the request's own); ``shape`` rewrites the answer into that protocol."""
        key = request.get(KEY_STATE)
        headers: dict[str, str] = {}
        request[EXTRA_HEADERS] = headers  # added to whatever response leaves, errors and streams included
        if body is None:
            raw, body = await self._body(request)
        else:
            raw = json.dumps(body, ensure_ascii=False).encode()
        if shape is not None:
            request[SHAPE] = shape
        check(body)
        raw, body, dropped = screen(raw, body, openai=path in _OPENAI_PATHS)  # engine-native fields bounded or dropped
        if dropped:
            headers[DROPPED_HEADER] = dropped_header(dropped)
        count = check_fanout(path, body, self.max_fanout)  # n × prompts: that many requests everywhere below
        if key is not None:
            headers.update(self.keys.admit(key, count))  # or 429 with the key's x-ratelimit-* headers
        entry = await self._entry(body["model"])
        caps = self.capabilities(entry)
        if _NEEDS[path] not in caps:
            if path == "/v1/embeddings":
                hint = f"set `embeddings = true` under [models.{entry.name}] in config.toml to serve it for embeddings"
            elif path in ("/v1/chat/completions", "/v1/completions"):
                hint = "it is configured as an embeddings model"
            else:
                hint = "its engine does not serve this route (llama.cpp's engines do)"
            raise ApiError(400, f"'{entry.name}' does not serve {path} ({', '.join(sorted(caps))} only): {hint}",
                           code="unsupported_capability", param="model")
        check_served(entry.name, fanout(path, body), caps, "n" if "n" in body else "prompt")  # answers, not inputs
        keep_alive = None
        if body.get("keep_alive") is not None:
            try:
                keep_alive = keep_alive_seconds(body["keep_alive"])
            except LlmctlError as exc:
                raise ApiError(400, f"keep_alive: {exc.message}", code="invalid_value", param="keep_alive") from None
            check_keep_alive(request, keep_alive)  # for ever: the admin scope's
        stream = bool(body.get("stream"))
        candidates = [entry, *await self._fallbacks(entry, path)] if entry.name in self.fallbacks else [entry]
        rec = self.metrics.begin(entry.name, shape.endpoint if shape is not None else path, stream)
        rec.key = key.name if key is not None else None
        rec.count, rec.request_id = count, request.get(REQUEST_ID)
        meter = StreamMeter()
        status, error, usage = 500, None, None
        stored = None  # the cache key an answer is kept under, when it may be
        if self.cache is not None:
            if cacheable(path, body):
                partition = key.name if key is not None and self.cache_per_key else None
                stored = cache_key(path, entry.name, entry.path, partition, body)
                hit = self.cache.get(stored)
                rec.cache = headers["x-llmctl-cache"] = "hit" if hit is not None else "miss"
                if hit is not None:  # no tokens charged: the backend did no work
                    self.metrics.finish(rec, 200, meter, usage=None, error=None)
                    hit_response = web.Response(body=hit.body, headers={"Content-Type": hit.content_type})
                    return shape.whole(hit_response) if shape is not None else hit_response
            else:
                rec.cache = headers["x-llmctl-cache"] = "bypass"
        queue = self._queue(entry)
        admitted = False
        try:
            current = self.scheduler.get(entry.name)
            ready = current is not None and current.state is BackendState.READY
            queue.admit(current.spec.parallel if ready and current is not None else 0, loading=not ready, n=count)
            admitted = True
            await queue.acquire()  # a no-op unless the model has max_concurrent
            try:
                # a client that leaves cancels its request, upstream included (llama.cpp and vLLM stop on a closed
                # connection)
                response, status, error, usage = await while_present(request, self._candidates(
                    request, path, raw, body, entry, candidates, stream, meter, keep_alive, rec))
            finally:
                queue.release()
            if stored is not None and status == 200 and isinstance(response, web.Response) \
                    and isinstance(response.body, bytes):
                self.cache.put(stored, response.body, response.headers.get("Content-Type", "application/json"), usage)
            if shape is not None and isinstance(response, web.Response) and not response.prepared:
                response = shape.whole(response)
            return response
        except ClientGone:
            status, error = 499, "the client went away"
            return web.Response(status=499)
        except _Refused:
            status, error = 502, "refused twice"
            raise ApiError(502, f"the model server for '{entry.name}' refused the request twice; see "
                           f"`llmctl logs {entry.name}`", code="backend_error") from None
        except DoesNotFit as exc:
            status, error = 503, exc.title
            raise ApiError(503, f"{exc.title}. {exc.message}", code="insufficient_memory",
                           retry_after=10 if exc.busy else None) from None
        except ModelLoading as exc:
            status, error = 503, f"model is still {exc.state}"
            raise ApiError(503, f"'{exc.name}' is still loading; retry shortly", code="model_loading",
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
            if status != 200 and gone(request) and not request.get(ANSWERED, False):
                # whatever broke after the client left, nobody was answered (a stream that began was answered up to
                # its end or its error event, and says itself whether its client left)
                status, error = 499, "the client went away"
            if admitted:
                queue.leave(count)
            self.metrics.finish(rec, status, meter, usage=usage, error=error)
            if key is not None:  # an answer cut short is charged its prompt too: the engine processed it
                self.keys.charge(key, *charged(body, meter.sent, rec.prompt_tokens, rec.completion_tokens))

    async def _candidates(self, request: web.Request, path: str, raw: bytes, body: dict, entry: ModelEntry,
                          candidates: list[ModelEntry], stream: bool, meter: StreamMeter, keep_alive: float | None,
                          rec) -> tuple[web.StreamResponse, int, str | None, dict | None]:
        """The first answer among the model and its fallbacks: each is tried until one takes the request before
        its first byte."""
        for i, target in enumerate(candidates):
            more = i + 1 < len(candidates)
            try:
                answer = await self._serve(request, path, raw, body, target, stream, meter, keep_alive,
                                           fail_over=more)
                rec.served_by = target.name if target is not entry else None
                return answer
            except (LlmctlError, ModelLoading, _Refused, _UpstreamDown, _NoAnswer) as exc:
                if not more:
                    raise
                # nothing was sent back yet: the next model that serves the same weights takes it
                self.failovers.append((entry.name, target.name, candidates[i + 1].name, _reason(exc)))
        raise AssertionError("unreachable")

    async def _fallbacks(self, entry: ModelEntry, path: str) -> list[ModelEntry]:
        """The models this one fails over to (``fallback`` in a profile, either way) that serve ``path``."""
        out = []
        for name in self.fallbacks.get(entry.name, ()):
            try:
                alt = await self.models.get(name)
            except LlmctlError:
                continue
            if alt is not None and alt.name != entry.name and _NEEDS.get(path) in self.capabilities(alt):
                out.append(alt)
        return out

    async def _serve(self, request: web.Request, path: str, raw: bytes, body: dict, entry: ModelEntry, stream: bool,
                     meter: StreamMeter, keep_alive: float | None, *, fail_over: bool,
                     ) -> tuple[web.StreamResponse, int, str | None, dict | None]:
        """One model's answer: its backend started on demand, the request sent (again once if the backend was
        found dead before answering). With ``fail_over``, an upstream 502/503/504 raises ``_UpstreamDown`` instead
        of being passed on, so that another model may answer."""
        for attempt in (1, 2):
            if gone(request):  # never started for, or sent (again, after a restart) for, a client that has left
                raise ClientGone
            try:
                async with self.scheduler.use(entry, keep_alive=keep_alive) as backend:
                    url, auth = backend.base_url + path, backend.auth_headers
                    session = self.upstreams.relay(backend)  # an engine here: llmctl's own pooled HTTP/1.1 client
                    sent = _renamed(raw, body, backend.upstream_model)
                    headers = {"X-Llmctl-Served-By": entry.name}
                    limits = backend.timeouts or _UNBOUNDED  # a remote's; none for a local one
                    meter.sent = True
                    if stream:
                        response, status, error = await self._stream(request, session, url, auth, sent, meter,
                                                                      entry.name, headers, fail_over, limits)
                        usage = None
                    else:
                        response, status, usage = await self._unary(session, url, auth, sent, headers, fail_over,
                                                                    limits, request)
                        error = _said(response.body) if status >= 400 else None
                    if status in (401, 403) and backend.remote:
                        # the remote refused llmctl's key: not the client's key, so not the client's 401
                        raise ApiError(502, f"the remote serving '{entry.name}' refused llmctl's key ({status}); "
                                       "check its key_env or keyring (`llmctl remotes list`)",
                                       code="remote_auth_failed")
                    return response, status, error, usage
            except BackendGone:
                # it died before a byte was sent back: inference has no side effects, so once the supervisor
                # has noticed (and restarts it), the request goes again, invisibly. A deployment with no process
                # to watch (a remote) is told instead.
                backend.connection_refused()
                if attempt == 2:
                    raise _Refused(entry.name) from None
                await _noticed(backend)
        raise AssertionError("unreachable")

    @staticmethod
    async def _post(session: aiohttp.ClientSession | EngineLink, url: str, auth: dict[str, str], raw: bytes,
                    limits: RequestTimeouts = _UNBOUNDED, request: web.Request | None = None,
                    ) -> aiohttp.ClientResponse | EngineResponse:
        """POST to a backend. A pooled connection the backend closed between requests (llama-server's HTTP
        library does so after a number of keep-alive requests) fails before any answer; inference has no side
        effects, so that one case is retried once on a fresh connection."""
        headers = {"Content-Type": "application/json", **auth}
        # never redirected: a backend's key (a remote's API key) goes to its own address only
        kw = {} if limits.connect is None else {
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=limits.connect, sock_read=None)}
        try:
            return await session.post(url, data=raw, headers=headers, allow_redirects=False, **kw)
        except _NOT_CONNECTED:
            raise BackendGone from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, Dropped):
            if request is not None and gone(request):  # nobody to answer: not sent again
                raise ClientGone from None
            try:
                return await session.post(url, data=raw, headers=headers, allow_redirects=False, **kw)
            except _NOT_CONNECTED:
                raise BackendGone from None

    async def _unary(self, session: aiohttp.ClientSession | EngineLink, url: str, auth: dict[str, str], raw: bytes,
                     headers: dict[str, str], fail_over: bool = False, limits: RequestTimeouts = _UNBOUNDED,
                     request: web.Request | None = None) -> tuple[web.Response, int, dict | None]:
        try:
            up = await _await_at_most(limits.first_byte, self._post(session, url, auth, raw, limits, request))
            async with up:
                data = await _bounded(up, limits.between_chunks)
                status, ctype = up.status, up.headers.get("Content-Type", "application/json")
        except _Stalled as exc:  # nothing has gone back: like a refusal, another model may answer
            raise _NoAnswer(504, f"the model server accepted the request, then {exc}; see `llmctl remotes list`",
                            code="backend_timeout") from None
        except _UPSTREAM_ERRORS as exc:
            raise _NoAnswer(502, f"the model server failed while answering ({type(exc).__name__}); "
                            "see `llmctl logs`", code="backend_error") from None
        if fail_over and status in _DOWN:
            raise _UpstreamDown(status)
        usage = _usage(data) if status == 200 else None
        return web.Response(body=data, status=status, headers={"Content-Type": ctype, **headers}), status, usage

    @staticmethod
    async def _open(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**_STREAM_HEADERS, **headers})
        shape = request.get(SHAPE)
        if shape is not None:
            response.content_type = shape.content_type
        await response.prepare(request)
        return response

    @staticmethod
    async def _end_broken_stream(request: web.Request, response: web.StreamResponse, exc: BaseException,
                   model: str) -> tuple[web.StreamResponse, int, str | None]:
        """End a stream the model server broke off after its headers went back: an error event, then the end."""
        if request.transport is None or request.transport.is_closing():
            return response, 499, "the client went away"
        if isinstance(exc, _Stalled):
            message = f"the model server stalled mid-stream ({exc}); the stream was ended"
        elif isinstance(exc, _Empty):
            message = f"{exc}; see `llmctl logs {model}`"
        elif isinstance(exc, _Unfinished):
            message = f"the model server stopped mid-stream ({exc}); see `llmctl logs {model}`"
        else:
            message = f"the model server stopped mid-stream ({type(exc).__name__}); see `llmctl logs {model}`"
        with contextlib.suppress(*_UPSTREAM_ERRORS):
            shape = request.get(SHAPE)
            if shape is not None:
                await response.write(shape.error(message))
            else:
                err = json.dumps(error_body(message, 502, code="backend_error")).encode()
                await response.write(b"data: " + err + b"\n\n")
            request[ANSWERED] = True  # the client was told: its leaving after reading that is no departure
            await response.write_eof()
        return response, 502, message

    async def _stream(
        self, request: web.Request, session: aiohttp.ClientSession | EngineLink, url: str, auth: dict[str, str],
        raw: bytes, meter: StreamMeter, model: str, headers: dict[str, str], fail_over: bool = False,
        limits: RequestTimeouts = _UNBOUNDED,
    ) -> tuple[web.StreamResponse, int, str | None]:
        # the first byte is the stream's first chunk: until it comes nothing has gone back, and another model may
        # still take the request (a remote that accepts and then stalls is failed over like one that refuses)
        first_byte = asyncio.get_running_loop().time() + limits.first_byte if limits.first_byte else None
        try:
            upstream = await _await_at_most(limits.first_byte, self._post(session, url, auth, raw, limits, request))
        except _Stalled as exc:
            raise _NoAnswer(504, f"the model server accepted the request, then {exc}; see `llmctl remotes list`",
                            code="backend_timeout") from None
        except _UPSTREAM_ERRORS as exc:
            raise _NoAnswer(502, f"the model server did not answer ({type(exc).__name__})",
                            code="backend_error") from None
        finished = False
        try:
            ctype = upstream.headers.get("Content-Type", "application/json")
            if fail_over and upstream.status in _DOWN:
                raise _UpstreamDown(upstream.status)
            if upstream.status != 200 or not ctype.startswith("text/event-stream"):
                # an error (or a server that ignored stream): pass it on whole
                try:
                    data = await _bounded(upstream, limits.between_chunks)
                except _Stalled as exc:
                    raise _NoAnswer(504, f"the model server began to answer, then {exc}",
                                    code="backend_timeout") from None
                except _UPSTREAM_ERRORS as exc:
                    raise _NoAnswer(502, f"the model server failed while answering ({type(exc).__name__})",
                                    code="backend_error") from None
                finished = True
                return web.Response(body=data, status=upstream.status, headers={"Content-Type": ctype, **headers}), \
                    upstream.status, _said(data) if upstream.status >= 400 else None
            # headers go back at once unless another model could still take the request (a fallback, or a remote
            # whose first byte is bounded): then they wait for the first chunk, so a stall can still fail over
            response = None if fail_over or first_byte is not None else await self._open(request, headers)
            chunks = upstream.content.iter_any()
            try:
                chunk = await _next_chunk(chunks, None if first_byte is None else
                                    max(0.0, first_byte - asyncio.get_running_loop().time()))
                if chunk is None:
                    raise _Empty("the model server ended its stream without sending anything")
            except (_Stalled, _Empty, *_UPSTREAM_ERRORS) as exc:
                if response is not None:
                    return await self._end_broken_stream(request, response, exc, model)
                if isinstance(exc, _Stalled):
                    raise _NoAnswer(504, f"the model server accepted the request, then sent nothing for "
                                    f"{limits.first_byte:g} s; see `llmctl remotes list`",
                                    code="backend_timeout") from None
                raise _NoAnswer(502, str(exc) if isinstance(exc, _Empty) else
                                f"the model server stopped before its first byte ({type(exc).__name__})",
                                code="backend_error") from None
            if response is None:
                response = await self._open(request, headers)
            shape = request.get(SHAPE)
            gaps: list[float] = []  # observed in batches: one histogram update per token is per-token work
            try:
                while chunk is not None:
                    gaps += meter.feed(chunk)
                    out = chunk if shape is None else shape.feed(chunk)
                    if out:
                        await response.write(out)
                    if meter.done:
                        request[ANSWERED] = True  # its closing event went out: a client that leaves now was answered
                    if len(gaps) >= 64:
                        self.metrics.observe_gaps(model, gaps)
                        gaps = []
                    if meter.done and limits.between_chunks is not None:
                        # whole: a remote keeping its body open after [DONE] is not waited on (a local engine's end
                        # of body follows at once, and reading it keeps the connection for the next request)
                        break
                    chunk = await _next_chunk(chunks, limits.between_chunks)
            except (_Stalled, *_UPSTREAM_ERRORS) as exc:
                return await self._end_broken_stream(request, response, exc, model)
            finally:
                self.metrics.observe_gaps(model, gaps)
            if not meter.done:
                # the body ended without the protocol's closing event: the engine died (a connection closed
                # between two chunks reads as a clean end), so the client is told rather than handed a short answer
                return await self._end_broken_stream(request, response, _Unfinished("ended without its closing [DONE]"),
                                                     model)
            finished = True
            # clients (the openai SDK among them) may hang up as soon as they read [DONE]; the stream was whole
            with contextlib.suppress(*_UPSTREAM_ERRORS):
                if shape is not None:
                    await response.write(shape.end())
                await response.write_eof()
            return response, 200, None
        finally:
            if finished:
                upstream.release()  # back to the pool
            else:
                upstream.close()  # a stream cut short closes the backend connection, which stops generation


class _Empty(Exception):
    """A 200 event stream that ended before its first event."""


class _Unfinished(Exception):
    """An event stream whose body ended before its closing ``[DONE]``."""


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


MAX_ANSWER_BYTES = 64 << 20  # a whole (non-streamed) answer; a remote or an engine sending more is refused


async def _await_at_most(seconds: float | None, step):
    """Await ``step``; ``_Stalled`` if it takes longer than ``seconds`` (None: no bound)."""
    if seconds is None:  # a local engine's requests are not timed: no timeout scope per request and per chunk
        return await step
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await step
    except TimeoutError:
        if scope.expired():
            raise _Stalled(seconds or 0.0) from None
        raise


async def _next_chunk(chunks, seconds: float | None) -> bytes | None:
    """The next chunk of an answer (None at its end), waited for at most ``seconds``."""
    if seconds is None:
        return await anext(chunks, None)
    return await _await_at_most(seconds, anext(chunks, None))


async def _bounded(up: aiohttp.ClientResponse, idle: float | None = None) -> bytes:
    """A whole answer, read with a bound (a hostile or broken upstream cannot fill the controller's
    memory): an upstream that sends more gets the request a 502; one
    that sends nothing for ``idle`` seconds raises ``_Stalled``."""
    if idle is None and up.content_length is not None and up.content_length <= MAX_ANSWER_BYTES:
        return await up.read()  # a local engine's whole answer of a length it declared: one read
    chunks, size = [], 0
    parts = up.content.iter_chunked(1 << 16)
    while (chunk := await _next_chunk(parts, idle)) is not None:
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ApiError(502, f"the model server's answer is larger than {MAX_ANSWER_BYTES >> 20} MiB; refused",
                           code="backend_error")
        chunks.append(chunk)
    return b"".join(chunks)


# the hot path's small helpers -----------------------------------------------------------------------------------
_DECODER = json.JSONDecoder()


def _said(data: bytes) -> str:
    """What an engine's error answer says, for the request record (``GET /llmctl/v1/requests``): its
    ``error.message`` (OpenAI's shape: llama.cpp's, vLLM's), ``error``, ``detail`` or ``message`` string, else its
    first bytes; at most 300 characters, control characters shown escaped. Never raises (a hostile answer)."""
    text = data[:4096].decode("utf-8", "replace")
    try:
        body = json.loads(data) if len(data) <= 65536 else None
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        body = None
    if isinstance(body, dict):
        for name in ("error", "detail", "message"):
            said = body.get(name)
            if isinstance(said, dict):
                said = said.get("message")
            if isinstance(said, str) and said.strip():
                text = said
                break
    text = printable(" ".join(text.split())) or "(nothing)"
    return "the model server answered: " + (text[:300] + "…" if len(text) > 300 else text)


def _usage(data: bytes) -> dict | None:
    """The ``usage`` object of a whole answer, parsed alone rather than the whole body: in JSON text the bytes
    ``"usage"`` can only be a key or a bare string (a quote inside a string is escaped), and engines put it last.
    None when there is none or it is not an object."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    colon = data.find(b":", at + 7)
    if colon < 0 or data[at + 7:colon].strip():
        return None
    try:
        usage, _end = _DECODER.raw_decode(data[colon + 1:].decode("utf-8").lstrip())
    except (ValueError, UnicodeDecodeError):
        return None
    return usage if isinstance(usage, dict) else None

"""Ollama fixture: a loopback aiohttp server that answers as the recorded Ollama 0.23.0 server did.

No machine here can run Ollama, so tests drive llmctl's Ollama code against this fixture. It replays the
transcripts in ``tests/fixtures/ollama-0.23.0/`` (recorded from a real ``ollama serve`` 0.23.0; README there):
the same fields, status codes, content types and stream framing (NDJSON for ``/api`` streams, SSE for ``/v1``),
and Go's JSON (``<``/``>``/``&`` escaped; ``/api`` bodies with no trailing newline, ``/v1`` bodies ending in
``\\n``; bodies over 2048 bytes chunked, as Go's net/http does). It keeps the state the transcripts show:

- a model store: blobs (``HEAD``/``POST /api/blobs/sha256:D``, digest checked), ``/api/create`` with ``files``
  (the recorded SmolLM2 GGUF only), ``/api/tags``, ``/api/show``, ``/api/delete`` (prunes the model's blobs);
- loaded models: ``/api/generate`` with no prompt loads (``/api/ps`` stays empty while it loads), ``keep_alive``
  sets ``expires_at`` (duration string, seconds, negative = forever), ``keep_alive: 0`` unloads at once but
  ``/api/ps`` lists the model ~35 ms longer with ``expires_at`` in the past; a deleted model stays loaded;
- one request generates at a time (NUM_PARALLEL 1): a waiting request gets its headers when its turn starts;
- errors as recorded: unknown model (native and ``/v1`` shapes), the refused ``modelfile`` field, an unknown
  blob in create (HTTP 200, error in the last NDJSON line; 500 with ``stream: false``), digest mismatch,
  malformed digest, an offline pull; an unknown route answers 404 ``404 page not found`` as Ollama's router does.

It does not invent: a request the transcripts have no answer for (another prompt, another GGUF, a create with
``template``, a pull of another name, …) gets HTTP 501 with ``{"error": "ollama-fixture: not recorded: …"}``,
which no real Ollama sends, so a test that strays off the recording fails visibly.

Switches: ``gguf_digest`` lets a small file stand in for the recorded 98 MB GGUF (every answer that names the
GGUF's digest names the stand-in's instead); ``time_scale`` scales recorded latencies (load time, line gaps);
``advance(seconds)`` moves the fixture's clock, so ``keep_alive`` expiry can be tested without sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "ollama-0.23.0"
RECORDED_GGUF = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
RECORDED_NAME = "smollm2:135m"
MODELS_DIR = "/srv/ollama-fixture/models"  # the OLLAMA_MODELS the recorded answers name
JSON_CT = "application/json; charset=utf-8"
GO_CHUNK_THRESHOLD = 2048  # net/http computes Content-Length only for bodies it could buffer whole
FOREVER_NS = 2**63 - 1  # Go's max time.Duration: keep_alive < 0 → expires_at in 2319
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DIGEST_LOOSE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")  # forms Ollama may accept but were not recorded
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_GO_DURATION = re.compile(r"^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


# --- the recording ------------------------------------------------------------------------------------------
def load_transcript(name: str) -> list[dict[str, Any]]:
    """The records of one ``NN-*.jsonl`` transcript, in the order they were sent."""
    path = FIXTURE_DIR / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURE_DIR / name).read_text())


def go_json(obj: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, HTML characters and U+2028/9 escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def go_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go's time.RFC3339Nano), in UTC as recorded."""
    secs, frac = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def go_duration_ns(text: str) -> int:
    """time.ParseDuration, for the keep_alive strings the recording used ("5s", "10m") and their kin."""
    m = _GO_DURATION.match(text)
    if not m:
        raise ValueError(text)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text):
        total += float(num) * _GO_UNITS[unit]
    return -int(total) if m.group(1) == "-" else int(total)


def _keep_alive_ns(value: Any) -> int:
    """keep_alive as the recording shows Ollama reading it: seconds or a Go duration; negative = forever."""
    if isinstance(value, str):
        ns = go_duration_ns(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = int(value * 1e9)
    else:
        raise ValueError(value)
    return FOREVER_NS if ns < 0 else ns


class _Recording:
    """The recorded answers the fixture serves, picked out of the transcripts once."""

    def __init__(self) -> None:
        t01, t02, t03 = (load_transcript(f) for f in ("01-version-and-empty.jsonl", "02-create-from-gguf.jsonl",
                                                       "03-errors.jsonl"))
        t04, t05, t06 = (load_transcript(f) for f in ("04-load-unload.jsonl", "05-chat-stream.jsonl",
                                                       "06-openai.jsonl"))
        t09 = load_transcript("09-pull-offline.jsonl")
        self.version_raw = _one(t01, "GET", "/api/version")["response_body_raw"]
        self.create = _one(t02, "POST", "/api/create")
        self.tags_entry = _one(t02, "GET", "/api/tags")["response_body"]["models"][0]
        self.show_raw = _one(t02, "POST", "/api/show")["response_body_raw"]
        self.show_modified_at = _one(t02, "POST", "/api/show")["response_body"]["modified_at"]
        errors = {r["note"]: r for r in t03}
        self.create_unknown_blob_stream = errors["unknown blob digest, stream defaulted (true)"]
        self.create_legacy = {False: errors["legacy modelfile field, stream false"],
                              True: errors["legacy modelfile field, stream defaulted (true)"]}
        loads = [r for r in t04 if r["path"] == "/api/generate"]
        self.load_ms = [r["headers_after_ms"] for r in loads if r["response_body"]["done_reason"] == "load"]
        self.reload_ms = loads[-1]["headers_after_ms"]  # keep_alive 10m on the loaded model
        self.ps_entry = next(r for r in t04 if r["path"] == "/api/ps" and r["response_body"]["models"])[
            "response_body"]["models"][0]
        self.native_streams = [r for r in t05 if r["path"] in ("/api/chat", "/api/generate")]
        self.openai = [r for r in t06 if r["path"] in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
                       and r["status"] == 200]
        self.openai_missing = next(r for r in t06 if r["status"] == 404)
        self.v1_model = _one(t06, "GET", "/v1/models/smollm2:135m")["response_body"]
        self.pull = {r["request_body"]["model"]: r for r in t09 if r["path"] == "/api/pull"}
        self.pull_stream = next(r for r in t09 if r["path"] == "/api/pull" and "stream" not in r["request_body"])
        self.pull_nostream = next(r for r in t09 if r["path"] == "/api/pull" and "stream" in r["request_body"])
        blobs = load_json("model-store.json")["blobs"]
        # the template and params layers create writes beside the GGUF, and the config blob
        self.layers = {d: b["size"] for d, b in blobs.items() if b["role"].startswith(("template", "params"))}
        self.config = {d: b["size"] for d, b in blobs.items() if b["role"].startswith("config")}


def _one(records: list[dict[str, Any]], method: str, path: str) -> dict[str, Any]:
    return next(r for r in records if r["method"] == method and r["path"] == path)


def _stream_key(body: Any) -> str:
    """A request body as a key: ``stream`` absent means true in Ollama, so it is written out."""
    if not isinstance(body, dict):
        return ""
    body = dict(body)
    body.setdefault("stream", True)
    body.pop("model", None)
    return json.dumps(body, sort_keys=True)


@dataclass
class _Model:
    name: str
    created_ns: int
    layers: dict[str, int]  # digest → size (GGUF + template + params); config blob kept apart


@dataclass
class _Loaded:
    name: str
    expires_ns: int
    listed_until_ns: int  # /api/ps lists it while the fixture clock is before this


@dataclass
class OllamaFixture:
    gguf_digest: str = RECORDED_GGUF  # the GGUF that plays the recorded SmolLM2 file
    time_scale: float = 1.0  # multiplies recorded latencies (load time, gaps between streamed lines)
    unload_linger_s: float = 0.035  # /api/ps lists an unloaded model ~20-50 ms longer (recorded)
    port: int = 0
    blobs: dict[str, int] = field(default_factory=dict)  # digest → size
    models: dict[str, _Model] = field(default_factory=dict)
    loaded: dict[str, _Loaded] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) in arrival order
    clock_offset_ns: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """The server as OLLAMA_HOST would name it."""
        return f"127.0.0.1:{self.port}"

    def now_ns(self) -> int:
        return time.time_ns() + self.clock_offset_ns

    def advance(self, seconds: float) -> None:
        """Move the fixture's clock on (keep_alive expiry) without sleeping."""
        self.clock_offset_ns += int(seconds * 1e9)

    # state set-up, as if earlier requests had happened ----------------------------------------------------------
    def seed_model(self, name: str = RECORDED_NAME, *, loaded_for_s: float | None = None) -> None:
        """The recorded model in the store (as after 02-create), optionally loaded with that keep_alive."""
        self.blobs[self.gguf_digest] = 98362432
        self._store(name)
        if loaded_for_s is not None:
            now = self.now_ns()
            exp = now + (FOREVER_NS if loaded_for_s < 0 else int(loaded_for_s * 1e9))
            self.loaded[name] = _Loaded(name, exp, exp)

    def _new_model(self, name: str) -> _Model:
        layers = {self.gguf_digest: 98362432}
        layers.update(self._rec.layers)
        return _Model(name, self.now_ns(), layers)

    # lifecycle (its own thread and loop, like tests/hub_server.py) ----------------------------------------------
    def start(self) -> OllamaFixture:
        self._rec = _Recording()
        self._gen_lock: asyncio.Lock | None = None
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._gen_lock = asyncio.Lock()
            app = web.Application(client_max_size=1024**3)
            app.on_response_prepare.append(_no_server_header)
            app.add_routes([
                web.get("/", self._root),  # and HEAD
                web.get("/api/version", self._version, allow_head=False),
                web.get("/api/tags", self._tags, allow_head=False),
                web.get("/api/ps", self._ps, allow_head=False),
                web.post("/api/show", self._show),
                web.head("/api/blobs/{digest}", self._head_blob),
                web.post("/api/blobs/{digest}", self._post_blob),
                web.post("/api/create", self._create),
                web.delete("/api/delete", self._delete),
                web.post("/api/pull", self._pull),
                web.post("/api/generate", self._generate),
                web.post("/api/chat", self._chat),
                web.get("/v1/models", self._v1_models, allow_head=False),
                web.get("/v1/models/{name}", self._v1_model, allow_head=False),
                web.post("/v1/chat/completions", self._v1_generate),
                web.post("/v1/completions", self._v1_generate),
                web.post("/v1/embeddings", self._v1_generate),
                web.route("*", "/{tail:.*}", self._not_found),
            ])
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="ollama-fixture")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("ollama fixture did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> OllamaFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # helpers ------------------------------------------------------------------------------------------------------
    def _sub(self, text: str, name: str = RECORDED_NAME) -> str:
        """A recorded text with the stand-in GGUF's digest and the requested model name."""
        text = text.replace(RECORDED_GGUF[7:], self.gguf_digest[7:])
        if name != RECORDED_NAME:
            text = text.replace(f'"model":"{RECORDED_NAME}"', f'"model":{go_json(name)}')
        return text

    async def _sleep_ms(self, ms: float) -> None:
        if ms > 0 and self.time_scale > 0:
            await asyncio.sleep(ms / 1000 * self.time_scale)

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    def _listed(self) -> list[_Loaded]:
        now = self.now_ns()
        for name in [n for n, ld in self.loaded.items() if now >= ld.listed_until_ns]:
            del self.loaded[name]
        return list(self.loaded.values())

    def _touch(self, name: str, keep_alive: Any) -> None:
        """expires_at = end of this request + keep_alive (default 5m; negative = Go's max duration)."""
        now = self.now_ns()
        exp = now + (300 * 10**9 if keep_alive is None else _keep_alive_ns(keep_alive))
        self.loaded[name] = _Loaded(name, exp, exp)

    async def _ensure_loaded(self, name: str) -> None:
        if name not in {ld.name for ld in self._listed()}:
            await self._sleep_ms(self._rec.load_ms[0])

    # routes: server and store -----------------------------------------------------------------------------------
    async def _root(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        return _raw(200, b"Ollama is running", "text/plain; charset=utf-8")

    async def _version(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path))
        return await _go_json(request, 200, self._rec.version_raw)

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path))
        models = []
        for m in sorted(self.models.values(), key=lambda m: -m.created_ns):
            entry = dict(self._rec.tags_entry, name=m.name, model=m.name, modified_at=go_time(m.created_ns))
            models.append(entry)
        return await _go_json(request, 200, go_json({"models": models}))

    async def _ps(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path))
        models = [dict(self._rec.ps_entry, name=ld.name, model=ld.name, expires_at=go_time(ld.expires_ns))
                  for ld in self._listed()]
        return await _go_json(request, 200, go_json({"models": models}))

    async def _show(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("POST", request.path))
        body = await self._body(request)
        if not isinstance(body, dict) or set(body) != {"model"} or not isinstance(body["model"], str):
            return _unrecorded("show with a body other than {model}")
        model = self.models.get(body["model"])
        if model is None:
            return await _missing(request, body["model"])
        text = self._sub(self._rec.show_raw).replace(
            f'\\n# FROM {RECORDED_NAME}\\n', f"\\n# FROM {go_json(model.name)[1:-1]}\\n"
        ).replace(self._rec.show_modified_at, go_time(model.created_ns))
        return await _go_json(request, 200, text)

    async def _head_blob(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("HEAD", request.path))
        digest = request.match_info["digest"]
        if not _DIGEST.match(digest):
            return _unrecorded("HEAD of a malformed digest")
        if digest in self.blobs:  # 200 with no Content-Type and no Content-Length (recorded)
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            return resp
        # Ollama's 404 body (never sent for HEAD): {"error":"blob \"sha256:…\" not found"}, 102 bytes
        body = go_json({"error": f'blob "{digest}" not found'}).encode()
        return _raw(404, body, JSON_CT)

    async def _post_blob(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("POST", request.path))
        digest = request.match_info["digest"]
        if not _DIGEST.match(digest):
            if _DIGEST_LOOSE.match(digest):
                return _unrecorded("a sha256- or upper-case digest")
            return await _go_json(request, 400, go_json({"error": "invalid digest format"}))
        if digest in self.blobs:
            return _unrecorded("POST of a blob the store already has")
        h, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(1 << 20):
            h.update(chunk)
            size += len(chunk)
        got = f"sha256:{h.hexdigest()}"
        if got != digest:
            err = f'digest mismatch, expected "{digest}", got "{got}"'
            return await _go_json(request, 400, go_json({"error": err}))
        self.blobs[digest] = size
        return _raw(201, b"", None)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("POST", request.path))
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _unrecorded("create without a model name")
        stream = body.get("stream", True)
        if not body.get("from") and not body.get("files"):
            rec = self._rec.create_legacy[stream is not False]
            return await _go_json(request, 400, rec["response_body_raw"], content_type="application/json",
                                  chunked="transfer-encoding" in rec["response_headers"])
        if set(body) - {"model", "files", "stream"} or not isinstance(body["files"], dict) or len(body["files"]) != 1:
            return _unrecorded("create with fields other than model, files (one GGUF), stream")
        (digest,) = body["files"].values()
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return _unrecorded("create with a malformed digest in files")
        name = body["model"]
        if digest not in self.blobs:
            err = f"open {MODELS_DIR}/blobs/sha256-{digest[7:]}: no such file or directory"
            if stream is False:
                return await _go_json(request, 500, go_json({"error": err}), content_type="application/json")
            lines = [self._rec.create_unknown_blob_stream["response_body"][0], go_json({"error": err})]
            return await self._ndjson(request, lines, [2.8, 2.8])
        if digest != self.gguf_digest:
            return _unrecorded("create from a GGUF other than the recorded one")
        if not _NAME.match(name):
            return _unrecorded(f"create of a name without an explicit tag or in another form: {name!r}")
        if stream is False:
            return _unrecorded("a successful create with stream false")
        rec = self._rec.create
        resp = await self._ndjson(request, [self._sub(line) for line in rec["response_body"]], rec["line_times_ms"],
                                  on_line={4: lambda: self._store(name)})
        return resp

    def _store(self, name: str) -> None:
        self.blobs.update(self._rec.layers)
        self.blobs.update(self._rec.config)
        self.models[name] = self._new_model(name)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("DELETE", request.path))
        body = await self._body(request)
        if not isinstance(body, dict) or set(body) != {"model"} or not isinstance(body["model"], str):
            return _unrecorded("delete with a body other than {model}")
        model = self.models.pop(body["model"], None)
        if model is None:
            return await _missing(request, body["model"])
        # the model's blobs go unless another model uses them; a loaded model stays loaded (recorded)
        used = {d for m in self.models.values() for d in m.layers}
        for d in [*model.layers, *self._rec.config]:
            if d not in used:
                self.blobs.pop(d, None)
        return _raw(200, b"", None)

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("POST", request.path))
        body = await self._body(request)
        if isinstance(body, dict) and body.get("insecure") is False:  # the ollama client sends the default
            del body["insecure"]
        if not isinstance(body, dict) or set(body) - {"model", "stream"}:
            return _unrecorded("pull with fields other than model, stream (insecure: false)")
        if body.get("model") != self._rec.pull_stream["request_body"]["model"]:
            return _unrecorded("a pull of a name other than the recorded one (the recorded server was offline)")
        if body.get("stream", True) is False:
            rec = self._rec.pull_nostream
            return await _go_json(request, 500, rec["response_body_raw"], content_type="application/json")
        rec = self._rec.pull_stream
        return await self._ndjson(request, rec["response_body"], rec["line_times_ms"])

    # routes: generation -----------------------------------------------------------------------------------------
    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, "/api/generate")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, "/api/chat")

    async def _native(self, request: web.Request, path: str) -> web.StreamResponse:
        self.requests.append(("POST", path))
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _unrecorded("a generate/chat body without a model")
        name = body["model"]
        if name not in self.models:
            return await _missing(request, name)
        if path == "/api/generate" and not body.get("prompt"):
            return await self._load_or_unload(request, body)
        key = _stream_key(body)
        rec = next((r for r in self._rec.native_streams if r["path"] == path and _stream_key(r["request_body"]) == key),
                   None)
        if rec is None:
            return _unrecorded(f"{path} with this body")
        async with self._gen_lock:
            await self._ensure_loaded(name)
            if isinstance(rec["response_body"], list):
                lines = [self._sub(_restamp(line), name) for line in rec["response_body"]]
                resp = await self._ndjson(request, lines, rec["line_times_ms"])
            else:
                await self._sleep_ms(rec["headers_after_ms"])
                resp = await _go_json(request, 200, self._sub(_restamp(go_json(rec["response_body"])), name))
            self._touch(name, None)
        return resp

    async def _load_or_unload(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        name = body["model"]
        if set(body) - {"model", "keep_alive", "stream"} or body.get("stream", True) is not True:
            return _unrecorded("a load/unload other than {model, keep_alive} with stream absent or true")
        keep_alive = body.get("keep_alive")
        try:
            unload = keep_alive is not None and _keep_alive_ns(keep_alive) == 0
        except ValueError:
            return _unrecorded(f"keep_alive {keep_alive!r}")
        listed = {ld.name for ld in self._listed()}
        if unload:
            if name not in listed:
                return _unrecorded("an unload of a model that is not loaded")
            now = self.now_ns()
            self.loaded[name] = _Loaded(name, now, now + int(self.unload_linger_s * 1e9))
            return await _go_json(request, 200, self._done(name, "unload"))
        async with self._gen_lock:
            if name in listed:
                await self._sleep_ms(self._rec.reload_ms)
            else:
                await self._sleep_ms(self._rec.load_ms[0])
            self._touch(name, keep_alive)
            return await _go_json(request, 200, self._done(name, "load"))

    def _done(self, name: str, reason: str) -> str:
        return go_json({"model": name, "created_at": go_time(self.now_ns()), "response": "", "done": True,
                        "done_reason": reason})

    async def _ndjson(self, request: web.Request, lines: list[str], times_ms: list[float],
                      on_line: dict[int, Any] | None = None) -> web.StreamResponse:
        """Chunked application/x-ndjson, every line ending in "\\n", paced like the recording."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await self._sleep_ms(times_ms[0] if times_ms else 0)
        await resp.prepare(request)
        prev = times_ms[0] if times_ms else 0
        for i, line in enumerate(lines):
            t = times_ms[i] if i < len(times_ms) else prev
            await self._sleep_ms(t - prev)
            prev = t
            if on_line and i in on_line:
                on_line[i]()
            await resp.write(line.encode() + b"\n")
        await resp.write_eof()
        return resp

    # routes: OpenAI-compatible ------------------------------------------------------------------------------------
    async def _v1_models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path))
        data = [dict(self._rec.v1_model, id=m.name, created=m.created_ns // 10**9)
                for m in sorted(self.models.values(), key=lambda m: -m.created_ns)]
        return await _go_json(request, 200, go_json({"object": "list", "data": data}) + "\n",
                              content_type="application/json")

    async def _v1_model(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GET", request.path))
        model = self.models.get(request.match_info["name"])
        if model is None:
            return _unrecorded("/v1/models/NAME for an unknown model")
        out = dict(self._rec.v1_model, id=model.name, created=model.created_ns // 10**9)
        return await _go_json(request, 200, go_json(out) + "\n", content_type="application/json")

    async def _v1_generate(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("POST", request.path))
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _unrecorded("a /v1 body without a model")
        name = body["model"]
        if name not in self.models:
            if request.path != "/v1/chat/completions":
                return _unrecorded(f"{request.path} for an unknown model")
            err = self._rec.openai_missing["response_body"]
            err = {"error": dict(err["error"], message=f"model '{name}' not found")}
            return await _go_json(request, 404, go_json(err) + "\n", content_type="application/json")
        key = json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True)
        rec = next((r for r in self._rec.openai if r["path"] == request.path and json.dumps(
            {k: v for k, v in r["request_body"].items() if k != "model"}, sort_keys=True) == key), None)
        if rec is None:
            return _unrecorded(f"{request.path} with this body")
        prefix = "chatcmpl" if request.path == "/v1/chat/completions" else "cmpl"
        ident = f"{prefix}-{random.randrange(1000)}"  # recorded: chatcmpl-547, chatcmpl-185, cmpl-145
        async with self._gen_lock:
            await self._ensure_loaded(name)
            if isinstance(rec["response_body"], list):  # SSE: "data: …" events, each followed by a blank line
                resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
                resp.enable_chunked_encoding()
                times = rec["line_times_ms"]
                await self._sleep_ms(times[0])
                await resp.prepare(request)
                for i, event in enumerate(rec["response_body"]):
                    if i:
                        await self._sleep_ms(times[i] - times[i - 1])
                    await resp.write((self._sub(_reid(event, ident), name) + "\n\n").encode())
                await resp.write_eof()
            else:
                await self._sleep_ms(rec["headers_after_ms"])
                text = self._sub(_reid(go_json(rec["response_body"]), ident), name) + "\n"
                resp = await _go_json(request, 200, text, content_type="application/json",
                                      chunked="transfer-encoding" in rec["response_headers"])
            self._touch(name, None)
        return resp

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        return _raw(404, b"404 page not found", "text/plain")


# --- responses ----------------------------------------------------------------------------------------------------
async def _no_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall("Server", None)


def _raw(status: int, body: bytes, content_type: str | None) -> web.Response:
    resp = web.Response(status=status, body=body)
    if content_type:
        resp.headers["Content-Type"] = content_type
    else:
        resp.headers.popall("Content-Type", None)
    return resp


async def _go_json(request: web.Request, status: int, text: str, *, content_type: str = JSON_CT,
                   chunked: bool | None = None) -> web.StreamResponse:
    """A JSON body as Go's net/http sends it: Content-Length when small, else chunked."""
    data = text.encode()
    if chunked is None:
        chunked = len(data) > GO_CHUNK_THRESHOLD
    if not chunked:
        return _raw(status, data, content_type)
    resp = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(data)
    await resp.write_eof()
    return resp


async def _missing(request: web.Request, name: str) -> web.StreamResponse:
    return await _go_json(request, 404, go_json({"error": f"model '{name}' not found"}))


def _unrecorded(what: str) -> web.Response:
    body = json.dumps({"error": f"ollama-fixture: not recorded: {what}"}).encode()
    return _raw(501, body, "application/json")


def _restamp(line: str) -> str:
    return re.sub(r'"created_at":"[^"]*"', f'"created_at":"{go_time(time.time_ns())}"', line, count=1)


def _reid(text: str, ident: str) -> str:
    text = re.sub(r'"id":"(chatcmpl|cmpl)-\d+"', f'"id":"{ident}"', text, count=1)
    return re.sub(r'"created":\d+', f'"created":{int(time.time())}', text, count=1)

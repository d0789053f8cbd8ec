"""Ollama: its native API through the official ``ollama`` client, and the facts llmctl needs to attach or spawn.

What lives here (engine facts, DESIGN.md): where a running Ollama is (``OLLAMA_HOST`` as Ollama parses it),
whether ``ollama`` is on PATH, the argv/env that spawns a private ``ollama serve`` (pure), ``keep_alive`` as
Ollama means it, and ``OllamaApi`` — version, tags, show, ps, load/unload, pull, blobs, create, delete —
with every answer validated before use and every failure turned into an ``OllamaError`` that says what to do.

Behaviour relied on is that of the recorded Ollama 0.23.0 (``tests/fixtures/ollama-0.23.0/README.md``):
streamed create/pull report failure as HTTP 200 with a last ``{"error": …}`` line; loading is a generate with no
prompt (``done_reason: "load"``), unloading the same with ``keep_alive: 0`` (``done_reason: "unload"``).
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import ollama

from llmctl.catalog.errors import LlmctlError

DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_PORT = 11434
MAX_BODY = 16 * 1024 * 1024  # one non-streamed answer (show with 272 tensors is ~20 KB)
MAX_LINE = 1024 * 1024  # one NDJSON line of a stream
MAX_NAME = 256
MAX_TEXT = 1024 * 1024  # a template or parameters text
MAX_BYTES = 1 << 50  # a size in bytes no real model reaches (1 PiB)
FOREVER_S = (2**63 - 1) / 1e9  # Go's max time.Duration, what keep_alive < 0 means (~292 years)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]*)?$")
_GO_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class OllamaError(LlmctlError):
    """Ollama refused a request, answered something llmctl cannot trust, or could not be reached."""

    def __init__(self, title: str, message: str = "", status: int | None = None) -> None:
        super().__init__(title, message)
        self.status = status


# --- where Ollama is ----------------------------------------------------------------------------------------------
def parse_ollama_host(value: str | None) -> str:
    """``OLLAMA_HOST`` as Ollama reads it → a base URL. Accepts ``host``, ``host:port``, ``:port``,
    ``http(s)://host[:port][/path]``, ``[v6]:port``; quotes around the value are dropped; default
    127.0.0.1:11434; an explicit ``http://`` without a port means 80, ``https://`` 443 (Ollama's envconfig.Host).
    A listen-everywhere address (0.0.0.0, ::) is reached on loopback."""
    text = (value or "").strip().strip("'\"").strip()
    scheme, sep, rest = text.partition("://")
    port = DEFAULT_PORT
    if not sep:
        scheme, rest = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    else:
        raise OllamaError("OLLAMA_HOST is not understood", f"{value!r}: use host, host:port or http://host:port.")
    try:
        split = urlsplit(f"{scheme}://{rest}")
        host, port = split.hostname or "127.0.0.1", split.port or port
    except ValueError as exc:
        raise OllamaError("OLLAMA_HOST is not understood", f"{value!r}: {exc}.") from None
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    path = split.path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


def find_ollama(which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The ``ollama`` executable on PATH, if any."""
    return which("ollama")


def serve_command(executable: str, port: int, models_dir: Path, environ: Mapping[str, str], *,
                  keep_alive: str | int | float | None = None, num_parallel: int | None = None,
                  max_loaded_models: int | None = None, context_length: int | None = None,
                  ) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of a private ``ollama serve`` on loopback ``port`` with its own store (pure).

    HOME stays the user's (Ollama keeps its keys in ~/.ollama); every other inherited ``OLLAMA_*`` is dropped,
    so the server runs on the defaults the recording shows unless llmctl sets them here. Start it in its own
    process group and stop it by signalling the group: a SIGKILLed ``ollama serve`` leaves its runner orphaned.
    """
    if not 0 < port < 65536:
        raise OllamaError("Invalid port for Ollama", f"{port} is not a TCP port.")
    env = {k: v for k, v in environ.items() if not k.startswith("OLLAMA_")}
    env["OLLAMA_HOST"] = f"127.0.0.1:{port}"
    env["OLLAMA_MODELS"] = str(models_dir)
    if keep_alive is not None:
        env["OLLAMA_KEEP_ALIVE"] = str(to_ollama_keep_alive(keep_alive))
    if num_parallel is not None:
        env["OLLAMA_NUM_PARALLEL"] = str(int(num_parallel))
    if max_loaded_models is not None:
        env["OLLAMA_MAX_LOADED_MODELS"] = str(int(max_loaded_models))
    if context_length is not None:
        env["OLLAMA_CONTEXT_LENGTH"] = str(int(context_length))
    return [executable, "serve"], env


# --- keep_alive ---------------------------------------------------------------------------------------------------
def keep_alive_seconds(value: str | int | float) -> float:
    """``keep_alive`` as Ollama means it, in seconds: a Go duration ("5m", "1h30m", "300ms") or a number of
    seconds (also as a string, "300"); ``0`` = unload now; negative = forever (``math.inf``)."""
    if isinstance(value, bool):
        raise OllamaError("Invalid keep_alive", f"{value!r}: use a duration such as 5m, or seconds.")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str) and _GO_DURATION.match(value.strip()):
        text = value.strip()
        secs = sum(float(num) * _GO_UNITS[unit] for num, unit in _GO_PART.findall(text))
        secs = -secs if text.startswith("-") else secs
    else:
        try:
            secs = float(str(value).strip())
        except ValueError:
            raise OllamaError("Invalid keep_alive", f"{value!r}: use a duration such as 5m, or seconds.") from None
    if math.isnan(secs):
        raise OllamaError("Invalid keep_alive", "not a number")
    return math.inf if secs < 0 else secs


def to_ollama_keep_alive(value: str | int | float | None) -> str | int | float:
    """The value to send: a duration string as it is (validated), seconds as a number, forever as -1.
    ``None`` (no idle TTL in llmctl's config) means keep the model loaded: -1."""
    if value is None:
        return -1
    secs = keep_alive_seconds(value)
    if math.isinf(secs):
        return -1
    if isinstance(value, str) and _GO_DURATION.match(value.strip()):
        return value.strip()
    return int(secs) if secs == int(secs) else secs


# --- what Ollama answers, validated --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OllamaModel:
    """One entry of /api/tags."""

    name: str
    digest: str  # sha256 hex of the manifest (changes with the store path, not a content hash of the weights)
    size: int  # bytes of all layers + config
    modified_at: datetime | None
    format: str | None
    family: str | None
    parameter_size: str | None  # "134.52M"
    quantization: str | None  # "Q4_1"


@dataclass(frozen=True, slots=True)
class OllamaModelInfo:
    """What /api/show tells about one model."""

    name: str
    format: str | None
    family: str | None
    families: tuple[str, ...]
    parameter_size: str | None
    quantization: str | None
    architecture: str | None
    parameter_count: int | None
    context_length: int | None  # the trained context, model_info["<arch>.context_length"]
    capabilities: tuple[str, ...]  # "completion", "embedding", "vision", "tools", …
    template: str | None  # Ollama's Go template
    stop: tuple[str, ...]  # stop parameters
    model_digest: str | None  # "sha256:…" of the GGUF blob, from details.parent_model
    model_blob: str | None  # that blob's path as the server names it


@dataclass(frozen=True, slots=True)
class OllamaLoaded:
    """One entry of /api/ps: a model in memory."""

    name: str
    digest: str
    size: int  # bytes in memory, all devices
    size_vram: int  # of which on GPUs
    context_length: int | None
    expires_at: datetime | None  # in the past while an unloaded model lingers
    forever: bool  # keep_alive < 0: expires in ~2319


@dataclass(frozen=True, slots=True)
class PullProgressed:
    model: str
    status: str
    digest: str | None = None
    completed: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class PullFinished:
    model: str


@dataclass(frozen=True, slots=True)
class BlobUploaded:
    digest: str
    size: int
    skipped: bool  # the server already had it


@dataclass(frozen=True, slots=True)
class CreateProgressed:
    model: str
    status: str


@dataclass(frozen=True, slots=True)
class CreateFinished:
    model: str


PullEvent = PullProgressed | PullFinished
CreateEvent = CreateProgressed | CreateFinished


def _str(value: Any, what: str, limit: int = MAX_NAME, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(what)
    return value


def _int(value: Any, what: str, *, optional: bool = True, limit: int = MAX_BYTES) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _bad(what)
    return int(value)


def _digest_hex(value: Any, what: str) -> str:
    """A manifest digest: bare hex in tags/ps; "sha256:hex" accepted too."""
    if isinstance(value, str) and value.startswith("sha256:"):
        value = value[7:]
    if not isinstance(value, str) or not _HEX64.match(value):
        raise _bad(what)
    return value


def _bad(what: str) -> OllamaError:
    return OllamaError("Ollama answered something unexpected", f"{what} is missing or malformed; is this Ollama "
                       "(0.23 or later) at that address?")


def valid_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise OllamaError("Invalid Ollama model name", f"{name!r}: use NAME:TAG, e.g. smollm2:135m.")
    return name


_NO_DETAILS = SimpleNamespace(format=None, family=None, families=None, parameter_size=None, quantization_level=None,
                              parent_model=None)


def _answer_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.match(value):
        raise _bad(what)
    return value


def _details(d: Any) -> Any:
    return d if d is not None else _NO_DETAILS


# --- errors -------------------------------------------------------------------------------------------------------
def _map_error(exc: BaseException, action: str, base_url: str, model: str | None = None) -> OllamaError:
    if isinstance(exc, OllamaError):
        return exc
    if isinstance(exc, (ConnectionError, httpx.TransportError)):
        return OllamaError(f"Cannot reach Ollama at {base_url}",
                           "Start it (`ollama serve`), set OLLAMA_HOST to where it listens, or let llmctl start one "
                           '(engines.ollama.mode = "spawn").')
    if isinstance(exc, ollama.ResponseError):
        text = str(exc.error)[:500] if isinstance(exc.error, str) else "(no message)"
        status = exc.status_code if exc.status_code != -1 else None
        if status == 404 and model and "not found" in text:
            return OllamaError(f"Ollama has no model {model!r}",
                               "See `llmctl models list`, or pull it: `llmctl pull ollama:NAME:TAG`.", 404)
        if "pull model manifest" in text or "registry.ollama.ai" in text or "dial tcp" in text:
            return OllamaError(f"Ollama could not reach its registry to {action}",
                               f"Ollama said: {text}. Check the network of the machine Ollama runs on, or "
                               "import a local GGUF instead: `llmctl import FILE --to ollama`.", status)
        if "neither 'from' or 'files'" in text:
            return OllamaError("Ollama refused the create request",
                               f"Ollama said: {text}. This Ollama wants `files` (a Modelfile is not accepted).", status)
        if "digest mismatch" in text:
            return OllamaError("The upload to Ollama was corrupted",
                               f"Ollama said: {text}. Retry; if it repeats, the file changed while uploading.", status)
        if "no such file or directory" in text and action.startswith("create"):
            return OllamaError("Ollama does not have the uploaded file",
                               f"Ollama said: {text}. Upload the blob first (import does this), then create.", status)
        return OllamaError(f"Ollama could not {action}", f"Ollama said: {text}" + (f" (HTTP {status})."
                                                                                   if status else "."), status)
    if isinstance(exc, (ValueError, TypeError, KeyError, AttributeError)):  # pydantic, json, odd shapes
        return OllamaError("Ollama answered something unexpected",
                           f"while trying to {action}: {type(exc).__name__}. Is this Ollama 0.23 or later?")
    return OllamaError(f"Ollama could not {action}", f"{type(exc).__name__}: {exc}")


# --- bounded reads --------------------------------------------------------------------------------------------------
class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, ndjson: bool) -> None:
        self._inner, self._ndjson = inner, ndjson

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = line = 0
        async for chunk in self._inner:
            total += len(chunk)
            if self._ndjson:
                nl = chunk.rfind(b"\n")
                line = len(chunk) - nl - 1 if nl >= 0 else line + len(chunk)
                if line > MAX_LINE:
                    raise httpx.DecodingError(f"an NDJSON line over {MAX_LINE} bytes")
            elif total > MAX_BODY:
                raise httpx.DecodingError(f"an answer over {MAX_BODY} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx.AsyncBaseTransport):
    """Caps what one answer may send: ``MAX_BODY`` for a body, ``MAX_LINE`` for one line of an NDJSON stream."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self._inner.handle_async_request(request)
        ndjson = resp.headers.get("content-type", "").startswith("application/x-ndjson")
        length = resp.headers.get("content-length", "")
        if not ndjson and length.isdigit() and int(length) > MAX_BODY:
            await resp.aclose()
            raise httpx.DecodingError(f"an answer of {length} bytes")
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        return httpx.Response(resp.status_code, headers=resp.headers, stream=_BoundedStream(resp.stream, ndjson),
                              extensions=resp.extensions, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- the API --------------------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20, progress: Callable[[int, int], None] | None = None) -> str:
    """"sha256:…" of a file, read in chunks."""
    h, done = hashlib.sha256(), 0
    total = path.stat().st_size
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return f"sha256:{h.hexdigest()}"


class OllamaApi:
    """Ollama's native API at ``base_url`` (see ``parse_ollama_host``), through ``ollama.AsyncClient``.

    ``transport`` is for tests and for the app to inject; answers are size-capped either way. Redirects are not
    followed and proxies from the environment are not used (Ollama is on this machine or named explicitly).
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        bounded = BoundedTransport(transport)
        limits = httpx.Timeout(timeout, read=None)  # loads and pulls answer only when done; the caller bounds them
        opts: dict[str, Any] = {"timeout": limits, "follow_redirects": False, "trust_env": False}
        self._client = ollama.AsyncClient(host=self.base_url, transport=bounded, **opts)
        # the client has no call for GET /, /api/version or HEAD /api/blobs: those go through plain httpx
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=bounded, **opts)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    async def __aenter__(self) -> OllamaApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _get(self, method: str, path: str, action: str) -> httpx.Response:
        try:
            return await self._http.request(method, path)
        except Exception as exc:
            raise _map_error(exc, action, self.base_url) from None

    # detection ------------------------------------------------------------------------------------------------
    async def is_running(self) -> bool:
        """Whether an Ollama answers at base_url (``GET /`` → 200 "Ollama is running")."""
        try:
            r = await self._http.get("/")
        except (httpx.HTTPError, OSError):
            return False
        return r.status_code == 200 and r.text.strip() == "Ollama is running"

    async def version(self) -> str:
        r = await self._get("GET", "/api/version", "tell its version")
        try:
            ver = r.json()["version"] if r.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            ver = None
        if not isinstance(ver, str) or not re.fullmatch(r"[0-9A-Za-z.+-]{1,64}", ver):
            raise _bad("/api/version")
        return ver

    # models --------------------------------------------------------------------------------------------------
    async def list_models(self) -> list[OllamaModel]:
        try:
            resp = await self._client.list()
            out = []
            for m in resp.models:
                d = _details(m.details)
                out.append(OllamaModel(
                    name=_answer_name(m.model, "tags model"),
                    digest=_digest_hex(m.digest, "tags digest"),
                    size=_int(m.size, "tags size", optional=False),
                    modified_at=m.modified_at,
                    format=_str(d.format, "format"), family=_str(d.family, "family"),
                    parameter_size=_str(d.parameter_size, "parameter_size"),
                    quantization=_str(d.quantization_level, "quantization_level"),
                ))
            return out
        except Exception as exc:
            raise _map_error(exc, "list its models", self.base_url) from None

    async def show(self, name: str) -> OllamaModelInfo:
        valid_name(name)
        try:
            s = await self._client.show(name)
            d = _details(s.details)
            info = s.modelinfo or {}
            arch = _str(info.get("general.architecture"), "general.architecture")
            ctx = info.get(f"{arch}.context_length") if arch else None
            families = tuple(_str(f, "families", optional=False) for f in (d.families or ())[:32])
            caps = tuple(_str(c, "capabilities", 64, optional=False) for c in (s.capabilities or ())[:32])
            blob = _str(d.parent_model, "parent_model", 4096)
            digest = None
            if blob and (m := re.search(r"sha256[-:]([0-9a-f]{64})$", blob)):
                digest = f"sha256:{m.group(1)}"
            return OllamaModelInfo(
                name=name, format=_str(d.format, "format"), family=_str(d.family, "family"), families=families,
                parameter_size=_str(d.parameter_size, "parameter_size"),
                quantization=_str(d.quantization_level, "quantization_level"),
                architecture=arch, parameter_count=_int(info.get("general.parameter_count"), "parameter_count"),
                context_length=_int(ctx, "context_length", limit=1 << 30), capabilities=caps,
                template=_str(s.template, "template", MAX_TEXT),
                stop=_stops(_str(s.parameters, "parameters", MAX_TEXT)),
                model_digest=digest, model_blob=blob or None,
            )
        except Exception as exc:
            raise _map_error(exc, f"show {name}", self.base_url, name) from None

    async def ps(self) -> list[OllamaLoaded]:
        try:
            resp = await self._client.ps()
            out = []
            for m in resp.models:
                exp = m.expires_at
                out.append(OllamaLoaded(
                    name=_answer_name(m.model or m.name, "ps model"),
                    digest=_digest_hex(m.digest, "ps digest"),
                    size=_int(m.size, "ps size", optional=False),
                    size_vram=_int(m.size_vram, "ps size_vram") or 0,
                    context_length=_int(m.context_length, "ps context_length", limit=1 << 30),
                    expires_at=exp,
                    forever=exp is not None and exp.year - datetime.now(UTC).year > 200,
                ))
            return out
        except Exception as exc:
            raise _map_error(exc, "list loaded models", self.base_url) from None

    async def load(self, name: str, keep_alive: str | int | float | None = None) -> None:
        """Load a model and keep it ``keep_alive`` (Ollama's default 5m if None). Returns once it is loaded."""
        body = {} if keep_alive is None else {"keep_alive": to_ollama_keep_alive(keep_alive)}
        if body and body["keep_alive"] == 0:
            raise OllamaError("keep_alive 0 unloads", "Use unload() to unload a model.")
        await self._no_prompt(name, "load", body)

    async def unload(self, name: str) -> None:
        """Ask Ollama to unload now (keep_alive 0). /api/ps may list it a few ms longer, expires_at in the past."""
        await self._no_prompt(name, "unload", {"keep_alive": 0})

    async def _no_prompt(self, name: str, want: str, body: dict[str, Any]) -> None:
        valid_name(name)
        try:
            # stream=True sends what the recording sent (stream defaulted); the answer is one JSON object
            parts = [p async for p in await self._client.generate(name, stream=True, **body)]
        except Exception as exc:
            raise _map_error(exc, f"{want} {name}", self.base_url, name) from None
        if len(parts) != 1 or parts[0].done is not True or parts[0].done_reason != want:
            reason = parts[-1].done_reason if parts else None
            raise OllamaError(f"Ollama did not {want} {name}", f"it answered done_reason={reason!r}.")

    async def delete(self, name: str) -> None:
        valid_name(name)
        try:
            await self._client.delete(name)
        except Exception as exc:
            raise _map_error(exc, f"delete {name}", self.base_url, name) from None

    async def pull(self, name: str) -> AsyncIterator[PullEvent]:
        """Pull through Ollama's registry client, as typed progress events."""
        valid_name(name)
        try:
            async for p in await self._client.pull(name, stream=True):
                status = _str(p.status, "pull status", 1024, optional=False)
                digest = p.digest if isinstance(p.digest, str) and _DIGEST.match(p.digest) else None
                yield PullProgressed(name, status, digest, _int(p.completed, "completed"), _int(p.total, "total"))
                if status == "success":
                    yield PullFinished(name)
                    return
        except Exception as exc:
            raise _map_error(exc, f"pull {name}", self.base_url, name) from None
        raise OllamaError(f"Ollama's pull of {name} ended early", "It stopped without saying success; retry.")

    # blobs and create ----------------------------------------------------------------------------------------
    async def has_blob(self, digest: str) -> bool:
        if not _DIGEST.match(digest):
            raise OllamaError("Invalid digest", f"{digest!r} is not sha256:<64 hex>.")
        r = await self._get("HEAD", f"/api/blobs/{digest}", "check a blob")
        if r.status_code in (200, 404):
            return r.status_code == 200
        raise OllamaError("Ollama could not check a blob", f"HEAD /api/blobs answered HTTP {r.status_code}.")

    async def push_blob(self, path: Path, digest: str | None = None) -> BlobUploaded:
        """Upload a file as a blob unless Ollama has it (``HEAD`` then ``POST /api/blobs/sha256:D``).
        ``digest``: computed with ``sha256_file`` when not given (do that in a thread for big files)."""
        path = Path(path)
        size = path.stat().st_size
        digest = digest or sha256_file(path)
        if await self.has_blob(digest):
            return BlobUploaded(digest, size, skipped=True)

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    yield block

        try:
            r = await self._http.post(f"/api/blobs/{digest}", content=chunks(),
                                      headers={"Content-Type": "application/octet-stream"})
        except Exception as exc:
            raise _map_error(exc, "upload a blob", self.base_url) from None
        if r.status_code not in (200, 201):
            raise _map_error(ollama.ResponseError(r.text[:2000], r.status_code), "upload a blob", self.base_url)
        return BlobUploaded(digest, size, skipped=False)

    async def create(self, name: str, files: Mapping[str, str], *, template: str | None = None,
                     stop: tuple[str, ...] | None = None) -> AsyncIterator[CreateEvent]:
        """``POST /api/create`` with ``files`` (file name → uploaded blob digest). ``template`` is Ollama's Go
        template and ``stop`` its stop words; leave both None to let Ollama take them from the GGUF (it detects
        the chat template from ``tokenizer.chat_template`` and derives the stop words, as recorded)."""
        valid_name(name)
        for fname, digest in files.items():
            if not _DIGEST.match(digest) or "/" in fname:
                raise OllamaError("Invalid create request", f"{fname!r}: {digest!r} is not a blob digest.")
        params = {"stop": list(stop)} if stop else None
        try:
            async for p in await self._client.create(name, files=dict(files), template=template, parameters=params,
                                                     stream=True):
                status = _str(p.status, "create status", 1024, optional=False)
                yield CreateProgressed(name, status)
                if status == "success":
                    yield CreateFinished(name)
                    return
        except Exception as exc:
            raise _map_error(exc, f"create {name}", self.base_url) from None
        raise OllamaError(f"Ollama's create of {name} ended early", "It stopped without saying success; retry.")


    async def import_gguf(self, name: str, path: Path, *, digest: str | None = None,
                          ) -> AsyncIterator[BlobUploaded | CreateEvent]:
        """Upload a GGUF (unless Ollama has it) and create ``name`` from it; Ollama takes the chat template and
        stop words from the GGUF itself."""
        path = Path(path)
        uploaded = await self.push_blob(path, digest)
        yield uploaded
        async for event in self.create(name, {path.name: uploaded.digest}):
            yield event


def _stops(parameters: str | None) -> tuple[str, ...]:
    """The stop words out of show's ``parameters`` text (``stop "<|im_end|>"`` lines)."""
    out = []
    for line in (parameters or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "stop":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out.append(value)
    return tuple(out[:64])

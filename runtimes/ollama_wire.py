"""What Ollama answers, checked: the limits on an answer, the typed values llmctl reads out of tags/show/ps and
the pull/create streams, and the one mapping of every failure to an ``OllamaError`` that says what to do.

The client that asks is ``runtimes.ollama.OllamaApi``; it hands each answer of the ``ollama`` package to a
``*_from_*`` function here, so nothing Ollama says is used before it has been checked (names, digests, sizes,
text lengths), and a malformed answer becomes "Ollama answered something unexpected" instead of a crash.
``BoundedTransport`` caps what one answer may send before it is even parsed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import ollama

from llmctl.catalog.errors import LlmctlError

MAX_BODY = 16 * 1024 * 1024  # one non-streamed answer (show with 272 tensors is ~20 KB)
MAX_LINE = 1024 * 1024  # one NDJSON line of a stream
MAX_NAME = 256
MAX_TEXT = 1024 * 1024  # a template or parameters text
MAX_BYTES = 1 << 50  # a size in bytes no real model reaches (1 PiB)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]*)?$")


class OllamaError(LlmctlError):
    """Ollama refused a request, answered something llmctl cannot trust, or could not be reached."""

    def __init__(self, title: str, message: str = "", status: int | None = None) -> None:
        super().__init__(title, message)
        self.status = status


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
        raise unexpected(what)
    return value


def _int(value: Any, what: str, *, optional: bool = True, limit: int = MAX_BYTES) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise unexpected(what)
    return int(value)


def _digest_hex(value: Any, what: str) -> str:
    """A manifest digest: bare hex in tags/ps; "sha256:hex" accepted too."""
    if isinstance(value, str) and value.startswith("sha256:"):
        value = value[7:]
    if not isinstance(value, str) or not _HEX64.match(value):
        raise unexpected(what)
    return value


def unexpected(what: str) -> OllamaError:
    """The error for an answer whose ``what`` is missing or malformed."""
    return OllamaError("Ollama answered something unexpected", f"{what} is missing or malformed; is this Ollama "
                       "(0.23 or later) at that address?")


def valid_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise OllamaError("Invalid Ollama model name", f"{name!r}: use NAME:TAG, e.g. smollm2:135m.")
    return name


def is_digest(value: Any) -> bool:
    """Whether ``value`` is a blob digest as Ollama writes it: ``sha256:`` and 64 lowercase hex digits."""
    return isinstance(value, str) and bool(_DIGEST.match(value))


_NO_DETAILS = SimpleNamespace(format=None, family=None, families=None, parameter_size=None, quantization_level=None,
                              parent_model=None)


def _answer_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.match(value):
        raise unexpected(what)
    return value


def _details(d: Any) -> Any:
    return d if d is not None else _NO_DETAILS


def version_from(r: httpx.Response) -> str:
    """The version in an answer of /api/version."""
    try:
        ver = r.json()["version"] if r.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        ver = None
    if not isinstance(ver, str) or not re.fullmatch(r"[0-9A-Za-z.+-]{1,64}", ver):
        raise unexpected("/api/version")
    return ver


def model_from_tags(m: Any) -> OllamaModel:
    """One model of the ``ollama`` package's answer to /api/tags."""
    d = _details(m.details)
    return OllamaModel(
        name=_answer_name(m.model, "tags model"),
        digest=_digest_hex(m.digest, "tags digest"),
        size=_int(m.size, "tags size", optional=False),
        modified_at=m.modified_at,
        format=_str(d.format, "format"), family=_str(d.family, "family"),
        parameter_size=_str(d.parameter_size, "parameter_size"),
        quantization=_str(d.quantization_level, "quantization_level"),
    )


def info_from_show(name: str, s: Any) -> OllamaModelInfo:
    """The ``ollama`` package's answer to /api/show of ``name``."""
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


def loaded_from_ps(m: Any) -> OllamaLoaded:
    """One model of the ``ollama`` package's answer to /api/ps."""
    exp = m.expires_at
    return OllamaLoaded(
        name=_answer_name(m.model or m.name, "ps model"),
        digest=_digest_hex(m.digest, "ps digest"),
        size=_int(m.size, "ps size", optional=False),
        size_vram=_int(m.size_vram, "ps size_vram") or 0,
        context_length=_int(m.context_length, "ps context_length", limit=1 << 30),
        expires_at=exp,
        forever=exp is not None and exp.year - datetime.now(UTC).year > 200,
    )


def pull_progress(name: str, p: Any) -> PullProgressed:
    """One line of a pull's stream."""
    status = _str(p.status, "pull status", 1024, optional=False)
    digest = p.digest if is_digest(p.digest) else None
    return PullProgressed(name, status, digest, _int(p.completed, "completed"), _int(p.total, "total"))


def create_progress(name: str, p: Any) -> CreateProgressed:
    """One line of a create's stream."""
    return CreateProgressed(name, _str(p.status, "create status", 1024, optional=False))


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


# --- errors -------------------------------------------------------------------------------------------------------
def map_error(exc: BaseException, action: str, base_url: str, model: str | None = None) -> OllamaError:
    """The ``OllamaError`` for a failure while trying to ``action`` (a verb phrase) at ``base_url``, saying what to
    do; ``model`` names the model asked about, for a 404."""
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

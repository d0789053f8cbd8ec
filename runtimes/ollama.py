"""Ollama: its native API through the official ``ollama`` client, and the facts llmctl needs to attach or spawn.

What lives here (engine facts stay in the engine's module): where a running Ollama is (``OLLAMA_HOST`` as Ollama
parses it), whether ``ollama`` is on PATH, the argv/env that spawns a private ``ollama serve`` (pure), ``keep_alive`` as
Ollama means it, and ``OllamaApi`` — version, tags, show, ps, load/unload, pull, blobs, create, delete —
with every answer validated before use and every failure turned into an ``OllamaError`` that says what to do
(the answer types, their checks, the size caps and the error mapping are ``runtimes.ollama_wire``).

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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import ollama

from llmctl.runtimes.ollama_wire import (
    BlobUploaded,
    BoundedTransport,
    CreateEvent,
    CreateFinished,
    OllamaError,
    OllamaLoaded,
    OllamaModel,
    OllamaModelInfo,
    PullEvent,
    PullFinished,
    create_progress,
    info_from_show,
    is_digest,
    loaded_from_ps,
    map_error,
    model_from_tags,
    pull_progress,
    valid_name,
    version_from,
)

DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_PORT = 11434
FOREVER_S = (2**63 - 1) / 1e9  # Go's max time.Duration, what keep_alive < 0 means (~292 years)
_GO_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


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
            raise map_error(exc, action, self.base_url) from None

    # detection ------------------------------------------------------------------------------------------------
    async def is_running(self) -> bool:
        """Whether an Ollama answers at base_url (``GET /`` → 200 "Ollama is running")."""
        try:
            r = await self._http.get("/")
        except (httpx.HTTPError, OSError):
            return False
        return r.status_code == 200 and r.text.strip() == "Ollama is running"

    async def version(self) -> str:
        return version_from(await self._get("GET", "/api/version", "tell its version"))

    # models --------------------------------------------------------------------------------------------------
    async def list_models(self) -> list[OllamaModel]:
        try:
            return [model_from_tags(m) for m in (await self._client.list()).models]
        except Exception as exc:
            raise map_error(exc, "list its models", self.base_url) from None

    async def show(self, name: str) -> OllamaModelInfo:
        valid_name(name)
        try:
            return info_from_show(name, await self._client.show(name))
        except Exception as exc:
            raise map_error(exc, f"show {name}", self.base_url, name) from None

    async def ps(self) -> list[OllamaLoaded]:
        try:
            return [loaded_from_ps(m) for m in (await self._client.ps()).models]
        except Exception as exc:
            raise map_error(exc, "list loaded models", self.base_url) from None

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
            raise map_error(exc, f"{want} {name}", self.base_url, name) from None
        if len(parts) != 1 or parts[0].done is not True or parts[0].done_reason != want:
            reason = parts[-1].done_reason if parts else None
            raise OllamaError(f"Ollama did not {want} {name}", f"it answered done_reason={reason!r}.")

    async def delete(self, name: str) -> None:
        valid_name(name)
        try:
            await self._client.delete(name)
        except Exception as exc:
            raise map_error(exc, f"delete {name}", self.base_url, name) from None

    async def pull(self, name: str) -> AsyncIterator[PullEvent]:
        """Pull through Ollama's registry client, as typed progress events."""
        valid_name(name)
        try:
            async for p in await self._client.pull(name, stream=True):
                progress = pull_progress(name, p)
                yield progress
                if progress.status == "success":
                    yield PullFinished(name)
                    return
        except Exception as exc:
            raise map_error(exc, f"pull {name}", self.base_url, name) from None
        raise OllamaError(f"Ollama's pull of {name} ended early", "It stopped without saying success; retry.")

    # blobs and create ----------------------------------------------------------------------------------------
    async def has_blob(self, digest: str) -> bool:
        if not is_digest(digest):
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
            raise map_error(exc, "upload a blob", self.base_url) from None
        if r.status_code not in (200, 201):
            raise map_error(ollama.ResponseError(r.text[:2000], r.status_code), "upload a blob", self.base_url)
        return BlobUploaded(digest, size, skipped=False)

    async def create(self, name: str, files: Mapping[str, str], *, template: str | None = None,
                     stop: tuple[str, ...] | None = None) -> AsyncIterator[CreateEvent]:
        """``POST /api/create`` with ``files`` (file name → uploaded blob digest). ``template`` is Ollama's Go
        template and ``stop`` its stop words; leave both None to let Ollama take them from the GGUF (it detects
        the chat template from ``tokenizer.chat_template`` and derives the stop words, as recorded)."""
        valid_name(name)
        for fname, digest in files.items():
            if not is_digest(digest) or "/" in fname:
                raise OllamaError("Invalid create request", f"{fname!r}: {digest!r} is not a blob digest.")
        params = {"stop": list(stop)} if stop else None
        try:
            async for p in await self._client.create(name, files=dict(files), template=template, parameters=params,
                                                     stream=True):
                progress = create_progress(name, p)
                yield progress
                if progress.status == "success":
                    yield CreateFinished(name)
                    return
        except Exception as exc:
            raise map_error(exc, f"create {name}", self.base_url) from None
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


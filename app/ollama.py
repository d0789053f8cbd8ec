"""Ollama, composed: where it is (settings, ``OLLAMA_HOST``, the controller's spawned server), the engine the
controller uses, the record of models llmctl created in it, and what the CLI does with it (list, pull with
progress, import a GGUF, remove, the blob behind a model for `fit`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from llmctl.app.paths import Paths
from llmctl.app.settings import Settings, offline
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry, name_from_path
from llmctl.runtimes.base import EngineInfo
from llmctl.runtimes.ollama import OllamaApi, find_ollama, parse_ollama_host
from llmctl.runtimes.ollama_engine import SERVE_NAME, OllamaServe, OllamaServer, engine_info, ollama_name
from llmctl.runtimes.ollama_wire import OllamaError, valid_name
from llmctl.runtimes.process import RestartPolicy
from llmctl.runtimes.state_file import StateFile

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def attach_url(settings: Settings) -> str:
    """Where an Ollama to attach to listens: ``engines.ollama.host``, else ``OLLAMA_HOST``, else the default."""
    return parse_ollama_host(settings.engines.ollama.host or os.environ.get("OLLAMA_HOST"))


def spawn_models_dir(settings: Settings, paths: Paths) -> Path:
    return Path(settings.engines.ollama.models_dir or paths.data_dir / "ollama").expanduser()


def make_server(settings: Settings, paths: Paths, *, state: StateFile, policy: RestartPolicy) -> OllamaServer | None:
    """The controller's Ollama engine, or None when ``engines.ollama.mode = "off"``."""
    cfg = settings.engines.ollama
    if cfg.mode == "off":
        return None
    serve = None
    if cfg.mode == "spawn":
        exe = cfg.executable or find_ollama()
        if exe is not None:
            serve = OllamaServe(exe, spawn_models_dir(settings, paths))
    return OllamaServer(attach_url(settings), serve=serve, log_dir=paths.logs_dir, state=state, policy=policy,
                        ready_timeout=settings.backends.ready_timeout)


def current_url(settings: Settings, paths: Paths) -> str | None:
    """The Ollama the CLI should talk to: the server the running controller spawned (if it did), else the one to
    attach to. None when Ollama is off."""
    if settings.engines.ollama.mode == "off":
        return None
    rec = StateFile(paths.backends_state).read().get(SERVE_NAME)
    if isinstance(rec, dict) and isinstance(rec.get("port"), int) and isinstance(rec.get("pid"), int):
        try:
            if abs(psutil.Process(rec["pid"]).create_time() - float(rec.get("create_time", 0))) < 0.05:
                return f"http://127.0.0.1:{rec['port']}"
        except (psutil.Error, TypeError, ValueError):
            pass
    return attach_url(settings)


def api_for(settings: Settings, paths: Paths) -> OllamaApi:
    url = current_url(settings, paths)
    if url is None:
        raise LlmctlError("Ollama is turned off", 'set engines.ollama.mode = "attach" (or "spawn") in config.toml.')
    return OllamaApi(url)


async def describe_ollama(settings: Settings, paths: Paths) -> EngineInfo:
    """`llmctl runtimes`' line for Ollama: the binary on PATH, and the server that answers (URL, version)."""
    cfg = settings.engines.ollama
    exe = cfg.executable or find_ollama()
    url = current_url(settings, paths)
    if url is None:
        return engine_info(exe, None, None, "off (engines.ollama.mode)")
    async with OllamaApi(url, timeout=3) as api:
        try:
            version = await asyncio.wait_for(api.version(), 5)
        except (OllamaError, TimeoutError):
            version = None
    if version is not None:
        return engine_info(exe, url, version, f"attached at {url}" if url == attach_url(settings)
                           else f"spawned by the running controller at {url}")
    if cfg.mode == "spawn":
        note = (f"nothing answers at {url}; the controller will start `{exe} serve`" if exe
                else f"nothing answers at {url}, and there is no ollama binary to start")
    else:
        note = f"nothing answers at {url} (mode attach)"
    return engine_info(exe, url, None, note)


# --- models llmctl created in Ollama ----------------------------------------------------------------------------
class CreatedModels:
    """``ollama-created.json`` in llmctl's data folder: the Ollama models llmctl created (only these are removed
    without ``--force``)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "ollama-created.json"

    def names(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return set()
        return {n for n in data.get("models", []) if isinstance(n, str)} if isinstance(data, dict) else set()

    def _write(self, names: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"models": sorted(names)}, indent=2), "utf-8")
        os.replace(tmp, self.path)

    def add(self, name: str) -> None:
        self._write(self.names() | {name})

    def discard(self, name: str) -> None:
        names = self.names()
        if name in names:
            self._write(names - {name})


# --- what the CLI does ----------------------------------------------------------------------------------------
async def list_entries(settings: Settings, paths: Paths) -> tuple[list[ModelEntry], str | None]:
    """Ollama's models as llmctl lists them, and why there are none when Ollama cannot be reached."""
    url = current_url(settings, paths)
    if url is None:
        return [], None
    server = OllamaServer(url, log_dir=paths.logs_dir)
    try:
        entries = await server.entries(fresh=True)
        return entries, server.last_error
    finally:
        await server.close()


def require_online(settings: Settings) -> None:
    if offline(settings):
        raise LlmctlError("pulling from Ollama's registry needs the network",
                          "offline mode is on (settings `offline` or HF_HUB_OFFLINE=1); turn it off to pull, or "
                          "import a local GGUF: `llmctl import FILE.gguf --to ollama`.")


def default_name(path: Path, name: str | None) -> str:
    """NAME:TAG for a GGUF imported into Ollama: ``--name`` (``:latest`` added when it has no tag), else the
    file's name."""
    if name:
        name = name.removeprefix("ollama/").removeprefix("ollama:")
    base = name or name_from_path(path).replace(":", "-")
    return valid_name(base if ":" in base else f"{base}:latest")


async def import_events(api: OllamaApi, path: Path, name: str) -> AsyncIterator:
    """Hash the file (off the event loop), upload it unless Ollama has it, create NAME from it."""
    from llmctl.runtimes.ollama import sha256_file

    digest = await asyncio.to_thread(sha256_file, path)
    async for event in api.import_gguf(name, path, digest=digest):
        yield event


def to_ollama_name(name: str) -> str:
    """``ollama/NAME:TAG`` → ``NAME:TAG``; anything else is an error saying the form."""
    found = ollama_name(name)
    if found is None:
        raise OllamaError(f"{name!r} is not an Ollama model name", "write ollama/NAME:TAG, e.g. ollama/smollm2:135m.")
    return found


async def model_blob(api: OllamaApi, name: str, search: list[Path]) -> tuple[Path, int | None]:
    """The GGUF behind an Ollama model (its model layer's blob) and Ollama's own in-memory size when it is loaded.

    The digest comes from /api/show, is checked to be sha256 hex, and only then names a file
    ``blobs/sha256-<hex>`` inside one of ``search`` (the Ollama stores llmctl knows of) or inside the ``blobs``
    folder show names, whichever exists. Nothing else the server says becomes a path."""
    info = await api.show(name)
    digest = (info.model_digest or "").removeprefix("sha256:")
    if not _HEX64.match(digest):
        raise OllamaError(f"Ollama did not name the GGUF behind {name}", "its /api/show has no model blob.")
    roots = [p / "blobs" for p in search]
    if info.model_blob:
        shown = Path(info.model_blob)
        if shown.is_absolute() and shown.name == f"sha256-{digest}" and shown.parent.name == "blobs":
            roots.append(shown.parent)
    for root in roots:
        blob = root / f"sha256-{digest}"
        if blob.is_file() and blob.resolve().parent == root.resolve():
            size = None
            loaded = {m.name: m for m in await api.ps()}.get(name)
            if loaded is not None:
                size = loaded.size
            return blob, size
    raise OllamaError(f"the GGUF behind {name} is not on this machine",
                      f"Ollama keeps it as blobs/sha256-{digest[:12]}…; set OLLAMA_MODELS to its store if it is "
                      "elsewhere (the Ollama server may run on another machine).")


def ollama_stores(settings: Settings, paths: Paths) -> list[Path]:
    """Ollama stores on this machine: OLLAMA_MODELS (else ~/.ollama/models) and the spawned server's."""
    env = os.environ.get("OLLAMA_MODELS")
    user = Path(env).expanduser() if env else Path.home() / ".ollama" / "models"
    return [user, spawn_models_dir(settings, paths)]

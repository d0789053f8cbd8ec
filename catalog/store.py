"""The local model registry: which model names point at which files.

Small on purpose: a JSON file (``models.json``) in the data directory, written atomically under a lock, so
several CLI processes and the controller can share it. ``llmctl import`` registers a GGUF by reference (the
file stays where it is); the downloads issue grows this into a blob store.

Names become URL parts, file names and OpenAI ``model`` values, so they are validated up front (a name with
``..`` or a slash would write outside the store): lowercase letters, digits and ``. _ - :``, starting with a letter
or digit, at most 128.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import StoreError
from llmctl.catalog.gguf import SPLIT_NAME, read_gguf, split_parts
from llmctl.catalog.safetensors_dir import read_model_dir

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")
_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A registered local model."""

    name: str
    path: str
    format: str = "gguf"
    size: int = 0
    added_at: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    projector: str | None = None  # a multimodal projector GGUF (mmproj) that goes with this model, if any

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validate_name(name: str) -> str:
    """Return the name lowercased, or raise StoreError saying what is allowed."""
    lowered = name.strip().lower()
    if not NAME_RE.fullmatch(lowered) or ".." in lowered:
        raise StoreError(
            f"{name!r} is not a valid model name",
            "use letters, digits and . _ - : (no spaces, no '..', at most 128 characters), "
            "starting with a letter or digit.",
        )
    return lowered


def name_from_path(path: Path) -> str:
    """A model name derived from a file name: 'Gemma-3-270M-Q4_K_M.gguf' -> 'gemma-3-270m-q4_k_m'; a split model's
    'Big-Q8_0-00001-of-00003.gguf' -> 'big-q8_0'."""
    split = SPLIT_NAME.match(path.name)
    stem = (split["stem"] if split else path.name.removesuffix(".gguf")).lower()
    cleaned = re.sub(r"[^a-z0-9._:-]+", "-", stem).strip("-._:")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:128]
    return cleaned or "model"


def model_files(entry: ModelEntry) -> list[Path]:
    """Every file (or folder) a registered model uses: a GGUF's file or all its split parts, its projector when
    one is recorded, a safetensors model's folder (with its tokenizer and config files)."""
    path = Path(entry.path)
    files = split_parts(path) if entry.format == "gguf" else [path]
    projector = getattr(entry, "projector", None) or entry.facts.get("projector")
    if isinstance(projector, str) and projector:
        files.append(Path(projector))
    return files


class ModelStore:
    """Registry of local models, backed by one JSON file under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "models.json"
        self._cache: tuple[float, dict[str, ModelEntry]] | None = None

    # reading -----------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, ModelEntry]:
        try:
            stat = self.file.stat()
        except FileNotFoundError:
            return {}
        cache = self._cache  # read once: a writer in another thread (the controller's) may clear it meanwhile
        if cache and cache[0] == stat.st_mtime_ns:
            return cache[1]
        try:
            raw = json.loads(self.file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"the model registry {self.file} cannot be read",
                f"{exc}. Fix or remove the file, then import your models again.",
            ) from None
        entries = {}
        for item in raw.get("models", []):
            entry = ModelEntry(**{k: item[k] for k in ModelEntry.__dataclass_fields__ if k in item})
            entries[entry.name] = entry
        self._cache = (stat.st_mtime_ns, entries)
        return entries

    def list(self) -> list[ModelEntry]:
        return sorted(self._load().values(), key=lambda e: e.name)

    def get(self, name: str) -> ModelEntry | None:
        return self._load().get(name.strip().lower())

    def require(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.list()) or "none yet"
            raise StoreError(
                f"no model named {name!r}",
                f"registered models: {known}. Add one with `llmctl import PATH`.",
            )
        return entry

    # writing -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, ModelEntry]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".models.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._cache = None
            entries = dict(self._load())
            yield entries
            ordered = sorted(entries.values(), key=lambda e: e.name)
            payload = {"schema": _SCHEMA, "models": [e.to_json() for e in ordered]}
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".models.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(payload, out, indent=2)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.file)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._cache = None

    def import_file(self, path: Path, name: str | None = None, *, replace: bool = False,
                    projector: Path | None = None) -> ModelEntry:
        """Register a local GGUF, or a safetensors model folder (for vLLM), by reference after reading (and so
        validating) its headers. ``projector`` is a GGUF's multimodal projector (mmproj), validated the same way."""
        resolved = path.expanduser().resolve()
        if not resolved.is_dir():
            # the folder resolved, the name kept: a split model's parts find each other by name, and in the Hugging
            # Face cache the names are the snapshot's links, not the blobs' hashes
            resolved = path.expanduser().absolute().parent.resolve() / path.name
        final = validate_name(name) if name else name_from_path(resolved)
        if resolved.is_dir():
            facts, size = read_model_dir(resolved)
            entry = ModelEntry(final, str(resolved), "safetensors", size, time.time(), facts)
        else:
            info = read_gguf(resolved)  # raises ModelFileError with a clear message on anything malformed
            mmproj = None
            if projector is not None:
                # the link's name kept, as for the model: a snapshot path, not a blob's hash
                mmproj = projector.expanduser().absolute().parent.resolve() / projector.name
                read_gguf(mmproj)
            # a split model is registered by its first part, whichever part was named; size is every part's
            entry = ModelEntry(final, str(info.path), "gguf", info.file_size, time.time(), info.summary(),
                               str(mmproj) if mmproj else None)
        return self._put(entry, replace)

    def _put(self, entry: ModelEntry, replace: bool) -> ModelEntry:
        with self._locked() as entries:
            old = entries.get(entry.name)
            if old is not None and not replace and old.path != entry.path:
                raise StoreError(
                    f"a model named {entry.name!r} already exists (at {old.path})",
                    "pick another name with --name, or remove it first with `llmctl models rm`.",
                )
            entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> ModelEntry:
        """Unregister a model. Imported files are references: the file itself is left alone."""
        with self._locked() as entries:
            entry = entries.pop(name.strip().lower(), None)
            if entry is None:
                raise StoreError(f"no model named {name!r}", "see `llmctl models list` for the names.")
        return entry

"""The controller's model directory: every name a client may ask for, resolved to a ``ModelEntry``.

Registered models come from llmctl's own store. Engines that host models themselves (Ollama) are *sources*: each
owns a name prefix (``ollama/``), lists its models as entries, and builds the deployment for one of them. The
gateway, the control API and the scheduler's ``make_backend`` ask the directory and never branch on an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry, ModelStore


class ModelSource(Protocol):
    prefix: str  # "ollama/": the names this source answers for

    async def entries(self, *, fresh: bool = False) -> list[ModelEntry]: ...

    async def entry(self, name: str) -> ModelEntry | None: ...

    def deployment(self, entry: ModelEntry, *, ttl: float | None, log_dir: Path,
                   on_change: Callable[[Any], None] | None = None) -> Any: ...

    async def refresh(self) -> None: ...


class ModelDirectory:
    def __init__(self, store: ModelStore, sources: list[ModelSource]) -> None:
        self.store = store
        self.sources = sources

    def source_for(self, name: str) -> ModelSource | None:
        return next((s for s in self.sources if name.startswith(s.prefix)), None)

    async def get(self, name: str) -> ModelEntry | None:
        """The entry named ``name``; None when there is none. A malformed name raises LlmctlError."""
        source = self.source_for(name)
        if source is not None:
            return await source.entry(name)
        return self.store.get(name)

    async def list(self) -> list[ModelEntry]:
        out = self.store.list()
        for source in self.sources:
            try:
                out += await source.entries()
            except LlmctlError:
                continue
        return out

    async def refresh(self) -> None:
        """Bring every source's view of its loaded models up to date (before answering `llmctl ps`)."""
        for source in self.sources:
            await source.refresh()

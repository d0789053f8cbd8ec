"""Which model runs where: on-demand start, bounded waits, least-recently-used eviction.

The scheduler owns every ``Backend``. A request ``acquire``s the backend of its model (starting it if need be,
waiting at most ``load_wait`` seconds for it to load) and ``release``s it when its response ends; a backend
with requests in flight is never evicted. How a backend is built (adapter, port, threads) is the caller's
business, passed in as ``make_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import BackendFailed, BackendState
from llmctl.runtimes.process import Backend


class ModelLoading(TimeoutError):
    """The model is still loading after the wait bound; the caller should answer 503 + Retry-After."""

    def __init__(self, name: str, state: str) -> None:
        super().__init__(f"{name} is still {state}")
        self.name = name
        self.state = state


class Scheduler:
    def __init__(
        self,
        make_backend: Callable[[ModelEntry], Backend],
        *,
        max_loaded: int = 2,
        load_wait: float = 120.0,
        retry_failed_after: float = 30.0,
    ) -> None:
        self._make_backend = make_backend
        self.max_loaded = max_loaded
        self.load_wait = load_wait
        self.retry_failed_after = retry_failed_after
        self.backends: dict[str, Backend] = {}
        self._lock = asyncio.Lock()

    def get(self, name: str) -> Backend | None:
        return self.backends.get(name)

    def _live(self) -> list[Backend]:
        return [b for b in self.backends.values() if b.alive]

    async def _evict_for(self, name: str) -> None:
        """Stop least-recently-used idle backends until there is room for one more."""
        while True:
            live = [b for b in self._live() if b.name != name]
            if len(live) < self.max_loaded:
                return
            idle = sorted((b for b in live if b.in_flight == 0), key=lambda b: b.last_used)
            if not idle:
                return  # everything is busy: run over the limit rather than break a request
            await idle[0].stop()

    async def start(self, entry: ModelEntry, *, force: bool = False) -> Backend:
        """Make sure the model's backend is launched (not necessarily ready). ``force`` retries a failed one."""
        async with self._lock:
            backend = self.backends.get(entry.name)
            if backend is not None and backend.alive:
                return backend
            if (
                backend is not None
                and backend.state is BackendState.FAILED
                and not force
                and backend.failed_at is not None
                and time.monotonic() - backend.failed_at < self.retry_failed_after
            ):
                raise BackendFailed(
                    f"{entry.name} failed",
                    f"{backend.error}. See `llmctl logs {entry.name}`; `llmctl start {entry.name}` tries again.",
                    log_tail=list(backend.tail)[-20:],
                )
            await self._evict_for(entry.name)
            if backend is None or backend.spec.model_path != Path(entry.path):
                backend = self._make_backend(entry)
                self.backends[entry.name] = backend
            backend.start()
            return backend

    async def ensure_ready(self, entry: ModelEntry, wait: float | None = None) -> Backend:
        backend = await self.start(entry)
        try:
            await backend.wait_ready(self.load_wait if wait is None else wait)
        except TimeoutError:
            raise ModelLoading(entry.name, backend.state.value) from None
        return backend

    @contextlib.asynccontextmanager
    async def use(self, entry: ModelEntry) -> AsyncIterator[Backend]:
        """Hold the model's ready backend for the length of one request."""
        backend = await self.ensure_ready(entry)
        backend.in_flight += 1
        backend.last_used = time.monotonic()
        try:
            yield backend
        finally:
            backend.in_flight -= 1
            backend.last_used = time.monotonic()

    async def stop(self, name: str) -> Backend | None:
        backend = self.backends.get(name)
        if backend is not None:
            await backend.stop()
        return backend

    async def shutdown(self) -> None:
        """Stop every backend, concurrently (each: SIGTERM, grace, SIGKILL)."""
        await asyncio.gather(*(b.stop() for b in self.backends.values()), return_exceptions=True)

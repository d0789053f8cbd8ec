"""Which model runs where: on-demand start, bounded waits, least-recently-used eviction.

The scheduler owns every ``Backend``. A request ``use``s the backend of its model for its whole length. The
path of a request to a ready model takes no lock at all. Starting a model takes that model's own lock only, so
concurrent first requests start it once and one model's slow start or swap never delays another model. A
backend with requests in flight, *including requests waiting for it to load*, is never evicted; victims are
chosen without awaiting anything and stopped outside every lock. How a backend is built (engine, port,
threads, GPU layers — which may read files or the GPU) is the caller's business, passed in as the coroutine
``make_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
        make_backend: Callable[[ModelEntry], Awaitable[Backend]],
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
        self._locks: dict[str, asyncio.Lock] = {}
        self._starting: set[str] = set()  # models being started: they count as loaded for eviction
        self._evicting: set[int] = set()  # id() of backends chosen as victims and being stopped

    def get(self, name: str) -> Backend | None:
        return self.backends.get(name)

    def _usable(self, backend: Backend | None, entry: ModelEntry) -> bool:
        """Launched for this file and not on its way out (stopping, or chosen as a victim)."""
        return (backend is not None and backend.alive and id(backend) not in self._evicting
                and backend.state is not BackendState.STOPPING and backend.spec.model_path == Path(entry.path))

    def _victims_for(self, name: str) -> list[Backend]:
        """Least-recently-used idle backends to stop so that ``name`` fits under ``max_loaded``. Synchronous, so
        no other task can pick the same victims or slip in between counting and choosing."""
        live = [b for b in self.backends.values()
                if b.alive and b.name != name and id(b) not in self._evicting]
        room = self.max_loaded - 1 - len(self._starting - {name})
        excess = len(live) - room
        if excess <= 0:
            return []
        idle = sorted((b for b in live if b.in_flight == 0), key=lambda b: b.last_used)
        victims = idle[:excess]  # if everything is busy, run over the limit rather than break a request
        self._evicting.update(id(v) for v in victims)
        return victims

    async def _evict(self, victims: list[Backend]) -> None:
        try:
            await asyncio.gather(*(v.stop() for v in victims), return_exceptions=True)
        finally:
            self._evicting.difference_update(id(v) for v in victims)

    async def start(self, entry: ModelEntry, *, force: bool = False) -> Backend:
        """Make sure the model's backend is launched (not necessarily ready). ``force`` retries a failed one."""
        backend = self.backends.get(entry.name)
        if self._usable(backend, entry):
            return backend  # fast path: no lock
        async with self._locks.setdefault(entry.name, asyncio.Lock()):
            backend = self.backends.get(entry.name)
            if self._usable(backend, entry):
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
            self._starting.add(entry.name)
            try:
                await self._evict(self._victims_for(entry.name))
                if backend is not None and backend.alive:  # being stopped, or registered again with another file
                    await backend.stop()
                if backend is None or backend.spec.model_path != Path(entry.path):
                    backend = await self._make_backend(entry)
                    self.backends[entry.name] = backend
                backend.start()
            finally:
                self._starting.discard(entry.name)
            return backend

    async def ensure_ready(self, entry: ModelEntry, wait: float | None = None) -> Backend:
        async with self.use(entry, wait) as backend:
            return backend

    @contextlib.asynccontextmanager
    async def use(self, entry: ModelEntry, wait: float | None = None) -> AsyncIterator[Backend]:
        """Hold the model's ready backend for the length of one request. The request counts as in flight from
        the moment it waits for the model, so a model loading for a waiting client is never evicted."""
        backend = self.backends.get(entry.name)
        if backend is None or backend.state is not BackendState.READY or not self._usable(backend, entry):
            backend = await self.start(entry)
        backend.in_flight += 1
        backend.last_used = time.monotonic()
        try:
            if backend.state is not BackendState.READY:
                try:
                    await backend.wait_ready(self.load_wait if wait is None else wait)
                except TimeoutError:
                    raise ModelLoading(entry.name, backend.state.value) from None
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

"""Which model runs where: on-demand start, bounded waits, placement by memory, idle unloads.

The scheduler owns every running deployment (``runtimes.base.RunningDeployment``, whichever kind serves it). A
request ``use``s the deployment of its model for its whole length. The path of a request to a ready model takes no
lock at all. Starting a model takes that model's own lock only, so concurrent first requests start it once and one
model's slow start or swap never delays another model.

Placement (``runtimes.ledger``): a deployment reserves its estimated memory per device before launch; it starts
when it fits beside what is loaded with a margin; otherwise idle deployments are stopped, least recently used
first. A backend with requests in flight, *including requests waiting for it to load*, a loading one and a
pinned one are never victims. ``max_loaded`` stays as an optional cap on the count. Victims are chosen without
awaiting anything and stopped outside every lock. A model that cannot fit even alone gets ``DoesNotFit`` with
the figures. Idle deployments are unloaded after their TTL (a request's ``keep_alive`` overrides it, as Ollama's
does: 0 unloads after that request, negative never).

How a backend is built (engine, port, threads, GPU layers, its estimate — which may read files or the GPU) is the
caller's business, passed in as the coroutine ``make_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import BackendFailed, BackendState, RunningDeployment, RuntimeFailure
from llmctl.runtimes.ledger import holding_now, place


class ModelLoading(TimeoutError):
    """The model is still loading after the wait bound; the caller should answer 503 + Retry-After."""

    def __init__(self, name: str, state: str) -> None:
        super().__init__(f"{name} is still {state}")
        self.name = name
        self.state = state


class Scheduler:
    def __init__(
        self,
        make_backend: Callable[[ModelEntry], Awaitable[RunningDeployment]],
        *,
        max_loaded: int | None = None,
        load_wait: float = 120.0,
        retry_failed_after: float = 30.0,
        capacity: Callable[[dict[str, int]], dict[str, int]] | None = None,
        margin: int = 1 << 30,
    ) -> None:
        self._make_backend = make_backend
        self.max_loaded = max_loaded
        self.load_wait = load_wait
        self.retry_failed_after = retry_failed_after
        # bytes per device models may use in all, given what llmctl's live backends hold now (it reads RAM and the
        # GPUs: run on a thread); None: no memory placement
        self.capacity = capacity
        self.margin = margin
        self.backends: dict[str, RunningDeployment] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._starting: set[str] = set()  # models being started: they count as loaded for placement
        self._evicting: set[int] = set()  # id() of backends chosen as victims and being stopped
        self._unloads: set[asyncio.Task] = set()
        self.closing = False  # set when the controller stops: nothing new is started after it

    def get(self, name: str) -> RunningDeployment | None:
        return self.backends.get(name)

    def _usable(self, backend: RunningDeployment | None, entry: ModelEntry) -> bool:
        """Launched for this file and not on its way out (stopping, or chosen as a victim)."""
        return (backend is not None and backend.alive and id(backend) not in self._evicting
                and backend.state is not BackendState.STOPPING
                and (str(backend.spec.model_path) == entry.path or backend.spec.model_path == Path(entry.path)))

    # placement ---------------------------------------------------------------------------------------------
    def _others(self, backend: RunningDeployment) -> list[RunningDeployment]:
        """The deployments placement counts beside ``backend``: local ones (a remote's hold nothing here)."""
        return [b for b in self.backends.values()
                if b is not backend and id(b) not in self._evicting and (b.alive or b.name in self._starting)
                and not b.remote]

    async def _capacity(self, backend: RunningDeployment) -> dict[str, int] | None:
        if self.capacity is None:
            return None
        others = self._others(backend)
        for b in others:
            b.memory_bytes()  # refresh what the ready ones measure
        return await asyncio.to_thread(self.capacity, holding_now(others))

    def _victims_for(self, backend: RunningDeployment, capacity: dict[str, int] | None) -> list[RunningDeployment]:
        """Backends to stop so that ``backend`` fits: by memory (the ledger) and by count (``max_loaded``).
        Synchronous, so no other task can pick the same victims or slip in between counting and choosing."""
        others = self._others(backend)
        idle = {b.name for b in others if b.alive and b.state is BackendState.READY and b.name not in self._starting}
        victims: list[RunningDeployment] = []
        if capacity is not None:
            victims = place(backend.footprint.reserved, capacity, others, margin=self.margin, name=backend.name,
                            evictable=idle)
        if self.max_loaded is not None:
            left = [b for b in others if b not in victims]
            excess = len(left) - (self.max_loaded - 1)
            by_age = sorted((b for b in left if b.name in idle and b.in_flight == 0 and not b.pinned),
                            key=lambda b: b.last_used)
            victims += by_age[:max(0, excess)]  # if everything is busy, run over the count rather than break one
        self._evicting.update(id(v) for v in victims)
        return victims

    async def _evict(self, victims: list[RunningDeployment], why: str) -> None:
        try:
            await asyncio.gather(*(v.stop(f"evicted to make room for {why}") for v in victims),
                                 return_exceptions=True)
        finally:
            self._evicting.difference_update(id(v) for v in victims)

    async def start(self, entry: ModelEntry, *, force: bool = False) -> RunningDeployment:
        """Make sure the model's backend is launched (not necessarily ready). ``force`` retries a failed one."""
        backend = self.backends.get(entry.name)
        if self._usable(backend, entry):
            return backend  # fast path: no lock
        async with self._locks.setdefault(entry.name, asyncio.Lock()):
            if self.closing:
                raise RuntimeFailure("the controller is stopping", "start it again with `llmctl serve`.")
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
            if backend is not None and backend.alive:  # being stopped, or registered again with another file
                await backend.stop()
            if backend is None or backend.spec.model_path != Path(entry.path) or force:
                backend = await self._make_backend(entry)  # a fresh plan: settings or the file may have changed
                self.backends[entry.name] = backend
            local = not backend.remote  # a remote's deployment takes no room and makes none
            capacity = await self._capacity(backend) if local else None
            self._starting.add(entry.name)
            try:
                if local:
                    await self._evict(self._victims_for(backend, capacity), entry.name)
                backend.start()
            finally:
                self._starting.discard(entry.name)
            return backend

    async def ensure_ready(self, entry: ModelEntry, wait: float | None = None) -> RunningDeployment:
        async with self.use(entry, wait) as backend:
            return backend

    @contextlib.asynccontextmanager
    async def use(self, entry: ModelEntry, wait: float | None = None, *,
                  keep_alive: float | None = None) -> AsyncIterator[RunningDeployment]:
        """Hold the model's ready backend for the length of one request. The request counts as in flight from
        the moment it waits for the model, so a model loading for a waiting client is never evicted.
        ``keep_alive`` (seconds; 0: unload after this request; negative: never) replaces the model's TTL."""
        backend = self.backends.get(entry.name)
        if backend is None or backend.state is not BackendState.READY or not self._usable(backend, entry):
            backend = await self.start(entry)
        backend.in_flight += 1
        backend.last_used = time.monotonic()
        backend.keep_alive = keep_alive  # this request's, or none: the next request without one gets the TTL back
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
            if backend.in_flight == 0 and backend.idle_ttl == 0:
                self._unload_later(backend, "keep_alive 0: unloaded after its request")

    # idle unloads ------------------------------------------------------------------------------------------
    def _unload_later(self, backend: RunningDeployment, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._unload_if_idle(backend, reason))
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def unloads_done(self) -> None:
        """Return once the unloads under way (each a task: ``keep_alive 0``, TTL) have finished, so that an answer
        saying "unloaded" is true when it leaves."""
        await asyncio.gather(*list(self._unloads), return_exceptions=True)

    async def _unload_if_idle(self, backend: RunningDeployment, reason: str) -> None:
        if backend.in_flight == 0 and backend.alive and backend.state is BackendState.READY \
                and id(backend) not in self._evicting and not backend.pinned:
            await backend.stop(reason)

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Start unloading every ready backend idle past its TTL; returns their names."""
        now = time.monotonic() if now is None else now
        due = [b for b in self.backends.values()
               if b.state is BackendState.READY and b.in_flight == 0 and not b.pinned and b.idle_ttl is not None
               and now - b.last_used >= b.idle_ttl and id(b) not in self._evicting]
        for b in due:
            self._unload_later(b, f"idle for {b.idle_ttl:g} s (ttl)")
        return [b.name for b in due]

    async def run_idle_unloads(self, every: float = 1.0) -> None:
        """Forever: unload what has been idle past its TTL. The controller runs it as a task."""
        while True:
            await asyncio.sleep(every)
            self.unload_idle()

    async def stop(self, name: str, reason: str = "stopped by request") -> RunningDeployment | None:
        backend = self.backends.get(name)
        if backend is not None:
            await backend.stop(reason)
        return backend

    async def retire(self, name: str, reason: str = "its model was removed") -> RunningDeployment | None:
        """Stop a model's backend and forget it, once any start of it under way has launched, so that no start
        racing the model's removal leaves a deployment running for a model that no longer exists."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            backend = self.backends.pop(name, None)
            if backend is not None:
                await backend.stop(reason)
        return backend

    async def shutdown(self) -> None:
        """Stop every backend, concurrently (each: SIGTERM, grace, SIGKILL); start nothing new from now on."""
        self.closing = True
        for task in list(self._unloads):
            task.cancel()
        await asyncio.gather(*(b.stop("the controller stopped") for b in self.backends.values()),
                             return_exceptions=True)

"""Pulls run by the controller, so the CLI and the TUI share them and a pull outlives the TUI that started it:

- ``POST /llmctl/v1/pulls`` ``{"ref", "name"?, "revision"?, "force"?}``: resolve the reference (list the repo,
  pick the files, check the name: ``catalog.references``), then download in a thread; 202 with the pull, or 200
  with the pull already fetching the same files (``joined``: a second pull of one ref joins the first);
- ``GET /llmctl/v1/pulls``: every pull of this controller's life (the finished ones: the last few);
- ``DELETE /llmctl/v1/pulls/{id}``: cancel; the partial files stay, so the same pull resumes them (like Ctrl-C);
- ``GET /llmctl/v1/pulls/{id}/events?after=SEQ``: NDJSON, one typed event a line (the downloader's own events,
  then ``registered`` and the end), until the pull ends. Each pull keeps its last ``MAX_EVENTS`` events; a reader
  that fell further behind first gets a ``snapshot`` of every file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.settings import Settings, offline
from llmctl.catalog.downloads import DownloadError, FileFinished, FileProgressed, FileStarted, FileWaiting
from llmctl.catalog.errors import LlmctlError, StoreError
from llmctl.catalog.store import ModelStore

if TYPE_CHECKING:
    from llmctl.catalog.downloads import Event, HubDownloader
    from llmctl.catalog.references import ResolvedPull

PREFIX = "/llmctl/v1"
MAX_EVENTS = 512  # per pull
KEEP_FINISHED = 20
ACTIVE = ("downloading", "registering")
SPEED_WINDOW = 3.0  # seconds of progress the speed is measured over


class Pull:
    """One pull: its files' progress, its state, and its recent events (all touched on the event loop only)."""

    def __init__(self, pull_id: str, ref: str, resolved: ResolvedPull, downloader: HubDownloader) -> None:
        self.id = pull_id
        self.ref = ref
        self.resolved = resolved
        self.downloader = downloader
        plan = resolved.plan
        self.files: dict[str, dict[str, Any]] = {
            f.name: {"name": f.name, "size": f.size, "done": 0, "state": "queued"} for f in plan.files}
        self.state = "downloading"
        self.error: str | None = None
        self.model: str | None = None
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.paths: dict[str, Path] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.seq = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return sum(f["size"] for f in self.files.values())

    @property
    def done(self) -> int:
        return sum(f["done"] for f in self.files.values())

    @property
    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def status(self) -> dict[str, Any]:
        r = self.resolved
        return {"id": self.id, "ref": self.ref, "repo": r.plan.repo, "revision": r.plan.revision,
                "commit": r.plan.commit, "name": r.name, "state": self.state,
                "files": [dict(f) for f in self.files.values()], "total_bytes": self.total,
                "done_bytes": self.done, "speed_bps": round(self.speed, 1), "error": self.error, "model": self.model,
                "started_at": self.started_at, "finished_at": self.finished_at, "seq": self.seq}

    def snapshot(self) -> dict[str, Any]:
        return self._event("snapshot", files=[dict(f) for f in self.files.values()], seq=self.seq)

    def _event(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {"seq": self.seq, "pull": self.id, "type": kind, "state": self.state, "total_done": self.done,
                "total": self.total, "speed_bps": round(self.speed, 1), **extra}

    def emit(self, kind: str, **extra: Any) -> None:
        self.seq += 1
        self.events.append(self._event(kind, **extra))
        self._wake.set()
        self._wake = asyncio.Event()

    def apply(self, event: Event) -> None:
        """A downloader event (called on the loop, from the download thread)."""
        f = self.files.get(event.name)
        if f is None:
            return
        if isinstance(event, FileWaiting):
            f["state"] = "waiting"
            self.emit("waiting", file=event.name, done=f["done"], size=f["size"])
            return
        if isinstance(event, FileStarted):
            f["state"], f["done"] = "downloading", event.resumed_from
            self._samples.clear()
            self._sample()
            self.emit("started", file=event.name, done=f["done"], size=f["size"], resumed_from=event.resumed_from)
        elif isinstance(event, FileProgressed):
            f["done"] = event.done
            self._sample()
            self.emit("progress", file=event.name, done=f["done"], size=f["size"])
        elif isinstance(event, FileFinished):
            f["state"], f["done"] = "verified", f["size"]
            self.paths[event.name] = event.path
            self.emit("verified", file=event.name, done=f["done"], size=f["size"])

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.popleft()

    def finish(self, state: str, *, error: str | None = None, model: str | None = None) -> None:
        self.state, self.error, self.model = state, error, model
        self.finished_at = time.time()
        for f in self.files.values():
            if f["state"] != "verified":
                f["state"] = state if state in ("failed", "cancelled") else f["state"]
        self.emit(state, **({"error": error} if error else {}), **({"model": model} if model else {}))

    async def wait_change(self, seen: int, timeout: float) -> None:
        if self.seq > seen:
            return
        wake = self._wake
        try:
            await asyncio.wait_for(wake.wait(), timeout)
        except TimeoutError:
            pass


class PullsApi:
    """``/llmctl/v1/pulls``: downloads from the Hugging Face Hub into the model store, watched by their events."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.pulls: dict[str, Pull] = {}
        self._counter = 0
        self._lock = asyncio.Lock()
        self._resolving: dict[tuple, asyncio.Future[ResolvedPull]] = {}  # listings under way, by what was asked
        self._closing = False  # set (under the lock) when the controller stops: no pull is created after it

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(f"{PREFIX}/pulls", self.list_pulls),
            web.post(f"{PREFIX}/pulls", self.start),
            web.delete(f"{PREFIX}/pulls/{{id}}", self.cancel),
            web.get(f"{PREFIX}/pulls/{{id}}/events", self.events),
        ]

    # the downloader ----------------------------------------------------------------------------------------
    def _offline(self) -> bool:
        return offline(self.settings)

    def _downloader(self) -> HubDownloader:
        from huggingface_hub import get_token

        from llmctl.catalog.discovery import hf_cache_dir
        from llmctl.catalog.downloads import HubDownloader

        offline = self._offline()
        return HubDownloader(hf_cache_dir(), endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
                             token=None if offline else get_token(), offline=offline)

    # routes ------------------------------------------------------------------------------------------------
    async def list_pulls(self, request: web.Request) -> web.Response:
        return web.json_response({"pulls": [p.status() for p in self.pulls.values()]})

    def _get(self, request: web.Request) -> Pull:
        pull = self.pulls.get(request.match_info["id"])
        if pull is None:
            raise ApiError(404, f"no pull {request.match_info['id']!r}; see GET {PREFIX}/pulls", code="pull_not_found")
        return pull

    async def start(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            ref, name = body["ref"], body.get("name")
            revision, force = body.get("revision") or "main", bool(body.get("force", False))
            if not isinstance(ref, str) or not ref.strip() or not isinstance(revision, str) \
                    or (name is not None and not isinstance(name, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ApiError(400, 'send {"ref": "NAME[:QUANT]" or "ORG/REPO:QUANT|FILE.gguf", "name"?, "revision"?, '
                           '"force"?}', code="invalid_json") from None
        pull, joined = await self.begin(ref.strip(), name, revision, force)
        return web.json_response({**pull.status(), "joined": joined}, status=200 if joined else 202)

    async def begin(self, ref: str, name: str | None, revision: str = "main", force: bool = False) -> tuple[Pull, bool]:
        """Start (or join) the pull of ``ref``: the pull, and whether it joined one running already. ApiError when
        the reference cannot be pulled."""
        self._refuse_if_closing()
        if ref.startswith(("ollama:", "ollama/")):
            raise ApiError(400, "Ollama models are pulled by Ollama: run `llmctl pull " + ref + "`",
                           code="invalid_ref")
        for pull in self._active():  # the same ref running already: join it without asking the Hub again
            if pull.ref == ref and pull.resolved.plan.revision == revision and name in (None, pull.resolved.name):
                return pull, True
        downloader = self._downloader()
        try:
            # outside the lock: a slow or unreachable Hub holds up this start only, not every other one
            resolved = await self._resolve(downloader, ref, name, revision, force)
        except StoreError as exc:
            raise ApiError(409, f"{exc.title}: {exc.message}", code="name_taken") from None
        except DownloadError as exc:
            status, code = (503, "offline") if downloader.offline else (502, "pull_failed")
            raise ApiError(status, f"{exc.title}: {exc.message}", code=code) from None
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="invalid_ref") from None
        async with self._lock:  # another start may have begun the same files while this one listed the repo
            self._refuse_if_closing()  # the controller began stopping while this one listed the repo
            for pull in self._active():
                if pull.resolved.key == resolved.key:
                    if resolved.name == pull.resolved.name:
                        return pull, True
                    raise ApiError(409, f"pull {pull.id} is fetching these files as {pull.resolved.name!r}; "
                                   "pull again under another name once it is done", code="pull_running")
            self._counter += 1
            pull = Pull(f"p{self._counter}", ref, resolved, downloader)
            self.pulls[pull.id] = pull
            self._forget_old()
            pull.task = asyncio.create_task(self._run(pull), name=f"pull {pull.id}")
        return pull, False

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise ApiError(503, "the controller is stopping: no new pull starts; pull again once it runs "
                           "(`llmctl serve`)", code="controller_stopping")

    async def _resolve(self, downloader: HubDownloader, ref: str, name: str | None, revision: str,
                       force: bool) -> ResolvedPull:
        """List the repo and decide what to fetch (in a thread). Starts of one ref at once share one listing."""
        from llmctl.catalog.references import resolve

        key = (ref, name, revision, force)
        pending = self._resolving.get(key)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(resolve, downloader, self.store, ref, name=name,
                                                              revision=revision, force=force))
            self._resolving[key] = pending

            def done(future: asyncio.Future) -> None:
                self._resolving.pop(key, None)
                if not future.cancelled():
                    future.exception()  # retrieved here, so a start whose client left logs no warning

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    async def cancel(self, request: web.Request) -> web.Response:
        pull = self._get(request)
        if pull.state not in ACTIVE:
            raise ApiError(409, f"pull {pull.id} is already {pull.state}", code="pull_finished")
        pull.downloader.cancel()
        if pull.task is not None:
            await asyncio.wait([pull.task], timeout=10)
        return web.json_response(pull.status())

    async def events(self, request: web.Request) -> web.StreamResponse:
        pull = self._get(request)
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise ApiError(400, "after must be a whole number", code="invalid_value") from None
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            seen = after
            oldest = pull.events[0]["seq"] if pull.events else pull.seq + 1
            if seen < oldest - 1 or (seen == 0 and not pull.events):  # missed events (or none kept): start whole
                await response.write((json.dumps(pull.snapshot()) + "\n").encode())
                seen = pull.seq
            while True:
                for event in [e for e in pull.events if e["seq"] > seen]:
                    await response.write((json.dumps(event) + "\n").encode())
                    seen = event["seq"]
                if pull.state not in ACTIVE and seen >= pull.seq:
                    break
                await pull.wait_change(seen, timeout=15.0)
                if pull.seq == seen:  # nothing for a while: a blank line keeps proxies from closing the stream
                    await response.write(b"\n")
            await response.write_eof()
        except ConnectionResetError:  # the reader went away (the TUI closed): the pull goes on without it
            pass
        return response

    # running -----------------------------------------------------------------------------------------------
    def _active(self) -> list[Pull]:
        return [p for p in self.pulls.values() if p.state in ACTIVE]

    def _forget_old(self) -> None:
        finished = [p for p in self.pulls.values() if p.state not in ACTIVE]
        for p in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.pulls[p.id]

    async def _run(self, pull: Pull) -> None:
        loop = asyncio.get_running_loop()

        def download() -> None:
            for event in pull.downloader.pull(pull.resolved.plan):
                loop.call_soon_threadsafe(pull.apply, event)

        try:
            await asyncio.to_thread(download)
            await asyncio.sleep(0)  # let the last events the thread queued land first
            pull.state = "registering"
            from llmctl.catalog.references import register

            entry = await asyncio.to_thread(register, self.store, pull.resolved, pull.paths)
            if entry is not None:
                pull.emit("registered", model=entry.name)
            pull.finish("done", model=entry.name if entry else None)
        except LlmctlError as exc:
            if pull.downloader.cancelled:
                pull.finish("cancelled", error="cancelled; the partial files are kept and the same pull resumes them")
            else:
                pull.finish("failed", error=f"{exc.title}: {exc.message}" if exc.message else exc.title)
        except Exception as exc:  # a bug must not leave the pull "downloading" forever
            pull.finish("failed", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Stop every pull (the controller is stopping); partial files stay for a resume. A start still listing its
        repo finds the flag once it has, and creates no pull."""
        async with self._lock:
            self._closing = True
        tasks = [p.task for p in self._active() if p.task is not None]
        for pull in self._active():
            pull.downloader.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

"""Remote engines: an OpenAI-compatible server elsewhere (another llmctl, vLLM, TGI, a cloud API) as a source of
models behind the same gateway (how one llmctl reaches models on other machines). The composition (settings, the
key from the environment or the keyring, offline mode) is ``app.remotes``; this module is what the model directory,
scheduler and gateway see.

- ``RemoteServer``: one remote. It owns the name prefix ``REMOTE/``, lists its models (given, or read from its
  ``/v1/models``: a bounded read, every id validated before it becomes a name), and checks its health in the
  background (``GET /v1/models`` every ``health_interval`` seconds while it answers; while it does not, after
  ``backoff_initial`` seconds, doubling up to ``backoff_max``; with its models given in config, any answer but
  401/403/5xx counts, for servers without that route). A remote llmctl may not contact (offline mode, a
  missing key) is ``skipped``: it never opens a socket, and its models answer 503 with the reason.
- ``RemoteDeployment``: one remote model with the surface of ``process.Backend`` that the scheduler and gateway use.
  It holds no memory here (its footprint stays empty, ``remote`` keeps it out of placement and ``max_loaded``), is
  never unloaded by a TTL, and follows its server's health: ``ready`` while the remote answers, ``failed`` (with
  why) while it does not. ``start`` is a health check; ``stop`` only stops routing to it.

The API key is sent as ``Authorization: Bearer`` to the remote's own base URL and nowhere else; redirects are never
followed (the health check's client does not follow them; the gateway posts with ``allow_redirects=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    BackendFailed,
    BackendState,
    Deployment,
    Footprint,
    RequestTimeouts,
    log_file_name,
)
from llmctl.runtimes.hosted import HostedState
from llmctl.runtimes.process import LOG_TAIL_LINES

SOURCE = "remote"
MAX_LIST_BYTES = 8 << 20  # a cloud API's model list is ~1 MB; more is not a model list
CHECK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RECHECK_AFTER = 1.0  # a start reuses a check younger than this
# an upstream model id: what vLLM (org/name), Ollama (name:tag) and cloud APIs (name@version) use; no spaces,
# control characters, "..", "//", or anything a terminal or a path could misread
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,255}$")
# while a remote's list is unknown (down since start, or skipped), names it has not listed are taken on trust so that
# a request gets a 503 saying why rather than a 404; each deployment of one is a queue and a log file, so only this
# many such deployments per remote at once (names in config never count), names this long at most
MAX_UNLISTED = 16
MAX_UNLISTED_LEN = 128


def valid_model_id(value: object) -> str | None:
    """``value`` when it is a model id llmctl will serve under a name, else None."""
    if not isinstance(value, str) or not _MODEL_ID.fullmatch(value) or ".." in value or "//" in value \
            or value.endswith("/"):
        return None
    return value


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """One remote, as configured. ``root`` is its base URL without ``/v1``. ``unusable`` says why llmctl must not
    contact it (offline mode and a host beyond loopback, its key variable unset); then it never connects."""

    name: str
    root: str
    prefix: str
    models: tuple[str, ...] = ()
    health_interval: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    unusable: str | None = None
    # its ids named in llmctl's config (profiles, fallbacks, alias targets): taken while its list is unknown, never
    # counted among the unlisted names
    configured: tuple[str, ...] = ()
    key_source: str = "none"  # where its key comes from, for `remotes list`: "env VAR", "keyring", "none"
    # a proxied request: connecting, then its first byte, then each wait for more (RemoteSettings documents them)
    timeouts: RequestTimeouts = field(default_factory=lambda: RequestTimeouts(10.0, 300.0, 300.0))


class RemoteServer:
    """One remote OpenAI-compatible server: a model source of the controller's directory."""

    def __init__(self, spec: RemoteSpec, *, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_change: Callable[[RemoteServer], None] | None = None) -> None:
        self.spec = spec
        self.prefix = spec.prefix
        self._key = api_key  # never logged, never in status(); sent to spec.root only
        self._transport = transport
        self.on_change = on_change
        self.state = "skipped" if spec.unusable else "unknown"  # unknown | ready | failed | skipped
        self.error: str | None = spec.unusable
        self.checked_at: float | None = None  # monotonic
        self.ready_since: float | None = None  # wall clock
        self.next_check_at: float | None = None  # monotonic
        self.checks = 0
        self.ids: list[str] | None = list(spec.models) if spec.models else None  # None: never listed
        self.rejected: list[str] = []  # ids the remote listed that are not valid names (shown, not served)
        self._client: httpx.AsyncClient | None = None
        self._deployments: dict[str, RemoteDeployment] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"RemoteServer({self.spec.name!r}, {self.spec.root!r}, state={self.state!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base_url(self) -> str:
        return self.spec.root

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    @property
    def up(self) -> bool:
        return self.state == "ready"

    # models (the controller's model directory asks these) ------------------------------------------------------
    def _entry(self, upstream: str) -> ModelEntry:
        facts = {"source": f"{SOURCE}:{self.name}", "remote": self.name, "engine_url": self.base_url,
                 "upstream_model": upstream, "capabilities": sorted((CHAT, COMPLETIONS, EMBEDDINGS))}
        return ModelEntry(name=self.prefix + upstream, path=f"{SOURCE}:{self.name}/{upstream}", format=SOURCE,
                          facts=facts)

    async def entries(self, *, fresh: bool = False) -> list[ModelEntry]:
        """Its models; listed once on demand if the health check has not listed them yet (never when skipped)."""
        if (fresh or self.checked_at is None) and not self.spec.unusable and not self.spec.models:
            await self.check()
        return [self._entry(i) for i in self.ids or ()]

    async def entry(self, name: str) -> ModelEntry | None:
        """The model named ``PREFIX + id`` (the id as the remote spells it; matched without case when unique). While
        the remote's list is unknown (down since start, or skipped) a valid id up to ``MAX_UNLISTED_LEN`` characters
        long is taken (``UnlistedRefused`` past that), so that a request gets a 503 saying why rather than a 404; a
        lookup holds nothing (``deployment`` counts what is in use)."""
        if not name.startswith(self.prefix):
            return None
        wanted = name[len(self.prefix):]
        for entry in await self.entries():
            if entry.facts["upstream_model"] == wanted:
                return entry
        # while unknown: the configured ids and those in use, so that another spelling shares their deployment
        known = self.ids if self.ids is not None else [*self.spec.configured, *self.unlisted]
        folded = list(dict.fromkeys(i for i in known if i.casefold() == wanted.casefold()))
        if wanted in folded:
            return self._entry(wanted)
        if len(folded) == 1:
            return self._entry(folded[0])
        if self.ids is None and valid_model_id(wanted) is not None:
            if len(wanted) > MAX_UNLISTED_LEN:
                raise UnlistedRefused(
                    f"{self.prefix}{wanted[:40]}... is not a model {self.name} has listed, and longer than "
                    f"{MAX_UNLISTED_LEN} characters",
                    f"{self.name} {self._why_unknown}, so its models are not known; llmctl takes unlisted names up "
                    "to that length.")
            return self._entry(wanted)
        return None

    @property
    def _why_unknown(self) -> str:
        return "is down" if self.spec.unusable is None else "is skipped"

    @property
    def unlisted(self) -> list[str]:
        """The ids with a deployment taken on trust while the list is unknown (at most ``MAX_UNLISTED``)."""
        if self.ids is not None:
            return []
        return [d.upstream for d in self._deployments.values() if d.upstream not in self.spec.configured]

    def hold(self, d: RemoteDeployment) -> None:
        """Count ``d`` among this remote's deployments (it follows the health checks); an unlisted one takes one of
        ``MAX_UNLISTED`` places while the list is unknown (``UnlistedRefused`` when none is free). ``release`` gives
        the place back."""
        if self._deployments.get(d.name) is not None:
            self._deployments[d.name] = d  # the same name deployed again: its place
            return
        unlisted = self.unlisted
        if self.ids is None and d.upstream not in self.spec.configured and len(unlisted) >= MAX_UNLISTED:
            raise UnlistedRefused(
                f"{d.name} is not a model {self.name} has listed, and {MAX_UNLISTED} other unlisted names are "
                "already in use for it",
                f"{self.name} {self._why_unknown}, so its models are not known yet: ask for one of "
                f"{', '.join(unlisted[:3])}..., stop some (`llmctl stop`), wait until it answers (`llmctl remotes "
                f"list`), or list its models under [remotes.{self.name}] models = [...].")
        self._deployments[d.name] = d

    def release(self, d: RemoteDeployment) -> None:
        if self._deployments.get(d.name) is d:
            del self._deployments[d.name]

    def deployment(self, entry: ModelEntry, *, ttl: float | None = None, log_dir: Path,
                   on_change: Callable[[RemoteDeployment], None] | None = None) -> RemoteDeployment:
        d = RemoteDeployment(self, entry, log_dir=log_dir, on_change=on_change)
        self.hold(d)
        return d

    async def refresh(self) -> None:
        """Nothing to mirror: deployments follow the health checks as they happen."""

    # health ---------------------------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # no redirects (the key must not follow one), no proxies from the environment: one host, directly
            self._client = httpx.AsyncClient(transport=self._transport, timeout=CHECK_TIMEOUT, follow_redirects=False,
                                             trust_env=False)
        return self._client

    async def check(self, max_age: float | None = None) -> bool:
        """Ask ``/v1/models`` now (one check at a time; ``max_age``: reuse one that recent). True when it answered."""
        if self.spec.unusable:
            return False
        if self._lock is None:
            self._lock = asyncio.Lock()
        asked = time.monotonic()
        async with self._lock:
            if self.checked_at is not None and (self.checked_at >= asked or (
                    max_age is not None and time.monotonic() - self.checked_at < max_age)):
                return self.up  # another caller's check answered for this one
            try:
                ids, rejected = await self._list()
            except RemoteError as exc:
                self._set(False, str(exc))
            else:
                if not self.spec.models:
                    self.ids, self.rejected = ids, rejected
                self._set(True, None)
            finally:
                self.checked_at = time.monotonic()
                self.checks += 1
        return self.up

    async def _list(self) -> tuple[list[str], list[str]]:
        url = self.base_url + "/v1/models"
        try:
            async with self._http().stream("GET", url, headers=self.auth_headers) as r:
                if r.is_redirect:
                    raise RemoteError(f"it answered {r.status_code} redirecting to {r.headers.get('location')!r}; "
                                      "llmctl does not follow redirects with a key: set url to the final address")
                if r.status_code in (401, 403):
                    raise RemoteError(f"it refused the API key ({r.status_code}); check key_env / the keyring")
                if r.status_code != 200 and self.spec.models and r.status_code < 500:
                    return list(self.spec.models), []  # it answers; its models are the configured ones
                if r.status_code != 200:
                    raise RemoteError(f"GET /v1/models answered {r.status_code}")
                raw = bytearray()
                async for chunk in r.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_LIST_BYTES:
                        raise RemoteError(f"its model list is larger than {MAX_LIST_BYTES >> 20} MiB")
        except httpx.TimeoutException:
            raise RemoteError("it did not answer in time") from None
        except httpx.ConnectError as exc:
            raise RemoteError(f"cannot connect ({_why(exc)})") from None
        except httpx.HTTPError as exc:
            raise RemoteError(f"{type(exc).__name__}: {_why(exc)}") from None
        try:
            data = json.loads(raw)
            items = data["data"]
            if not isinstance(items, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise RemoteError("its /v1/models is not an OpenAI model list") from None
        ids, rejected = [], []
        for item in items:
            raw_id = item.get("id") if isinstance(item, dict) else None
            ok = valid_model_id(raw_id)
            if ok is None:
                rejected.append(repr(raw_id)[:80])
            elif ok not in ids:
                ids.append(ok)
        return ids, rejected

    def _set(self, up: bool, error: str | None) -> None:
        was = self.state
        self.state, self.error = ("ready", None) if up else ("failed", error)
        if up and was != "ready":
            self.ready_since = time.time()
        for d in list(self._deployments.values()):
            d.follow()
        if self.on_change is not None and was != self.state:
            self.on_change(self)

    def reported_down(self, why: str) -> None:
        """A request found it unreachable (connection refused): down now; the monitor checks again soon."""
        if self.spec.unusable:
            return
        self._set(False, why)
        if self._wake is not None:
            self._wake.set()

    def start_monitoring(self) -> None:
        """Check now, then in the background for as long as the controller runs (not when skipped)."""
        if self.spec.unusable or (self._monitor is not None and not self._monitor.done()):
            return
        self._wake = asyncio.Event()
        self._monitor = asyncio.get_running_loop().create_task(self._run(), name=f"remote:{self.name}")

    async def _run(self) -> None:
        delay = self.spec.backoff_initial
        assert self._wake is not None
        while True:
            with contextlib.suppress(Exception):  # a check never takes the controller down
                await self.check()
            if self.up:
                delay, wait = self.spec.backoff_initial, self.spec.health_interval
            else:
                wait, delay = delay, min(delay * 2, self.spec.backoff_max)
            self.next_check_at = time.monotonic() + wait
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                continue
            delay = self.spec.backoff_initial  # a request found it down: check now, then back off from the start

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._client is not None:
            await self._client.aclose()

    def status(self) -> dict:
        now = time.monotonic()
        return {
            "name": self.name, "url": self.base_url, "prefix": self.prefix, "state": self.state, "error": self.error,
            "models": list(self.ids) if self.ids is not None else None, "rejected_ids": self.rejected[:20],
            "configured_models": bool(self.spec.models), "key": self.spec.key_source, "checks": self.checks,
            "checked_ago": None if self.checked_at is None else round(now - self.checked_at, 1),
            "next_check_in": None if self.next_check_at is None or self.state == "skipped"
            else round(max(0.0, self.next_check_at - now), 1),
            "ready_since": self.ready_since if self.up else None,
        }


class RemoteError(Exception):
    """A health check or listing failed; the text says how."""


class UnlistedRefused(LlmctlError):
    """A name the remote has not listed, past what llmctl takes on trust while its list is unknown."""


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text[:200]


# --- one remote model --------------------------------------------------------------------------------------------
# how many requests a remote takes at once before llmctl's queue counts the rest as waiting: a remote server batches
# (vLLM, a cloud API); its own limits answer 429, which reaches the client as it came
REMOTE_PARALLEL = 64


class RemoteDeployment(HostedState):
    """One model of a remote, with the surface of ``process.Backend`` that the scheduler, gateway and control API
    use. It holds no memory here and is never unloaded by TTL or eviction."""

    remote = True  # the scheduler leaves it out of placement and max_loaded; the engine scrape leaves it out

    def __init__(self, server: RemoteServer, entry: ModelEntry, *, log_dir: Path,
                 on_change: Callable[[RemoteDeployment], None] | None = None) -> None:
        self.server = server
        self.upstream = entry.facts["upstream_model"]
        self.spec = Deployment(model_name=entry.name, model_path=Path(entry.path), port=urlsplit(server.base_url).port
                               or (443 if server.base_url.startswith("https") else 80), host=urlsplit(
                                   server.base_url).hostname or "",
                               parallel=REMOTE_PARALLEL)
        self.log_path = log_dir / log_file_name(entry.name)
        self.on_change = on_change
        self.footprint = Footprint()  # nothing in the local ledger
        self.pinned = False
        self.ttl: float | None = None
        self.keep_alive: float | None = None
        self.state = BackendState.STOPPED
        self.error: str | None = None
        self.failed_at: float | None = None
        self.stop_reason: str | None = None
        self.ready_at: float | None = None
        self.restarts = 0
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.model_name

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def auth_headers(self) -> dict[str, str]:
        return self.server.auth_headers

    @property
    def upstream_model(self) -> str:
        return self.upstream

    @property
    def timeouts(self) -> RequestTimeouts:
        """What the gateway allows a request to this remote: a remote that stalls is failed over, not waited on."""
        return self.server.spec.timeouts

    @property
    def alive(self) -> bool:
        return self.state in (BackendState.STARTING, BackendState.READY, BackendState.STOPPING)

    @property
    def idle_ttl(self) -> float | None:
        return None  # a remote holds nothing here: never unloaded for being idle

    def start(self) -> None:
        """A health check (reusing one a second old); returns at once, ``wait_ready`` waits."""
        if self.alive:
            return
        self.server.hold(self)  # stopped, it gave its place back
        self.stop_reason = None
        self._settled.clear()
        self._set_state(BackendState.STARTING)
        self._task = asyncio.get_running_loop().create_task(self._check(), name=f"remote:{self.name}")

    async def _check(self) -> None:
        try:
            await self.server.check(max_age=RECHECK_AFTER)
        finally:
            self.follow()
            if self.state is BackendState.STARTING:  # never left starting, whatever happened
                self._fail(self.server.error or "the health check did not finish")

    def follow(self) -> None:
        """Take the server's health (and whether it still lists this model). A stopped deployment stays stopped."""
        if self.state in (BackendState.STOPPED, BackendState.STOPPING):
            return
        if self.server.up and self.server.ids is not None and self.upstream not in self.server.ids:
            self._fail(f"{self.server.name} no longer lists {self.upstream}")
        elif self.server.up:
            if self.state is not BackendState.READY:
                self.error = None
                self.failed_at = None
                self.ready_at = time.time()
                self._log(f"{self.server.name} at {self.base_url} answers: ready")
                self._set_state(BackendState.READY)
        elif self.server.state != "unknown" and self.state is not BackendState.FAILED:
            self._fail(f"remote {self.server.name} at {self.base_url}: {self.server.error or 'down'}")
        elif self.server.state != "unknown" and self.state is BackendState.FAILED:
            self.error = f"remote {self.server.name} at {self.base_url}: {self.server.error or 'down'}"
        if self.state is not BackendState.STARTING:
            self._settled.set()

    def connection_refused(self) -> None:
        """The gateway could not connect (refused, unreachable, timed out): the remote is down, told at once rather
        than at the next check."""
        self.server.reported_down("the gateway could not connect to it")

    async def wait_ready(self, timeout: float) -> None:
        if self.state is BackendState.READY:
            return
        if not self.alive:
            raise self._failure()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        if self.state is BackendState.READY:
            return
        if self.state in (BackendState.FAILED, BackendState.STOPPED):
            raise self._failure()
        raise TimeoutError(f"{self.name} is still {self.state.value}")

    async def stop(self, reason: str | None = None) -> None:
        """Stop routing to it (the remote keeps serving; llmctl never stops it)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.alive:
            self.stop_reason = reason
            self._log(f"stopped routing: {reason or 'stopped'}")
            self._set_state(BackendState.STOPPED)
        self._settled.set()
        self.server.release(self)  # its place (an unlisted name's) is free for another

    def memory_bytes(self) -> int | None:
        return None

    def status(self) -> dict:
        ready = self.state is BackendState.READY
        return {
            "model": self.name,
            "runtime": SOURCE,
            "engine": f"{SOURCE}:{self.server.name}",
            "command": self.base_url,
            "capabilities": sorted((CHAT, COMPLETIONS, EMBEDDINGS)),
            "ctx_size": None,
            "parallel": None,
            "state": self.state.value,
            "pid": None,
            "port": self.spec.port,
            "uptime": round(time.time() - self.ready_at, 1) if self.ready_at and ready else None,
            "restarts": self.restarts,
            "memory_bytes": None,
            "in_flight": self.in_flight,
            "error": self.error,
            "log_path": str(self.log_path),
            "last_log_lines": list(self.tail)[-10:] if self.state is BackendState.FAILED else [],
            "engine_url": self.base_url,
            "upstream_model": self.upstream,
            "remote": self.server.name,
            "memory": self.footprint.to_json(),
            "pinned": self.pinned,
            "ttl": None,
            "stop_reason": self.stop_reason if self.state in (BackendState.STOPPED, BackendState.FAILED) else None,
        }

    # internals ---------------------------------------------------------------------------------------------
    def _failure(self) -> BackendFailed:
        return BackendFailed(f"{self.name} is unavailable", self.error or f"the model is {self.state.value}",
                             log_tail=list(self.tail)[-20:])

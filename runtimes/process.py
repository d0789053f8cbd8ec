"""The process supervisor, written once for every runtime.

One ``Backend`` runs one deployment (``runtimes.base.Deployment``) on its engine as one server process. It runs
in its own process group (so a stop reaches the engine's children too), its output goes to a size-capped log file
(rotated once to ``.log.1``) and an in-memory tail, readiness is the engine's own probe (sent with the deployment's
secret key), a crash after readiness restarts with exponential backoff, a crash loop (or a failed first load) ends
in the terminal ``failed`` state with the last log lines, and stop is SIGTERM, a grace period, then SIGKILL.
Each start is planned once (``plan_launch``). A launch has a private run folder (0700, removed after each exit); an
engine that serves on a Unix socket (``ServesOnSocket``) gets its socket's folder made 0700 before each start and
the socket 0600 once it appears (``runtimes.sockets``).

Every live backend is written to a state file (``runtimes.state_file``) with its pid and process start time, so a
controller that was SIGKILLed leaves enough behind for the next one to reap its orphans without ever killing a
reused pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from llmctl.runtimes.base import (
    BackendFailed,
    BackendState,
    ChecksReadiness,
    Deployment,
    DropsInheritedEnv,
    Engine,
    Footprint,
    Launch,
    PlansLaunch,
    PortInUseError,
    ReportsLoad,
    RequestTimeouts,
    ServesOnSocket,
    log_file_name,
)
from llmctl.runtimes.ledger import UNIFIED
from llmctl.runtimes.load_watch import runaway
from llmctl.runtimes.sockets import describe_port_owner as describe_port_owner
from llmctl.runtimes.sockets import free_port as free_port
from llmctl.runtimes.sockets import http_status, make_socket_dir, port_is_free, remove_socket_dir
from llmctl.runtimes.state_file import LAUNCH_MARKER_ENV, StateFile

LOG_TAIL_LINES = 200


class SpawnFailed(OSError):
    """The engine's process could not be started at all (its binary is missing or not executable)."""
LOG_MAX_BYTES = 16 << 20  # a backend's log is rotated past this size (one old file kept)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Crash handling: backoff doubles from ``backoff_initial`` up to ``backoff_max``; ``max_restarts``
    crashes inside ``window`` seconds make the backend ``failed`` (systemd's StartLimitBurst/Interval)."""

    max_restarts: int = 3
    window: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    ready_timeout: float = 300.0
    stop_grace: float = 10.0
    load_memory_slack: int | None = 2 << 30  # see load_watch; None: no memory watch while loading


def plan_launch(engine: Engine, spec: Deployment) -> Launch:
    """This start of ``spec``, worked out once: the engine's own plan (``PlansLaunch``), else its argv and env."""
    if isinstance(engine, PlansLaunch):
        return engine.launch(spec)
    return Launch(tuple(engine.build_command(spec)), engine.build_env(spec))


def launch_env(engine: Engine, spec: Deployment, environ: Mapping[str, str], launch: Launch | None = None,
               ) -> dict[str, str]:
    """The environment a deployment's process gets: the controller's, minus the variables the engine says must
    not be inherited (``env_drop_prefixes``, e.g. a user's ``OLLAMA_*`` for a private ``ollama serve``), plus the
    engine's own (from ``launch`` when this start's plan is at hand)."""
    drop = engine.env_drop_prefixes if isinstance(engine, DropsInheritedEnv) else ()
    base = {k: v for k, v in environ.items() if not (drop and k.startswith(drop))}
    return {**base, **(launch.env if launch is not None else engine.build_env(spec))}


# one backend -------------------------------------------------------------------------------------------------
class Settles:
    """Waiting for a deployment to be ready, and its idle TTL: the same for a supervised process and for a model
    an engine hosts (Ollama). The class provides ``name``, ``state``, ``alive``, the ``_ready`` and ``_done``
    events, ``_failure()``, ``ttl`` and ``keep_alive``."""

    async def wait_ready(self, timeout: float) -> None:
        """Wait until ready; raise BackendFailed if it failed, TimeoutError if still loading."""
        if self.state is BackendState.READY:
            return
        if self.state is BackendState.FAILED or not self.alive:
            raise self._failure()
        ready = asyncio.ensure_future(self._ready.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({ready, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            done.cancel()
        if self.state is BackendState.READY:
            return
        if self.state in (BackendState.FAILED, BackendState.STOPPED):
            raise self._failure()
        raise TimeoutError(f"{self.name} is still {self.state.value}")

    @property
    def idle_ttl(self) -> float | None:
        """Seconds of idleness after which it is unloaded (a request's keep_alive wins); None or < 0: never."""
        ttl = self.keep_alive if self.keep_alive is not None else self.ttl
        return None if ttl is None or ttl < 0 or ttl == float("inf") else ttl


class Backend(Settles):
    """A supervised deployment (a ``RunningDeployment``). ``start()`` launches it and returns at once;
    ``wait_ready()`` waits."""

    remote = False  # on this machine: placed, counted and scraped
    timeouts: RequestTimeouts | None = None  # its process is watched instead: a death is noticed, not timed out

    def __init__(
        self,
        spec: Deployment,
        engine: Engine,
        *,
        log_dir: Path,
        state: StateFile,
        policy: RestartPolicy | None = None,
        on_change: Callable[[Backend], None] | None = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.policy = policy or RestartPolicy()
        self.log_path = log_dir / log_file_name(spec.model_name)
        # the Unix socket it serves on instead of host:port, when its engine serves on one (the same every start)
        self.socket_path: str | None = str(engine.socket_path(spec)) if isinstance(engine, ServesOnSocket) else None
        self.state_file = state
        self.on_change = on_change
        self.state = BackendState.STOPPED
        self.pid: int | None = None
        self.ready_at: float | None = None
        self.restarts = 0
        self.error: str | None = None
        self.failed_at: float | None = None
        self.last_used = time.monotonic()
        self.in_flight = 0  # requests being served or waiting for it to load
        # placement: memory per device (estimated before launch, measured once ready), idle TTL, pin
        self.footprint = Footprint()
        self.unified = False  # unified memory: its RSS (weights the GPU uses included) goes to the one pool
        self.pinned = False
        self.ttl: float | None = None  # seconds idle before it is unloaded; None: never
        self.keep_alive: float | None = None  # a request's keep_alive, which overrides ttl until the next one
        self.stop_reason: str | None = None  # why it last stopped: shown in ps and the TUI
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._stopping = False
        self._load_timed_out = False
        self._runaway: str | None = None  # why the memory watch stopped it while loading
        self._crashes: deque[float] = deque()

    # public ------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.model_name

    @property
    def base_url(self) -> str:
        """The URL of its requests (and their Host header); with ``socket_path`` set, they go over that socket."""
        return "http://localhost" if self.socket_path else f"http://{self.spec.host}:{self.spec.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What the gateway sends to reach this backend: its per-launch key."""
        return {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}

    @property
    def upstream_model(self) -> str | None:
        """The name the engine knows the model by, when the gateway must put it in the forwarded body (an engine
        hosting many models); None: the body goes as it came."""
        return None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def load_reporter(self) -> ReportsLoad | None:
        return self.engine if isinstance(self.engine, ReportsLoad) else None

    def connection_refused(self) -> None:
        """Nothing to do: the supervisor notices its process's death by itself."""

    def start(self) -> None:
        """Launch (idempotent while alive). Raises PortInUseError before spawning if the port is taken."""
        if self.alive:
            return
        if self.socket_path is None and not port_is_free(self.spec.host, self.spec.port):
            raise PortInUseError(
                f"port {self.spec.port} is already in use by {describe_port_owner(self.spec.port)}",
                "llmctl never talks to a server it did not start; stop that process or choose another port.",
            )
        self._stopping = False
        self.error = None
        self.stop_reason = None
        self.footprint.measured.clear()
        self.failed_at = None
        self._ready.clear()
        self._done.clear()
        self._crashes.clear()
        self.restarts = 0
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.log_path.exists():
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        except OSError as exc:
            self._fail(f"cannot write its log file {self.log_path}: {exc.strerror or exc}")
            raise self._failure() from None
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"backend:{self.name}")
        self._set_state(BackendState.STARTING)  # now, so a waiter never sees the previous run's state

    async def stop(self, reason: str | None = None) -> None:
        """SIGTERM the process group, wait the grace period, then SIGKILL. Safe to call in any state."""
        if self.alive and reason:
            self.stop_reason = reason
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            self._set_state(BackendState.STOPPING)
            await self._terminate(self._proc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.state is not BackendState.FAILED:
            self._set_state(BackendState.STOPPED)

    def memory_bytes(self) -> int | None:
        """Resident memory of the server and its children."""
        if self.pid is None or self.state not in (BackendState.READY, BackendState.STARTING):
            return None
        try:
            proc = psutil.Process(self.pid)
            rss = proc.memory_info().rss + sum(
                c.memory_info().rss for c in proc.children(recursive=True) if c.is_running()
            )
        except psutil.Error:
            return None
        if self.state is BackendState.READY:
            self.footprint.measured[UNIFIED if self.unified else "ram"] = rss
        return rss

    def _exited(self) -> bool:
        """The process is gone (or a zombie) though the supervisor has not yet been told: the exit is known to the
        kernel before the child watcher runs its callback."""
        if self._proc is None or self._proc.returncode is not None:
            return True
        try:
            return psutil.Process(self._proc.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    def reported_state(self) -> BackendState:
        """The state as probed now: never ``ready`` for a process that has exited."""
        if self.state is BackendState.READY and self._exited():
            return BackendState.RESTARTING
        return self.state

    def status(self) -> dict:
        now = time.time()
        state = self.reported_state()
        return {
            "model": self.name,
            "runtime": self.engine.name,
            "engine": self.engine.key,
            "command": self.engine.key,
            "capabilities": sorted(self.spec.capabilities),
            "ctx_size": self.spec.ctx_size,
            "parallel": self.spec.parallel,
            "context": self.spec.context.to_json() if self.spec.context is not None else None,
            "state": state.value,
            "pid": self.pid if self.state not in (BackendState.STOPPED, BackendState.FAILED) else None,
            "port": None if self.socket_path else self.spec.port,
            "socket": self.socket_path,
            "uptime": round(now - self.ready_at, 1) if self.ready_at and self.state is BackendState.READY else None,
            "restarts": self.restarts,
            "memory_bytes": self.memory_bytes(),
            "in_flight": self.in_flight,
            "error": self.error,
            "log_path": str(self.log_path),
            "memory": self.footprint.to_json(),
            "pinned": self.pinned,
            "ttl": self.idle_ttl,
            "idle_for": round(time.monotonic() - self.last_used, 1) if self.in_flight == 0 else 0.0,
            "stop_reason": self.stop_reason if self.state in (BackendState.STOPPED, BackendState.FAILED) else None,
            "last_log_lines": list(self.tail)[-10:] if self.state is BackendState.FAILED else [],
        }

    # internals ---------------------------------------------------------------------------------------------
    def _failure(self) -> BackendFailed:
        return BackendFailed(
            f"{self.name} failed",
            self.error or f"the backend is {self.state.value}",
            log_tail=list(self.tail)[-20:],
        )

    def _set_state(self, state: BackendState) -> None:
        if self.state is not state:
            self.state = state
            if self.on_change:
                self.on_change(self)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    exit_code, was_ready = await self._run_once()
                except SpawnFailed as exc:
                    self._append_log(f"--- llmctl: {exc}")
                    self._fail(str(exc))
                    return
                except Exception as exc:  # never leave a backend "starting" forever on an unexpected error
                    self._append_log(f"--- llmctl: supervising it failed: {exc!r}")
                    self._fail(f"llmctl could not supervise it: {exc}")
                    return
                if self._stopping:
                    return
                if not was_ready:
                    if self._runaway:
                        self._fail(self._runaway)
                    elif self._load_timed_out:
                        self._fail(f"the model was not ready after {self.policy.ready_timeout:.0f} s")
                    else:
                        reason = self.engine.failure_reason(list(self.tail))
                        self._fail(f"the server exited with code {exit_code} while loading the model"
                                   + (f": {reason}" if reason else ""))
                    return
                now = time.monotonic()
                self._crashes.append(now)
                while self._crashes and now - self._crashes[0] > self.policy.window:
                    self._crashes.popleft()
                if len(self._crashes) > self.policy.max_restarts:
                    self._fail(
                        f"crashed {len(self._crashes)} times in {self.policy.window:.0f} s "
                        f"(last exit code {exit_code}); not restarting again"
                    )
                    return
                delay = min(self.policy.backoff_initial * 2 ** (len(self._crashes) - 1), self.policy.backoff_max)
                self.error = f"exited with code {exit_code}; restarting in {delay:.1f} s"
                self._set_state(BackendState.RESTARTING)
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                self.restarts += 1
        finally:
            self._done.set()

    def _fail(self, reason: str) -> None:
        self.error = reason
        self.failed_at = time.monotonic()
        self._set_state(BackendState.FAILED)

    async def _run_once(self) -> tuple[int, bool]:
        """Spawn, wait for readiness, then for exit. Returns (exit code, whether it became ready)."""
        # once per start, on a thread: an engine's plan may read the model's files (vLLM: config.json and every
        # safetensors header), which must not stall every other stream
        launch = await asyncio.to_thread(plan_launch, self.engine, self.spec)
        argv = list(launch.argv)
        env = launch_env(self.engine, self.spec, os.environ, launch)
        # this launch's marker: the proof a later controller asks for before it reaps the process (state_file)
        marker = env[LAUNCH_MARKER_ENV] = secrets.token_hex(16)
        self._ready.clear()
        self._load_timed_out = False
        self._runaway = None
        self.ready_at = None
        self._set_state(BackendState.STARTING)
        self._append_log(f"--- llmctl: starting {' '.join(argv)}")
        for note in launch.notes:
            self._append_log(f"--- llmctl: {note}")
        self._fresh_run_dir(launch.dirs)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: signals reach the engine's children too
            )
        except OSError as exc:  # the binary was removed, is not executable, ...
            raise SpawnFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        self._proc = proc
        self.pid = proc.pid
        pump = asyncio.create_task(self._pump_output(proc))
        self._record(proc, argv, list(launch.runs or argv), marker)
        was_ready = False
        try:
            was_ready = await self._wait_healthy(proc)
            if was_ready:
                self.ready_at = time.time()
                self.error = None
                self._set_state(BackendState.READY)
                self._ready.set()
            code = await proc.wait()
            self._ready.clear()  # not ready any more: a waiter must wait for the restart, not see the old event
            if was_ready and not self._stopping:
                # said at once, before the group is ended and the output drained: whoever reads the state now
                # (`llmctl ps`, the TUI, the gateway) must not see a dead pid reported ready
                self.error = f"exited with code {code}"
                self._set_state(BackendState.RESTARTING)
            # the leader died on its own: what it forked (vLLM's engine core and workers) must not outlive it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(pump, timeout=2.0)
            return code, was_ready
        except asyncio.CancelledError:
            await self._terminate(proc)
            raise
        finally:
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(OSError):  # a full disk: the record stays, and a later reap finds it gone
                self.state_file.drop(self.name, proc.pid)
            if self._proc is proc:
                self._proc = None
            self._remove_run_dir()

    def _record(self, proc: asyncio.subprocess.Process, argv: list[str], runs: list[str], marker: str) -> None:
        """Write the running process to the state file, with this launch's marker. When that fails (a full disk, an
        unwritable state folder) the process still runs and is supervised: state and process must agree (issue 23:
        the backend was marked failed while its engine ran on, unsupervised). Only the reaping after a SIGKILLed
        controller is lost; the log says so."""
        try:
            self.state_file.put(self.name, {
                "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": self.spec.port,
                "socket": self.socket_path, "argv": argv, "match_argv": runs, "marker": marker})
        except psutil.Error:
            pass  # it exited already: the supervisor sees that next
        except OSError as exc:
            self._append_log(f"--- llmctl: cannot record it in {self.state_file.path} ({exc.strerror or exc}); it "
                             "runs and is supervised, but a controller killed with SIGKILL could not reap it")

    def _fresh_run_dir(self, dirs: tuple[Path, ...]) -> None:
        """The launch's private scratch folder (0700), empty (each start of some engines leaves socket files in it),
        with the folders the engine asks for, and the folder of its Unix socket (0700) when it serves on one."""
        self._remove_run_dir()
        if self.spec.run_dir is not None:
            try:
                self.spec.run_dir.mkdir(parents=True, exist_ok=True)
                os.chmod(self.spec.run_dir, 0o700)  # its temp files (vLLM's ZMQ sockets among them) are its own
                for folder in dirs:
                    folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SpawnFailed(f"cannot create its run folder {self.spec.run_dir}: {exc.strerror or exc}") from None
        if self.socket_path is not None:
            try:
                make_socket_dir(Path(self.socket_path).parent)
            except OSError as exc:
                raise SpawnFailed(f"cannot create the folder of its socket {self.socket_path}: "
                                  f"{exc.strerror or exc}") from None

    def _remove_run_dir(self) -> None:
        if self.spec.run_dir is not None:
            shutil.rmtree(self.spec.run_dir, ignore_errors=True)
        if self.socket_path is not None:  # it may lie outside the run folder (a short path: see runtimes.sockets)
            remove_socket_dir(Path(self.socket_path).parent)

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> bool:
        """Poll the adapter's readiness path while our process lives; never probe a port after it exits. An
        engine with its own readiness check (``ChecksReadiness``) is ready only once that check passes too."""
        deadline = time.monotonic() + self.policy.ready_timeout
        path = self.engine.health_path()
        check = self.engine.ready if isinstance(self.engine, ChecksReadiness) else None
        delay = 0.05
        last_why: str | None = None
        while proc.returncode is None and time.monotonic() < deadline:
            status = await http_status(self.spec.host, self.spec.port, path, api_key=self.spec.api_key,
                                       uds=self.socket_path)
            if self.socket_path is not None and status is not None:
                self._private_socket()
            if status == 200 and proc.returncode is None:
                if check is None:
                    return True
                why = await self._engine_ready(check, proc, deadline)
                if why is None and proc.returncode is None:
                    return True
                if why is not None and why != last_why:
                    self._append_log(f"--- llmctl: {path} answered 200 but it is not ready yet: {why}")
                    last_why = why
            self._runaway = runaway(proc.pid, self.footprint.reserved, self.policy.load_memory_slack)
            if self._runaway:  # no grace: it grows by hundreds of MB a second
                self._append_log(f"--- llmctl: {self._runaway}")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                return False
            exited = asyncio.ensure_future(proc.wait())
            try:
                await asyncio.wait({exited}, timeout=delay)
            finally:
                if not exited.done():
                    exited.cancel()
            delay = min(delay * 1.5, 0.5)
        if proc.returncode is None:
            self._append_log(f"--- llmctl: not ready after {self.policy.ready_timeout:.0f} s; stopping it")
            self._load_timed_out = True
            await self._terminate(proc)
        return False

    def _private_socket(self) -> None:
        """Make the socket the engine bound 0600 (its folder is 0700 already, so nobody else could reach it)."""
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_mode & 0o177:
                os.chmod(self.socket_path, 0o600)

    async def _engine_ready(self, check, proc: asyncio.subprocess.Process, deadline: float) -> str | None:
        """Run the engine's readiness check, given up when the process exits or the load deadline passes."""
        probe = asyncio.ensure_future(check(self.spec))
        exited = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait({probe, exited}, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not probe.done():
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await probe
            return "it exited or ran out of time during its readiness check"
        try:
            return probe.result()
        except Exception as exc:  # an engine's check must never take the supervisor down
            return f"its readiness check failed: {exc!r}"

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.policy.stop_grace)
        except TimeoutError:
            self._append_log(f"--- llmctl: no exit {self.policy.stop_grace:.0f} s after SIGTERM; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # the leader is gone; make sure nothing it forked lingers in the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _append_log(self, line: str) -> None:
        self.tail.append(line)
        with contextlib.suppress(OSError), self.log_path.open("ab") as log:
            log.write(line.encode() + b"\n")

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the server's output to the log file and the tail. Reads chunks, not lines: llama.cpp prints
        progress dots without newlines, which would overrun a line reader's limit. Past ``LOG_MAX_BYTES`` the log
        is rotated to ``.log.1`` (one old file kept), so a chatty engine cannot fill the disk."""
        assert proc.stdout is not None
        partial = b""
        log = None
        try:
            log = self.log_path.open("ab")
            while chunk := await proc.stdout.read(65536):
                if log.tell() + len(chunk) > LOG_MAX_BYTES:
                    log.close()
                    os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
                    log = self.log_path.open("ab")
                log.write(chunk)
                log.flush()
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()[-4096:]
                for raw in lines:
                    self.tail.append(raw.decode("utf-8", "replace").rstrip("\r"))
            if partial:
                self.tail.append(partial.decode("utf-8", "replace"))
        except OSError as exc:  # the disk is full or the log folder went away: keep draining, stop writing
            self.tail.append(f"--- llmctl: cannot write the log any more: {exc}")
            while await proc.stdout.read(65536):
                pass
        finally:
            if log is not None:
                log.close()

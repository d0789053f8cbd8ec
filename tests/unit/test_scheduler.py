"""The scheduler and supervisor against real processes (a fake *engine*, see tests/fake_engine.py): LRU eviction,
requests in flight (and waiting for a load) are never evicted, concurrent first requests start a model once, a
ready model is served while another loads, a failed model is retried after its wait, a spawn error fails fast."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fake_engine import FakeEngine

from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import BackendFailed, BackendState, Deployment
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.scheduler import Scheduler
from llmctl.runtimes.state_file import StateFile

POLICY = RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1)


def _entry(tmp_path: Path, name: str) -> ModelEntry:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(b"GGUF")
    return ModelEntry(name=name, path=str(path))


def _scheduler(tmp_path: Path, engines: dict[str, FakeEngine] | None = None, **kw) -> tuple[Scheduler, list[str]]:
    made: list[str] = []

    async def make(entry: ModelEntry) -> Backend:
        made.append(entry.name)
        await asyncio.sleep(0.05)  # building a deployment may await (GGUF and GPU reads run on a thread)
        engine = (engines or {}).get(entry.name, FakeEngine())
        d = Deployment(entry.name, Path(entry.path), free_port(), api_key="k-" + entry.name)
        return Backend(d, engine, log_dir=tmp_path / "logs", state=StateFile(tmp_path / "state.json"), policy=POLICY)

    return Scheduler(make, **kw), made


async def _until(condition, timeout: float = 30.0) -> None:
    """Wait for a condition (polling): a sync point that does not depend on how loaded the machine is."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def _use(s: Scheduler, entry: ModelEntry, hold: float = 0.0) -> Backend:
    async with s.use(entry) as backend:
        await asyncio.sleep(hold)
        return backend


async def test_least_recently_used_idle_model_makes_room(tmp_path: Path) -> None:
    s, _ = _scheduler(tmp_path, max_loaded=2)
    a, b, c = (_entry(tmp_path, n) for n in "abc")
    try:
        await _use(s, a)
        await _use(s, b)
        await _use(s, a)  # a is now the most recently used
        await _use(s, c)
        assert s.get("b").state is BackendState.STOPPED
        assert s.get("a").state is BackendState.READY and s.get("c").state is BackendState.READY
    finally:
        await s.shutdown()


async def test_a_model_in_use_is_never_evicted(tmp_path: Path) -> None:
    s, _ = _scheduler(tmp_path, max_loaded=1)
    a, b = _entry(tmp_path, "a"), _entry(tmp_path, "b")
    try:
        holding = asyncio.create_task(_use(s, a, hold=3.0))
        await _until(lambda: s.get("a") is not None and s.get("a").state is BackendState.READY)
        await _use(s, b)  # over the limit rather than break a's request
        assert not holding.done()  # a's request was still going on
        assert s.get("a").state is BackendState.READY
        await holding
        assert s.get("a").state is BackendState.READY  # a request ended normally
    finally:
        await s.shutdown()


async def test_a_model_loading_for_a_waiting_request_is_not_evicted(tmp_path: Path) -> None:
    s, _ = _scheduler(tmp_path, {"a": FakeEngine(load_delay=1.5)}, max_loaded=1)
    a, b = _entry(tmp_path, "a"), _entry(tmp_path, "b")
    try:
        waiting = asyncio.create_task(_use(s, a))
        await asyncio.sleep(0.3)
        assert s.get("a").state is BackendState.STARTING and s.get("a").in_flight == 1
        await _use(s, b)
        backend = await waiting  # the waiter got its model, not a stopped one
        assert backend.name == "a" and s.get("a").state is BackendState.READY
    finally:
        await s.shutdown()


async def test_concurrent_first_requests_start_a_model_once(tmp_path: Path) -> None:
    s, made = _scheduler(tmp_path, {"a": FakeEngine(load_delay=0.5)})
    a = _entry(tmp_path, "a")
    try:
        backends = await asyncio.gather(*(_use(s, a) for _ in range(6)))
        assert made == ["a"] and len({id(b) for b in backends}) == 1 and backends[0].restarts == 0
    finally:
        await s.shutdown()


async def test_a_ready_model_is_served_while_another_loads(tmp_path: Path) -> None:
    s, _ = _scheduler(tmp_path, {"slow": FakeEngine(load_delay=3.0)}, max_loaded=3)
    ready, slow = _entry(tmp_path, "ready"), _entry(tmp_path, "slow")
    try:
        await _use(s, ready)
        loading = asyncio.create_task(_use(s, slow))
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        for _ in range(20):
            await _use(s, ready)
        assert time.perf_counter() - t0 < 1.0, "requests to a ready model waited for another model's load"
        assert not loading.done()
        await loading
    finally:
        await s.shutdown()


async def test_a_slow_eviction_does_not_stall_a_ready_model(tmp_path: Path) -> None:
    """Making room stops a victim (SIGTERM, grace, SIGKILL: 2 s here); that happens outside every lock."""
    s, _ = _scheduler(tmp_path, {"victim": FakeEngine(ignore_term=True)}, max_loaded=2)
    ready, victim, new = _entry(tmp_path, "ready"), _entry(tmp_path, "victim"), _entry(tmp_path, "new")
    try:
        await _use(s, victim)
        await _use(s, ready)
        swap = asyncio.create_task(_use(s, new))
        await _until(lambda: s.get("victim").state is BackendState.STOPPING)
        t0 = time.perf_counter()
        for _ in range(10):
            await _use(s, ready)
        assert time.perf_counter() - t0 < 1.0, "a ready model waited for another model's eviction"
        await swap
        assert s.get("victim").state is BackendState.STOPPED and s.get("new").state is BackendState.READY
    finally:
        await s.shutdown()


async def test_a_failed_model_is_retried_after_its_wait(tmp_path: Path) -> None:
    s, made = _scheduler(tmp_path, {"bad": FakeEngine(fail_load=True)}, retry_failed_after=0.5)
    bad = _entry(tmp_path, "bad")
    try:
        with pytest.raises(BackendFailed, match="told to fail"):
            await _use(s, bad)
        with pytest.raises(BackendFailed, match="llmctl start bad"):
            await _use(s, bad)  # within the wait: answered at once, not started again
        assert made == ["bad"] and s.get("bad").state is BackendState.FAILED
        await asyncio.sleep(0.6)
        with pytest.raises(BackendFailed, match="told to fail"):
            await _use(s, bad)  # after it: tried again
    finally:
        await s.shutdown()


async def test_a_missing_engine_binary_fails_with_the_reason(tmp_path: Path) -> None:
    @__import__("dataclasses").dataclass(frozen=True, slots=True)
    class Missing(FakeEngine):
        def build_command(self, d: Deployment) -> list[str]:
            return [str(tmp_path / "no-such-llama-server"), "--port", str(d.port)]

    s, _ = _scheduler(tmp_path, {"m": Missing()})
    try:
        t0 = time.perf_counter()
        with pytest.raises(BackendFailed, match=r"cannot start .*no-such-llama-server"):
            await _use(s, _entry(tmp_path, "m"))
        assert time.perf_counter() - t0 < 5 and s.get("m").state is BackendState.FAILED
    finally:
        await s.shutdown()


async def test_the_backend_key_reaches_the_engine_and_the_gateway_headers(tmp_path: Path) -> None:
    import httpx

    s, _ = _scheduler(tmp_path)
    try:
        backend = await _use(s, _entry(tmp_path, "a"))
        async with httpx.AsyncClient(base_url=backend.base_url) as c:
            assert (await c.post("/v1/chat/completions", json={})).status_code == 401
            ok = await c.post("/v1/chat/completions", json={}, headers=backend.auth_headers)
            assert ok.status_code == 200
    finally:
        await s.shutdown()


async def test_a_backend_whose_process_died_never_reports_ready(tmp_path: Path) -> None:
    """Between the kernel's exit and the supervisor's turn on the event loop, the status (what `llmctl ps`, the TUI
    and tests read) probes the process: a dead pid is never reported ``ready``; then the restart brings a new one."""
    import os
    import signal

    import psutil

    s, _ = _scheduler(tmp_path)
    a = _entry(tmp_path, "a")
    try:
        backend = await _use(s, a)
        before = backend.status()
        assert before["state"] == "ready"
        os.kill(before["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # no await: the event loop (and so the supervisor) does not run here
            try:
                if psutil.Process(before["pid"]).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)
        assert backend.state is BackendState.READY  # the supervisor has not been told yet
        assert backend.status()["state"] == "restarting"
        await _until(lambda: backend.state is BackendState.READY and backend.pid != before["pid"])
        assert backend.status()["restarts"] == 1
    finally:
        await s.shutdown()

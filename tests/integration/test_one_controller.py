"""One controller per state directory: a second start names the first and leaves it alone. Real controller
processes; no model is loaded: a stand-in process recorded in backends.json plays the first controller's live
backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from harness import ControllerProcess, run_cli

from llmctl.runtimes.process import free_port
from llmctl.runtimes.state_file import LAUNCH_MARKER_ENV, StateFile

MARKER = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5"


@pytest.fixture
def live_backend():
    """A process launched as the supervisor launches a backend: its own session, the launch's marker in its
    environment (``record`` is what the state file would hold of it)."""
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    proc = subprocess.Popen(argv, start_new_session=True, env={**os.environ, LAUNCH_MARKER_ENV: MARKER})
    proc.record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": 1,
                   "argv": argv, "marker": MARKER}
    yield proc
    proc.kill()
    proc.wait()


def test_second_controller_on_the_same_state_dir_says_who_runs_and_touches_nothing(
    controller, home: Path, live_backend
) -> None:
    first = controller()
    state = StateFile(home / "state" / "backends.json")
    record = live_backend.record
    state.put("tiny", record)
    controller_json = (home / "state" / "controller.json").read_text()

    second_port = free_port()
    r = run_cli(home, "serve", "--port", str(second_port), timeout=60)

    assert r.returncode == 1, r.stdout + r.stderr
    assert "already running" in r.stderr
    assert f"pid {first.proc.pid}" in r.stderr and first.url in r.stderr
    assert "LLMCTL_HOME" in r.stderr
    assert live_backend.poll() is None  # the first one's backend was not reaped
    assert state.read() == {"tiny": record}
    assert (home / "state" / "controller.json").read_text() == controller_json
    assert first.proc.poll() is None
    with first.client() as c:
        assert c.get("/health").status_code == 200


def test_a_separate_llmctl_home_runs_its_own_controller(controller, home: Path, tmp_path: Path) -> None:
    first = controller()
    other = ControllerProcess(tmp_path / "other-home").start()
    try:
        assert first.proc.poll() is None and other.proc.poll() is None
        with other.client() as c:
            assert c.get("/llmctl/v1/status").json()["pid"] == other.proc.pid
    finally:
        other.kill_everything()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_the_lock_goes_with_the_controller(home: Path, sig: int, live_backend) -> None:
    """After a clean exit or a SIGKILL the next controller starts (and reaps what a killed one left)."""
    first = ControllerProcess(home).start()
    try:
        if sig == signal.SIGKILL:
            StateFile(home / "state" / "backends.json").put("tiny", live_backend.record)
        first.send(sig)
        first.proc.wait(30)
        second = ControllerProcess(home).start()
        try:
            if sig == signal.SIGKILL:
                second.wait_output("stopped orphaned backend tiny")
                assert live_backend.wait(10) is not None
            status = json.loads((home / "state" / "controller.json").read_text())
            assert status["pid"] == second.proc.pid
        finally:
            second.kill_everything()
    finally:
        first.kill_everything()


class _NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


@pytest.mark.parametrize("why", ["port taken", "exposed without a key"])
async def test_a_start_that_fails_its_address_check_releases_the_lock(home: Path, monkeypatch, why: str) -> None:
    """In one process: a controller whose address is refused leaves nothing held, so the next one starts."""
    import socket

    from llmctl.app.controller.server import Controller
    from llmctl.app.paths import resolve_paths
    from llmctl.app.settings import load_settings
    from llmctl.catalog.errors import LlmctlError

    monkeypatch.setenv("LLMCTL_HOME", str(home))
    paths = resolve_paths()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        flags = {"server.port": holder.getsockname()[1]} if why == "port taken" else \
            {"server.host": "0.0.0.0", "server.port": free_port()}
        refused = Controller(load_settings(paths, flags), paths, gpu_probe=_NoGpu())
        with pytest.raises(LlmctlError) as exc:
            await refused.start()
        assert ("already in use" if why == "port taken" else "without an API key") in exc.value.title
    finally:
        holder.close()
    assert not (home / "state" / "controller.json").exists()

    second = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=_NoGpu())
    await second.start()  # before the fix: "another llmctl controller ... is already running"
    try:
        assert json.loads((home / "state" / "controller.json").read_text())["pid"] == second.describe()["pid"]
    finally:
        await second.close()

"""Orphan reaping: only a process that proves it is the recorded launch (its pid, start time, own process group,
command line and the launch's marker in its environment) is killed, and only llmctl's own socket folders go."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from llmctl.runtimes.process import describe_port_owner, free_port, port_is_free
from llmctl.runtimes.state_file import LAUNCH_MARKER_ENV, StateFile

MARKER = "0123456789abcdef0123456789abcdef"
SLEEPER = [sys.executable, "-c", "import subprocess,sys,time; "
           "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"]


@pytest.fixture
def sleeper():
    """A process launched as llmctl launches a backend: its own session (a child inside the group checks that the
    whole group goes) and the launch's marker in its environment."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True, env={**os.environ, LAUNCH_MARKER_ENV: MARKER})
    yield proc
    proc.kill()
    proc.wait()


def _record(proc: subprocess.Popen, **over) -> dict:
    return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "port": 1, "argv": SLEEPER,
            "marker": MARKER, **over}


def _children(pid: int) -> list[psutil.Process]:
    import time

    for _ in range(50):
        kids = psutil.Process(pid).children()
        if kids:
            return kids
        time.sleep(0.05)
    return []


def test_reap_kills_the_recorded_process_group(tmp_path: Path, sleeper) -> None:
    child = _children(sleeper.pid)[0]
    state = StateFile(tmp_path / "backends.json")
    state.put("m", _record(sleeper))
    reaped = state.reap(grace=2)
    assert [r["name"] for r in reaped] == ["m"]
    assert sleeper.wait(timeout=5) is not None
    child.wait(timeout=5)
    assert not child.is_running()
    assert state.read() == {}


def test_reap_never_kills_a_reused_pid(tmp_path: Path, sleeper) -> None:
    state = StateFile(tmp_path / "backends.json")
    created = psutil.Process(sleeper.pid).create_time()
    state.put("m", _record(sleeper, create_time=created - 100.0))
    assert state.reap(grace=1) == []
    assert sleeper.poll() is None  # still running
    assert state.read() == {}


def test_reap_tolerates_garbage(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    path.write_text("{broken")
    assert StateFile(path).reap() == []
    path.write_text('{"m": {"pid": "x"}, "n": {"pid": 999999999, "create_time": 1}}')
    assert StateFile(path).reap() == []


def test_reap_removes_the_socket_folder_a_dead_backend_left(tmp_path: Path, monkeypatch) -> None:
    """A socket may lie outside the run folders the controller clears (a short folder under $XDG_RUNTIME_DIR)."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    os.chmod(xdg, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    left = xdg / "llmctl" / "0123456789abcdef"
    left.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(left / "vllm.sock"))  # bound, then its process died: the file stays
    run_dir = tmp_path / "state" / "run"
    in_run = run_dir / "tiny-4242" / "sock"
    in_run.mkdir(parents=True)
    (in_run / "vllm.sock").write_text("")
    other = xdg / "llmctl" / "fedcba9876543210"
    other.mkdir()
    (other / "notes.txt").write_text("not a socket folder")
    state = StateFile(tmp_path / "backends.json")
    state.put("m", {"pid": 999999999, "create_time": 1, "socket": str(left / "vllm.sock")})
    state.put("r", {"pid": 999999999, "create_time": 1, "socket": str(in_run / "vllm.sock")})
    state.put("n", {"pid": 999999999, "create_time": 1, "socket": str(other / "vllm.sock")})
    assert state.reap(run_dir=run_dir) == []  # no live process: nothing killed
    assert not left.exists() and left.parent.is_dir()
    assert not in_run.exists() and in_run.parent.is_dir()
    assert (other / "notes.txt").exists()  # a folder holding anything else is left alone


def test_a_forged_record_kills_nothing_and_deletes_nothing(tmp_path: Path, sleeper, monkeypatch) -> None:
    """Issue 23: a record naming an unrelated process with its true pid and start time, ``/bin/true`` as argv and a
    socket in any folder made ``serve`` kill that process and delete the folder."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    os.chmod(xdg, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    run_dir = tmp_path / "state" / "run"
    run_dir.mkdir(parents=True)
    victims = {name: tmp_path / name for name in ("docs", "empty", "linked-target")}
    for folder in victims.values():
        folder.mkdir()
    (victims["docs"] / "vllm.sock").write_text("precious")
    (run_dir / "evil").mkdir()
    (run_dir / "evil" / "sock").symlink_to(victims["linked-target"])  # inside the run folder, but a symlink out
    (xdg / "llmctl").mkdir()
    (xdg / "llmctl" / "0123456789abcdef").symlink_to(victims["empty"])
    unrelated = subprocess.Popen(SLEEPER, start_new_session=True)  # no marker: not llmctl's
    child = _children(sleeper.pid)[0]
    try:
        forged = {
            "true": _record(unrelated, argv=["/bin/true"], marker=MARKER, socket=str(victims["docs"] / "vllm.sock")),
            "no-marker": _record(unrelated, socket=str(victims["empty"] / "x.sock")),
            "wrong-marker": _record(sleeper, marker="f" * 32, socket=str(run_dir / "evil" / "sock" / "x.sock")),
            "wrong-argv": _record(sleeper, argv=["/bin/true"],
                                  socket=str(xdg / "llmctl" / "0123456789abcdef" / "x.sock")),
            "not-a-group-leader": _record(sleeper, pid=child.pid, create_time=child.create_time(),
                                          argv=child.cmdline()),  # its marker and argv are right
        }
        state = StateFile(tmp_path / "backends.json")
        for name, rec in forged.items():
            state.put(name, rec)
        assert state.reap(grace=1, run_dir=run_dir) == []
        assert unrelated.poll() is None and sleeper.poll() is None  # both still run
        assert (victims["docs"] / "vllm.sock").read_text() == "precious"
        assert all(folder.is_dir() for folder in victims.values())
        assert state.read() == {}
    finally:
        unrelated.kill()
        unrelated.wait()


def test_the_state_file_is_private(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "backends.json")
    state.put("m", {"pid": 1, "marker": MARKER})
    assert (tmp_path / "backends.json").stat().st_mode & 0o777 == 0o600


def test_ports() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free("127.0.0.1", port)
        assert describe_port_owner(port).startswith(f"pid {os.getpid()} ")  # this test process listens on it
    assert port_is_free("127.0.0.1", port)  # and the port is free again once it is closed


async def test_serve_with_a_forged_state_file_kills_and_deletes_nothing(tmp_path: Path) -> None:
    """The controller's start-up reap, end to end (issue 23: "[reaped] stopped orphaned backend" for a process
    that was never llmctl's, and its socket folder deleted)."""
    from llmctl.app.controller.server import Controller
    from llmctl.app.paths import resolve_paths
    from llmctl.app.settings import load_settings

    class NoGpu:
        def read(self):
            return [], "no-device", "no GPU in this test"

    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[engines.ollama]\nmode = "off"\n')
    victim = tmp_path / "victim"
    victim.mkdir()
    unrelated = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        StateFile(paths.backends_state).put("tiny", _record(unrelated, argv=["/bin/true"],
                                                            socket=str(victim / "vllm.sock")))
        events = []
        c = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu(),
                       on_event=events.append)
        await c.start()
        await c.close()
        assert [e for e in events if e.kind == "reaped"] == []
        assert unrelated.poll() is None and victim.is_dir()
    finally:
        unrelated.kill()
        unrelated.wait()

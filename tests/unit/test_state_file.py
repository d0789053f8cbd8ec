"""Orphan reaping: only processes whose pid *and* start time match the record are killed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from llmctl.runtimes.process import describe_port_owner, free_port, port_is_free
from llmctl.runtimes.state_file import StateFile


@pytest.fixture
def sleeper():
    # its own session, like a backend; a child inside the group checks that the whole group goes
    proc = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; "
                             "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


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
    state.put("m", {"pid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time(), "port": 1})
    reaped = state.reap(grace=2)
    assert [r["name"] for r in reaped] == ["m"]
    assert sleeper.wait(timeout=5) is not None
    child.wait(timeout=5)
    assert not child.is_running()
    assert state.read() == {}


def test_reap_never_kills_a_reused_pid(tmp_path: Path, sleeper) -> None:
    state = StateFile(tmp_path / "backends.json")
    created = psutil.Process(sleeper.pid).create_time()
    state.put("m", {"pid": sleeper.pid, "create_time": created - 100.0, "port": 1})
    assert state.reap(grace=1) == []
    assert sleeper.poll() is None  # still running
    assert state.read() == {}


def test_reap_tolerates_garbage(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    path.write_text("{broken")
    assert StateFile(path).reap() == []
    path.write_text('{"m": {"pid": "x"}, "n": {"pid": 999999999, "create_time": 1}}')
    assert StateFile(path).reap() == []


def test_reap_removes_the_socket_folder_a_dead_backend_left(tmp_path: Path) -> None:
    """A socket may lie outside the run folders the controller clears (a short folder under $XDG_RUNTIME_DIR)."""
    left = tmp_path / "xdg" / "llmctl" / "0123456789abcdef"
    left.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(left / "vllm.sock"))  # bound, then its process died: the file stays
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a socket folder")
    state = StateFile(tmp_path / "backends.json")
    state.put("m", {"pid": 999999999, "create_time": 1, "socket": str(left / "vllm.sock")})
    state.put("n", {"pid": 999999999, "create_time": 1, "socket": str(other / "vllm.sock")})
    assert state.reap() == []  # no live process: nothing killed
    assert not left.exists() and left.parent.is_dir()
    assert (other / "notes.txt").exists()  # a folder holding anything else is left alone


def test_ports() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free("127.0.0.1", port)
        assert describe_port_owner(port).startswith(f"pid {os.getpid()} ")  # this test process listens on it
    assert port_is_free("127.0.0.1", port)  # and the port is free again once it is closed

"""Backends on Unix sockets (how llmctl runs vLLM, whose API key leaves routes open): where the socket goes, the
private folders it lives in, and the supervisor running a real process on one (the fake engine with ``--uds``):
no TCP port, a 0600 socket in a 0700 folder, nothing left after it stops, a short folder when the path would not
fit ``sun_path``."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import psutil
import pytest
from fake_engine import FakeSocketEngine

from llmctl.runtimes.base import BackendFailed, BackendState, Deployment
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.sockets import SUN_PATH_MAX, http_status, make_socket_dir, socket_path
from llmctl.runtimes.state_file import StateFile

POLICY = RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _backend(tmp_path: Path, run_dir: Path) -> Backend:
    d = Deployment("m", tmp_path / "m", free_port(), api_key="k", run_dir=run_dir)
    return Backend(d, FakeSocketEngine(), log_dir=tmp_path / "logs", state=StateFile(tmp_path / "state.json"),
                   policy=POLICY)


def _tcp_listeners(pid: int) -> list:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return [c for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


@pytest.fixture
def short_runtime_dir(monkeypatch):
    """A ``$XDG_RUNTIME_DIR`` short enough for a socket path under it (pytest's tmp_path is long)."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="xdg-") as folder:
        os.chmod(folder, 0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        yield Path(folder)


# where the socket goes ---------------------------------------------------------------------------------------------
def test_the_socket_goes_in_the_run_folder_when_its_path_fits(tmp_path: Path) -> None:
    run = tmp_path / "run" / "m-1"
    assert socket_path(run, "vllm.sock") == run / "sock" / "vllm.sock"


def test_a_path_too_long_for_sun_path_goes_to_a_short_folder_of_its_own(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / ("deep" * 30) / "m-1"
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    path = socket_path(run, "vllm.sock")
    digest = hashlib.sha256(os.fsencode(run)).hexdigest()[:16]
    assert path == Path(f"/tmp/llmctl-{os.getuid()}") / digest / "vllm.sock"
    assert len(os.fsencode(path)) <= SUN_PATH_MAX
    assert socket_path(run, "vllm.sock") == path  # the same deployment always gets the same socket
    assert socket_path(tmp_path / ("deep" * 30) / "m-2", "vllm.sock").parent != path.parent  # one per launch
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert socket_path(run, "vllm.sock") == tmp_path / "llmctl" / digest / "vllm.sock"


def test_a_runtime_dir_others_may_write_to_or_reach_through_a_link_is_not_used(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / ("deep" * 30) / "m-1"
    digest = hashlib.sha256(os.fsencode(run)).hexdigest()[:16]
    fallback = Path(f"/tmp/llmctl-{os.getuid()}") / digest / "vllm.sock"
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert socket_path(run, "vllm.sock") == runtime / "llmctl" / digest / "vllm.sock"
    runtime.chmod(0o770)  # group-writable: someone else could swap the folder under it
    assert socket_path(run, "vllm.sock") == fallback
    runtime.chmod(0o700)
    (tmp_path / "link").symlink_to(runtime)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "link"))
    assert socket_path(run, "vllm.sock") == fallback
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert socket_path(run, "vllm.sock") == fallback


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another uid (chown) needs root")
def test_a_folder_owned_by_another_uid_is_refused(tmp_path: Path, monkeypatch) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    theirs.chmod(0o700)
    os.chown(theirs, 65534, 65534)
    run = tmp_path / ("deep" * 30) / "m-1"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))  # private, but someone else's: not used
    digest = hashlib.sha256(os.fsencode(run)).hexdigest()[:16]
    assert socket_path(run, "vllm.sock") == Path(f"/tmp/llmctl-{os.getuid()}") / digest / "vllm.sock"
    with pytest.raises(PermissionError, match="not a folder of this user's"):
        make_socket_dir(theirs / "a")  # as /tmp/llmctl-UID made first by another user would be
    assert not (theirs / "a").exists()


def test_the_socket_folder_is_private_and_its_parent_must_be_ours(tmp_path: Path) -> None:
    parent = tmp_path / "root"
    make_socket_dir(parent / "a")
    assert (_mode(parent), _mode(parent / "a")) == (0o700, 0o700)
    (parent / "a" / "stale.sock").write_text("")
    parent.chmod(0o755)
    make_socket_dir(parent / "a")  # ours: made private again; what the last start left is gone
    assert _mode(parent) == 0o700 and not list((parent / "a").iterdir())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)  # what another user could leave in /tmp
    with pytest.raises(PermissionError, match="not a folder of this user's"):
        make_socket_dir(tmp_path / "link" / "a")
    assert not (elsewhere / "a").exists()


# the supervisor on a socket ----------------------------------------------------------------------------------------
async def test_a_backend_on_a_socket_listens_on_no_port_and_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run" / "m"
    backend = _backend(tmp_path, run)
    sock = Path(backend.socket_path)
    # in the run folder while tmp_path is short enough for sun_path, else in a short folder of its own
    assert sock == socket_path(run, "fake.sock") and backend.base_url == "http://localhost"
    backend.start()
    try:
        await backend.wait_ready(15)
        assert backend.state is BackendState.READY
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert (_mode(sock), _mode(sock.parent), _mode(run)) == (0o600, 0o700, 0o700)
        assert _tcp_listeners(backend.pid) == []
        assert await http_status("", 0, "/health", uds=str(sock)) == 200
        status = backend.status()
        assert (status["socket"], status["port"]) == (str(sock), None)
        assert StateFile(tmp_path / "state.json").read()["m"]["socket"] == str(sock)
    finally:
        await backend.stop()
    assert not sock.exists() and not run.exists()


async def test_a_run_folder_too_deep_for_a_socket_uses_the_runtime_dir(tmp_path: Path, short_runtime_dir: Path,
                                                                       ) -> None:
    run = tmp_path / ("deep" * 30) / "m"
    backend = _backend(tmp_path, run)
    sock = Path(backend.socket_path)
    assert sock.parent.parent == short_runtime_dir / "llmctl"
    backend.start()
    try:
        await backend.wait_ready(15)
        assert (_mode(sock), _mode(sock.parent), _mode(sock.parent.parent)) == (0o600, 0o700, 0o700)
        assert _tcp_listeners(backend.pid) == []
    finally:
        await backend.stop()
    assert not sock.parent.exists() and not run.exists()


async def test_a_socket_folder_someone_else_controls_is_refused(tmp_path: Path, short_runtime_dir: Path) -> None:
    (short_runtime_dir / "llmctl").symlink_to(tmp_path)
    backend = _backend(tmp_path, tmp_path / ("deep" * 30) / "m")
    backend.start()
    with pytest.raises(BackendFailed):
        await backend.wait_ready(15)
    assert backend.state is BackendState.FAILED and "not a folder of this user's" in backend.error
    assert backend.pid is None  # nothing was started

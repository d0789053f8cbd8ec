"""A state file that cannot be written (a full disk; here a file where the state folder should be, which fails the
same way, with an OSError): the backend still runs, supervised and ready, so state and process agree (issue 23,
item 9: the engine ran on while the state said failed), and it stops cleanly. The real supervisor and a real process
(the fake engine, tests/fake_engine.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from fake_engine import FakeEngine

from llmctl.runtimes.base import BackendState, Deployment
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.state_file import StateFile

POLICY = RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1)


async def test_an_unwritable_state_file_never_leaves_a_running_engine_marked_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    backend = Backend(Deployment("m", model, free_port(), api_key="k-m"), FakeEngine(), log_dir=tmp_path / "logs",
                      state=StateFile(blocker / "backends.json"), policy=POLICY)
    backend.start()
    pid = None
    try:
        await backend.wait_ready(20)
        pid = backend.pid
        assert backend.state is BackendState.READY and psutil.pid_exists(pid)
        assert any("cannot record it in" in line for line in backend.tail)
        await backend.stop()
        assert backend.state is BackendState.STOPPED
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        pid = pid or backend.pid
        if pid is not None and psutil.pid_exists(pid):  # the old code left it running, unsupervised
            os.killpg(pid, signal.SIGKILL)
        await backend.stop()

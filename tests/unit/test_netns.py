"""An engine in a network namespace of its own (runtimes/netns.py): its loopback works for itself, none of its TCP
ports can be reached from the machine, and where ``unshare -rn`` is missing or refused the command runs as before
with the reason said."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from fake_engine import FakeSocketEngine

from llmctl.runtimes.base import Deployment, Launch
from llmctl.runtimes.netns import isolated, netns_problem
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.state_file import StateFile

# stands in for vLLM's worker: listens on a loopback port, proves its own loopback works, then waits
WORKER = """
import os, socket, sys
port = int(sys.argv[1])
server = socket.socket(); server.bind(("127.0.0.1", port)); server.listen()
client = socket.create_connection(("127.0.0.1", port), timeout=5)  # torch.distributed needs this to work
print(port, os.readlink("/proc/self/ns/net"), os.getpid(), flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(netns_problem() is not None, reason=f"no network namespace here: {netns_problem()}")
def test_an_isolated_engine_listens_where_nobody_outside_can_reach() -> None:
    port = free_port()
    argv, note = isolated([sys.executable, "-c", WORKER, str(port)])
    assert argv[1:3] == ("-rn", "--") and "only door" in note
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, "the worker did not start"
        assert int(line[0]) == port
        assert line[1] != os.readlink("/proc/self/ns/net")  # a network of its own
        assert int(line[2]) == proc.pid  # exec'd in place: the supervised pid is the engine's
        with pytest.raises(ConnectionRefusedError):  # on the machine's loopback nothing listens there
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        proc.kill()
        proc.wait()


def test_without_unshare_the_command_runs_as_before_and_says_why() -> None:
    argv, note = isolated([sys.executable, "-m", "vllm"], unshare="no-such-unshare-here")
    assert argv == (sys.executable, "-m", "vllm")
    assert "not installed" in note and "stay reachable" in note


@dataclass(frozen=True, slots=True)
class IsolatedFakeEngine(FakeSocketEngine):
    """The fake engine launched as llmctl launches vLLM: through ``unshare -rn`` and the loopback helper, which exec
    it in place, so its live command line is its own, not the wrapper's."""

    def launch(self, d: Deployment) -> Launch:
        command = tuple(self.build_command(d))
        argv, note = isolated(command)
        return Launch(argv, self.build_env(d), notes=(note,), runs=command)


@pytest.mark.skipif(netns_problem() is not None, reason=f"no network namespace here: {netns_problem()}")
async def test_reap_kills_an_engine_run_in_its_own_network_namespace(tmp_path: Path) -> None:
    """A controller SIGKILLed while it ran an isolated engine: the next one's reap must kill it (the state file
    recorded the wrapper's argv, which the live process no longer runs, and so never reaped it)."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    state = StateFile(tmp_path / "state" / "backends.json")
    backend = Backend(Deployment("m", model, free_port(), api_key="k-m", run_dir=tmp_path / "run"),
                      IsolatedFakeEngine(), log_dir=tmp_path / "logs", state=state,
                      policy=RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1, max_restarts=0))
    backend.start()
    pid = None
    try:
        await backend.wait_ready(20)
        pid = backend.pid
        proc = psutil.Process(pid)
        assert proc.cmdline()[1:3] != ["-rn", "--"]  # exec'd in place: the wrapper is gone from its command line
        assert [r["name"] for r in await asyncio.to_thread(state.reap, 2)] == ["m"]  # what the next controller does
        proc.wait(timeout=5)
    finally:
        if pid is not None and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            os.killpg(pid, signal.SIGKILL)  # the old code left it running
        await backend.stop()

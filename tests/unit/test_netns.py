"""An engine in a network namespace of its own (runtimes/netns.py): its loopback works for itself, none of its TCP
ports can be reached from the machine, and where ``unshare -rn`` is missing or refused the command runs as before
with the reason said."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from llmctl.runtimes.netns import isolated, netns_problem
from llmctl.runtimes.process import free_port

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

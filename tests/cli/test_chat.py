"""``llmctl chat`` against a fake OpenAI-compatible server on loopback: reasoning shown dimmed and counted, a failed
turn kept out of the history, and (in a pseudo-terminal, with real SIGINTs) Ctrl-C stopping a reply but not the
chat, and Ctrl-C at the prompt leaving cleanly."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from fake_openai import FakeOpenAI, Reply

from llmctl.app.cli.root import cli


@pytest.fixture
def server(monkeypatch):
    from llmctl.app.paths import resolve_paths

    fake = FakeOpenAI().start().as_controller(resolve_paths())
    monkeypatch.setenv("LLMCTL_SERVER__PORT", str(fake.port))
    yield fake
    fake.stop()


def chat(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["chat", "m", *args], input=input, color=True)


def test_reasoning_is_shown_dimmed_before_the_answer_and_counted(server) -> None:
    server.script = [Reply(reasoning=["Let me", " think."], content=["It is", " 4."])]
    r = chat("-m", "2+2?")
    assert r.exit_code == 0, r.output
    assert r.output.index("Let me") < r.output.index("It is")
    assert re.search(r"\x1b\[2m(\x1b\[3m)?Let me", r.output)  # dimmed
    assert re.search(r"(^|\x1b\[0m)\s*It is", r.output, re.M) and not re.search(r"\x1b\[2m[^\x1b]*It is", r.output)
    assert "m: 4 tokens (2 reasoning), first after" in r.output  # reasoning counts in tokens and TTFT


def test_a_reply_with_no_reasoning_has_no_thinking_line(server) -> None:
    r = chat("-m", "hi")
    assert r.exit_code == 0 and "Hello there." in r.output and "thinking" not in r.output
    assert "m: 2 tokens, first after" in r.output


@pytest.mark.parametrize("failure", [Reply(status=503), Reply(reasoning=["hm"], content=["par", "tial"],
                                                                  break_after=2)],
                         ids=["refused", "broken-stream"])
def test_a_failed_turn_is_reported_and_kept_out_of_the_history(server, failure) -> None:
    server.script = [Reply(reasoning=["ok"], content=["One."]), failure, Reply(content=["Three."])]
    r = chat(input="first\nsecond\nthird\n\n")
    assert r.exit_code == 0, r.output
    assert "error: " in r.output and "that turn is not kept" in r.output
    assert [m["content"] for m in server.requests[2]["messages"]] == ["first", "One.", "third"]  # no reasoning, no
    assert [m["role"] for m in server.requests[2]["messages"]] == ["user", "assistant", "user"]  # "second"


def test_one_shot_failure_exits_1(server) -> None:
    server.script = [Reply(status=503)]
    proc = subprocess.run([sys.executable, "-m", "llmctl", "chat", "m", "-m", "x"], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())
    assert proc.returncode == 1 and "the controller refused (503)" in proc.stderr, proc.stderr


class Terminal:
    """``llmctl chat`` in a pseudo-terminal, read as a person would see it."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "llmctl", "chat", "m"], stdin=slave, stdout=slave,
                                     stderr=slave, env=os.environ.copy(), close_fds=True)
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.seen!r}"
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the other side closed
                    assert re.search(pattern, self.seen), f"no {pattern!r} in {self.seen!r}"
        return self.seen

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_ctrl_c_stops_a_reply_keeps_the_chat_and_leaves_at_the_prompt(server) -> None:
    words = [f" w{i}" for i in range(400)]
    server.script = [Reply(reasoning=["mulling"], content=words, delay=0.02), Reply(content=["Fine."])]
    term = Terminal()
    try:
        term.expect("you> ")
        term.send("tell me a long story\n")
        term.expect(r"w5 ")
        term.interrupt()
        term.expect(r"\[stopped\][\s\S]*you> ")
        assert "Traceback" not in term.seen
        term.send("shorter please\n")
        term.expect(r"Fine\.[\s\S]*tokens[\s\S]*you> ")
        second = server.requests[1]["messages"]
        assert [m["role"] for m in second] == ["user", "assistant", "user"]
        kept = second[1]["content"]
        assert kept.startswith(" w0 w1 w2 w3 w4 w5") and len(kept.split()) < 400  # what arrived, not all
        assert "mulling" not in kept
        term.interrupt()  # at the prompt, the moment it shows: one Ctrl-C leaves
        assert term.proc.wait(15) == 0
        assert "Traceback" not in term.expect(r"you> \S*\s*$")
    finally:
        term.close()


def test_ctrl_d_at_the_prompt_leaves(server) -> None:
    term = Terminal()
    try:
        term.expect("you> ")
        term.send("\x04")
        assert term.proc.wait(15) == 0
    finally:
        term.close()


def test_a_reply_carrying_escape_sequences_is_shown_not_obeyed(server) -> None:
    """A model's words are foreign text: an escape sequence in a reply (retitle, clear the screen) is shown."""
    server.script = [Reply(reasoning=["\x1b]0;owned\x07"], content=["ok\x1b[2J", " done"])]
    r = CliRunner().invoke(cli, ["chat", "m", "-m", "hi"])  # no colour: llmctl's own styling is off
    assert r.exit_code == 0, r.output
    assert "\x07" not in r.output and "\x1b" not in r.output
    assert "\\x1b]0;owned\\x07" in r.output and "ok\\x1b[2J done" in r.output

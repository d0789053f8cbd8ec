"""The chat prompt's line reader: one line per prompt however lines arrive, EOF as EOFError, Ctrl-C always lands."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from llmctl.app.chat_cli import LineReader


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_lines_pasted_together_come_one_prompt_at_a_time(pipe, capsys) -> None:
    r, w = pipe
    os.write(w, "one\nzwei ü\nthree".encode())
    os.close(w)
    lines = LineReader(r)
    assert [lines.read_line("you> ") for _ in range(3)] == ["one", "zwei ü", "three"]  # the last had no newline
    with pytest.raises(EOFError):
        lines.read_line("you> ")
    assert capsys.readouterr().out == "you> " * 4


def test_a_line_split_across_reads_is_joined(pipe) -> None:
    r, w = pipe
    lines = LineReader(r)
    threading.Timer(0.3, lambda: os.write(w, b"lo\n")).start()
    os.write(w, b"hel")
    assert lines.read_line("") == "hello"


def test_ctrl_c_while_waiting_for_a_line_raises_keyboard_interrupt(pipe) -> None:
    r, _w = pipe
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            LineReader(r).read_line("")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)

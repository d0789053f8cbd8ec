"""The chat prompt's line reader: one line per prompt however lines arrive, EOF as EOFError, Ctrl-C always lands."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from llmctl.app.cli.chat import LineReader


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


def test_ctrl_c_that_lands_while_no_read_is_interrupted_still_raises(pipe) -> None:
    """The race the reader exists for: the signal is handled (its flag set) without interrupting the read the main
    thread is blocked in. Here SIGINT is blocked in the main thread so another thread takes it, just as a signal
    that lands between the prompt being written and the read starting: a plain blocking read would only return
    with the line written 3 s later; the reader notices within a slice."""
    r, w = pipe
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    sent, done, wrote = threading.Event(), threading.Event(), threading.Event()

    def other_thread() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # this thread takes it
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)
        sent.set()
        if not done.wait(3):
            os.write(w, b"too late\n")  # what an uninterruptible read would have returned
            wrote.set()

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        threading.Thread(target=other_thread, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            LineReader(r).read_line("")
        assert sent.is_set() and not wrote.is_set()  # raised while waiting, not after the line came
    finally:
        done.set()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, old)


def test_ctrl_c_while_waiting_for_a_line_raises_keyboard_interrupt(pipe) -> None:
    r, _w = pipe
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with pytest.raises(KeyboardInterrupt):
            timer.start()  # inside: a signal landing early is still caught here, never by pytest
            LineReader(r).read_line("")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)

"""``llmctl chat``: a terminal chat that streams each reply, a reasoning model's thinking dimmed before the answer.

Ctrl-C during a reply stops that reply and returns to the prompt (what arrived stays in the history); Ctrl-C or
Ctrl-D at the prompt leaves. A turn that fails is reported and leaves the history as it was.

All turns run on one event loop (``asyncio.Runner``): while a turn runs, the runner turns SIGINT into the
cancellation of that turn and then a KeyboardInterrupt here; at the prompt, SIGINT is the usual KeyboardInterrupt.

The prompt reads the line itself (:class:`LineReader`) rather than with ``input()``: ``input()`` blocks in a read that
only a signal arriving *during* it interrupts, so a Ctrl-C landing between the prompt being written and the read
starting was lost until the next key (seen on a loaded machine). Waiting in short ``select`` slices closes that gap.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from llmctl.app.client.api import ControllerClient
from llmctl.app.client.wire import ChatTurn, Reasoning, stats_line
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.text import printable


class ChatSession:
    """The history of one chat and how a turn is shown."""

    def __init__(self, model: str, system: str | None = None, **params: Any) -> None:
        self.model = model
        self.params = params
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []
        self.answer = ""  # of the turn in progress, kept if the user stops it

    async def reply(self, client: ControllerClient, text: str) -> ChatTurn:
        """Stream one reply to ``text``; the history grows only once the reply is complete."""
        self.answer = ""
        thinking = False
        async for part in client.stream_chat(self.model, [*self.messages, {"role": "user", "content": text}],
                                             **self.params):
            if isinstance(part, Reasoning):
                if not thinking:
                    click.secho("thinking: ", dim=True, italic=True, nl=False)
                    thinking = True
                click.secho(printable(part.text, newlines=True), dim=True, italic=True, nl=False)
            elif isinstance(part, str):
                if thinking and not self.answer:
                    click.echo("\n")  # a blank line between the thinking and the answer
                self.answer += part
                click.echo(printable(part, newlines=True), nl=False)  # a model's words: shown, never obeyed
            else:
                click.secho(f"\n[{stats_line(self.model, part)}]", dim=True)
                self._keep(text, part.text)
                return part
        raise LlmctlError("the reply ended without its totals")  # stream_chat always ends with a ChatTurn

    def stopped(self, text: str) -> None:
        """The user stopped the reply: keep what arrived (a reply with no answer text yet is dropped)."""
        click.secho("\n[stopped]", dim=True)
        if self.answer:
            self._keep(text, self.answer)

    def _keep(self, text: str, answer: str) -> None:
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]


class LineReader:
    """Lines from a file descriptor (the terminal, in its own line mode, or a pipe), read so that Ctrl-C always lands.

    Between ``select`` slices Python runs its signal handlers, so SIGINT raises KeyboardInterrupt here within a slice
    however it is timed; lines pasted together are kept in ``pending`` and handed out one prompt at a time.
    """

    SLICE_S = 0.2

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def read_line(self, prompt: str) -> str:
        """The next line without its newline; EOFError at end of input (Ctrl-D on an empty line)."""
        click.echo(prompt, nl=False)
        while b"\n" not in self.pending:
            if not select.select([self.fd], [], [], self.SLICE_S)[0]:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                if not self.pending:
                    raise EOFError
                break  # the last line had no newline
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode(errors="replace")


def run_chat(make_client: Callable[[], ControllerClient], session: ChatSession, one_shot: str | None) -> None:
    with asyncio.Runner() as runner:
        client = make_client()
        try:
            if one_shot is not None:
                runner.run(session.reply(client, one_shot))  # errors and Ctrl-C end the command as usual
                return
            _loop(runner, client, session)
        finally:
            runner.run(client.aclose())


def _loop(runner: asyncio.Runner, client: ControllerClient, session: ChatSession) -> None:
    try:
        read_line = LineReader(sys.stdin.fileno()).read_line
    except (AttributeError, OSError, ValueError):  # not a real file (an embedding app's stdin): the plain prompt
        read_line = input
    while True:
        # at the prompt Ctrl-C must leave: make sure no handler from a turn (the runner's, or a library's) is left
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            text = read_line("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        if not text:
            return
        try:
            runner.run(session.reply(client, text))
        except KeyboardInterrupt:
            session.stopped(text)
        except LlmctlError as exc:
            click.secho(f"\nerror: {printable(exc.title)}", fg="red", err=True)
            if exc.message:
                click.echo(f"  {printable(exc.message, newlines=True)}", err=True)
            click.secho("(that turn is not kept; the chat goes on)", dim=True, err=True)

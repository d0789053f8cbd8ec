"""A request whose client has gone stops: its upstream request is cancelled, and it is never sent again.

aiohttp does not cancel a handler when its client disconnects (``handler_cancellation`` is off, and turning it on
would cancel management routes half-way too), so the gateway runs the part of a request that waits on a model (its
load, the engine's answer) as a task and watches the client's connection beside it. When the connection is gone
the task is cancelled: the upstream connection closes, and llama.cpp and vLLM stop generating for a request whose
connection closed. (``test_an_abandoned_unary_request_stops_the_engine``.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")
WATCH_EVERY = 0.2  # seconds between looks at the client's connection


# set on a request once its streamed answer is complete: its closing event went out, or the error event that ended
# it. A client that leaves after reading that (the openai SDK hangs up at [DONE]) must not turn a whole answer into a
# cancelled one; until then the watch goes on, so a client that leaves mid-stream frees its request even while the
# engine sends nothing (test_a_stream_left_after_its_first_token_is_let_go_while_the_engine_is_silent)
ANSWERED = web.RequestKey("answered", bool)


class ClientGone(Exception):
    """The client closed its connection before its answer was complete."""


def gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def while_present(request: web.Request, step: Awaitable[T]) -> T:
    """``step``'s result; ``ClientGone`` (``step`` cancelled) as soon as the client's connection has closed."""
    task = asyncio.ensure_future(step)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCH_EVERY)
            if done:
                return task.result()
            if gone(request) and not request.get(ANSWERED, False):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise ClientGone
    finally:
        if not task.done():  # the handler itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

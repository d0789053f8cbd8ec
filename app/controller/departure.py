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


# set on a request once its streamed answer has begun: from then on the stream's own writes see a departed client
# (and end it as 499), and a client that leaves after reading the end must not turn a whole answer (or the error
# event that ended it) into a cancelled one
ANSWERING = web.RequestKey("answering", bool)


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
            if gone(request) and not request.get(ANSWERING, False):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise ClientGone
    finally:
        if not task.done():  # the handler itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

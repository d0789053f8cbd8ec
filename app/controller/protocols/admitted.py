"""A request that uses a model without forwarding anything to it: Ollama's load-only ``/api/chat`` and
``/api/generate`` (no messages or prompt) and ``GET /props``. Each is admitted like any request of its key (the
key's rate limit, the model's queue), recorded, and given up when its client leaves, so that a key cannot load,
hold or unload models outside the limits its chat requests have.

What a key may ask of a model's lifetime: ``keep_alive`` for ever (negative) pins the model against every other
key's work, and an unload with nothing to answer stops a model other keys are using; both are the owner's to ask
(the admin scope). An inference key may still send ``keep_alive`` with a duration, or ``0`` on a request it makes
(the model is then unloaded once idle after it, never under another request: the scheduler waits for in-flight
requests)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from llmctl.app.controller.departure import ClientGone, while_present
from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.metrics import StreamMeter
from llmctl.app.controller.protocols.requests import REQUEST_ID
from llmctl.app.controller.request_keys import EXTRA_HEADERS, KEY_STATE
from llmctl.app.controller.scopes import ADMIN
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import BackendState, RunningDeployment
from llmctl.runtimes.ledger import DoesNotFit
from llmctl.runtimes.scheduler import ModelLoading

T = TypeVar("T")


# the longest idle time an app key may ask a model to be kept for: longer holds the machine's memory for an app as
# good as for ever (a pin, the admin scope's)
MAX_APP_KEEP_ALIVE = 24 * 3600.0


def check_keep_alive(request: web.Request, keep_alive: float | None, *, unload: bool = False) -> None:
    """403 naming the scope when a key without the admin scope asks to pin a model for ever (or for longer than
    ``MAX_APP_KEEP_ALIVE``), or (``unload``) to unload one with nothing to answer."""
    key = request.get(KEY_STATE)
    if key is None or key.role == ADMIN:
        return
    if keep_alive is not None and math.isinf(keep_alive):
        what = "keep_alive < 0 (keep the model loaded for ever)"
    elif keep_alive is not None and keep_alive > MAX_APP_KEEP_ALIVE:
        what = f"a keep_alive over 24h ({keep_alive / 3600:.4g} h: a pin in all but name)"
    elif unload:
        what = "keep_alive 0 with nothing to answer (unload the model)"
    else:
        return
    raise ApiError(403, f"the API key '{key.name}' has the {key.role} scope; {what} needs the admin scope (send a "
                   "keep_alive duration such as \"10m\" instead, or use an admin key)", code="insufficient_scope",
                   type="permission_error", param="keep_alive")


async def admitted(gateway, request: web.Request, entry: ModelEntry, endpoint: str,
                   work: Callable[[RunningDeployment], Awaitable[T]], *, keep_alive: float | None = None) -> T:
    """``work(backend)`` on the model's ready deployment (started on demand), as one request of the key: admitted
    by its rate limit (or 429) and the model's queue (or 429/503), recorded under ``endpoint``, cancelled when the
    client leaves."""
    key = request.get(KEY_STATE)
    headers = request.setdefault(EXTRA_HEADERS, {})
    if key is not None:
        headers.update(gateway.keys.admit(key, 1))
    rec = gateway.metrics.begin(entry.name, endpoint, False)
    rec.key = key.name if key is not None else None
    rec.count, rec.request_id = 1, request.get(REQUEST_ID)
    status, error = 500, None
    queue = gateway._queue(entry)
    admitted_ = False
    try:
        current = gateway.scheduler.get(entry.name)
        ready = current is not None and current.state is BackendState.READY
        queue.admit(current.spec.parallel if ready else 0, loading=not ready, n=1)  # or 429/503: queue full
        admitted_ = True
        await queue.acquire()
        try:
            async def step() -> T:
                async with gateway.scheduler.use(entry, keep_alive=keep_alive) as backend:
                    return await work(backend)
            result = await while_present(request, step())
        finally:
            queue.release()
        status = 200
        return result
    except ClientGone:
        status, error = 499, "the client went away"
        raise ApiError(499, "the client went away", code="client_gone") from None
    except ModelLoading:
        status, error = 503, "model is still loading"
        raise ApiError(503, f"'{entry.name}' is still loading; retry shortly", code="model_loading",
                       retry_after=5) from None
    except DoesNotFit as exc:
        status, error = 503, exc.title
        raise ApiError(503, f"'{entry.name}' could not be loaded: {exc.title}. {exc.message}",
                       code="insufficient_memory", retry_after=10 if exc.busy else None) from None
    except ApiError as exc:
        status, error = exc.status, exc.message
        raise
    except LlmctlError as exc:
        status, error = 503, exc.message
        raise ApiError(503, f"'{entry.name}' could not be loaded: {exc.title}: {exc.message}",
                       code="backend_unavailable") from None
    finally:
        if admitted_:
            queue.leave(1)
        gateway.metrics.finish(rec, status, StreamMeter(), usage=None, error=error)

"""``/api/pull`` as llmctl's own pull: the Ollama name becomes llmctl's reference (``pull_ref``), the pull runs in
the controller (``PullsApi``), and its progress streams as Ollama's NDJSON: ``pulling manifest``, ``pulling
<digest>`` with ``total`` and ``completed`` per file, ``verifying sha256 digest``, ``writing manifest``, ``success``
— or an ``{"error"}`` line (status 200, as Ollama answers a failed streamed pull). With ``stream: false``, one
``{"status": "success"}`` or a 500 ``{"error"}``. A model already registered under the name is a success at once."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.protocols.ollama_answers import NDJSON, json_answer
from llmctl.app.controller.protocols.ollama_requests import pull_ref

_FILE_EVENTS = ("waiting", "started", "progress", "verified")
_HEARTBEAT = 15.0


def _line(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def pull(api, request: web.Request, body: dict) -> web.StreamResponse:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "model is required")
    stream = body.get("stream") is not False
    existing = await api.find(name.strip())
    started, error = None, None
    if existing is None:
        if api.pulls is None:
            raise ApiError(501, "pulls are not available on this server")
        try:
            started, _joined = await api.pulls.begin(pull_ref(name.strip()), None)
        except ApiError as exc:
            error = exc.message
    if not stream:
        if started is not None and started.task is not None:
            await asyncio.wait([started.task])
            if started.state != "done":
                error = started.error or f"the pull {started.state}"
        return json_answer({"error": error}, 500) if error else json_answer({"status": "success"})
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(_line({"status": "pulling manifest"}))
    if error is not None:
        await response.write(_line({"error": error}))
    elif started is None:
        await response.write(_line({"status": "success"}))
    else:
        await _follow(response, started)
    await response.write_eof()
    return response


async def _follow(response: web.StreamResponse, p) -> None:
    """The pull's events as Ollama's progress lines, until it ends."""
    shas = {f.name: f.sha256 or f.blob_id or f.name for f in p.resolved.plan.files}
    seen = 0
    while True:
        for event in [e for e in p.events if e["seq"] > seen]:
            seen = event["seq"]
            kind = event["type"]
            if kind in _FILE_EVENTS and event.get("file") in shas:
                digest = f"sha256:{shas[event['file']]}"
                await response.write(_line({"status": f"pulling {shas[event['file']][:12]}", "digest": digest,
                                            "total": event.get("size", 0), "completed": event.get("done", 0)}))
            elif kind == "registered":
                await response.write(_line({"status": "verifying sha256 digest"}))
                await response.write(_line({"status": "writing manifest"}))
            elif kind == "done":
                await response.write(_line({"status": "success"}))
            elif kind in ("failed", "cancelled"):
                await response.write(_line({"error": event.get("error") or f"the pull {kind}"}))
        if p.state not in ("downloading", "registering") and seen >= p.seq:
            return
        await p.wait_change(seen, timeout=_HEARTBEAT)

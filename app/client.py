"""The client of the controller's control API and gateway, used by the CLI and the TUI (async only; the CLI
runs it with ``asyncio.run``).

It finds the running controller through its state file (pid + start time checked, so a stale file from a
crashed controller is ignored) and falls back to the configured address.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from llmctl.app.paths import Paths
from llmctl.app.settings import Settings
from llmctl.catalog.errors import LlmctlError


class ControllerUnavailable(LlmctlError):
    """No controller answers at the expected address."""


class ControllerError(LlmctlError):
    """The controller answered with an error."""

    def __init__(self, title: str, message: str = "", status: int = 0) -> None:
        super().__init__(title, message)
        self.status = status


def running_controller(paths: Paths) -> dict | None:
    """The state of a live controller, or None when the state file is missing or stale."""
    try:
        data = json.loads(paths.controller_state.read_text("utf-8"))
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["create_time"])) > 0.05:
            return None
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return data


def controller_url(settings: Settings, paths: Paths) -> str:
    live = running_controller(paths)
    if live and live.get("url"):
        return str(live["url"])
    host = settings.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.server.port}"


@dataclass
class ChatTurn:
    """What one streamed chat reply produced."""

    text: str = ""
    finish_reason: str | None = None
    ttft_s: float | None = None
    tokens: int = 0
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft_s is None or self.tokens < 2 or self.seconds <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.seconds - self.ttft_s)


def _unavailable(base_url: str) -> ControllerUnavailable:
    return ControllerUnavailable(
        f"no llmctl controller is running at {base_url}",
        "start one with `llmctl serve` (or point LLMCTL_SERVER__PORT at the one you started).",
    )


class ControllerClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ControllerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET" and "json" not in kwargs:  # the controller takes state changes as JSON only
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        except httpx.TimeoutException:
            raise ControllerUnavailable(f"the controller at {self.base_url} did not answer in time",
                                        "it may be busy loading a model; try again.") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    # control API -------------------------------------------------------------------------------------------
    async def status(self) -> dict:
        return await self._request("GET", "/llmctl/v1/status")

    async def backends(self) -> list[dict]:
        return (await self._request("GET", "/llmctl/v1/backends"))["backends"]

    async def load(self, model: str, wait: bool = True, timeout: float = 600.0) -> dict:
        return await self._request("POST", f"/llmctl/v1/backends/{_seg(model)}/load",
                                   params={"wait": str(wait).lower()}, timeout=timeout)

    async def unload(self, model: str) -> dict:
        return await self._request("POST", f"/llmctl/v1/backends/{_seg(model)}/unload", timeout=120.0)

    async def logs(self, model: str, tail: int = 100, since: int | None = None) -> dict:
        params: dict[str, Any] = {"tail": tail}
        if since is not None:
            params["since"] = since
        return await self._request("GET", f"/llmctl/v1/backends/{_seg(model)}/logs", params=params)

    async def requests(self, limit: int = 50) -> list[dict]:
        return (await self._request("GET", "/llmctl/v1/requests", params={"limit": limit}))["requests"]

    async def requests_snapshot(self, limit: int = 100) -> dict:
        """Recent request records and the number in flight."""
        return await self._request("GET", "/llmctl/v1/requests", params={"limit": limit})

    async def shutdown(self) -> dict:
        return await self._request("POST", "/llmctl/v1/shutdown")

    async def hardware(self) -> dict:
        return await self._request("GET", "/llmctl/v1/hardware")

    async def models(self) -> list[dict]:
        return (await self._request("GET", "/llmctl/v1/models"))["models"]

    async def import_model(self, path: str, name: str | None = None) -> dict:
        return await self._request("POST", "/llmctl/v1/models", json={"path": path, "name": name})

    async def remove_model(self, name: str) -> dict:
        return await self._request("DELETE", f"/llmctl/v1/models/{_seg(name)}")

    async def catalog(self, ctx: int = 8192) -> dict:
        return await self._request("GET", "/llmctl/v1/catalog", params={"ctx": ctx})

    # gateway -----------------------------------------------------------------------------------------------
    async def stream_chat(self, model: str, messages: list[dict], **params: Any) -> AsyncIterator[str | ChatTurn]:
        """Yield text deltas as they arrive, then one ChatTurn with the totals."""
        body = {"model": model, "messages": messages, "stream": True, **params}
        turn = ChatTurn()
        t0 = time.perf_counter()
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body,
                                         timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_from(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        err = event["error"]
                        raise ControllerError("the stream ended with an error", str(err.get("message", err)))
                    if event.get("usage"):
                        turn.usage = event["usage"]
                    for choice in event.get("choices", []):
                        delta = choice.get("delta", {}).get("content")
                        if delta is not None and "role" not in choice.get("delta", {}):
                            if turn.ttft_s is None:
                                turn.ttft_s = time.perf_counter() - t0
                            turn.tokens += 1
                            turn.text += delta
                            if delta:
                                yield delta
                        if choice.get("finish_reason"):
                            turn.finish_reason = choice["finish_reason"]
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        turn.seconds = time.perf_counter() - t0
        yield turn


def _seg(name: str) -> str:
    """A model name as one URL path segment (``ollama/NAME:TAG`` has a slash)."""
    return quote(name, safe=":")


def _error_from(response: httpx.Response) -> ControllerError:
    try:
        err = response.json()["error"]
        message = err.get("message") or str(err)
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    return ControllerError(f"the controller refused ({response.status_code})", message, status=response.status_code)

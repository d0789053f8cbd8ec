"""The client of the controller's control API and gateway, used by the CLI (and, later, the TUI).

It finds the running controller through its state file (pid + start time checked, so a stale file from a
crashed controller is ignored) and falls back to the configured address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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


class ControllerClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ControllerUnavailable(
                f"no llmctl controller is running at {self.base_url}",
                "start one with `llmctl serve` (or point LLMCTL_SERVER__PORT at the one you started).",
            ) from None
        except httpx.TimeoutException:
            raise ControllerUnavailable(f"the controller at {self.base_url} did not answer in time",
                                        "it may be busy loading a model; try again.") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    # control API -------------------------------------------------------------------------------------------
    def status(self) -> dict:
        return self._request("GET", "/llmctl/v1/status")

    def backends(self) -> list[dict]:
        return self._request("GET", "/llmctl/v1/backends")["backends"]

    def load(self, model: str, wait: bool = True, timeout: float = 600.0) -> dict:
        return self._request("POST", f"/llmctl/v1/backends/{model}/load", params={"wait": str(wait).lower()},
                             timeout=timeout)

    def unload(self, model: str) -> dict:
        return self._request("POST", f"/llmctl/v1/backends/{model}/unload", timeout=120.0)

    def logs(self, model: str, tail: int = 100, since: int | None = None) -> dict:
        params: dict[str, Any] = {"tail": tail}
        if since is not None:
            params["since"] = since
        return self._request("GET", f"/llmctl/v1/backends/{model}/logs", params=params)

    def requests(self, limit: int = 50) -> list[dict]:
        return self._request("GET", "/llmctl/v1/requests", params={"limit": limit})["requests"]

    def shutdown(self) -> dict:
        return self._request("POST", "/llmctl/v1/shutdown")

    def models(self) -> list[dict]:
        return self._request("GET", "/v1/models")["data"]

    # gateway -----------------------------------------------------------------------------------------------
    def stream_chat(self, model: str, messages: list[dict], **params: Any) -> Iterator[str | ChatTurn]:
        """Yield text deltas as they arrive, then one ChatTurn with the totals."""
        import time

        body = {"model": model, "messages": messages, "stream": True, **params}
        turn = ChatTurn()
        t0 = time.perf_counter()
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body, timeout=httpx.Timeout(
                    30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                for line in response.iter_lines():
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
                        if delta:
                            if turn.ttft_s is None:
                                turn.ttft_s = time.perf_counter() - t0
                            turn.tokens += 1
                            turn.text += delta
                            yield delta
                        if choice.get("finish_reason"):
                            turn.finish_reason = choice["finish_reason"]
        except httpx.ConnectError:
            raise ControllerUnavailable(f"no llmctl controller is running at {self.base_url}",
                                        "start one with `llmctl serve`.") from None
        turn.seconds = time.perf_counter() - t0
        yield turn


def _error_from(response: httpx.Response) -> ControllerError:
    try:
        err = response.json()["error"]
        message = err.get("message") or str(err)
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    return ControllerError(f"the controller refused ({response.status_code})", message, status=response.status_code)

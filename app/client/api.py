"""The client of the controller's control API and gateway, used by the CLI and the TUI (async only; the CLI
runs it with ``asyncio.run``).

``local_client`` finds the running controller through its state file (pid + start time checked, so a stale file
from a crashed controller is ignored) and has it prove itself before any key leaves (``app.handshake``); with no
live controller it talks to nobody, and says so, naming whatever else holds the configured port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from llmctl.app.bench.events import BenchEvent, Note
from llmctl.app.client.wire import (
    BackendStatus,
    Catalog,
    ChatPart,
    ChatTurn,
    ControllerError,
    ControllerUnavailable,
    EngineMetrics,
    Hardware,
    LocalModel,
    LogChunk,
    ModelEntry,
    PullEvent,
    PullStatus,
    Reasoning,
    Recommendation,
    RemoteStatus,
    RequestRecord,
    RequestsSnapshot,
    Shutdown,
    StartedPull,
)
from llmctl.app.handshake import HELLO_PATH, NONCE_HEADER, live_state, new_nonce, proves
from llmctl.app.paths import Paths
from llmctl.app.settings import Settings


def running_controller(paths: Paths) -> dict | None:
    """The state of a live controller, or None when the state file is missing or stale."""
    return live_state(paths)


def configured_url(settings: Settings) -> str:
    host = settings.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.server.port}"


def controller_url(settings: Settings, paths: Paths) -> str:
    live = running_controller(paths)
    if live and live.get("url"):
        return str(live["url"])
    return configured_url(settings)


def local_client(settings: Settings, paths: Paths, **kwargs: Any) -> ControllerClient:
    """The client of this state folder's controller: it proves itself before the first request, and the client
    then sends its owner key (admin). With no live controller the client sends nothing anywhere: every call says
    that none runs and, when something else listens on the configured port, what it is."""
    live = running_controller(paths)
    if live and isinstance(live.get("url"), str) and isinstance(live.get("secret"), str):
        return ControllerClient(live["url"], owner_secret=live["secret"], **kwargs)
    url = configured_url(settings)
    why = (f"no llmctl controller is running for {paths.state_dir}", "start one with `llmctl serve`.")
    if live:  # alive, but written by an llmctl that predates the handshake
        why = (f"the controller at {live.get('url')} (pid {live.get('pid')}) cannot prove it is llmctl's",
               "it was started by an older llmctl; stop it (kill its pid) and start it again with `llmctl serve`.")
    else:
        from llmctl.runtimes.sockets import describe_port_owner, port_is_free

        host = urlsplit(url).hostname or "127.0.0.1"
        if not port_is_free("127.0.0.1" if host == "localhost" else host, settings.server.port):
            why = (f"no llmctl controller is running for {paths.state_dir}, and something else holds port "
                   f"{settings.server.port}: {describe_port_owner(settings.server.port)}",
                   "llmctl sent it nothing (no key, no request). Stop that process or choose another port "
                   "(LLMCTL_SERVER__PORT), then start llmctl with `llmctl serve`.")
    return ControllerClient(url, refusal=why, **kwargs)


def _unavailable(base_url: str) -> ControllerUnavailable:
    return ControllerUnavailable(
        f"no llmctl controller is running at {base_url}",
        "start one with `llmctl serve` (or point LLMCTL_SERVER__PORT at the one you started).",
    )


class ControllerClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, bench_dir: Path | None = None,
                 chats_dir: Path | None = None, *, owner_secret: str | None = None,
                 refusal: tuple[str, str] | None = None) -> None:
        """``bench_dir``: where saved benchmark runs live (``<data>/benchmarks``); without it there is no history
        and runs are not saved. ``chats_dir``: where the TUI's chat history lives (``<data>/chats``), likewise.
        ``owner_secret`` (from the controller's state file): the controller must prove it holds it before the first
        request, and it is then the key sent. ``refusal``: there is no controller to talk to (title, what to do);
        every call raises ControllerUnavailable saying so, and nothing is sent."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._owner_secret = owner_secret
        self._proven = owner_secret is None
        self._refusal = refusal
        self._transport = transport
        self.bench_dir = bench_dir
        self.chats_dir = chats_dir
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    @property
    def scope(self) -> str | None:
        """The scope this client's key has, when known: admin with the controller's owner key."""
        return "admin" if self._owner_secret is not None else None

    async def proven(self) -> tuple[str, str | None]:
        """The controller's URL and the key to send it, once it has proved itself (ControllerUnavailable if not)."""
        await self._prove()
        return self.base_url, self._api_key

    async def _prove(self) -> None:
        """Before anything is sent: refuse when there is no controller; otherwise have it answer the challenge
        (without a key), and only then attach the owner key."""
        if self._refusal is not None:
            raise ControllerUnavailable(*self._refusal)
        if self._proven or self._owner_secret is None:
            return
        nonce = new_nonce()
        try:
            response = await self._http.get(HELLO_PATH, headers={NONCE_HEADER: nonce}, timeout=10.0)
            answer = response.json().get("proof") if response.status_code == 200 else None
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        except (httpx.HTTPError, ValueError, AttributeError):
            answer = None
        if not proves(self._owner_secret, nonce, answer):
            raise ControllerUnavailable(
                f"the process at {self.base_url} is not the llmctl controller its state file names",
                "something else holds that port; llmctl sent it no key. Stop it, or start llmctl on another port.")
        self._api_key = self._owner_secret
        self._http.headers["Authorization"] = f"Bearer {self._owner_secret}"
        self._proven = True

    def _refused(self, response: httpx.Response) -> ControllerError | ControllerUnavailable:
        """The error for an answer of 400 or more. A 401 to the owner key means the controller that proved itself
        is gone and another now answers at its address (one restarted between two polls makes a new secret): the
        proof is forgotten and the controller is unavailable, so the TUI's reconnect path runs and makes a client
        from the state file again (``test_controller_restart``); a ControllerError there left the TUI stuck."""
        if response.status_code == 401 and self._owner_secret is not None and self._proven:
            self._proven = False
            self._api_key = None
            self._http.headers.pop("Authorization", None)
            return ControllerUnavailable(
                f"the controller at {self.base_url} no longer knows this client's owner key",
                "it was restarted; reconnecting reads its state file again (or start it with `llmctl serve`).")
        return _error_from(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ControllerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        await self._prove()
        if method != "GET":  # the controller refuses a POST/DELETE that is not JSON (cross-site requests)
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
            if "json" not in kwargs:
                kwargs["content"] = b"{}"
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        except httpx.TimeoutException:
            raise ControllerUnavailable(f"the controller at {self.base_url} did not answer in time",
                                        "it may be busy loading a model; try again.") from None
        except httpx.TransportError as exc:
            raise _lost(self.base_url, exc) from None
        if response.status_code >= 400:
            raise self._refused(response)
        try:
            return response.json()
        except ValueError:
            raise ControllerError(f"the controller at {self.base_url} answered something that is not JSON",
                                  response.text[:200], status=response.status_code) from None

    # control API -------------------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        return await self._request("GET", "/llmctl/v1/status")

    async def backends(self, engine_metrics: bool = False) -> list[BackendStatus]:
        """Every backend's state; with ``engine_metrics``, what its engine reports (``engine_metrics``: its load and
        the context it really serves per request, ``context_per_slot``)."""
        params = {"engine_metrics": "1"} if engine_metrics else {}
        return (await self._request("GET", "/llmctl/v1/backends", params=params))["backends"]

    async def load(self, model: str, wait: bool = True, timeout: float = 600.0,
                   reload_profile: bool = False) -> BackendStatus:
        """Start a model; ``reload_profile``: with its ``[models.NAME]`` read again from the config file."""
        params = {"wait": str(wait).lower(), **({"profile": "reload"} if reload_profile else {})}
        return await self._request("POST", f"/llmctl/v1/backends/{_seg(model)}/load", params=params,
                                   timeout=timeout)

    async def unload(self, model: str) -> BackendStatus:
        return await self._request("POST", f"/llmctl/v1/backends/{_seg(model)}/unload", timeout=120.0)

    async def logs(self, model: str, tail: int = 100, since: int | None = None) -> LogChunk:
        params: dict[str, Any] = {"tail": tail}
        if since is not None:
            params["since"] = since
        return await self._request("GET", f"/llmctl/v1/backends/{_seg(model)}/logs", params=params)

    async def requests(self, limit: int = 50) -> list[RequestRecord]:
        return (await self._request("GET", "/llmctl/v1/requests", params={"limit": limit}))["requests"]

    async def requests_snapshot(self, limit: int = 100) -> RequestsSnapshot:
        """Recent request records and the number in flight."""
        return await self._request("GET", "/llmctl/v1/requests", params={"limit": limit})

    async def engine_metrics(self) -> list[EngineMetrics]:
        """Each deployment's load as its engine reports it (requests running/waiting, KV cache use, ...)."""
        return (await self._request("GET", "/llmctl/v1/engine-metrics"))["models"]

    async def remotes(self) -> list[RemoteStatus]:
        return (await self._request("GET", "/llmctl/v1/remotes"))["remotes"]

    async def shutdown(self) -> Shutdown:
        return await self._request("POST", "/llmctl/v1/shutdown")

    async def hardware(self) -> Hardware:
        return await self._request("GET", "/llmctl/v1/hardware")

    async def models(self) -> list[LocalModel]:
        return (await self._request("GET", "/llmctl/v1/models"))["models"]

    async def import_model(self, path: str, name: str | None = None) -> ModelEntry:
        return await self._request("POST", "/llmctl/v1/models", json={"path": path, "name": name})

    async def remove_model(self, name: str) -> ModelEntry:
        return await self._request("DELETE", f"/llmctl/v1/models/{_seg(name)}")

    async def catalog(self, ctx: int | str = 8192) -> Catalog:
        # ``auto`` (backends.ctx_size's default) judges catalog models at the controller's default context
        return await self._request("GET", "/llmctl/v1/catalog", params={"ctx": ctx} if ctx != "auto" else {})

    async def recommend(self, ctx: int | str = 8192, gpu: str | None = None) -> Recommendation:
        params: dict[str, Any] = {"ctx": ctx} if ctx != "auto" else {}
        if gpu:
            params["gpu"] = gpu
        return await self._request("GET", "/llmctl/v1/recommend", params=params, timeout=60.0)

    # pulls -------------------------------------------------------------------------------------------------
    async def start_pull(self, ref: str, name: str | None = None, revision: str = "main",
                         force: bool = False) -> StartedPull:
        """Start a pull in the controller (or join the one already fetching the same files)."""
        return await self._request("POST", "/llmctl/v1/pulls", timeout=120.0,
                                   json={"ref": ref, "name": name, "revision": revision, "force": force})

    async def pulls(self) -> list[PullStatus]:
        return (await self._request("GET", "/llmctl/v1/pulls"))["pulls"]

    async def cancel_pull(self, pull_id: str) -> PullStatus:
        return await self._request("DELETE", f"/llmctl/v1/pulls/{_seg(pull_id)}")

    async def pull_events(self, pull_id: str, after: int = 0) -> AsyncIterator[PullEvent]:
        """The pull's events as they happen, until it ends (the stream closes)."""
        await self._prove()
        try:
            async with self._http.stream("GET", f"/llmctl/v1/pulls/{_seg(pull_id)}/events", params={"after": after},
                                         timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._refused(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise ControllerError("the pull's event stream carried something that is not JSON",
                                              line[:200]) from None
                    yield event
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        except httpx.TransportError as exc:
            raise _lost(self.base_url, exc) from None

    # gateway -----------------------------------------------------------------------------------------------
    async def stream_chat(self, model: str, messages: list[dict], **params: Any) -> AsyncIterator[ChatPart]:
        """Yield answer text (``str``) and reasoning (``Reasoning``) as they arrive, then one ChatTurn with the
        totals. The time to first token is to the first token of either; tokens/s counts both."""
        # the server's own token count arrives in a last usage event: a server may merge tokens into one event
        body = {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True},
                **params}
        turn = ChatTurn()
        await self._prove()
        t0 = time.perf_counter()
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body,
                                         timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._refused(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise ControllerError("the stream carried something that is not JSON", data[:200]) from None
                    if "error" in event:
                        err = event["error"]
                        message = err.get("message", err) if isinstance(err, dict) else err
                        raise ControllerError("the stream ended with an error", str(message))
                    if event.get("usage"):
                        turn.usage = event["usage"]
                    for choice in event.get("choices") or []:
                        parts = _parts(choice.get("delta") or {})
                        if parts:
                            if turn.ttft_s is None:
                                turn.ttft_s = time.perf_counter() - t0
                            turn.tokens += 1
                            turn.reasoning_tokens += isinstance(parts[0], Reasoning)
                        for part in parts:
                            if isinstance(part, Reasoning):
                                turn.reasoning += part.text
                                if part.text:
                                    yield part
                            else:
                                turn.text += part
                                if part:
                                    yield part
                        if choice.get("finish_reason"):
                            turn.finish_reason = choice["finish_reason"]
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        except httpx.TransportError as exc:
            raise _lost(self.base_url, exc) from None
        turn.seconds = time.perf_counter() - t0
        if isinstance(turn.usage.get("completion_tokens"), int):
            turn.tokens = turn.usage["completion_tokens"]
        yield turn


    # benchmarks --------------------------------------------------------------------------------------------
    async def bench(self, model: str, concurrency: list[int], prompt_tokens: int = 128, max_tokens: int = 64,
                    requests: int | None = None, save: bool = False) -> AsyncIterator[BenchEvent]:
        """Benchmark ``model`` through the controller's own endpoint, one concurrent level per value, and yield
        the runner's progress events as they happen (``app/bench/runner.py``). With ``save`` (and a ``bench_dir``),
        the finished run is saved as ``llmctl bench --save`` does and a last ``Note`` names it. Closing the iterator
        (a cancelled worker) stops the requests in flight."""
        from llmctl.app.bench.results import controller_run, save_run
        from llmctl.app.bench.runner import LoadSpec, Target, openai_base, stream_run

        await self._prove()
        spec = LoadSpec(profile="concurrent", concurrency=list(concurrency), requests=requests,
                        prompt_tokens=prompt_tokens, max_tokens=max_tokens)
        target = Target(openai_base(self.base_url), model, self._api_key)
        done: dict[str, Any] = {}
        try:
            # aclosing: closing this iterator closes the run's at once, which cancels the requests in flight
            async with contextlib.aclosing(stream_run(target, spec, done, transport=self._transport)) as events:
                async for event in events:
                    yield event
        except httpx.ConnectError:
            raise _unavailable(self.base_url) from None
        if save and self.bench_dir is not None:
            run = controller_run(target, spec, done, await self.backends(), dict(await self.hardware()))
            yield Note(f"saved as {(await asyncio.to_thread(save_run, self.bench_dir, run)).stem}")

    async def bench_history(self) -> list[dict]:
        """Saved benchmark runs (``llmctl bench --save`` and the TUI's), oldest first; none without a bench_dir."""
        from llmctl.app.bench.results import list_runs

        if self.bench_dir is None:
            return []
        return await asyncio.to_thread(list_runs, self.bench_dir)

    async def hub_search(self, query: str) -> list[dict]:
        """Hugging Face Hub repos matching ``query`` that llmctl can pull, each with its quants and their sizes
        (``hub_search.py``; the Hub or ``HF_ENDPOINT``). Pull one as ``REPO:QUANT``."""
        from llmctl.app.client import hub_search

        return [r.to_json() for r in await asyncio.to_thread(hub_search.search, query)]

    # the chat history (local files, ``chat_history.py``: the screens never touch files themselves) ---------------
    async def chat_history(self, model: str) -> list[dict[str, str]]:
        """The saved conversation with ``model``, oldest first (none without a chats_dir)."""
        from llmctl.app.client import chat_history

        if self.chats_dir is None:
            return []
        return await asyncio.to_thread(chat_history.load, self.chats_dir, model)

    async def save_chat_history(self, model: str, messages: list[dict[str, str]]) -> None:
        from llmctl.app.client import chat_history

        if self.chats_dir is not None:
            await asyncio.to_thread(chat_history.save, self.chats_dir, model, messages)

    async def clear_chat_history(self, model: str) -> None:
        from llmctl.app.client import chat_history

        if self.chats_dir is not None:
            await asyncio.to_thread(chat_history.clear, self.chats_dir, model)


def _seg(name: str) -> str:
    """A model name as one URL path segment (``ollama/NAME:TAG`` has a slash)."""
    return quote(name, safe=":")


def _parts(delta: dict[str, Any]) -> list[str | Reasoning]:
    """The pieces of one streamed delta; a non-empty list is one generated token. ``reasoning_content`` is what
    llama.cpp, DeepSeek and SGLang send; vLLM and OpenRouter call it ``reasoning``. An empty string still counts
    as a token (llama.cpp sends a byte-fallback token that ends mid-UTF-8 as ""), except in the opening role
    announcement."""
    thought = delta.get("reasoning_content", delta.get("reasoning"))
    thought = thought if isinstance(thought, str) else None
    content = delta.get("content") if isinstance(delta.get("content"), str) else None
    parts: list[str | Reasoning] = []
    if thought:
        parts.append(Reasoning(thought))
    if content:
        parts.append(content)
    if not parts and "role" not in delta and (content is not None or thought is not None):
        parts.append(content if content is not None else Reasoning(""))
    return parts


def _lost(base_url: str, exc: httpx.TransportError) -> ControllerUnavailable:
    return ControllerUnavailable(f"lost the connection to the controller at {base_url}",
                                 f"{type(exc).__name__}: {exc or 'it may have restarted'}; try again.")


def _error_from(response: httpx.Response) -> ControllerError:
    try:
        err = response.json()["error"]
        message = err.get("message") or str(err)
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    return ControllerError(f"the controller refused ({response.status_code})", message, status=response.status_code)

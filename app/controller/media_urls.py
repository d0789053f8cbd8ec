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

# chat content parts that carry a URL an engine would open (vLLM's audio_url and video_url besides OpenAI's image)
_URL_PARTS = ("image_url", "audio_url", "video_url")
DATA_URL = "data:image/png;base64,..."


def inline_only(url: Any, param: str, how: str) -> None:
    """A 400 unless ``url`` is a ``data:`` URL; ``how`` says how this protocol sends the media inline."""
    if isinstance(url, str) and url[:5].lower() == "data:":
        return
    shown = f"'{url[:80]}'" if isinstance(url, str) else "no URL"
    raise ApiError(400, f"{param}: {shown} is not accepted: llmctl passes only inline media to its model servers "
                   f"(they would fetch a URL themselves, from this machine). Download it and send it inline: {how}",
                   code="invalid_image_url", param=param)


def check_chat_media(messages: list) -> None:
    """Every media part of chat ``messages`` (already checked to be objects) inline."""
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _URL_PARTS:
                value = part.get(kind)
                url = value.get("url") if isinstance(value, dict) else value  # {"url": ...}, or the URL as it is
                inline_only(url, f"messages[{i}].content[{j}].{kind}.url",
                            f"a base64 data: URL ({DATA_URL})")

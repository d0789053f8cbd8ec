"""What a request is charged against its key's ``tokens_per_minute`` when the engine gave no usage.

An answer that completes carries the engine's own counts. One that ends early (a client cutting its stream after
a few events, a departed client's cancelled request, an engine dying mid-answer) has none, yet the engine processed
its prompt: it is charged an estimate of the prompt (about 4 bytes of text per token, the usual figure for BPE
vocabularies, plus a few tokens of template per message) and the tokens streamed before the end. Cutting streams
is then no way around the limit (``test_a_cut_stream_is_charged_its_prompt``).
"""

from __future__ import annotations

import json
import math
from typing import Any

BYTES_PER_TOKEN = 4
PER_MESSAGE = 4  # role markers and separators a chat template adds


def _text_bytes(value: Any) -> tuple[int, int]:
    """(bytes of text, token ids) in a prompt, message content or input."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace")), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 0, 1
    if isinstance(value, list):
        size = ids = 0
        for item in value:
            s, i = _text_bytes(item)
            size, ids = size + s, ids + i
        return size, ids
    if isinstance(value, dict):  # a content part: {"type": "text", "text": ...}
        return _text_bytes(value.get("text")) if isinstance(value.get("text"), str) else (0, 0)
    return 0, 0


def prompt_estimate(body: dict) -> int:
    """An estimate of the prompt tokens a request's body makes."""
    size, ids, extra = 0, 0, 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                s, i = _text_bytes(m.get("content"))
                size, ids, extra = size + s, ids + i, extra + PER_MESSAGE
    for key in ("prompt", "input"):
        s, i = _text_bytes(body.get(key))
        size, ids = size + s, ids + i
    if body.get("tools"):
        size += len(json.dumps(body["tools"], ensure_ascii=False).encode())
    return math.ceil(size / BYTES_PER_TOKEN) + ids + extra


def charged(body: dict, sent: bool, prompt_tokens: int | None, completion_tokens: int | None,
            ) -> tuple[int | None, int | None]:
    """(prompt, completion) to charge: the engine's counts when it gave them; for a request it received without
    giving them, the prompt's estimate."""
    if sent and prompt_tokens is None:
        prompt_tokens = prompt_estimate(body)
    return prompt_tokens, completion_tokens

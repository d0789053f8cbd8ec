"""Several answers from one request: ``n`` choices, and a list of prompts on ``/v1/completions`` (each prompt
answered ``n`` times). Such a request counts as that many requests for queues, rate limits and usage, up to
``server.max_fanout``; only a model whose engine serves it (``MULTI``) gets one.

Many items in one request: ``/v1/embeddings``' ``input`` list and rerank's ``documents``. Each item is one forward
pass without decoding, far cheaper than an answer, and clients batch them (32 to 100 a request is usual), so they
count in batches of ``ITEM_BATCH`` (32: a request of 1-32 inputs is one request, 33-64 two...) against the same
cap: at the default ``server.max_fanout`` of 8, 256 inputs a request. A list of 10,000 strings is 313 requests and
refused, rather than one request that fills the engine's queue for minutes."""

from __future__ import annotations

import math

from llmctl.app.controller.errors import ApiError
from llmctl.runtimes.base import MULTI


def prompts(body: dict) -> int:
    """How many prompts a completions request holds: a string or one list of token ids is one; a list of strings
    or of token-id lists is one each."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not all(isinstance(p, int) for p in prompt):
        return len(prompt)
    return 1


ITEM_BATCH = 32


def items(path: str, body: dict) -> int:
    """How many inputs an embeddings request, or documents a rerank request, holds (0 on other routes)."""
    if path.endswith("/embeddings"):
        value = body.get("input")
        if isinstance(value, list) and value and not all(isinstance(p, int) for p in value):
            return len(value)
        return 1
    if path.endswith("/rerank"):
        docs = body.get("documents")
        return len(docs) if isinstance(docs, list) else 1
    return 0


def fanout(path: str, body: dict) -> int:
    """How many answers the request asks for (1 for most)."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return n * (prompts(body) if path.endswith("/completions") and not path.endswith("chat/completions") else 1)


def check_fanout(path: str, body: dict, cap: int) -> int:
    """The request's fan-out, or a 400 naming the cap when it asks for more than ``cap`` answers (or ``cap``
    batches of inputs)."""
    many_items = items(path, body)
    if many_items:
        count = math.ceil(many_items / ITEM_BATCH)
        if count > cap:
            param = "documents" if path.endswith("/rerank") else "input"
            raise ApiError(400, f"this request holds {many_items} {param}; at most {cap * ITEM_BATCH} are allowed per "
                           f"request ({cap} batches of {ITEM_BATCH}, server.max_fanout = {cap}): send the rest as "
                           "further requests, or raise server.max_fanout in config.toml", code="fanout_too_large",
                           param=param)
        return count
    count = fanout(path, body)
    if count > cap:
        many = prompts(body)
        what = f"{many} prompts × n {body.get('n') or 1}" if many > 1 else f"n {body.get('n')}"
        raise ApiError(400, f"this request asks for {count} answers ({what}); at most {cap} are allowed per request "
                       f"(server.max_fanout = {cap}): send the rest as further requests, or raise server.max_fanout "
                       "in config.toml", code="fanout_too_large", param="prompt" if many > 1 else "n")
    return count


def check_served(model: str, count: int, caps: frozenset[str], param: str) -> None:
    """A fan-out request to a model whose engine answers one prompt with one choice: 400 saying so."""
    if count > 1 and MULTI not in caps:
        raise ApiError(400, f"'{model}' answers one prompt with one choice per request (its engine does not serve n "
                       "> 1 or prompt lists); send them as separate requests", code="unsupported_capability",
                       param=param)

"""An exact-match cache of deterministic answers (``[server.response_cache]``, off by default).

Only a request whose answer cannot vary is cached: a non-streamed chat or text completion with ``temperature``
given as 0 and ``n`` absent or 1. The key is a SHA-256 of the model (its registered name and file, so a model
registered again with another file never gets the old answers), the key's name when answers are kept per key,
and the body as canonical JSON (sorted keys, ``model`` replaced by the resolved name so an alias shares its
model's answers, ``keep_alive`` left out: it changes when the model unloads, not the answer). Only 200 answers are
stored. Bounded by entries and bytes, least recently used first out; an optional TTL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

CACHEABLE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def cacheable(path: str, body: dict) -> bool:
    """Strict: the answer of this request does not vary from one call to the next."""
    temperature = body.get("temperature")
    return (
        path in CACHEABLE_PATHS
        and not body.get("stream")
        and isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
        and body.get("n", 1) in (1, None)
    )


def cache_key(path: str, model: str, model_file: str, partition: str | None, body: dict) -> str:
    canonical = {k: v for k, v in body.items() if k != "keep_alive"} | {"model": model}
    text = json.dumps([path, model, model_file, partition, canonical], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class CachedAnswer:
    body: bytes
    content_type: str
    usage: dict | None
    stored_at: float

    @property
    def size(self) -> int:
        return len(self.body) + 64  # the key and the record's own bookkeeping, roughly


class ResponseCache:
    def __init__(self, entries: int, max_bytes: int, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, CachedAnswer] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> CachedAnswer | None:
        answer = self._items.get(key)
        if answer is not None and self.ttl is not None and self.clock() - answer.stored_at > self.ttl:
            self._drop(key)
            answer = None
        if answer is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return answer

    def put(self, key: str, body: bytes, content_type: str, usage: dict | None) -> bool:
        """Keep an answer; False when it alone is larger than the cache."""
        answer = CachedAnswer(body, content_type, usage, self.clock())
        if answer.size > self.max_bytes:
            return False
        if key in self._items:
            self._drop(key)
        self._items[key] = answer
        self.bytes += answer.size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))
            self.evictions += 1
        return True

    def _drop(self, key: str) -> None:
        self.bytes -= self._items.pop(key).size

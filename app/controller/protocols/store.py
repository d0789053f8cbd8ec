"""Stored Responses (``store``, ``previous_response_id``, ``GET``/``DELETE /v1/responses/{id}``), kept by llmctl.

In memory, bounded by count and by bytes (least recently used first out), and partitioned by API key: a response is
found only under the key that made it (a key that knows another key's response id still gets 404). Without keys
configured there is one partition. Nothing is written to disk: a controller restart forgets them, as a client that
sends ``previous_response_id`` to a fresh server learns from its 404.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict  # the Response object, as GET returns it
    conversation: list[dict]  # the chat messages up to and including its answer (no system message)
    size: int


class ResponseStore:
    def __init__(self, max_entries: int = 512, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple[str, str], Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, partition: str | None, response: dict, conversation: list[dict]) -> bool:
        """Keep a response; False when it alone is larger than the whole store (it is then not kept)."""
        size = len(json.dumps(response)) + len(json.dumps(conversation))
        if size > self.max_bytes:
            return False
        key = (partition or "", str(response["id"]))
        self.delete(partition, key[1])
        self._items[key] = Stored(response, conversation, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _key, old = self._items.popitem(last=False)
            self.bytes -= old.size
        return True

    def get(self, partition: str | None, response_id: str) -> Stored | None:
        key = (partition or "", response_id)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def delete(self, partition: str | None, response_id: str) -> bool:
        old = self._items.pop((partition or "", response_id), None)
        if old is None:
            return False
        self.bytes -= old.size
        return True

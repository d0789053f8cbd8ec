"""Stored Responses (``store``, ``previous_response_id``, ``GET``/``DELETE /v1/responses/{id}``), kept by llmctl.

In memory, bounded by count and by bytes, and partitioned by API key: a response is found only under the key that
made it (a key that knows another key's response id still gets 404). Without keys configured there is one partition.
Nothing is written to disk: a controller restart forgets them, as a client that sends ``previous_response_id`` to a
fresh server learns from its 404.

Why each key has a share of the bounds: with one least-recently-used order for all keys, a key that stores many
responses pushes every other key's out. The share is the bound divided by the keys that hold responses now (so one
key alone may use the whole store, and a key that arrives later can claim its part). When a bound is passed, a key
over its share loses its own least recently used response; a key within its share takes the room from the key that
holds the most (which is then over its share: the partitions together are past the bound). A key within its share
never loses a response to another key: a response that would need such room (one larger than its key's share of a
full store) is not kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from operator import attrgetter


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict  # the Response object, as GET returns it
    conversation: list[dict]  # the chat messages up to and including its answer (no system message)
    size: int


@dataclass(slots=True)
class _Partition:
    items: OrderedDict[str, Stored] = field(default_factory=OrderedDict)  # least recently used first
    bytes: int = 0

    def __len__(self) -> int:
        return len(self.items)


class ResponseStore:
    def __init__(self, max_entries: int = 512, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._count = 0
        self._parts: dict[str, _Partition] = {}

    def __len__(self) -> int:
        return self._count

    def put(self, partition: str | None, response: dict, conversation: list[dict]) -> bool:
        """Keep a response; False when it is not kept: it alone is larger than the whole store, or larger than its
        key's share while the other keys' responses fill the rest (the room would have to come from keys within
        their shares). A response that is not kept takes no room from anyone."""
        size = len(json.dumps(response)) + len(json.dumps(conversation))
        name, response_id = partition or "", str(response["id"])
        others = [p for n, p in self._parts.items() if n != name]
        for mine, used, bound in ((1, sum(map(len, others)), self.max_entries),
                                  (size, sum(p.bytes for p in others), self.max_bytes)):
            if mine > bound / (len(others) + 1) and used + mine > bound:
                return False
        self.delete(partition, response_id)
        part = self._parts.setdefault(name, _Partition())
        part.items[response_id] = Stored(response, conversation, size)
        part.bytes += size
        self._count += 1
        self.bytes += size
        for use, bound in ((len, self.max_entries), (attrgetter("bytes"), self.max_bytes)):
            while use(self) > bound:
                self._evict(self._victim(name, use, bound))
        return True

    def _victim(self, name: str, use, bound: int) -> str:
        """Whose least recently used response goes: the putter's own while it is over its share of ``bound`` (it
        has an older one: ``put`` refused a response that alone is over its share); else that of the key that
        holds the most (over its share: the keys together are past the bound, the putter within its share)."""
        mine = self._parts[name]
        if use(mine) > bound / len(self._parts):
            return name
        return max((n for n in self._parts if n != name), key=lambda n: use(self._parts[n]))

    def _evict(self, name: str) -> None:
        part = self._parts[name]
        _id, old = part.items.popitem(last=False)
        self._drop(name, part, old)

    def _drop(self, name: str, part: _Partition, old: Stored) -> None:
        part.bytes -= old.size
        self._count -= 1
        self.bytes -= old.size
        if not part.items:
            del self._parts[name]

    def get(self, partition: str | None, response_id: str) -> Stored | None:
        part = self._parts.get(partition or "")
        found = part.items.get(response_id) if part is not None else None
        if found is not None:
            part.items.move_to_end(response_id)  # type: ignore[union-attr]
        return found

    def delete(self, partition: str | None, response_id: str) -> bool:
        name = partition or ""
        part = self._parts.get(name)
        old = part.items.pop(response_id, None) if part is not None else None
        if old is None:
            return False
        self._drop(name, part, old)  # type: ignore[arg-type]
        return True

"""The memory ledger: what every loaded or loading deployment holds on each device, and whether one more fits.

Devices are named ``ram`` and ``gpu0``, ``gpu1``, ... (on unified memory ``unified``, the pool, and ``gpu0``, the
GPU's limit within it: see ``device_bytes``). A deployment reserves its estimate before launch; once it
is ready its measured use (process RSS for ``ram``) corrects the figure. Placement counts the larger of the two:
llama.cpp's KV cache and compute buffers are not resident until used, so a fresh process measures below what it
will hold under load, and the estimate (checked against llama.cpp in tests/integration/test_fit_accuracy.py) is
what it grows to. A model is placed when it fits beside what is there, keeping ``margin`` free per device (as
llama.cpp's own ``--fit`` keeps 1 GiB); otherwise idle deployments are chosen as victims, least recently used
first. Pinned, loading and busy deployments are never victims.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from llmctl.runtimes.base import Footprint, RuntimeFailure

GiB = 1 << 30
UNIFIED = "unified"  # the one device of a unified-memory machine (Apple Silicon): RAM and GPU memory as one pool


def device_bytes(host: int, gpu: int, *, unified: bool) -> dict[str, int]:
    """A deployment's bytes per device, from its host-memory and first-GPU parts. On a discrete GPU: ``ram`` and
    ``gpu0``. On unified memory the pool ``unified`` holds both parts, once; ``gpu0`` is the GPU's part of that
    same pool, checked against the GPU's working-set limit — a limit within the pool, never more memory."""
    if unified:
        return {UNIFIED: host + gpu, **({"gpu0": gpu} if gpu else {})}
    return {"ram": host, **({"gpu0": gpu} if gpu else {})}


def holding_now(holders: Iterable[Holder]) -> dict[str, int]:
    """What ``holders`` occupy of each device right now: measured where measured (RAM), else their reservation
    (a GPU's use is not measured here). Added to what the device reports free, it gives what models may use."""
    ours: dict[str, int] = {}
    for h in holders:
        for dev in {*h.footprint.reserved, *h.footprint.measured}:
            ours[dev] = ours.get(dev, 0) + h.footprint.measured.get(dev, h.footprint.reserved.get(dev, 0))
    return ours


class DoesNotFit(RuntimeFailure):
    """A deployment needs more memory than a device has, even with nothing else loaded; or than is free while
    the other deployments are busy (``busy`` names them)."""

    def __init__(self, title: str, message: str, busy: tuple[str, ...] = ()) -> None:
        super().__init__(title, message)
        self.busy = busy


class Holder(Protocol):
    """What the ledger needs to know of a deployment."""

    name: str
    footprint: Footprint
    in_flight: int
    last_used: float
    pinned: bool


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB // 10 else f"{n / (1 << 20):.0f} MiB"


def place(need: Mapping[str, int], capacity: Mapping[str, int], holders: Iterable[Holder], *, margin: int,
          name: str, evictable: set[str] | None = None) -> list[Holder]:
    """The victims to stop so that ``need`` fits beside ``holders`` within ``capacity`` less ``margin`` per
    device, least recently used first; raises DoesNotFit when no choice of idle victims makes room.
    ``evictable`` (names) narrows who may be chosen; by default every idle, unpinned holder."""
    holders = list(holders)
    used: dict[str, int] = {}
    for h in holders:
        for dev, n in h.footprint.held().items():
            used[dev] = used.get(dev, 0) + n

    def over() -> dict[str, int]:
        return {dev: used.get(dev, 0) + n - (capacity.get(dev, 0) - margin) for dev, n in need.items()
                if n > 0 and used.get(dev, 0) + n > capacity.get(dev, 0) - margin}

    for dev, n in need.items():
        room = capacity.get(dev, 0) - margin
        if n > 0 and n > room:
            raise DoesNotFit(
                f"{name} needs {_gib(n)} of {dev.upper() if dev == 'ram' else dev} but only {_gib(max(room, 0))} "
                f"can be given to models",
                f"{_gib(capacity.get(dev, 0))} on the device less a {_gib(margin)} margin. `llmctl fit {name}` shows "
                "the breakdown: a smaller quant, a shorter context (ctx-size), fewer slots (parallel) or a quantized "
                "KV cache (cache-type-k = q8_0) makes it smaller.")
    victims: list[Holder] = []
    candidates = sorted((h for h in holders if h.in_flight == 0 and not h.pinned
                         and (evictable is None or h.name in evictable)), key=lambda h: h.last_used)
    while over() and candidates:
        victim = candidates.pop(0)
        if not any(victim.footprint.held().get(dev, 0) for dev in over()):
            continue  # stopping it frees nothing where room is short
        victims.append(victim)
        for dev, n in victim.footprint.held().items():
            used[dev] -= n
    short = over()
    if short:
        busy = tuple(h.name for h in holders if h not in victims and (h.in_flight or h.pinned))
        dev, n = next(iter(short.items()))
        raise DoesNotFit(
            f"{name} does not fit beside the models in use: {_gib(n)} of {dev} short",
            f"{', '.join(busy) or 'other models'} are serving requests or pinned; retry when they are idle, or stop "
            "one (`llmctl stop MODEL`).", busy=busy)
    return victims

"""The memory watch on a loading engine: one that grows past its reservation is stopped, with the reason.

The ledger places a model by its estimate; an engine that keeps growing while it loads (a chat template that loops,
which llama.cpp renders at load with no bound, or a hostile file) would take the machine long before its load
timeout. The limit is the estimate's RAM plus the larger of ``slack`` and the estimate itself (twice the estimate
for large models), so an estimate that is merely low never trips it.
"""

from __future__ import annotations

from collections.abc import Mapping

import psutil

from llmctl.runtimes.ledger import UNIFIED


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def tree_rss(pid: int) -> int | None:
    """Resident memory of a process and its children, or None when it is gone."""
    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)
                                            if c.is_running())
    except psutil.Error:
        return None


def load_limit(reserved: Mapping[str, int], slack: int | None) -> int | None:
    """The most RAM a loading engine may hold; None when there is no reservation to hold it to (or no watch)."""
    ram = reserved.get("ram") or reserved.get(UNIFIED)
    if not ram or slack is None:
        return None
    return ram + max(slack, ram)


def runaway(pid: int, reserved: Mapping[str, int], slack: int | None) -> str | None:
    """Why a loading engine must be stopped, or None while it stays within its limit."""
    limit = load_limit(reserved, slack)
    if limit is None:
        return None
    rss = tree_rss(pid)
    if rss is None or rss <= limit:
        return None
    ram = reserved.get("ram") or reserved.get(UNIFIED) or 0
    return (f"it grew to {_size(rss)} of RAM while loading, past its reservation of {_size(ram)} (limit "
            f"{_size(limit)}), and was stopped: a chat template that loops or a hostile model file does this")

"""The memory watch on a loading engine: one that grows past its reservation is stopped, with the reason.

The ledger places a model by its estimate (weights included); the watch counts the engine's anonymous memory (its
heap, not its mapped model file); an engine that keeps growing while it loads (a chat template that loops,
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


def _anon(proc: psutil.Process) -> int:
    """A process's anonymous resident memory (Linux ``RssAnon``): what a runaway grows. Its mapped model file is
    left out: while weights stream to a GPU their file pages count in RSS though no RAM was reserved for them."""
    try:
        with open(f"/proc/{proc.pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return proc.memory_info().rss  # elsewhere: all of it


def tree_rss(pid: int) -> int | None:
    """Anonymous resident memory of a process and its children, or None when it is gone."""
    try:
        proc = psutil.Process(pid)
        return _anon(proc) + sum(_anon(c) for c in proc.children(recursive=True) if c.is_running())
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
    return (f"it grew to {_size(rss)} of RAM (anonymous) while loading, past its reservation of {_size(ram)} (limit "
            f"{_size(limit)}), and was stopped: a chat template that loops or a hostile model file does this")

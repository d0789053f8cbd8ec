"""Human-readable sizes and durations, shared by the CLI and the TUI."""

from __future__ import annotations


def size(n: float | None) -> str:
    """Bytes as B / KiB / MiB / GiB / TiB with one decimal."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def listens_on(backend: dict) -> str:
    """Where a backend listens, as ``ps`` shows it: its port, or ``unix:PATH`` for one on a Unix socket."""
    if backend.get("socket"):
        return f"unix:{backend['socket']}"
    return "-" if backend.get("port") is None else str(backend["port"])


def duration(seconds: float | None) -> str:
    """Seconds as 3m05s or 2h07m."""
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

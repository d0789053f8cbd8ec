"""Small text helpers shared by the screens."""

from __future__ import annotations

FIT_STYLE = {"yes": "green", "tight": "yellow", "no": "red"}


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def badge(fits: str | None) -> str:
    """Rich markup for a fit verdict."""
    if not fits:
        return "[dim]?[/]"
    return f"[{FIT_STYLE.get(fits, 'white')}]{fits}[/]"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def breakdown(est: dict) -> str:
    """The memory breakdown of a fit estimate, as lines of markup."""
    rows = [("weights", "weights_bytes"), ("repacked (CPU)", "repack_bytes"), ("KV cache", "kv_cache_bytes"),
            ("compute", "compute_bytes"), ("output", "output_bytes"), ("overhead", "overhead_bytes"),
            ("total", "total_bytes")]
    lines = [f"{label:<15}{size(est.get(key)):>10}" for label, key in rows]
    lines.append(f"{'on GPU':<15}{size(est.get('gpu_bytes')):>10}  ({est.get('gpu_layers', 0)} layers)")
    lines.append(f"{'on CPU':<15}{size(est.get('cpu_bytes')):>10}")
    lines.append("")
    lines.append(f"fits: {badge(est.get('fits'))} - {est.get('reason', '')}")
    lines.extend(f"[dim]{note}[/]" for note in est.get("notes", []))
    return "\n".join(lines)

"""Small text helpers shared by the screens."""

from __future__ import annotations

from llmctl.app.format import duration, size

__all__ = ["badge", "breakdown", "duration", "size"]

FIT_STYLE = {"yes": "green", "tight": "yellow", "no": "red"}


def badge(fits: str | None) -> str:
    """Rich markup for a fit verdict."""
    if not fits:
        return "[dim]?[/]"
    return f"[{FIT_STYLE.get(fits, 'white')}]{fits}[/]"


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

"""Small text helpers shared by the screens.

Text that is not the UI's own (model names, paths, GGUF metadata, hardware names, log lines, replies, the
controller's messages) must never be parsed as markup: ``[/INST]`` would crash the app and ``[@click=app.quit]``
would become a live action. So screens build ``Content`` from markup templates whose ``$variables`` are inserted as
plain text (``Content.from_markup("[b]$name[/]", name=name)``), table cells as ``rich.text.Text``, and notify with
``markup=False``.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

from llmctl.app.format import duration, listens_on, size

__all__ = ["badge", "badge_cell", "breakdown", "cell", "duration", "listens_on", "plain", "size"]

FIT_STYLE = {"yes": "green", "tight": "yellow", "no": "red"}


def plain(text: object) -> Content:
    """Any text, shown exactly as it is."""
    return Content(str(text))


def cell(value: object, style: str = "") -> Text:
    """A DataTable cell shown exactly as it is (a str cell would be parsed as markup)."""
    return Text(str(value), style=style, end="")


def badge(fits: str | None) -> Content:
    """A fit verdict, coloured."""
    if not fits:
        return Content.styled("?", "dim")
    return Content.styled(fits, FIT_STYLE.get(fits, ""))


def badge_cell(fits: str | None) -> Text:
    return cell(fits or "?", FIT_STYLE.get(fits or "", "dim"))


def breakdown(est: dict) -> Content:
    """The memory breakdown of a fit estimate."""
    rows = [("weights", "weights_bytes"), ("repacked (CPU)", "repack_bytes"), ("KV cache", "kv_cache_bytes"),
            ("compute", "compute_bytes"), ("output", "output_bytes"), ("overhead", "overhead_bytes"),
            ("total", "total_bytes")]
    lines = [Content(f"{label:<15}{size(est.get(key)):>10}") for label, key in rows]
    lines.append(Content(f"{'on GPU':<15}{size(est.get('gpu_bytes')):>10}  ({est.get('gpu_layers', 0)} layers)"))
    lines.append(Content(f"{'on CPU':<15}{size(est.get('cpu_bytes')):>10}"))
    lines.append(Content(""))
    lines.append(Content.assemble("fits: ", badge(est.get("fits")), " - ", str(est.get("reason", ""))))
    lines.extend(Content.styled(str(note), "dim") for note in est.get("notes", []))
    return Content("\n").join(lines)

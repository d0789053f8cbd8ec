"""CLI tables that fit the terminal: columns are chosen by width, a verdict is never cut.

Every column is whole or absent. A column may be ``drop``-ped when the terminal is too narrow (higher numbers go
first), ``shrink`` (long names and paths: wrapped, counted at ``min_width`` when choosing), or neither (verdicts,
quants, sizes: always shown in full, ``no_wrap``). Rich shrinks columns evenly as a last resort, cutting words
("tig…"), so the columns kept are chosen here, before Rich sees the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmctl.catalog.text import printable

GAP = 2  # Table(box=None, pad_edge=False): one space each side of a column, none at the edges


@dataclass(frozen=True, slots=True)
class Col:
    header: str
    drop: int = 0  # 0: always shown; otherwise dropped when the terminal is too narrow, highest first
    shrink: bool = False  # may wrap (names, paths, lists); counted at min_width when choosing columns
    min_width: int = 12  # a shrink column counts as min(its widest cell, this) when columns are chosen
    justify: Literal["left", "right"] = "left"


def choose_columns(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Indices of the columns to show in ``width`` characters: drop the most droppable ones until the rest fit."""
    from rich.cells import cell_len

    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    need = [min(n, c.min_width) if c.shrink else n for n, c in zip(natural, cols, strict=True)]
    kept = list(range(len(cols)))
    for i in sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: -cols[i].drop):
        if sum(need[k] for k in kept) + GAP * (len(kept) - 1) <= width:
            break
        kept.remove(i)
    return kept


def print_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], *, title: str | None = None,
                console=None) -> list[str]:
    """Print ``rows`` with the columns that fit the console's width; returns the headers shown."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    kept = choose_columns(cols, rows, console.width)
    table = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    for i in kept:
        c = cols[i]
        table.add_column(c.header, no_wrap=not c.shrink, justify=c.justify,
                         overflow="fold" if c.shrink else "ellipsis")
    for r in rows:
        # Text: a model name is never read as markup; printable: nor an escape sequence obeyed
        table.add_row(*(Text(printable(r[i])) for i in kept))
    console.print(table)
    return [cols[i].header for i in kept]

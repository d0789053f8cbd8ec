"""How `llmctl bench` looks in a terminal: live progress (on stderr, so --json stays clean) and tables that choose
their columns by the terminal's width, most telling first, so 80 columns stay readable."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmctl.app.bench.results import level_label
from llmctl.app.format import size


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


@dataclass(frozen=True, slots=True)
class Col:
    header: str
    rank: int  # lower = kept first when the terminal is narrow
    cell: Callable[[dict], str | Text]
    justify: str = "right"


def _plain(v: str | Text) -> str:
    return v.plain if isinstance(v, Text) else v


def fit_columns(cols: list[Col], rows: list[dict], width: int) -> tuple[list[Col], int]:
    """The columns whose cells fit ``width`` whole (measured on ``rows``; 2 spaces between columns), taken by
    rank and shown in their given order; and how many were left out. The first-ranked column always shows."""
    need = {c.header: max([len(c.header), *(len(_plain(c.cell(r))) for r in rows)]) for c in cols}
    kept: set[str] = set()
    used = -2
    for col in sorted(cols, key=lambda c: c.rank):
        if used + need[col.header] + 2 <= width or not kept:
            kept.add(col.header)
            used += need[col.header] + 2
    return [c for c in cols if c.header in kept], len(cols) - len(kept)


def _table(cols: list[Col], rows: list[dict], width: int) -> tuple[Table, int]:
    shown, dropped = fit_columns(cols, rows, width)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
    for c in shown:
        table.add_column(c.header, justify=c.justify, no_wrap=True)
    for row in rows:
        table.add_row(*(c.cell(row) for c in shown))
    return table, dropped


def _ok_fail(lv: dict) -> Text:
    t = Text(f"{lv['completed']}/")
    t.append(str(lv["failed"]), style="red" if lv["failed"] else "")
    return t


LEVEL_COLS = [
    Col("load", 0, lambda lv: level_label(lv), "left"),
    Col("ok/fail", 1, _ok_fail),
    Col("out tok/s", 2, lambda lv: _num(lv["output_throughput"])),
    Col("tok/s/stream", 3, lambda lv: _num(lv.get("output_throughput_per_stream"))),
    Col("TTFT p50", 4, lambda lv: _ms(lv["p50_ttft_ms"])),
    Col("TPOT p50", 5, lambda lv: _ms(lv["p50_tpot_ms"])),
    Col("E2EL p50", 6, lambda lv: _ms(lv["p50_e2el_ms"])),
    Col("TTFT p99", 7, lambda lv: _ms(lv["p99_ttft_ms"])),
    Col("ITL p50", 8, lambda lv: _ms(lv["p50_itl_ms"])),
    Col("req/s", 9, lambda lv: _num(lv["request_throughput"], 2)),
    Col("goodput", 10, lambda lv: _num(lv.get("request_goodput"), 2)),
    Col("E2EL p99", 11, lambda lv: _ms(lv["p99_e2el_ms"])),
    Col("ITL p99", 12, lambda lv: _ms(lv["p99_itl_ms"])),
    Col("TTFT p90", 13, lambda lv: _ms(lv["p90_ttft_ms"])),
    Col("E2EL p90", 14, lambda lv: _ms(lv["p90_e2el_ms"])),
    Col("TPOT p99", 15, lambda lv: _ms(lv["p99_tpot_ms"])),
    Col("ITL p90", 16, lambda lv: _ms(lv["p90_itl_ms"])),
    Col("TTFT mean", 17, lambda lv: _ms(lv["mean_ttft_ms"])),
    Col("TTFT std", 18, lambda lv: _ms(lv["std_ttft_ms"])),
]


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _best(run: dict) -> str:
    values = [lv.get("output_throughput") for lv in run.get("levels", []) if lv.get("output_throughput")]
    if values:
        return _num(max(values))
    tg = [e for e in run.get("llama_bench", []) if e["test"].startswith("tg")]
    return f"{_num(tg[0]['avg_ts'])} tg" if tg else "-"


def _loads(run: dict) -> str:
    labels = [level_label(lv) for lv in run.get("levels", [])]
    if labels and all(lab.startswith("c=") for lab in labels):
        return "c=" + ",".join(lab[2:] for lab in labels)
    return ",".join(labels) or " ".join(e["test"] for e in run.get("llama_bench", []))


HISTORY_COLS = [
    Col("#", 0, lambda r: str(r["_n"])),
    Col("ID", 6, lambda r: Text(r["id"]), "left"),
    Col("DATE", 1, lambda r: _when(r.get("created_at")), "left"),
    Col("MODEL", 2, lambda r: Text(str(r["target"].get("model"))), "left"),
    Col("QUANT", 5, lambda r: str(r["target"].get("quant") or "-"), "left"),
    Col("ENGINE", 7, lambda r: Text(str(r["target"].get("engine") or "-")), "left"),
    Col("LOAD", 4, _loads, "left"),
    Col("BEST TOK/S", 3, _best),
]

COMPARE_COLS = [
    Col("LEVEL", 0, lambda d: d["level"], "left"),
    Col("METRIC", 1, lambda d: d["label"], "left"),
    Col("A", 3, lambda d: _fmt_metric(d["metric"], d["a"])),
    Col("B", 4, lambda d: _fmt_metric(d["metric"], d["b"])),
    Col("CHANGE", 6, lambda d: _fmt_metric(d["metric"], d["change"], signed=True)),
    Col("%", 5, lambda d: "-" if d["percent"] is None else f"{d['percent']:+.1f}%"),
    Col("", 2, lambda d: Text(d["verdict"], style={"better": "green", "worse": "red"}.get(d["verdict"], "dim")),
        "left"),
]


def _fmt_metric(metric: str, v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    sign = "+" if signed and v > 0 else ""
    if metric == "failed":
        return f"{sign}{v:.0f}"
    if metric.endswith("_ms"):
        return sign + _ms(v)
    return f"{sign}{v:.2f}" if abs(v) < 10 else f"{sign}{v:.1f}"


class Display:
    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console()
        self.err = Console(stderr=True)
        self.quiet = quiet

    @contextlib.contextmanager
    def progress(self) -> Iterator[Callable[[Any], None]]:
        """A live bar per level on stderr; yields the runner's ``on_event``."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from llmctl.app.bench.events import Calibrated, LevelFinished, LevelStarted, Note, RequestFinished

        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=self.err,
                            disable=not self.err.is_terminal)
        tasks: dict[str, Any] = {}
        failed: dict[str, int] = {}

        def on_event(event: Any) -> None:
            if isinstance(event, LevelStarted):
                tasks[event.label] = progress.add_task(f"{event.label:<10}", total=event.total)
            elif isinstance(event, RequestFinished):
                if not event.ok:
                    failed[event.label] = failed.get(event.label, 0) + 1
                bad = failed.get(event.label)
                desc = f"{event.label:<10}" + (f" [red]{bad} failed[/]" if bad else "")
                progress.update(tasks[event.label], completed=event.done, description=desc)
            elif isinstance(event, LevelFinished):
                lv = event.result
                if not self.err.is_terminal and not self.quiet:
                    self.err.print(Text(f"{event.label}: {lv['completed']} ok, {lv['failed']} failed, "
                                        f"{lv['output_throughput']:.1f} output tok/s"))
            elif isinstance(event, Calibrated | Note):
                progress.console.print(Text(("prompt length: " if isinstance(event, Calibrated) else "note: ")
                                            + (event.detail if isinstance(event, Calibrated) else event.text),
                                            style="dim"))

        with progress:
            if self.err.is_terminal:
                progress.console.print(Text("calibrating the prompt length and loading the model…", style="dim"))
            yield on_event

    def _header(self, run: dict) -> None:
        t, s, m = run["target"], run["settings"], run["machine"]
        engine = t.get("engine") or "?"
        if t.get("parallel"):
            engine += f", {t['parallel']} slots x {t.get('ctx_size')} ctx"
        self.console.print(Text(f"{t['model']} ({t.get('quant') or 'quant ?'}) on {engine} via {t['url']}",
                                style="bold"))
        gpus = ", ".join(g["name"] for g in m.get("gpus") or []) or "no GPU"
        self.console.print(Text(f"machine ({m.get('role')}): {m.get('cpu')}, {m.get('physical_cores')} cores, "
                                f"{size(m.get('ram_total'))} RAM, {gpus}"))
        self.console.print(Text(f"prompt {s['prompt_tokens']} tokens ({s['prompt_calibration'].split(':')[0]}), "
                                f"max_tokens {s['max_tokens']}, ignore_eos {str(s['ignore_eos']).lower()}, "
                                f"temperature 0", style="dim"))

    def report(self, run: dict) -> None:
        self._header(run)
        if run.get("llama_bench"):
            self.llama_bench(run)
        levels = run.get("levels") or []
        if levels:
            cols = [c for c in LEVEL_COLS if c.header != "goodput" or run["settings"].get("goodput")]
            table, dropped = _table(cols, levels, self.console.width)
            self.console.print(table)
            note = "times in ms; tok/s/stream = 1 / TPOT, one stream's own speed"
            if dropped:
                note += f"; {dropped} more columns on a wider terminal or with --json"
            self.console.print(Text(note, style="dim"))
            for lv in levels:
                for err, n in (lv.get("errors") or {}).items():
                    self.console.print(Text(f"{level_label(lv)}: {n} failed: {err}", style="red"))
        if run.get("saved_to"):
            self.console.print(Text(f"saved as {run['id']} ({run['saved_to']})"))

    def llama_bench(self, run: dict) -> None:
        t = run["target"]
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col, justify in (("model", "left"), ("quant", "left"), ("engine", "left"), ("test", "right"),
                             ("t/s", "right")):
            table.add_column(col, justify=justify, no_wrap=col != "model")
        for e in run["llama_bench"]:
            table.add_row(Text(str(t["model"])), str(t.get("quant") or "-"), Text(str(t.get("engine") or "-")),
                          e["test"], f"{e['avg_ts']:.2f} ± {e['stddev_ts']:.2f}")
        self.console.print(table)
        self.console.print(Text(f"over {run['settings'].get('repetitions')} runs, measured through the server "
                                "(HTTP + scheduling included), not by llama-bench", style="dim"))

    def history(self, runs: list[dict]) -> None:
        rows = [{**r, "_n": i} for i, r in enumerate(runs, 1)]
        table, dropped = _table(HISTORY_COLS, rows, self.console.width)
        self.console.print(table)
        if dropped:
            self.console.print(Text("(ids: llmctl bench history --json; compare takes # numbers too)", style="dim"))

    def compare(self, a: dict, b: dict, deltas: list, changes: list[tuple[str, Any, Any]]) -> None:
        for tag, r in (("A", a), ("B", b)):
            t = r["target"]
            self.console.print(Text(f"{tag}: {r['id']} ({t.get('quant') or '?'} on {t.get('engine') or '?'})"))
        for key, va, vb in changes:
            self.console.print(Text(f"  changed {key}: {va} -> {vb}", style="dim"))
        table, _ = _table(COMPARE_COLS, [d.to_json() for d in deltas], self.console.width)
        self.console.print(table)

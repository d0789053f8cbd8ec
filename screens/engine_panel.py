"""The Monitor's engine panel: each loaded model's load as its engine reports it (requests running and waiting, KV
cache in use, prefix-cache hits, preemptions), and plots over time of the selected model's requests and KV cache.

It renders what ``client.engine_metrics()`` answered (the screen's worker fetches it and calls ``show``); the names
are llmctl's own, whatever the engine. A model whose engine reports nothing (Ollama, llama-cpp-python) says so, and
a figure one engine does not report (llama.cpp never preempts) is "n/a": never a zero that was not measured.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label
from textual_plotext import PlotextPlot

from llmctl.app.client.wire import EngineFigures, EngineMetrics
from llmctl.screens.format import cell, plain, size
from llmctl.screens.series import WINDOW, Series

SHOWN = ("ready", "starting", "restarting", "stopping")  # loaded, or on its way in or out
COLUMNS = ("MODEL", "MEMORY", "RUNNING", "WAITING", "KV CACHE", "PREFIX HITS", "PREEMPTIONS")  # engine: below
NA = "n/a"
NO_METRICS = "engine reports no metrics"


def count(value: float | None) -> str:
    return NA if value is None else f"{value:.0f}"


def percent(ratio: float | None) -> str:
    return NA if ratio is None else f"{100 * ratio:.0f}%"


def prefix_hits(f: EngineFigures) -> str:
    """The share of prompt tokens served from the prefix cache since the engine started; "-" before any lookup."""
    if f["prefix_cache_hit_rate"] is None:
        return NA if f["prefix_cache_queries"] is None else "-"
    return percent(f["prefix_cache_hit_rate"])


def detail(m: EngineMetrics) -> str:
    """A line or two on the selected model, under the table."""
    f = m["figures"]
    if f is None:
        return f"{m['model']} on {m['engine']}: {m['note'] or NO_METRICS}"
    tokens = f"{count(f['tokens_prompt'])} prompt tokens ({prefix_hits(f)} from the prefix cache), " \
             f"{count(f['tokens_generated'])} generated since it started"
    missing = "; n/a: this engine does not report it" if any(v is None for v in f.values()) else ""
    return f"{m['model']} on {m['engine']}: {tokens}{missing}"


class EnginePanel(Vertical):
    """A table of the loaded models' engine figures; the highlighted row's history is plotted below it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.models: dict[str, EngineMetrics] = {}
        self.history: dict[str, dict[str, Series]] = {}  # model -> running / waiting / kv (%)
        self.selected: str | None = None
        self.now = 0.0
        self.answered = False  # until the first answer, the detail line says it waits for one

    def compose(self) -> ComposeResult:
        yield DataTable(id="engine-table", cursor_type="row", zebra_stripes=True)
        yield Label("waiting for the engines' first answer...", id="engine-detail")
        with Horizontal(id="engine-plots"):
            yield PlotextPlot(id="plot-engine-requests", classes="plot")
            yield PlotextPlot(id="plot-engine-kv", classes="plot")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self._draw()

    def show(self, now: float, models: list[EngineMetrics]) -> None:
        """One answer of the controller, at ``now`` (seconds on the screen's clock)."""
        shown = [m for m in models if m["state"] in SHOWN]
        self.models = {m["model"]: m for m in shown}
        self.now = now
        self.answered = True
        for name in [n for n in self.history if n not in self.models]:
            del self.history[name]  # unloaded: its history goes with it
        for m in shown:
            h = self.history.setdefault(m["model"], {"running": Series(), "waiting": Series(), "kv": Series()})
            f = m["figures"]
            if f is not None:
                h["running"].add(now, f["requests_running"])
                h["waiting"].add(now, f["requests_waiting"])
                h["kv"].add(now, None if f["kv_cache_usage"] is None else 100 * f["kv_cache_usage"])
        if self.selected not in self.models:
            self.selected = next(iter(self.models), None)
        self._fill_table(shown)
        self._draw()

    def unsupported(self) -> None:
        """The controller has no engine-metrics route: an older llmctl is still running."""
        self.query_one("#engine-detail", Label).update(plain(
            "this controller does not report engine metrics: it is an older llmctl, still running; "
            "`llmctl shutdown` stops it and the next `llmctl` starts this version's"))

    def _fill_table(self, shown: list[EngineMetrics]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for m in shown:
            f = m["figures"]
            if f is None:
                figures = [cell(m["note"] or NO_METRICS, "dim"), "", "", "", ""]
            else:
                figures = [cell(count(f["requests_running"])), cell(count(f["requests_waiting"])),
                           cell(percent(f["kv_cache_usage"])), cell(prefix_hits(f)), cell(count(f["preemptions"]))]
            table.add_row(cell(m["model"]), cell(size(m["memory_bytes"])), *figures, key=m["model"])
        if not shown:
            table.add_row(cell("no model loaded", "dim"), *[""] * (len(COLUMNS) - 1))
        elif self.selected is not None:
            table.move_cursor(row=list(self.models).index(self.selected))

    @on(DataTable.RowHighlighted, "#engine-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value in self.models and event.row_key.value != self.selected:
            self.selected = event.row_key.value
            self._draw()

    def _draw(self) -> None:
        m = self.models.get(self.selected) if self.selected else None
        if self.answered:
            self.query_one("#engine-detail", Label).update(plain(detail(m) if m else "no model loaded"))
        h = self.history.get(self.selected or "", {})
        why = (m["note"] or NO_METRICS) if m is not None and m["figures"] is None else None
        for plot_id, title, lines in (
            # colours named, not left to plotext's cycle (which moves on with every redraw)
            ("#plot-engine-requests", "requests running, waiting",
             (("running", "running", "green"), ("waiting", "waiting", "orange"))),
            ("#plot-engine-kv", "KV cache in use (%)", (("kv", None, "cyan"),)),
        ):
            widget = self.query_one(plot_id, PlotextPlot)
            plt = widget.plt
            plt.clear_data()
            plt.title(why or title)  # the model is the highlighted row, named just above
            for key, label, color in lines:
                points = h[key].points if key in h else ()
                if points:
                    plt.plot([t - self.now for t, _ in points], [v for _, v in points], marker="braille", label=label,
                             color=color)
            plt.xlim(-WINDOW, 0)
            if plot_id.endswith("kv"):
                plt.ylim(0, 100)
            else:
                top = max((v for key in ("running", "waiting") if key in h for _, v in h[key].points), default=0)
                plt.ylim(0, max(1, top))
            widget.refresh()

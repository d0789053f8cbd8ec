"""Bench: run one benchmark through the controller's endpoint (a cancellable worker) and plot aggregate output
tokens/s and TTFT p50/p90 against concurrency, next to the saved runs (``llmctl bench --save`` and this screen's)."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Input, Label, Select, Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from llmctl.app.bench.events import Calibrated, LevelFinished, LevelStarted, Note, RequestFinished
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import cell, plain

RUN_COLUMNS = ("date", "model", "engine", "levels", "out tok/s @ top")


def parse_levels(text: str) -> list[int]:
    """``"1, 4,8"`` -> ``[1, 4, 8]``; ValueError unless every value is a whole number from 1 up."""
    levels = [int(v) for v in text.replace(" ", "").split(",") if v]
    if not levels or any(v < 1 for v in levels):
        raise ValueError(text)
    return levels


def top_throughput(run: dict) -> float | None:
    """Aggregate output tokens/s at the run's highest concurrency."""
    levels = [lv for lv in run.get("levels") or [] if lv.get("max_concurrency") is not None]
    if not levels:
        return None
    return max(levels, key=lambda lv: lv["max_concurrency"]).get("output_throughput")


class BenchScreen(LlmctlScreen):
    TITLE = "llmctl: Bench"
    BINDINGS = [
        Binding("b", "run", "Run bench", id="bench-run"),
        Binding("escape,c", "cancel", "Cancel", id="bench-cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.preferred_model: str | None = None  # chosen from the palette ("Bench NAME")
        self.results: list[dict] = []
        """The finished levels of the current (or last) run, in order."""
        self.progress: dict[str, str] = {}
        """One progress line per level label, in the order the levels started."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="bench-settings"):
            yield Select([], prompt="model", id="bench-model", allow_blank=True)
            yield Input("1,4,8", placeholder="concurrency, e.g. 1,4,8", id="bench-levels")
            yield Input("64", placeholder="max tokens", id="bench-max-tokens", type="integer")
        yield Label("b runs a benchmark of the chosen model; Esc or c cancels it", id="bench-status")
        yield Static("", id="bench-progress")
        with Horizontal(id="bench-plots"):
            yield PlotextPlot(id="plot-throughput", classes="plot")
            yield PlotextPlot(id="plot-ttft", classes="plot")
        yield DataTable(id="bench-runs", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#bench-runs", DataTable).add_columns(*RUN_COLUMNS)
        self.query_one("#bench-model").query_one("SelectCurrent").border_title = "model"
        self.query_one("#bench-levels").border_title = "concurrency levels"
        self.query_one("#bench-max-tokens").border_title = "max tokens"
        self._draw()
        self.load_models()
        self.load_history()

    def recover(self) -> None:
        self.load_models()
        self.load_history()

    def on_screen_resume(self) -> None:
        self.load_models()  # a model pulled or imported meanwhile is offered

    # data --------------------------------------------------------------------------------------------------
    @work(exclusive=True, group="bench-models", description="listing models to benchmark", exit_on_error=False)
    async def load_models(self) -> None:
        models = await self.app.client.models()
        select = self.query_one("#bench-model", Select)
        current = select.value
        select.set_options([(Text(m["name"]), m["name"]) for m in models])
        ready = [m["name"] for m in models if m.get("state") == "ready"]
        if self.preferred_model in [m["name"] for m in models]:
            select.value, self.preferred_model = self.preferred_model, None
        elif current in [m["name"] for m in models]:
            select.value = current
        elif models:
            select.value = ready[0] if ready else models[0]["name"]

    @work(exclusive=True, group="bench-history", description="listing saved benchmarks", exit_on_error=False)
    async def load_history(self) -> None:
        runs = await self.app.client.bench_history()
        table = self.query_one("#bench-runs", DataTable)
        table.clear()
        for run in reversed(runs):  # newest first
            target = run.get("target") or {}
            levels = [lv.get("max_concurrency") for lv in run.get("levels") or []]
            top = top_throughput(run)
            created = run.get("created_at")
            table.add_row(
                cell(time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-"),
                cell(target.get("model") or "-"), cell(target.get("engine") or "-"),
                cell(",".join(str(c) for c in levels if c is not None) or "-"),
                cell(f"{top:.1f}" if top is not None else "-"), key=run.get("id"))

    # running -----------------------------------------------------------------------------------------------
    def action_run(self) -> None:
        if any(w.group == "bench" and w.is_running for w in self.workers):
            self.notify("a benchmark is running; Esc or c cancels it", severity="warning")
            return
        model = self.query_one("#bench-model", Select).value
        if model is Select.NULL or not isinstance(model, str):
            self.notify("choose a model first", severity="warning")
            return
        try:
            levels = parse_levels(self.query_one("#bench-levels", Input).value)
        except ValueError:
            self.notify("concurrency: whole numbers from 1 up, e.g. 1,4,8", severity="warning")
            return
        try:
            max_tokens = max(1, int(self.query_one("#bench-max-tokens", Input).value))
        except ValueError:
            max_tokens = 64
        self.results, self.progress = [], {}
        self._status(Content.from_markup("benchmarking [b]$model[/] at concurrency $levels ...", model=str(model),
                                         levels=",".join(map(str, levels))))
        self._draw()
        self.run_bench(str(model), levels, max_tokens)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_run()  # Enter in a field runs it, as b does

    def action_cancel(self) -> None:
        for worker in self.workers:
            if worker.group == "bench" and worker.is_running:
                worker.cancel()

    @work(exclusive=True, group="bench", description="benchmarking", exit_on_error=False)
    async def run_bench(self, model: str, levels: list[int], max_tokens: int) -> None:
        async for event in self.app.client.bench(model, levels, max_tokens=max_tokens, save=True):
            self._apply(event)
        self._status(Content.from_markup("done: [b]$model[/], $n levels", model=model, n=len(self.results)))
        self.load_history()

    def _apply(self, event: object) -> None:
        if isinstance(event, LevelStarted):
            self.progress[event.label] = f"{event.label}: 0/{event.total} requests"
        elif isinstance(event, RequestFinished):
            self.progress[event.label] = f"{event.label}: {event.done}/{event.total} requests"
        elif isinstance(event, LevelFinished):
            r = event.result
            self.results.append(r)
            self.progress[event.label] = (
                f"{event.label}: {r.get('completed', 0)} done, {r.get('failed', 0)} failed, "
                f"{_num(r.get('output_throughput'), '.1f')} tok/s, TTFT p50 {_num(r.get('p50_ttft_ms'), '.0f')} ms")
            self._draw()
        elif isinstance(event, Calibrated | Note):
            self.progress[type(event).__name__] = event.detail if isinstance(event, Calibrated) else event.text
        self.query_one("#bench-progress", Static).update(plain("\n".join(self.progress.values())))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)  # failures become the app's notification
        if event.worker.group != "bench":
            return
        if event.state is WorkerState.CANCELLED:
            self._status(Content("cancelled"))
        elif event.state is WorkerState.ERROR:
            self._status(Content.assemble("failed: ", str(event.worker.error)))

    def _status(self, content: Content) -> None:
        self.query_one("#bench-status", Label).update(content)

    # plots -------------------------------------------------------------------------------------------------
    def series(self) -> dict[str, list[float]]:
        """What the plots show: per finished level, its concurrency, output tokens/s and TTFT p50/p90 (ms)."""
        rows = [r for r in self.results if r.get("max_concurrency") is not None]
        return {"concurrency": [float(r["max_concurrency"]) for r in rows],
                "tokens_per_s": [r.get("output_throughput") or 0.0 for r in rows],
                "ttft_p50": [r.get("p50_ttft_ms") or 0.0 for r in rows],
                "ttft_p90": [r.get("p90_ttft_ms") or 0.0 for r in rows]}

    def _draw(self) -> None:
        data = self.series()
        xs = data["concurrency"]
        for plot_id, title, lines in (
                ("#plot-throughput", "output tokens/s (all streams)", [("tok/s", data["tokens_per_s"])]),
                ("#plot-ttft", "TTFT (ms)", [("p50", data["ttft_p50"]), ("p90", data["ttft_p90"])])):
            widget = self.query_one(plot_id, PlotextPlot)
            plt = widget.plt
            plt.clear_data()
            plt.title(title)
            plt.xlabel("concurrency")
            for label, ys in lines:
                if xs:
                    plt.plot(xs, ys, marker="braille", label=label)
            if xs:
                plt.xticks(xs, [f"{x:g}" for x in xs])
            widget.refresh()


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)

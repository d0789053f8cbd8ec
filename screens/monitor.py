"""Monitor: live plots over the last minutes of tokens/s, time to first token, inter-token latency, requests
in flight, CPU and RAM, and each GPU's utilisation and VRAM, from the controller's metrics; and, on the Engines tab,
each loaded model's load as its engine reports it (``EnginePanel``)."""

from __future__ import annotations

import asyncio
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.timer import Timer
from textual.widgets import Footer, Header, Label, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from llmctl.app.client.wire import ControllerError
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.engine_panel import EnginePanel
from llmctl.screens.series import WINDOW, Series

SAMPLE_EVERY = 1.0  # seconds between samples of the gateway and the machine
ENGINE_POLL = 1.0  # seconds between the end of one engine-metrics answer and the next request

PLOTS = [
    ("tps", "tokens/s per reply", "tok/s"),
    ("ttft", "time to first token", "ms"),
    ("itl", "inter-token latency", "ms"),
    ("inflight", "requests in flight", ""),
    ("cpu", "CPU busy", "%"),
    ("ram", "RAM used", "%"),
    ("gpu", "GPU 0 utilisation", "%"),
    ("vram", "GPU 0 VRAM used", "%"),
]


class MonitorScreen(LlmctlScreen):
    TITLE = "llmctl: Monitor"
    BINDINGS = [
        Binding("g", "show_tab('monitor-gateway')", "Gateway & machine", id="monitor-gateway"),
        Binding("e", "show_tab('monitor-engines')", "Engines", id="monitor-engines"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.series = {key: Series() for key, _, _ in PLOTS}
        self.seen_request = 0
        self.started = time.monotonic()
        self._engines_timer: Timer | None = None
        self._engines_polling = False  # while the Engines tab shows: each poll costs the controller a scrape

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("waiting for the first sample...", id="monitor-summary")
        with TabbedContent(id="monitor-tabs"):
            with TabPane("Gateway & machine", id="monitor-gateway"), Grid(id="monitor-grid"):
                for key, _title, _unit in PLOTS:
                    yield PlotextPlot(id=f"plot-{key}", classes="plot")
            with TabPane("Engines", id="monitor-engines"):
                yield EnginePanel(id="engine-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for key, title, unit in PLOTS:
            plt = self.query_one(f"#plot-{key}", PlotextPlot).plt
            plt.title(f"{title}" + (f" ({unit})" if unit else ""))
        self.sample()
        self.set_interval(SAMPLE_EVERY, self.sample)

    def recover(self) -> None:
        self.sample()
        if self._engines_polling:
            self.sample_engines()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "monitor-engines":
            self.query_one("#engine-table").focus()  # the arrows pick the model whose history is plotted
            self._start_engines()
        else:
            self._stop_engines()

    def on_screen_suspend(self) -> None:
        self._stop_engines()  # another mode, or a modal over this screen

    def on_screen_resume(self) -> None:
        if self.query_one(TabbedContent).active == "monitor-engines":
            self._start_engines()

    def _start_engines(self) -> None:
        self._engines_polling = True
        self.sample_engines()

    def _stop_engines(self) -> None:
        self._engines_polling = False
        if self._engines_timer is not None:
            self._engines_timer.stop()
            self._engines_timer = None

    @work(exclusive=True, group="monitor", description="sampling metrics", exit_on_error=False)
    async def sample(self) -> None:
        snap = await self.app.client.requests_snapshot(limit=100)
        hw = await self.app.client.hardware()
        now = time.monotonic() - self.started
        fresh = [r for r in snap["requests"] if r["id"] > self.seen_request]
        if fresh:
            self.seen_request = max(r["id"] for r in fresh)
        for r in fresh:
            self.series["tps"].add(now, r.get("tokens_per_s"))
            self.series["ttft"].add(now, r.get("ttft_ms"))
            self.series["itl"].add(now, r.get("itl_ms"))
        self.series["inflight"].add(now, snap["in_flight"])
        self.series["cpu"].add(now, hw.get("cpu_percent"))
        self.series["ram"].add(now, 100 * (1 - hw["ram_available"] / hw["ram_total"]))
        if hw["gpus"]:
            g = hw["gpus"][0]
            self.series["gpu"].add(now, g.get("utilization"))
            self.series["vram"].add(now, 100 * (1 - g["vram_free"] / g["vram_total"]))
        self._draw(now, hw)

    @work(exclusive=True, group="monitor-engines", description="reading the engines' metrics", exit_on_error=False)
    async def sample_engines(self) -> None:
        """Never overlapping: the next one is armed when this one ends, so a scrape the controller has to wait for
        (an engine slow to answer its /metrics) delays the next instead of cancelling it. Armed only while the
        Engines tab shows; a controller without the route (404) is not asked again until the tab is shown again."""
        if self._engines_timer is not None:
            self._engines_timer.stop()
        cancelled = False
        try:
            models = await self.app.client.engine_metrics()
        except ControllerError as exc:
            if exc.status != 404:
                raise
            self._engines_polling = False
            self.query_one(EnginePanel).unsupported()  # an older controller still running: said in the panel
            return
        except asyncio.CancelledError:
            cancelled = True  # by a newer one, which arms the next
            raise
        finally:
            if not cancelled and self._engines_polling:
                self._engines_timer = self.set_timer(ENGINE_POLL, self.sample_engines)
        self.query_one(EnginePanel).show(time.monotonic() - self.started, models)

    def _draw(self, now: float, hw: dict) -> None:
        if not hw["gpus"] and self.query_one("#plot-gpu").display:
            # no GPU: its two plots go, and the other six get their rows (one row tall each at 80x24 otherwise)
            for key in ("gpu", "vram"):
                self.query_one(f"#plot-{key}").display = False
            self.query_one("#monitor-grid", Grid).styles.grid_size_rows = 3
        for key, _title, unit in PLOTS:
            widget = self.query_one(f"#plot-{key}", PlotextPlot)
            plt = widget.plt
            plt.clear_data()
            points = self.series[key].points
            if points:
                plt.plot([t - now for t, _ in points], [v for _, v in points], marker="braille")
            plt.xlim(-WINDOW, 0)
            if unit == "%":
                plt.ylim(0, 100)
            widget.refresh()
        tps, ttft = self.series["tps"].last(), self.series["ttft"].last()
        self.query_one("#monitor-summary", Label).update(
            f"last reply {f'{tps:.1f}' if tps is not None else '-'} tok/s, TTFT "
            f"{f'{ttft:.0f}' if ttft is not None else '-'} ms | "
            f"in flight {self.series['inflight'].last():.0f} | "
            f"CPU {self.series['cpu'].last() or 0:.0f}% RAM {self.series['ram'].last() or 0:.0f}%"
        )

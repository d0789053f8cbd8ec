"""Dashboard: the machine (CPU, RAM, disk, GPUs with VRAM bars), running model servers, the endpoint, and the
controller's pulls (running ones with their progress, stopped ones whose partial files a pull resumes)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, Static

from llmctl.app.client.wire import PullStatus
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import cell, duration, listens_on, plain, size
from llmctl.screens.pull_state import ENDED, RESUME_HINT, summary, worth_showing

REFRESH_EVERY = 2.0  # seconds

# short lines: the snippet never wraps (a wrapped model name or URL cannot be copied as it is)
SNIPPET = """from openai import OpenAI
c = OpenAI(base_url="{url}", api_key="-")
c.chat.completions.create(model="{model}",
  messages=[{{"role": "user", "content": "Hi"}}])"""
SHORT = """model="{model}"
OpenAI-compatible: chat, completions, embeddings"""  # under 100 columns, where the snippet would not fit


class DashboardScreen(LlmctlScreen):
    TITLE = "llmctl: Dashboard"
    BINDINGS = [
        Binding("y", "copy_endpoint", "Copy endpoint", id="copy-endpoint"),
        Binding("r", "refresh", "Refresh", id="dashboard-refresh"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="dashboard"):
            with Vertical(id="machine"):
                yield Label("Machine", classes="section-title")
                yield Static("reading the hardware...", id="cpu")
                yield Label("RAM", id="ram-label")
                yield ProgressBar(id="ram-bar", show_eta=False)
                yield Static("", id="disk")
                yield Vertical(id="gpus")
            with Vertical(id="serving"):
                yield Label("Endpoint", classes="section-title")
                yield Static("", id="endpoint")
                yield Static("", id="snippet")
                yield Static("", id="snippet-short")
        # pulls the controller runs or can resume: one line each, shown only when there is one (a pull outlives the
        # Models screen that started it, and the CLI's pulls run here too)
        with Vertical(id="pulls-box"):
            yield Label("Pulls", classes="section-title", id="pulls-title")
            yield Static("", id="pulls-lines")
        # the servers span the whole width: at 80 columns, next to the machine, their MEMORY column was cut
        with Vertical(id="servers-box"):
            yield Label("Model servers", classes="section-title")
            yield DataTable(id="backends", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#backends", DataTable)
        self.query_one("#pulls-box").display = False
        table.add_columns("MODEL", "STATE", "MEMORY", "UPTIME", "PORT")  # what matters first: 80 columns cut the right
        url = self.app.client.base_url + "/v1"
        self.query_one("#endpoint", Static).update(Content.from_markup("[b]$url[/]", url=url))
        self.action_refresh()
        self.set_interval(REFRESH_EVERY, self.action_refresh)

    def action_refresh(self) -> None:
        self.refresh_data()

    def action_copy_endpoint(self) -> None:
        self.app.action_copy_endpoint()

    @work(exclusive=True, group="dashboard", description="reading the dashboard", exit_on_error=False)
    async def refresh_data(self) -> None:
        hw = await self.app.client.hardware()
        backends = await self.app.client.backends()
        models = await self.app.client.models()
        pulls = await self.app.client.pulls()
        self._show_hardware(hw)
        self._show_backends(backends)
        self._show_pulls(pulls)
        model = next((b["model"] for b in backends if b["state"] == "ready"), None)
        model = model or (models[0]["name"] if models else "MODEL")
        snippet = SNIPPET.format(url=self.app.client.base_url + "/v1", model=model)
        self.query_one("#snippet", Static).update(plain(snippet))
        self.query_one("#snippet-short", Static).update(plain(SHORT.format(model=model)))

    def _show_hardware(self, hw: dict) -> None:
        cpu = hw["cpu"]
        self.query_one("#cpu", Static).update(Content.from_markup(
            "[b]$model[/]\n$cores cores/$threads threads, $busy% busy\n[dim]$flags[/]",
            model=cpu["model"], cores=cpu["physical_cores"], threads=cpu["logical_cores"],
            busy=f"{hw.get('cpu_percent', 0):.0f}", flags=", ".join(cpu["flags"]) or "no SIMD flags llama.cpp uses"))
        used = hw["ram_total"] - hw["ram_available"]
        self.query_one("#ram-label", Label).update(f"RAM  {size(used)} of {size(hw['ram_total'])} used")
        self.query_one("#ram-bar", ProgressBar).update(total=hw["ram_total"], progress=used)
        self.query_one("#disk", Static).update(f"Disk {size(hw['disk_free'])} free")
        gpus = self.query_one("#gpus", Vertical)
        gpus.remove_children()
        if not hw["gpus"]:
            # one line (the reason can be long: the whole of it is in `llmctl hw`)
            gpus.mount(Static(Content.from_markup("GPU  none [dim]($detail)[/]", detail=hw["gpu_detail"]),
                              classes="one-line"))
        for g in hw["gpus"]:
            used_vram = g["vram_total"] - g["vram_free"]
            gpus.mount(Label(plain(f"GPU {g['index']} {g['name']}"), classes="one-line"))
            gpus.mount(Label(plain(f"VRAM {size(used_vram)} of {size(g['vram_total'])} used")))
            bar = ProgressBar(show_eta=False)
            gpus.mount(bar)
            bar.update(total=g["vram_total"], progress=used_vram)

    def _show_backends(self, backends: list[dict]) -> None:
        table = self.query_one("#backends", DataTable)
        table.clear()
        for b in backends:
            state = b["state"] if b["state"] != "failed" or not b.get("error") else f"failed: {b['error']}"
            table.add_row(cell(b["model"]), cell(state), cell(size(b["memory_bytes"])), cell(duration(b["uptime"])),
                          cell(listens_on(b)))
        if not backends:
            table.add_row(cell("none yet: models start on their first request", "dim"), "", "", "", "")

    def _show_pulls(self, pulls: list[PullStatus]) -> None:
        shown = worth_showing(pulls)
        self.query_one("#pulls-box").display = bool(shown)
        partial = any(s["state"] in ENDED for s in shown)
        self.query_one("#pulls-title", Label).update(f"Pulls ({RESUME_HINT})" if partial else "Pulls")
        self.query_one("#pulls-lines", Static).update(Content("\n").join(summary(s) for s in shown))

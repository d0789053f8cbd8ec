"""Servers: every model server with its state, and the live log of the selected one; start, stop, restart."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Label, RichLog

from llmctl.app.client.wire import ControllerError
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import cell, duration, listens_on, plain, size

POLL_EVERY = 1.0  # seconds
STATE_STYLE = {"ready": "green", "starting": "yellow", "restarting": "yellow", "failed": "red", "stopping": "yellow"}


class ServersScreen(LlmctlScreen):
    TITLE = "llmctl: Servers"
    BINDINGS = [
        Binding("s", "start", "Start", id="server-start"),
        Binding("x", "stop", "Stop", id="server-stop"),
        Binding("R", "restart", "Restart", id="server-restart"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self.log_offset: int | None = None
        self.backends: dict[str, dict] = {}
        self.told: tuple[str, str] | None = None  # (model, failure) already written at the log's end

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="servers"):
            yield DataTable(id="servers-table", cursor_type="row", zebra_stripes=True)
            yield Label("log", id="log-title", classes="section-title")
            yield RichLog(id="server-log", max_lines=2000, wrap=False, markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # what matters first: 80 columns cut the right
        columns = ("MODEL", "STATE", "MEMORY", "UPTIME", "PORT", "RUNTIME", "PID", "RESTARTS")
        self.query_one(DataTable).add_columns(*columns)
        self.poll()
        self.set_interval(POLL_EVERY, self.poll)

    def recover(self) -> None:
        self.poll()

    @work(exclusive=True, group="runtime-health", description="reading the model servers", exit_on_error=False)
    async def poll(self) -> None:
        backends = await self.app.client.backends()
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for b in backends:
            table.add_row(cell(b["model"]), cell(b["state"], STATE_STYLE.get(b["state"], "")),
                          cell(size(b["memory_bytes"])), cell(duration(b["uptime"])), cell(listens_on(b)),
                          cell(b["runtime"]), cell(b["pid"] or "-"), cell(b["restarts"]), key=b["model"])
        self.backends = {b["model"]: b for b in backends}
        if not backends:
            table.add_row(cell("no model servers yet", "dim"), "", "", "", "", "", "", "")
            return
        table.move_cursor(row=min(cursor, len(backends) - 1))
        if self.selected is None:
            self._select(backends[0]["model"])
        await self._follow_log()

    def _select(self, model: str) -> None:
        if model != self.selected:
            self.selected = model
            self.log_offset = None
            self.told = None
            self.query_one(RichLog).clear()
            self.query_one("#log-title", Label).update(plain(f"log of {model}"))

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key and event.row_key.value:
            self._select(str(event.row_key.value))

    async def _follow_log(self) -> None:
        if self.selected is None:
            return
        data = await self.app.client.logs(self.selected, tail=200, since=self.log_offset)
        log = self.query_one(RichLog)
        for line in data["lines"]:
            log.write(Text(line, end=""))  # a log line is never markup: RichLog's markup=False is kept regardless
        self.log_offset = data["next"]
        backend = self.backends.get(self.selected) or {}
        error = backend.get("error") if backend.get("state") == "failed" else None
        title = f"log of {self.selected}" + (f": failed: {error}" if error else "")
        self.query_one("#log-title", Label).update(plain(" ".join(title.split())))
        if error and self.told != (self.selected, error):
            # why it failed, where the failed server is shown (the log file may not say it: a load that failed
            # before the engine wrote anything)
            self.told = (self.selected, error)
            tail = [] if data["lines"] else list(backend.get("last_log_lines") or [])[-5:]
            for line in [*tail, f"llmctl: {error}"]:
                log.write(Text(line, style="red" if line.startswith("llmctl: ") else "", end=""))

    @work(group="runtime", description="starting a model server", exit_on_error=False)
    async def action_start(self) -> None:
        if self.selected:
            self.notify(f"starting {self.selected}...", markup=False)
            status = await self.app.client.load(self.selected)
            self.notify(f"{status['model']} is {status['state']}", markup=False)

    @work(group="runtime", description="stopping a model server", exit_on_error=False)
    async def action_stop(self) -> None:
        if self.selected:
            status = await self.app.client.unload(self.selected)
            self.notify(f"{status['model']} is {status['state']}", markup=False)

    @work(group="runtime", description="restarting a model server", exit_on_error=False)
    async def action_restart(self) -> None:
        if self.selected:
            try:
                await self.app.client.unload(self.selected)
            except ControllerError as exc:
                if exc.status != 404:  # 404: it was not running; starting it is what a restart means then
                    raise
            status = await self.app.client.load(self.selected)
            self.notify(f"{status['model']} restarted: {status['state']}", markup=False)

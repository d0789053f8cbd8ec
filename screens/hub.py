"""Hub search (h on Models): any Hugging Face repo llmctl can pull, GGUF or safetensors, one row per quant with its
size and a fit badge; Enter (or p) pulls the selected row (the Models screen runs and shows the pull). The search
runs through the client (``client.hub_search``): this screen does no HTTP."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label

from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import badge_cell, cell, size

ROOM = 1.1  # the weights plus a tenth for the KV cache and buffers: a first verdict, `llmctl fit` gives the full one
OVERHEAD = 512 << 20


def rough_fit(weights: int, memory: int) -> str:
    need = weights * ROOM + OVERHEAD
    return "yes" if need <= 0.85 * memory else "tight" if need <= memory else "no"


def reference(repo: str, quant: str) -> str:
    """What ``llmctl pull`` takes for a row: ``REPO:QUANT``, or the repo alone for safetensors."""
    return repo if quant == "safetensors" else f"{repo}:{quant}"


class HubSearchScreen(LlmctlScreen):
    TITLE = "llmctl: Hub search"
    BINDINGS = [
        Binding("escape", "close", "Back", id="hub-close"),
        Binding("p", "pull", "Pull", id="hub-pull"),
        Binding("slash", "focus_query", "Search", id="hub-search"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[str, str] = {}  # row key -> pull reference
        self.memory = 0  # bytes the rough fit is judged against

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="hub"):
            yield Input(placeholder="search the Hugging Face Hub (e.g. qwen3 4b), Enter searches", id="hub-query")
            yield Label("GGUF and safetensors repos; fit: the weights plus 10% against this machine's memory",
                        id="hub-status")
            yield DataTable(id="hub-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("REPO", "QUANT", "SIZE", "FIT", "DOWNLOADS")
        self.query_one("#hub-query", Input).focus()
        self.read_memory()

    @work(group="hub", description="reading the machine", exit_on_error=False)
    async def read_memory(self) -> None:
        hw = await self.app.client.hardware()
        gpus = [g for g in hw["gpus"] if not g.get("unified")]
        self.memory = max(g["vram_total"] for g in gpus) if gpus else hw["ram_total"]

    @on(Input.Submitted, "#hub-query")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.query_one("#hub-status", Label).update(f"searching the Hub for {event.value.strip()!r}...")
            self.search(event.value.strip())

    @work(exclusive=True, group="hub", description="searching the Hub", exit_on_error=False)
    async def search(self, query: str) -> None:
        results = await self.app.client.hub_search(query)
        table = self.query_one(DataTable)
        table.clear()
        self.refs = {}
        for r in results:
            for q in r["quants"]:
                key = f"{r['repo']}:{q['quant']}"
                self.refs[key] = reference(r["repo"], q["quant"])
                fits = rough_fit(q["size"], self.memory) if self.memory else None
                table.add_row(cell(r["repo"]), cell(q["quant"]), cell(size(q["size"])), badge_cell(fits),
                              cell(f"{r['downloads']:,}"), key=key)
        self.query_one("#hub-status", Label).update(
            f"{len(results)} repos for {query!r}: Enter or p pulls the selected row" if results
            else f"nothing llmctl can pull matches {query!r}")
        if results:
            table.focus()

    @on(DataTable.RowSelected, "#hub-table")
    def selected(self) -> None:
        self.action_pull()

    def action_pull(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            self.notify("search first (type, then Enter)", severity="warning")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.dismiss(self.refs.get(str(key)))

    def action_focus_query(self) -> None:
        self.query_one("#hub-query", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)

"""Hub search (h on Models): any Hugging Face repo llmctl can pull, GGUF or safetensors, one row per quant with its
size and a fit badge; Enter (or p) pulls the selected row (the Models screen runs and shows the pull). The search
runs through the client (``client.hub_search``): this screen does no HTTP.

The fit badge: a repo and quant the catalog knows gets the catalog's verdict, the estimator's that the Models and
What fits screens show (so the three agree). Any other repo gets a rough check marked ``~`` (the weights plus a
tenth against this machine's memory): the Hub's listing gives file sizes only, not the layers, heads and context
the estimator needs; ``llmctl fit`` gives the full estimate of a pulled file."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Input, Label

from llmctl.catalog.errors import LlmctlError
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import FIT_STYLE, badge_cell, cell, size

ROOM = 1.1  # the weights plus a tenth for the KV cache and buffers: a first verdict, `llmctl fit` gives the full one
OVERHEAD = 512 << 20


def rough_fit(weights: int, memory: int) -> str:
    need = weights * ROOM + OVERHEAD
    return "yes" if need <= 0.85 * memory else "tight" if need <= memory else "no"


LEGEND = ("fit: for a catalog repo as Models and What fits say; ~ marks a rough check "
          "(the weights + 10% + 512 MiB against this machine's memory)")


def fit_cell(repo: str, quant: str, weights: int, known: dict[tuple[str, str], str], memory: int) -> Text:
    """The FIT cell of a row: the catalog's verdict for a repo and quant it knows (``known``, keyed by the repo and
    quant in lower case), else the rough check marked ``~``; ``?`` before the machine is read."""
    verdict = known.get((repo.lower(), quant.lower()))
    if verdict is not None:
        return badge_cell(verdict)
    if not memory:
        return badge_cell(None)
    rough = rough_fit(weights, memory)
    return cell(f"~{rough}", FIT_STYLE[rough])


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
        self.known: dict[tuple[str, str], str] = {}  # (repo, quant) in lower case -> the catalog's verdict
        self.machine_read = asyncio.Event()  # set once memory and known are read (or could not be)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="hub"):
            yield Input(placeholder="search the Hugging Face Hub (e.g. qwen3 4b), Enter searches", id="hub-query")
            yield Label("GGUF and safetensors repos, one row per quant; Enter searches", id="hub-status")
            yield DataTable(id="hub-table", cursor_type="row", zebra_stripes=True)
            yield Label(LEGEND, id="hub-legend")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("REPO", "QUANT", "SIZE", "FIT", "DOWNLOADS")
        self.query_one("#hub-query", Input).focus()
        self.read_memory()

    # its own group: a search (exclusive in "hub") must not cancel it
    @work(group="hub-machine", description="reading the machine", exit_on_error=False)
    async def read_memory(self) -> None:
        try:
            hw = await self.app.client.hardware()
            gpus = [g for g in hw["gpus"] if not g.get("unified")]
            self.memory = max(g["vram_total"] for g in gpus) if gpus else hw["ram_total"]
            try:
                catalog = await self.app.client.catalog(ctx=self.app.settings.backends.ctx_size)  # as Models asks
            except LlmctlError as exc:  # every row then gets the rough check, marked as such
                self.log.warning(f"no catalog: {exc}")
                return
            self.known = {(m["repo"].lower(), q["quant"].lower()): q["fits"]
                          for m in catalog["models"] for q in m["quants"]}
        finally:  # a search waits for this, and shows what could be read
            self.machine_read.set()

    @on(Input.Submitted, "#hub-query")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            # the user's text shown as text: a str would be parsed as markup, and "[/x]" raises (test_markup)
            self.query_one("#hub-status", Label).update(Content(f"searching the Hub for {event.value.strip()!r}..."))
            self.search(event.value.strip())

    @work(exclusive=True, group="hub", description="searching the Hub", exit_on_error=False)
    async def search(self, query: str) -> None:
        results = await self.app.client.hub_search(query)
        await self.machine_read.wait()
        table = self.query_one(DataTable)
        table.clear()
        self.refs = {}
        for r in results:
            for q in r["quants"]:
                key = f"{r['repo']}:{q['quant']}"
                self.refs[key] = reference(r["repo"], q["quant"])
                fits = fit_cell(r["repo"], q["quant"], q["size"], self.known, self.memory)
                table.add_row(cell(r["repo"]), cell(q["quant"]), cell(size(q["size"])), fits,
                              cell(f"{r['downloads']:,}"), key=key)
        self.query_one("#hub-status", Label).update(Content(
            f"{len(results)} repos for {query!r}: Enter or p pulls the selected row" if results
            else f"nothing llmctl can pull matches {query!r}"))
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

"""Models: local models and the bundled catalog in one filterable table, each with its fit for this machine;
the memory breakdown of the selected row; import, remove, start."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Input, Static

from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import badge, badge_cell, breakdown, cell, size
from llmctl.screens.modals import ConfirmRemoveModal, ImportModelModal


def shown_quant(quants: list[dict]) -> dict:
    """The quant a row shows: Q4_K_M, the usual choice, when the model has it; else its first."""
    return next((q for q in quants if q["quant"] == "Q4_K_M"), quants[0])


class ModelsScreen(LlmctlScreen):
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="models-filter"),
        Binding("escape", "focus_table", "Table", show=False, id="models-table-focus"),
        Binding("i", "import_model", "Import", id="model-import"),
        Binding("s", "start_model", "Start", id="model-start"),
        Binding("delete", "remove_model", "Remove", id="model-remove"),
        Binding("r", "refresh", "Refresh", id="models-refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter models (name, family, use)...", id="filter")
        with Horizontal(id="models-body"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="model-detail"):
                yield Static("select a model to see what it needs here", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("MODEL", "FIT", "NEEDS", "QUANT", "WHERE", "STATE")
        table.focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_models()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    @work(exclusive=True, group="catalog", description="loading models", exit_on_error=False)
    async def load_models(self) -> None:
        local = await self.app.client.models()
        catalog = await self.app.client.catalog(ctx=self.app.settings.backends.ctx_size)
        rows: dict[str, dict] = {}
        for m in local:
            fit = m.get("fit") or {}
            rows[f"local:{m['name']}"] = {
                "name": m["name"], "where": "local", "quant": m["facts"].get("quant", "?"),
                "needs": fit.get("total_bytes"),
                "fits": fit.get("fits"), "state": m.get("state", "stopped"), "estimate": fit,
                "detail": Content.from_markup(
                    "[b]$name[/]  $arch $quant, $params parameters, context $ctx\n[dim]$path[/]",
                    name=m["name"], arch=str(m["facts"].get("architecture")), quant=str(m["facts"].get("quant")),
                    params=f"{(m['facts'].get('parameter_count') or 0) / 1e6:,.0f}M",
                    ctx=str(m["facts"].get("context_length")), path=m["path"]),
                "search": f"{m['name']} local {m['facts'].get('architecture')}",
            }
        for m in catalog["models"]:
            q = shown_quant(m["quants"])
            rows[f"catalog:{m['name']}"] = {
                "name": m["name"], "where": "catalog", "quant": q["quant"], "needs": q["total_bytes"],
                "fits": q["fits"],
                "state": "", "estimate": q["estimate"],
                "detail": Content("\n").join([
                    Content.from_markup("[b]$name[/]  $params, $license, for $uses", name=m["name"],
                                        params=f"{m['params_b']}B", license=m["license"], uses=", ".join(m["uses"])),
                    Content.styled(m["repo"], "dim"),
                    Content("  ").join(Content.assemble(x["quant"], " ", badge(x["fits"])) for x in m["quants"]),
                    Content.from_markup("[dim]Get it with `llmctl pull $ref` (pulling from this screen is not built "
                                        "yet), or import a GGUF you have with i.[/]", ref=f"{m['name']}:{q['quant']}"),
                ]),
                "search": f"{m['name']} catalog {m['family']} {' '.join(m['uses'])}",
            }
        self.rows = rows
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        wanted = self.query_one("#filter", Input).value.strip().lower()
        table.clear()
        for key, r in self.rows.items():
            if wanted and wanted not in r["search"].lower():
                continue
            table.add_row(cell(r["name"]), badge_cell(r["fits"]), cell(size(r["needs"])), cell(r["quant"]),
                          cell(r["where"]), cell(r["state"]), key=key)

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self._fill()

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.rows.get(str(event.row_key.value)) if event.row_key else None
        if row:
            estimate = breakdown(row["estimate"]) if row["estimate"] else Content.styled("no estimate", "dim")
            self.query_one("#detail", Static).update(Content.assemble(row["detail"], "\n\n", estimate))

    def _selected(self) -> dict | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(str(key))

    @work(group="catalog", description="importing a model", exit_on_error=False)
    async def action_import_model(self) -> None:
        answer = await self.app.push_screen_wait(ImportModelModal())
        if answer is None:
            return
        path, name = answer
        entry = await self.app.client.import_model(path, name)
        self.notify(f"imported {entry['name']}", markup=False)
        self.load_models()

    @work(group="catalog", description="removing a model", exit_on_error=False)
    async def action_remove_model(self) -> None:
        row = self._selected()
        if not row or row["where"] != "local":
            self.notify("only local models can be removed", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmRemoveModal(row["name"])):
            await self.app.client.remove_model(row["name"])
            self.notify(f"removed {row['name']}", markup=False)
            self.load_models()

    @work(group="runtime", description="starting a model", exit_on_error=False)
    async def action_start_model(self) -> None:
        row = self._selected()
        if not row or row["where"] != "local":
            self.notify("import the model first (i); catalog models are not downloaded from here yet",
                        severity="warning")
            return
        self.notify(f"starting {row['name']}...", markup=False)
        status = await self.app.client.load(row["name"])
        self.notify(f"{status['model']} is {status['state']}", markup=False)
        self.load_models()

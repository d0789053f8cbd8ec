"""Models: local models and the bundled catalog in one filterable table, each with its fit for this machine;
the memory breakdown of the selected row; import, remove, start; pull a catalog row (the controller runs the pull,
this screen follows its events: a bar per file and one in total) and cancel it; "What fits" (f)."""

from __future__ import annotations

import copy

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Label, ProgressBar, Static

from llmctl.app.client.wire import PullEvent, PullStatus
from llmctl.catalog.errors import LlmctlError
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import badge, badge_cell, breakdown, cell, size
from llmctl.screens.modals import ConfirmRemoveModal, ImportModelModal
from llmctl.screens.pull_state import ENDED, row_state


class PullUpdated(Message):
    """A pull moved on: its whole status after the event. A flood of these collapses to the latest
    (``can_replace``), so a fast download cannot swamp the screen."""

    def __init__(self, status: PullStatus, event: str, notify: bool = True) -> None:
        super().__init__()
        self.status = status
        self.event = event
        self.notify = notify

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, PullUpdated) and message.status["id"] == self.status["id"]
                and message.status["state"] not in ENDED)


def apply_event(status: PullStatus, event: PullEvent) -> None:
    """Fold one event of the stream into the pull's status."""
    status["seq"] = event["seq"]
    status["state"], status["done_bytes"], status["speed_bps"] = event["state"], event["total_done"], \
        event["speed_bps"]
    if "files" in event:
        status["files"] = [dict(f) for f in event["files"]]  # type: ignore[misc]
    if "file" in event:
        for f in status["files"]:
            if f["name"] == event["file"]:
                f["done"] = event.get("done", f["done"])
                f["state"] = {"started": "downloading", "progress": "downloading"}.get(event["type"], event["type"])
    if event["type"] in ENDED:
        status["state"] = event["type"]
        status["error"] = event.get("error")
    if "model" in event:
        status["model"] = event["model"]


def _amount(done: int, total: int) -> str:
    return f"{size(done)} of {size(total)}"


class PullView(Vertical):
    """One pull: its reference, state and speed, a total bar, and a bar per file (names are plain text)."""

    def __init__(self, status: PullStatus) -> None:
        super().__init__(id=f"pull-{status['id']}", classes="pull")
        self.status = status
        self.ready = False  # its bars are mounted

    def compose(self) -> ComposeResult:
        yield Label(id="pull-title", classes="pull-title", markup=False)
        with Horizontal(classes="pull-row"):
            yield Label("total", classes="pull-name", markup=False)
            yield ProgressBar(total=max(1, self.status["total_bytes"]), show_eta=False, id="pull-total")
            yield Label(id="pull-amount", classes="pull-amount", markup=False)
        for i, f in enumerate(self.status["files"]):
            with Horizontal(classes="pull-row"):
                yield Label(f["name"], classes="pull-name", markup=False)
                yield ProgressBar(total=max(1, f["size"]), show_eta=False, id=f"pull-file-{i}")
                yield Label(classes="pull-amount", id=f"pull-file-amount-{i}", markup=False)

    def on_mount(self) -> None:
        self.ready = True
        self.show(self.status)

    def show(self, status: PullStatus) -> None:
        self.status = status
        if not self.ready:
            return
        state = status["state"]
        speed = f", {size(int(status['speed_bps']))}/s" if state == "downloading" and status["speed_bps"] else ""
        hint = "  (c cancels)" if state == "downloading" else ""
        self.query_one("#pull-title", Label).update(f"{status['ref']}: {state}{speed}{hint}")
        self.query_one("#pull-total", ProgressBar).update(progress=status["done_bytes"])
        self.query_one("#pull-amount", Label).update(_amount(status["done_bytes"], status["total_bytes"]))
        for i, f in enumerate(status["files"]):
            self.query_one(f"#pull-file-{i}", ProgressBar).update(progress=f["done"])
            self.query_one(f"#pull-file-amount-{i}", Label).update(
                "verified" if f["state"] == "verified" else _amount(f["done"], f["size"]))


def shown_quant(quants: list[dict], best: str | None = None) -> dict:
    """The quant a row shows: the one What fits picks for this machine (``best``, the recommender's choice, so the
    two screens agree); for a model that does not fit at all, its smallest; else Q4_K_M, the usual choice."""
    chosen = next((q for q in quants if q["quant"] == best), None)
    if chosen is not None:
        return chosen
    if quants and all(q["fits"] == "no" for q in quants):
        return min(quants, key=lambda q: q["total_bytes"] or 0)
    return next((q for q in quants if q["quant"] == "Q4_K_M"), quants[0])


class ModelsScreen(LlmctlScreen):
    TITLE = "llmctl: Models"
    BINDINGS = [
        # in the order a newcomer needs them (the footer cuts from the right at 80 columns)
        Binding("slash", "focus_filter", "Filter", id="models-filter"),
        Binding("escape", "focus_table", "Table", show=False, id="models-table-focus"),
        Binding("p", "pull_model", "Pull", id="model-pull"),
        Binding("c", "cancel_pull", "Cancel pull", id="model-pull-cancel"),
        Binding("s", "start_model", "Start", id="model-start"),
        Binding("f", "fits", "What fits", id="models-fits"),
        Binding("h", "hub_search", "Hub search", id="models-hub"),
        Binding("i", "import_model", "Import", id="model-import"),
        Binding("delete", "remove_model", "Remove", show=False, id="model-remove"),
        Binding("r", "refresh", "Refresh", show=False, id="models-refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.pulls: dict[str, PullStatus] = {}  # the pulls this screen follows, by id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter models (name, family, use)...", id="filter")
        with Horizontal(id="models-body"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="model-detail"):
                yield Static("select a model to see what it needs here", id="detail")
        yield VerticalScroll(id="pulls")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("MODEL", "QUANT", "FIT", "NEEDS", "STATE", "WHERE")
        table.focus()
        self.query_one("#pulls").display = False
        self.action_refresh()
        self.resume_pulls()

    def action_refresh(self) -> None:
        self.load_models()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_pull":  # in the footer only while a pull runs
            return any(s["state"] not in ENDED for s in self.pulls.values())
        return True

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    @work(exclusive=True, group="catalog", description="loading models", exit_on_error=False)
    async def load_models(self) -> None:
        local = await self.app.client.models()
        catalog = await self.app.client.catalog(ctx=self.app.settings.backends.ctx_size)
        best: dict[str, str] = {}  # model -> the quant What fits picks here
        try:
            ranked = await self.app.client.recommend(ctx=self.app.settings.backends.ctx_size)
            for option in ranked["options"]:
                best.setdefault(option["model"], option["quant"])
        except LlmctlError as exc:  # an older controller: the rows still show, with the usual quant
            self.log.warning(f"no recommendation: {exc}")
        rows: dict[str, dict] = {}
        for m in local:
            fit = m.get("fit") or {}
            rows[f"local:{m['name']}"] = {
                "name": m["name"], "where": m["facts"].get("source", "local"), "quant": m["facts"].get("quant", "?"),
                "needs": fit.get("total_bytes"),
                "fits": fit.get("fits"), "state": m.get("state", "stopped"), "estimate": fit,
                "detail": Content.from_markup(
                    "[b]$name[/]  $arch $quant, $params parameters, context $ctx\n[dim]$path[/]\nruns at context $got",
                    got=(m.get("context") or {}).get("detail", "unknown"),
                    name=m["name"], arch=str(m["facts"].get("architecture")), quant=str(m["facts"].get("quant")),
                    params=f"{(m['facts'].get('parameter_count') or 0) / 1e6:,.0f}M",
                    ctx=str(m["facts"].get("context_length")), path=m["path"]),
                "search": f"{m['name']} local {m['facts'].get('architecture')}",
            }
        for m in catalog["models"]:
            q = shown_quant(m["quants"], best.get(m["name"]))
            rows[f"catalog:{m['name']}"] = {
                "name": m["name"], "where": "catalog", "quant": q["quant"], "needs": q["total_bytes"],
                "ref": f"{m['name']}:{q['quant']}",
                "fits": q["fits"],
                "state": "", "estimate": q["estimate"],
                "detail": Content("\n").join([
                    Content.from_markup("[b]$name[/]  $params, $license, for $uses", name=m["name"],
                                        params=f"{m['params_b']}B", license=m["license"], uses=", ".join(m["uses"])),
                    Content.styled(m["repo"], "dim"),
                    Content("  ").join(Content.assemble(x["quant"], " ", badge(x["fits"])) for x in m["quants"]),
                    Content.from_markup("[dim]p pulls $ref (or `llmctl pull $ref`); i imports a GGUF you have.[/]",
                                        ref=f"{m['name']}:{q['quant']}"),
                ]),
                "search": f"{m['name']} catalog {m['family']} {' '.join(m['uses'])}",
            }
        self.rows = rows
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        wanted = self.query_one("#filter", Input).value.strip().lower()
        table.clear()
        pulling = {s["ref"]: s for s in self.pulls.values()}
        for key, r in self.rows.items():
            if wanted and wanted not in r["search"].lower():
                continue
            state = r["state"]
            pull = pulling.get(r.get("ref", ""))
            if pull is not None:  # a pull of this row, running or ended here
                state = row_state(pull)
            table.add_row(cell(r["name"]), cell(r["quant"]), badge_cell(r["fits"]), cell(size(r["needs"])),
                          cell(state), cell(r["where"]), key=key)
        if table.row_count == 0:  # nothing matches: no details of a row that is not shown
            self.query_one("#detail", Static).update(Content.styled(
                "no model matches the filter; Esc goes back to the table, / edits the filter", "dim"))

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
            self.notify("pull the model first (p), or import a GGUF you have (i)", severity="warning")
            return
        self.notify(f"starting {row['name']}...", markup=False)
        status = await self.app.client.load(row["name"])
        self.notify(f"{status['model']} is {status['state']}", markup=False)
        self.load_models()

    # pulls -------------------------------------------------------------------------------------------------
    def action_pull_model(self) -> None:
        row = self._selected()
        if not row or row["where"] != "catalog":
            self.notify("select a catalog model to pull (local ones are here already); h searches the whole Hub",
                        severity="warning")
            return
        self.start_pull(row["ref"])

    @work(group="pull", description="starting a pull", exit_on_error=False)
    async def start_pull(self, ref: str) -> None:
        started = await self.app.client.start_pull(ref)
        status = PullStatus(**{k: v for k, v in started.items() if k != "joined"})  # type: ignore[typeddict-item]
        if started["joined"]:
            self.notify(f"{ref} is being pulled already: following that pull", markup=False)
        if status["id"] not in self.pulls:
            self.follow_pull(status)

    @work(group="pull", description="looking for running pulls", exit_on_error=False)
    async def resume_pulls(self) -> None:
        """Pulls the controller runs (maybe started before this TUI opened, or by the CLI): follow them here."""
        for status in await self.app.client.pulls():
            if status["state"] not in ENDED and status["id"] not in self.pulls:
                self.follow_pull(status)

    @work(group="pull", description="pulling a model", exit_on_error=False)
    async def follow_pull(self, status: PullStatus) -> None:
        self.pulls[status["id"]] = status
        self.post_message(PullUpdated(copy.deepcopy(status), "follow"))
        try:
            async for event in self.app.client.pull_events(status["id"], after=status["seq"]):
                apply_event(status, event)
                self.post_message(PullUpdated(copy.deepcopy(status), event["type"]))
        except LlmctlError as exc:  # the stream broke (the controller went away): the app tells why, once
            status["state"], status["error"] = "failed", f"{exc.title}: {exc.message}"
            self.post_message(PullUpdated(copy.deepcopy(status), "failed", notify=False))
            raise

    def on_pull_updated(self, message: PullUpdated) -> None:
        status = message.status
        box = self.query_one("#pulls", VerticalScroll)
        views = box.query(f"#pull-{status['id']}")
        if views:
            views.first(PullView).show(status)
        else:
            box.mount(PullView(status))
        box.display = True
        self.refresh_bindings()
        self._fill()  # the row shows the pull's progress
        if status["state"] in ENDED:
            self._ended(status, message.notify)

    def _ended(self, status: PullStatus, notify: bool) -> None:
        ref = status["ref"]
        if notify:
            if status["state"] == "done":
                self.notify(f"pulled {ref}; registered as {status['model']}" if status["model"] else f"pulled {ref}",
                            markup=False)
            elif status["state"] == "cancelled":
                self.notify(f"{ref}: pull cancelled; pull it again to resume", severity="warning", markup=False)
            else:
                self.notify(status["error"] or "the pull failed", title=f"pulling {ref} failed", severity="error",
                            timeout=10, markup=False)
        if status["state"] == "done":
            self.load_models()
        self.set_timer(5, lambda: self._drop(status["id"]))

    def _drop(self, pull_id: str) -> None:
        status = self.pulls.get(pull_id)
        if status is None or status["state"] not in ENDED:
            return
        del self.pulls[pull_id]
        for view in self.query(f"#pull-{pull_id}"):
            view.remove()
        if not self.pulls:
            self.query_one("#pulls").display = False

    def action_cancel_pull(self) -> None:
        running = [s for s in self.pulls.values() if s["state"] not in ENDED]
        if not running:
            self.notify("no pull is running", severity="warning")
            return
        self.cancel_pull(running[-1]["id"])

    @work(group="pull", description="cancelling a pull", exit_on_error=False)
    async def cancel_pull(self, pull_id: str) -> None:
        await self.app.client.cancel_pull(pull_id)

    # what fits ---------------------------------------------------------------------------------------------
    def action_hub_search(self) -> None:
        from llmctl.screens.hub import HubSearchScreen

        def pull(ref: str | None) -> None:
            if ref:
                self.start_pull(ref)

        self.app.push_screen(HubSearchScreen(), pull)

    def action_fits(self) -> None:
        from llmctl.screens.fits import FitsScreen

        def pull(ref: str | None) -> None:
            if ref:
                self.start_pull(ref)

        self.app.push_screen(FitsScreen(), pull)

"""What fits: ``recommend`` for this machine, or for a GPU from the bundled table, one row per model with a bar of
its weights / KV cache / compute / the rest (repacked weights, output, overhead) against the device's memory, the
verdict and why; p pulls the selected row (the Models screen that opened this one runs and shows the pull)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import DataTable, Footer, Header, Select, Static

from llmctl.app.client.wire import FitOption, Recommendation
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import FIT_STYLE, badge, cell, size

BAR = 20
PARTS = (("weights_bytes", "blue", "weights"), ("kv_cache_bytes", "magenta", "KV cache"),
         ("compute_bytes", "yellow", "compute"), ("other_bytes", "grey50", "other"))
OTHER = ("repack_bytes", "output_bytes", "overhead_bytes")  # what "other" sums: repacked weights, output, overhead


def parts(est: dict) -> dict[str, int]:
    """Bytes per bar segment; they add up to the estimate's total."""
    out = {key: int(est.get(key) or 0) for key, _style, _label in PARTS[:-1]}
    out["other_bytes"] = sum(int(est.get(key) or 0) for key in OTHER)
    return out
HERE = "this machine"


def memory_bar(option: FitOption, memory: int, width: int = BAR) -> Text:
    """Weights, KV cache and compute as coloured blocks, the rest of the device's memory dim; the whole bar red
    past the device's memory (on a GPU, the rest spills to RAM)."""
    est = parts(option["estimate"])
    used = sum(est.values())
    scale = max(memory, used, 1)
    bar = Text(end="")
    filled = 0
    for key, style, _label in PARTS:
        n = round(width * est[key] / scale)
        n = min(n, width - filled)
        bar.append("█" * n, style="red" if used > memory else style)
        filled += n
    bar.append("·" * (width - filled), style="dim")
    return bar


class FitsScreen(LlmctlScreen):
    TITLE = "llmctl: What fits"
    BINDINGS = [
        Binding("p", "pull", "Pull", id="fits-pull"),
        Binding("escape", "close", "Back", id="fits-close"),
        Binding("r", "refresh", "Refresh", id="fits-refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.options: list[FitOption] = []
        self.gpus_loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="fits-top"):
            yield Select([(HERE, HERE)], value=HERE, allow_blank=False, id="fits-gpu")
            yield Static("", id="fits-device")
        yield DataTable(id="fits-table", cursor_type="row", zebra_stripes=True)
        yield Static(Content.assemble(*[x for _k, style, label in PARTS for x in (Content.styled("█", style),
                                                                                   f" {label}  ")],
                                      Content.styled("·", "dim"), " free"), id="fits-legend")
        yield Static("", id="fits-why")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "MODEL", "QUANT", "FIT", "NEEDS", "TOK/S", "MEMORY")  # the bar last: 80 columns cut it
        table.focus()
        self.load()

    def action_refresh(self) -> None:
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_pull(self) -> None:
        option = self._selected()
        if option is None:
            self.notify("nothing to pull: nothing fits here", severity="warning")
            return
        self.dismiss(option["ref"])

    @on(Select.Changed, "#fits-gpu")
    def gpu_changed(self) -> None:
        self.load()

    @work(exclusive=True, group="fits", description="ranking what fits", exit_on_error=False)
    async def load(self) -> None:
        choice = self.query_one("#fits-gpu", Select).value
        gpu = None if choice == HERE or choice is Select.NULL else str(choice)
        answer: Recommendation = await self.app.client.recommend(ctx=self.app.settings.backends.ctx_size, gpu=gpu)
        if not self.gpus_loaded:
            self.gpus_loaded = True
            with self.prevent(Select.Changed):
                # names as text, never markup (a GPU name is foreign text, as bench's Select treats it)
                self.query_one("#fits-gpu", Select).set_options([(HERE, HERE)] + [(Text(g), g) for g in answer["gpus"]])
                self.query_one("#fits-gpu", Select).value = HERE if gpu is None else gpu
        device = answer["device"]
        self.query_one("#fits-device", Static).update(Content.from_markup(
            "$label: [b]$memory[/] $kind, context $ctx", label=device["label"], memory=size(device["memory_bytes"]),
            kind="VRAM" if device["kind"] == "gpu" else "RAM", ctx=str(answer["ctx"])))
        self.options = answer["options"]
        table = self.query_one(DataTable)
        table.clear()
        for i, o in enumerate(self.options, 1):
            table.add_row(cell(i), cell(o["model"]), cell(o["quant"]), cell(o["fits"], FIT_STYLE.get(o["fits"], "")),
                          cell(size(o["total_bytes"])), cell(f"~{o['tokens_per_s']:g}"),
                          memory_bar(o, device["memory_bytes"], width=BAR if self.size.width >= 100 else 12),
                          key=str(i - 1))
        if not self.options:
            self.query_one("#fits-why", Static).update(Content.styled(
                "nothing in the catalog fits here; try a GPU from the list", "dim"))

    def _selected(self) -> FitOption | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.options[int(key)] if key is not None else None

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value is None or int(event.row_key.value) >= len(self.options):
            return  # a highlight queued from the table before a reload swapped the options
        o = self.options[int(event.row_key.value)]
        est = parts(o["estimate"])
        listed = ", ".join(f"{label} {size(est[key])}" for key, _s, label in PARTS)
        self.query_one("#fits-why", Static).update(Content.assemble(
            Content.from_markup("[b]$ref[/] ", ref=o["ref"]), badge(o["fits"]),
            Content(f": {'; '.join(o['why'])}\n{listed}; {o['gpu_layers']}/{o['n_layers']} layers on the GPU. "),
            Content.styled("p pulls it", "dim")))

"""Small dialogs: import a local GGUF, confirm a removal."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class ImportModelModal(ModalScreen[tuple[str, str | None] | None]):
    """Ask for a .gguf path and an optional name; dismisses with (path, name) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Import a local GGUF (registered by reference; the file is not copied)")
            yield Input(placeholder="/path/to/model.gguf", id="import-path")
            yield Input(placeholder="name (optional)", id="import-name")
            with Horizontal(classes="buttons"):
                yield Button("Import", variant="primary", id="import-ok")
                yield Button("Cancel", id="import-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "import-ok":
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def _submit(self) -> None:
        path = self.query_one("#import-path", Input).value.strip()
        name = self.query_one("#import-name", Input).value.strip() or None
        if path:
            self.dismiss((path, name))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmRemoveModal(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Content.from_markup("Remove [b]$name[/] from llmctl? The file itself stays where it is.",
                                            name=self.model_name))
            with Horizontal(classes="buttons"):
                yield Button("Remove", variant="error", id="remove-ok")
                yield Button("Cancel", id="remove-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "remove-ok")

    def action_cancel(self) -> None:
        self.dismiss(False)

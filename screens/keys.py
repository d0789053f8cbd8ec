"""The ``?`` overlay: the keys of the screen underneath, its own first, then the sections and the app-wide ones;
Esc (or ``?``, or q) closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

Row = tuple[str, str]  # (key as shown, what it does)


class KeysScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="keys-close")]

    def __init__(self, title: str, groups: list[tuple[str, list[Row]]]) -> None:
        super().__init__()
        self.heading = title
        self.groups = groups

    def compose(self) -> ComposeResult:
        lines: list[Content] = [Content.styled(f"Keys: {self.heading}", "bold"), Content("")]
        for name, rows in self.groups:
            if not rows:
                continue
            lines.append(Content.styled(name, "bold $accent"))
            width = max(len(key) for key, _ in rows)
            lines += [Content.assemble(Content.styled(f"  {key:<{width}}  ", "bold"), text) for key, text in rows]
            lines.append(Content(""))
        lines.append(Content.styled("Esc closes this; ctrl+p opens the command palette (pull, start, chat with...)",
                                    "dim"))
        with VerticalScroll(classes="dialog keys"):
            yield Static(Content("\n").join(lines), id="keys-text")

    def action_close(self) -> None:
        self.dismiss(None)

"""Chat: pick a model (it starts on demand), stream the reply as markdown, stop it, keep the history."""

from __future__ import annotations

import time

from markdown_it import MarkdownIt
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Markdown, Select, Static


def flush_interval(tokens: int) -> float:
    """Seconds between hand-overs of streamed text to the markdown widget. Each hand-over reflows the reply, and
    a reflow costs more the longer the reply is, so long replies are handed over less often."""
    return 0.1 if tokens < 1000 else 0.25 if tokens < 4000 else 0.5


def reply_parser() -> MarkdownIt:
    """Markdown without raw HTML: a model that emits tags should show them, not vanish into them."""
    return MarkdownIt("gfm-like", {"html": False})


class ChatScreen(Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop reply", id="chat-stop"),
        Binding("ctrl+y", "copy_reply", "Copy reply", id="chat-copy"),
        Binding("ctrl+l", "clear", "New chat", id="chat-clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict] = []
        self.last_reply = ""
        self.preferred_model: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-settings"):
            yield Select([], prompt="model", id="chat-model", allow_blank=True)
            yield Input(placeholder="system prompt", id="chat-system")
            yield Input("0.7", placeholder="temperature", id="chat-temperature", restrict=r"[0-9.]*")
            yield Input("512", placeholder="max tokens", id="chat-max-tokens", restrict=r"[0-9]*")
        yield VerticalScroll(id="chat-log")
        yield Label("", id="chat-stats")
        yield Input(placeholder="message (Enter sends, Esc stops the reply)", id="chat-input")
        yield Footer()

    def on_mount(self) -> None:
        self.load_models()
        self.query_one("#chat-input", Input).focus()

    @work(exclusive=True, group="catalog", description="listing models for chat")
    async def load_models(self) -> None:
        models = await self.app.client.models()
        select = self.query_one("#chat-model", Select)
        select.set_options([(m["name"], m["name"]) for m in models])
        names = [m["name"] for m in models]
        ready = [m["name"] for m in models if m.get("state") == "ready"]
        if self.preferred_model in names:
            select.value = self.preferred_model
        elif models:
            select.value = ready[0] if ready else names[0]

    @on(Input.Submitted, "#chat-input")
    def submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        model = self.query_one("#chat-model", Select).value
        if not text:
            return
        if model is Select.BLANK:
            self.notify("pick a model first (import one on the Models screen)", severity="warning")
            return
        event.input.value = ""
        self.send(str(model), text)

    def _number(self, widget_id: str, default: float) -> float:
        try:
            return float(self.query_one(widget_id, Input).value)
        except ValueError:
            return default

    @work(exclusive=True, group="chat", description="chatting")
    async def send(self, model: str, text: str) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        await log.mount(Static(f"[b]you[/]  {text}", classes="user-message"))
        reply = Markdown("", classes="reply", parser_factory=reply_parser)
        await log.mount(reply)
        log.anchor()
        stats = self.query_one("#chat-stats", Label)
        stats.update(f"[dim]{model} is thinking... (it starts on the first message)[/]")
        system = self.query_one("#chat-system", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        messages.append({"role": "user", "content": text})
        stream = Markdown.get_stream(reply)
        answer, pending, flushed, tokens = "", "", time.monotonic(), 0
        try:
            async for part in self.app.client.stream_chat(
                model, messages, temperature=self._number("#chat-temperature", 0.7),
                max_tokens=int(self._number("#chat-max-tokens", 512)),
            ):
                if isinstance(part, str):
                    answer += part
                    pending += part
                    tokens += 1
                    if time.monotonic() - flushed >= flush_interval(tokens):
                        await stream.write(pending)
                        pending, flushed = "", time.monotonic()
                else:
                    await stream.write(pending)
                    pending = ""
                    ttft = f"{part.ttft_s * 1000:.0f} ms" if part.ttft_s is not None else "-"
                    rate = f"{part.tokens_per_s:.1f} tok/s" if part.tokens_per_s else "-"
                    stats.update(f"{model}: {part.tokens} tokens, first after {ttft}, {rate}")
        finally:
            if pending:
                await stream.write(pending)
            await stream.stop()
            self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            self.last_reply = answer

    def action_stop(self) -> None:
        for worker in self.workers:
            if worker.group == "chat" and worker.is_running:
                worker.cancel()
                self.query_one("#chat-stats", Label).update("[yellow]stopped[/]")

    def action_copy_reply(self) -> None:
        if self.last_reply:
            self.app.copy_to_clipboard(self.last_reply)
            self.notify("reply copied")

    def action_clear(self) -> None:
        self.history.clear()
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self.query_one("#chat-stats", Label).update("")

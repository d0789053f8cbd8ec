"""Chat: pick a model (it starts on demand), stream the reply as markdown (and a reasoning model's thinking,
dimmed, above it), stop it, keep the history."""

from __future__ import annotations

import asyncio
import time

from markdown_it import MarkdownIt
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Footer, Header, Input, Label, Markdown, Select, Static

from llmctl.app.client.wire import ChatTurn, Reasoning, stats_line
from llmctl.screens.base import LlmctlScreen
from llmctl.screens.format import plain


def flush_interval(tokens: int) -> float:
    """Seconds between hand-overs of streamed text to the markdown widget. Each hand-over reflows the reply, and
    a reflow costs more the longer the reply is, so long replies are handed over less often."""
    return 0.1 if tokens < 1000 else 0.25 if tokens < 4000 else 0.5


def reply_parser() -> MarkdownIt:
    """Markdown without raw HTML: a model that emits tags should show them, not vanish into them."""
    return MarkdownIt("gfm-like", {"html": False})


class ChatScreen(LlmctlScreen):
    TITLE = "llmctl: Chat"
    SUB_TITLE = "F1-F6 sections (digits and ? type into the chat here)"
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
        self.names: list[str] = []  # what the picker offers
        self.history_model: str | None = None  # whose conversation ``history`` is
        self.states: dict[str, str] = {}  # model -> its state when the picker was last filled

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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load_models()
        self.query_one("#chat-input", Input).focus()
        self.query_one("#chat-model").query_one("SelectCurrent").border_title = "model"
        self.query_one("#chat-system").border_title = "system"
        self.query_one("#chat-temperature").border_title = "temperature"
        self.query_one("#chat-max-tokens").border_title = "max tokens"

    def recover(self) -> None:
        self.load_models()

    def on_screen_resume(self) -> None:
        self.load_models()  # a model pulled or imported meanwhile is offered

    @work(exclusive=True, group="chat-models", description="listing models for chat", exit_on_error=False)
    async def load_models(self) -> None:
        models = await self.app.client.models()
        select = self.query_one("#chat-model", Select)
        current = select.value
        self.states = {m["name"]: m.get("state", "stopped") for m in models}
        names = [m["name"] for m in models]
        if names != self.names:  # unchanged options are left alone (set_options clears the choice)
            self.names = names
            select.set_options([(Text(name), name) for name in names])
        ready = [name for name in names if self.states[name] == "ready"]
        if self.preferred_model in names:
            select.value, self.preferred_model = self.preferred_model, None
        elif current in names:
            select.value = current  # a refresh keeps the user's choice
        elif models:
            select.value = ready[0] if ready else names[0]

    @on(Input.Submitted, "#chat-input")
    def submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        model = self.query_one("#chat-model", Select).value
        if not text:
            return
        if model is Select.NULL or not isinstance(model, str):  # the picker's blank entry is no model
            self.notify("pick a model first (import one on the Models screen)", severity="warning")
            return
        event.input.value = ""
        if self.history_model != model:  # sent before its saved history was read: this conversation starts anew
            self.history_model, self.history = model, []
        self.send(model, text)

    def _number(self, widget_id: str, default: float) -> float:
        try:
            return float(self.query_one(widget_id, Input).value)
        except ValueError:
            return default

    @work(exclusive=True, group="chat", description="chatting", exit_on_error=False)
    async def send(self, model: str, text: str) -> None:
        """Stream one reply: reasoning (dimmed, above) and the answer (markdown). A stopped reply stays in the
        history as far as it got; a failed one leaves the history as it was (the error becomes a notification)."""
        log = self.query_one("#chat-log", VerticalScroll)
        thinking = Static("", classes="reasoning", markup=False)
        thinking.display = False
        reply = Markdown("", classes="reply", parser_factory=reply_parser)
        await log.mount_all([Static(Content.from_markup("[b]you[/]  $text", text=text), classes="user-message"),
                             thinking, reply])
        log.anchor()
        stats = self.query_one("#chat-stats", Label)
        if self.states.get(model) == "ready":
            stats.update(Content.from_markup("[dim]waiting for $model's first token...[/]", model=model))
        else:
            stats.update(Content.from_markup("[dim]loading $model (a stopped model starts on its first message)...[/]",
                                             model=model))
        system = self.query_one("#chat-system", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        messages.append({"role": "user", "content": text})
        stream = None  # made on the first answer text: a MarkdownStream stopped before its task ran raises
        answer, thought, pending, flushed, tokens = "", "", "", time.monotonic(), 0
        outcome = "failed"
        try:
            async for part in self.app.client.stream_chat(
                model, messages, temperature=self._number("#chat-temperature", 0.7),
                max_tokens=int(self._number("#chat-max-tokens", 512)),
            ):
                if isinstance(part, ChatTurn):
                    line = Content(stats_line(model, part))
                    if part.finish_reason == "length":  # cut by max tokens, not finished: say so
                        line = Content.assemble(line, Content.styled(
                            "  stopped at the max-tokens limit: raise it to get longer replies", "yellow"))
                    stats.update(line)
                    outcome = "done"
                    continue
                if tokens == 0:
                    self.states[model] = "ready"
                    stats.update(Content.from_markup("[dim]$model is replying... (Esc stops it)[/]", model=model))
                tokens += 1
                if isinstance(part, Reasoning):
                    thought += part.text
                    thinking.display = True
                else:
                    answer += part
                    pending += part
                if time.monotonic() - flushed >= flush_interval(tokens):
                    thinking.update(plain(thought))
                    if pending:
                        stream = stream or Markdown.get_stream(reply)
                        await stream.write(pending)
                    pending, flushed = "", time.monotonic()
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        finally:
            thinking.update(plain(thought))
            if pending:
                stream = stream or Markdown.get_stream(reply)
                await stream.write(pending)
            if stream is not None:
                await stream.stop()
            if outcome == "failed":
                stats.update(Content.from_markup("[red]$model: the reply failed; it is not kept in the history[/]",
                                                 model=model))
            elif answer or outcome == "done":
                self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
                self.last_reply = answer
                if self.history_model == model:
                    self.keep_history(model, list(self.history))

    def action_stop(self) -> None:
        for worker in self.workers:
            if worker.group == "chat" and worker.is_running:
                worker.cancel()
                self.query_one("#chat-stats", Label).update(Content.styled("stopped", "yellow"))

    def action_copy_reply(self) -> None:
        if self.last_reply:
            self.app.copy_to_clipboard(self.last_reply)
            self.notify("reply copied")

    def action_clear(self) -> None:
        """A new chat: the screen and the model's saved history both start over."""
        self.history.clear()
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self.query_one("#chat-stats", Label).update("")
        if self.history_model is not None:
            self.forget_history(self.history_model)

    @work(group="chat-history", description="clearing the chat history", exit_on_error=False)
    async def forget_history(self, model: str) -> None:
        await self.app.client.clear_chat_history(model)

    @work(group="chat-history", description="saving the chat history", exit_on_error=False)
    async def keep_history(self, model: str, messages: list[dict]) -> None:
        await self.app.client.save_chat_history(model, messages)

    @on(Select.Changed, "#chat-model")
    def model_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.history_model:
            self.show_history(event.value)

    @work(exclusive=True, group="chat-history-load", description="reading the chat history", exit_on_error=False)
    async def show_history(self, model: str) -> None:
        """Each model keeps its own conversation: choosing it shows where it was left (ctrl+l starts over)."""
        turns = await self.app.client.chat_history(model)
        self.history_model, self.history = model, turns
        log = self.query_one("#chat-log", VerticalScroll)
        await log.remove_children()
        widgets = []
        for turn in turns:
            if turn["role"] == "user":
                widgets.append(Static(Content.from_markup("[b]you[/]  $text", text=turn["content"]),
                                      classes="user-message"))
            else:
                widgets.append(Markdown(turn["content"], classes="reply", parser_factory=reply_parser))
        if widgets:
            await log.mount_all(widgets)
            log.scroll_end(animate=False)
        self.query_one("#chat-stats", Label).update(Content.styled(
            f"earlier conversation with {model}: ctrl+l starts a new one" if turns else "", "dim"))

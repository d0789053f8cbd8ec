"""The llmctl TUI: dashboard, models, servers, chat, monitor and bench, each a mode with its own screen stack.

A thin shell: screens fetch through ``self.app.client`` (the controller's async client) from workers and render
what comes back; worker failures surface once, here, as notifications.
"""

from __future__ import annotations

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content
from textual.worker import Worker, WorkerState

from llmctl.app.client import ControllerClient
from llmctl.app.settings import Settings
from llmctl.catalog.errors import LlmctlError
from llmctl.screens.dashboard import DashboardScreen

POLLS = {"dashboard", "runtime-health", "monitor", "monitor-engines"}
"""Worker groups that poll on a timer: while the controller stays away, their failure is told once, not every tick."""


def highlight(matcher: Matcher, text: str) -> Content:
    """``Matcher.highlight`` parses its candidate as markup; a model name must stay plain text."""
    content = Content(text)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content

SECTIONS = {
    "dashboard": "Dashboard: hardware, running models, the endpoint",
    "models": "Models: local and catalog models with fit for this machine",
    "servers": "Servers: model servers, start/stop, live logs",
    "chat": "Chat: streaming chat with a model",
    "monitor": "Monitor: tokens/s, latency, CPU/RAM/GPU over time; each engine's requests and KV cache",
    "bench": "Bench: benchmark a model, throughput and latency against concurrency, saved runs",
}


class SectionCommands(Provider):
    """Command palette: jump to any section."""

    async def discover(self) -> Hits:
        for mode, help_text in SECTIONS.items():
            yield DiscoveryHit(f"Go to {mode}", lambda m=mode: self.app.switch_mode(m), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for mode, help_text in SECTIONS.items():
            text = f"Go to {mode}"
            if (score := matcher.match(text)) > 0:
                yield Hit(score, highlight(matcher, text), lambda m=mode: self.app.switch_mode(m), help=help_text)


def _lazy(module: str, name: str):
    """A mode factory that imports its screen the first time the section opens (keeps the first paint fast:
    the chat and monitor screens pull in markdown-it and plotext)."""

    def make():
        import importlib

        return getattr(importlib.import_module(f"llmctl.screens.{module}"), name)()

    return make


class ModelCommands(Provider):
    """Command palette: every verb on every model (start, stop, chat, remove), plus import and copy endpoint."""

    async def startup(self) -> None:
        try:
            self.models = [m["name"] for m in await self.app.client.models()]
        except LlmctlError:  # the palette must open even when the controller is away
            self.models = []

    def _commands(self):
        app = self.app
        yield "Import a GGUF file", app.action_import_model, "register a local .gguf (Models screen)"
        yield "Copy the endpoint URL", app.action_copy_endpoint, Content(app.client.base_url + "/v1")
        for name in self.models:
            yield f"Start {name}", lambda n=name: app.run_verb("load", n), "load the model now"
            yield f"Stop {name}", lambda n=name: app.run_verb("unload", n), "stop its server"
            yield f"Chat with {name}", lambda n=name: app.open_chat(n), "open Chat with this model"
            yield f"Remove {name}", lambda n=name: app.run_verb("remove_model", n), "unregister (file stays)"

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(Content(text), callback, text=text, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            if (score := matcher.match(text)) > 0:
                yield Hit(score, highlight(matcher, text), callback, text=text, help=help_text)


class LlmctlApp(App):
    TITLE = "llmctl"
    CSS_PATH = "../assets/llmctl.tcss"
    MODES = {
        "dashboard": DashboardScreen,
        "models": _lazy("models", "ModelsScreen"),
        "servers": _lazy("servers", "ServersScreen"),
        "chat": _lazy("chat", "ChatScreen"),
        "monitor": _lazy("monitor", "MonitorScreen"),
        "bench": _lazy("bench", "BenchScreen"),
    }
    DEFAULT_MODE = "dashboard"
    COMMANDS = App.COMMANDS | {SectionCommands, ModelCommands}
    BINDINGS = [
        Binding("1,f1", "switch_mode('dashboard')", "Dashboard", id="go-dashboard"),
        Binding("2,f2", "switch_mode('models')", "Models", id="go-models"),
        Binding("3,f3", "switch_mode('servers')", "Servers", id="go-servers"),
        Binding("4,f4", "switch_mode('chat')", "Chat", id="go-chat"),
        Binding("5,f5", "switch_mode('monitor')", "Monitor", id="go-monitor"),
        Binding("6,f6", "switch_mode('bench')", "Bench", id="mode-bench"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, settings: Settings, client: ControllerClient, *, notice: str | None = None,
                 mode: str | None = None) -> None:
        if mode is not None:
            self.DEFAULT_MODE = mode  # read by App.__init__: the section the app opens on
        super().__init__()
        self.settings = settings
        self.client = client
        self._notice = notice
        self._poll_failures: dict[str, str] = {}  # poll group -> what its last failure said (told once)

    def on_mount(self) -> None:
        scope = self.client.scope  # which key the TUI holds: told in the header, beside the endpoint
        self.sub_title = self.client.base_url + "/v1" + (f" · {scope} key" if scope else "")
        if self._notice:
            self.notify(self._notice, timeout=8, markup=False)

    def action_copy_endpoint(self) -> None:
        self.copy_to_clipboard(self.client.base_url + "/v1")
        self.notify("endpoint copied")

    async def action_import_model(self) -> None:
        await self.switch_mode("models")
        await self.screen.run_action("import_model")

    @work(group="runtime", description="running a model command", exit_on_error=False)
    async def run_verb(self, verb: str, name: str) -> None:
        result = await getattr(self.client, verb)(name)
        state = result.get("state", "removed")
        self.notify(f"{name}: {state}", markup=False)

    async def open_chat(self, name: str) -> None:
        await self.switch_mode("chat")
        self.screen.preferred_model = name
        self.screen.load_models()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place that turns a failed worker into a notification (every worker runs with
        ``exit_on_error=False``): a 404, a 503, a lost connection or a bug in a screen never ends the app."""
        worker = event.worker
        if worker.group in POLLS and event.state is WorkerState.SUCCESS and worker.group in self._poll_failures:
            del self._poll_failures[worker.group]
            if not self._poll_failures:  # every poll that failed answers again
                self.notify("the controller answers again", markup=False)
        if event.state is not WorkerState.ERROR or worker.error is None:
            return
        error = worker.error
        if isinstance(error, LlmctlError):
            message = f"{error.title}: {error.message}" if error.message else error.title
        else:  # not an ordinary error: still not a reason to end the user's session
            self.log.error(f"worker {worker.name!r} failed", error)
            message = f"{type(error).__name__}: {error}"
        if worker.group in POLLS:
            told = message in self._poll_failures.values()  # by this poll or another one (the controller is away)
            self._poll_failures[worker.group] = message
            if told:
                return
        self.notify(message, title=f"{worker.description or worker.name} failed", severity="error", timeout=10,
                    markup=False)

    async def on_unmount(self) -> None:
        await self.client.aclose()

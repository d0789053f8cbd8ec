"""The llmctl TUI: dashboard, models, servers, chat, monitor and bench, each a mode with its own screen stack.

A thin shell: screens fetch through ``self.app.client`` (the controller's async client) from workers and render
what comes back; worker failures surface once, here, as notifications.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from llmctl.app.client.api import ControllerClient
from llmctl.app.client.wire import ControllerUnavailable
from llmctl.app.settings import Settings
from llmctl.catalog.errors import LlmctlError
from llmctl.screens.base import ControllerBanner, LlmctlScreen
from llmctl.screens.dashboard import DashboardScreen

POLLS = {"dashboard", "runtime-health", "monitor", "monitor-engines"}
"""Worker groups that poll on a timer: while the controller stays away, their failure is told once, not every tick."""


PROBE_EVERY = 2.0  # seconds between asks while the controller is away
TOAST_CHARS = 160  # a failure toast's details past this go to the log pane / the screen that shows the failure


def toast_text(headline: str, details: str) -> str:
    """A failure's toast: its headline and the start of its details, short enough that the headline stays on an
    80x24 screen (a model server's failure carries its whole log tail, which the Servers log pane shows)."""
    details = " ".join(details.split())
    if len(details) > TOAST_CHARS:
        details = details[:TOAST_CHARS].rsplit(" ", 1)[0] + " ..."
    return f"{headline}: {details}" if details else headline


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
        self.models, self.refs = [], []
        try:
            self.models = [m["name"] for m in await self.app.client.models()]
            catalog = await self.app.client.catalog(ctx=self.app.settings.backends.ctx_size)
            self.refs = [(f"{m['name']}:{q['quant']}", q["fits"]) for m in catalog["models"] for q in m["quants"]]
        except LlmctlError:  # the palette must open even when the controller is away
            pass

    def _commands(self):
        app = self.app
        yield "Import a GGUF file", app.action_import_model, "register a local .gguf (Models screen)"
        yield "Copy the endpoint URL", app.action_copy_endpoint, Content(app.client.base_url + "/v1")
        for name in self.models:
            yield f"Start {name}", lambda n=name: app.run_verb("load", n), "load the model now"
            yield f"Stop {name}", lambda n=name: app.run_verb("unload", n), "stop its server"
            yield f"Chat with {name}", lambda n=name: app.open_chat(n), "open Chat with this model"
            yield f"Remove {name}", lambda n=name: app.run_verb("remove_model", n), "unregister (file stays)"
            yield f"Bench {name}", lambda n=name: app.open_bench(n), "open Bench with this model"
        for ref, fits in self.refs:
            yield f"Pull {ref}", lambda r=ref: app.open_pull(r), f"download it (fits here: {fits or '?'})"

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
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # screens lay out for 80 columns below 100
    COMMANDS = App.COMMANDS | {SectionCommands, ModelCommands}
    # the section keys stay out of the footer (an 80-column footer then ends before the screen's own keys); the
    # header names them and ``?`` lists them with the rest
    BINDINGS = [
        Binding("1,f1", "switch_mode('dashboard')", "Dashboard", show=False, id="go-dashboard"),
        Binding("2,f2", "switch_mode('models')", "Models", show=False, id="go-models"),
        Binding("3,f3", "switch_mode('servers')", "Servers", show=False, id="go-servers"),
        Binding("4,f4", "switch_mode('chat')", "Chat", show=False, id="go-chat"),
        Binding("5,f5", "switch_mode('monitor')", "Monitor", show=False, id="go-monitor"),
        Binding("6,f6", "switch_mode('bench')", "Bench", show=False, id="mode-bench"),
        Binding("ctrl+s", "start_controller", "Start controller", id="start-controller"),
        Binding("question_mark", "keys", "Keys", id="keys"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, settings: Settings, client: ControllerClient, *, notice: str | None = None,
                 mode: str | None = None, start_controller: Callable[[], str | None] | None = None,
                 make_client: Callable[[], ControllerClient] | None = None) -> None:
        """``start_controller``: starts a background controller (blocking; run in a thread) and returns what to
        tell the user; offered by the controller-down banner. ``make_client``: a client of the controller running
        now; while none answers, each ask uses a fresh one (a controller started again has a new owner secret,
        which the old client would not accept)."""
        if mode is not None:
            self.DEFAULT_MODE = mode  # read by App.__init__: the section the app opens on
        super().__init__()
        self.settings = settings
        self.client = client
        self._notice = notice
        self._poll_failures: dict[str, str] = {}  # poll group -> what its last failure said (told once)
        self._start_controller = start_controller
        self._make_client = make_client
        self.controller_down: str | None = None  # why, while no controller answers (the banner says it)
        self._probe_timer: Timer | None = None  # asks the controller while it is away, to notice it is back

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

    async def open_pull(self, ref: str) -> None:
        await self.switch_mode("models")
        self.screen.start_pull(ref)

    async def open_bench(self, name: str) -> None:
        await self.switch_mode("bench")
        self.screen.preferred_model = name
        self.screen.load_models()

    async def open_chat(self, name: str) -> None:
        await self.switch_mode("chat")
        self.screen.preferred_model = name
        self.screen.load_models()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place that turns a failed worker into a notification (every worker runs with
        ``exit_on_error=False``): a 404, a 503, a lost connection or a bug in a screen never ends the app. A
        controller that stopped answering becomes the banner on every screen instead (with a key to start it)."""
        worker = event.worker
        if event.state is WorkerState.SUCCESS and worker.group in POLLS | {"probe"}:
            if self.controller_down:
                self._controller_back()
            elif worker.group in self._poll_failures:
                del self._poll_failures[worker.group]
                if not self._poll_failures:  # every poll that failed answers again
                    self.notify("the controller answers again", markup=False)
        if event.state is not WorkerState.ERROR or worker.error is None:
            return
        error = worker.error
        if isinstance(error, ControllerUnavailable):
            self._controller_lost(error)
            if worker.group in POLLS | {"probe"}:
                return  # the banner says it, on every screen, until it answers again
        if isinstance(error, LlmctlError):
            headline, details = error.title, error.message
        else:  # not an ordinary error: still not a reason to end the user's session
            self.log.error(f"worker {worker.name!r} failed", error)
            headline, details = type(error).__name__, str(error)
        message = toast_text(headline, details)
        if worker.group in POLLS:
            told = message in self._poll_failures.values()  # by this poll or another one
            self._poll_failures[worker.group] = message
            if told:
                return
        self.notify(message, title=f"{worker.description or worker.name} failed", severity="error", timeout=10,
                    markup=False)

    # the controller going away and coming back ---------------------------------------------------------------
    def _controller_lost(self, error: LlmctlError) -> None:
        first = self.controller_down is None
        self.controller_down = error.title
        self._show_banner()
        if first:
            self.refresh_bindings()
            self._probe_timer = self.set_interval(PROBE_EVERY, self.probe)

    def _controller_back(self) -> None:
        self.controller_down = None
        self._poll_failures.clear()
        if self._probe_timer is not None:
            self._probe_timer.stop()
            self._probe_timer = None
        self.refresh_bindings()
        self._show_banner()
        self.notify("the controller answers again", markup=False, timeout=3)
        if isinstance(self.screen, LlmctlScreen):
            self.screen.recover()

    def _show_banner(self) -> None:
        for banner in self.screen.query(ControllerBanner):
            banner.show(self.controller_down)

    @work(exclusive=True, group="probe", description="asking the controller", exit_on_error=False)
    async def probe(self) -> None:
        if self._make_client is not None:
            old, self.client = self.client, self._make_client()
            await old.aclose()
        await self.client.status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_controller":
            return self.controller_down is not None  # offered (and in the footer) only while it is away
        return True

    def action_start_controller(self) -> None:
        if self._start_controller is None:
            self.notify("start it with `llmctl serve` in another terminal", severity="warning", markup=False)
            return
        self.notify("starting the controller...", timeout=3)
        self.start_controller()

    @work(thread=True, exclusive=True, group="controller-start", description="starting the controller",
          exit_on_error=False)
    def start_controller(self) -> None:
        assert self._start_controller is not None
        notice = self._start_controller()
        if notice:
            self.call_from_thread(self.notify, notice, timeout=8, markup=False)
        self.call_from_thread(self.probe)

    # keys ---------------------------------------------------------------------------------------------------
    def action_keys(self) -> None:
        from llmctl.screens.keys import KeysScreen

        screen = self.screen
        if isinstance(screen, KeysScreen):
            return
        groups: dict[str, dict[str, tuple[list[str], str]]] = {"This screen": {}, "Sections": {}, "Everywhere": {}}
        # llmctl's own keys only: Textual's (focus next, copy text) and a widget's (a table's cursor, an input's
        # editing) are the usual ones and would push these off an 80x24 screen
        ours = {b.action for cls in type(screen).__mro__ if issubclass(cls, LlmctlScreen) or cls is type(screen)
                for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding)}
        for _key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or (active.node is screen and binding.action not in ours) \
                    or (active.node is not screen and active.node is not self):
                continue
            group = ("This screen" if active.node is screen else
                     "Sections" if binding.action.startswith("switch_mode") else "Everywhere")
            keys, _ = groups[group].setdefault(binding.action, ([], binding.description))
            keys.append(self.get_key_display(binding))
        rows = [(name, [("/".join(keys), text) for keys, text in entries.values()])
                for name, entries in groups.items()]
        rows[1] = ("Sections", [("1-6, f1-f6", ", ".join(text for _keys, text in groups["Sections"].values()))])
        self.push_screen(KeysScreen((screen.title or self.title).removeprefix("llmctl: "), rows))

    async def on_unmount(self) -> None:
        await self.client.aclose()

"""A TUI action that fails becomes a notification; the app never exits on an ordinary error.

Each action is driven through its key against a client that raises what the real one raises (a 404 or 503 from the
controller, no controller, a lost connection), or a raw ``httpx`` error as if one slipped past the client; then the
same action is tried again with the failure gone, to show the session goes on.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fakes import FakeClient
from test_markup import alive

from llmctl.app.client.wire import ControllerError, ControllerUnavailable

NOT_RUNNING = ControllerError("the controller refused (404)", "'tiny' is not running", status=404)
LOADING = ControllerError("the controller refused (503)", "tiny did not become ready: out of memory", status=503)
NO_MODEL = ControllerError("the controller refused (404)", "no model named 'tiny'", status=404)
AWAY = ControllerUnavailable("no llmctl controller is running at http://127.0.0.1:7878", "start one")
LOST = ControllerUnavailable("lost the connection to the controller at http://127.0.0.1:7878",
                             "RemoteProtocolError: Server disconnected; try again.")
RAW = httpx.ConnectError("[Errno 111] Connection refused")


def errors(app) -> list[str]:
    return [f"{n.title} | {n.message}" for n in app._notifications if n.severity == "error"]


async def settle(app, pilot) -> None:
    """Wait for every worker, failed ones included (``wait_for_complete`` raises for a worker that fails while
    it waits), then for the messages they posted."""
    await pilot.pause()
    await asyncio.gather(*(worker.wait() for worker in list(app.workers)), return_exceptions=True)
    await pilot.pause()


async def remove(pilot) -> None:
    await pilot.press("delete")
    await pilot.pause()
    await pilot.click("#remove-ok")


def keys(*pressed: str):
    async def act(pilot) -> None:
        await pilot.press(*pressed)

    return act


ACTIONS = [
    # (mode, keys before, the action, client method that fails, error, the call it makes, what it says after)
    ("servers", [], keys("s"), "load", LOADING, ("load", "llama-3.1-8b-instruct-q4_k_m"), "is ready"),
    ("servers", [], keys("x"), "unload", NOT_RUNNING, ("unload", "llama-3.1-8b-instruct-q4_k_m"), "is stopped"),
    ("servers", [], keys("R"), "load", RAW, ("load", "llama-3.1-8b-instruct-q4_k_m"), "restarted: ready"),
    ("models", ["down"], keys("s"), "load", AWAY, ("load", "tiny"), "tiny is ready"),
    ("models", ["down"], remove, "remove_model", NO_MODEL, ("remove", "tiny"), "removed tiny"),
    ("models", [], keys("i", *"/m/new.gguf", "enter"), "import_model", LOST, ("import", "/m/new.gguf", None),
     "imported imported"),
]


@pytest.mark.parametrize(("mode", "before", "act", "method", "error", "call", "after"), ACTIONS,
                         ids=[f"{a[0]}-{a[3]}-{type(a[4]).__name__}" for a in ACTIONS])
async def test_a_failed_action_is_a_notification_and_the_next_one_works(
        make_app, mode, before, act, method, error, call, after) -> None:
    client = FakeClient(fail={method: error})
    app = make_app(client, mode)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press(*before)
        await settle(app, pilot)
        await act(pilot)
        await settle(app, pilot)
        assert alive(app)
        assert call in client.calls
        (failure,) = errors(app)
        assert (error.title if hasattr(error, "title") else str(error)) in failure  # what went wrong, said once
        assert "failed |" in failure  # and which action it was
        client.fail.clear()
        client.calls.clear()
        await act(pilot)
        await settle(app, pilot)
        assert call in client.calls and alive(app)
        assert any(after in n.message for n in app._notifications), [n.message for n in app._notifications]


async def test_restart_of_a_stopped_server_starts_it(make_app) -> None:
    client = FakeClient(fail={"unload": NOT_RUNNING})
    app = make_app(client, "servers")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("R")
        await settle(app, pilot)
        name = "llama-3.1-8b-instruct-q4_k_m"
        assert client.calls[-2:] == [("unload", name), ("load", name)]
        assert errors(app) == []


async def test_a_palette_verb_that_fails_is_a_notification(make_app) -> None:
    client = FakeClient(fail={"unload": NOT_RUNNING})
    app = make_app(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        app.run_verb("unload", "tiny")
        await settle(app, pilot)
        assert alive(app)
        assert errors(app) == ["running a model command failed | the controller refused (404): 'tiny' is not running"]


@pytest.mark.parametrize("error", [AWAY, RAW, LOADING], ids=["unavailable", "httpx", "503"])
async def test_a_chat_turn_that_fails_is_not_kept(make_app, error) -> None:
    client = FakeClient(fail={"stream_chat": error})
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press(*"first", "enter")
        await settle(app, pilot)
        assert alive(app) and len(errors(app)) == 1 and errors(app)[0].startswith("chatting failed | ")
        assert "failed" in str(app.screen.query_one("#chat-stats").render())
        assert app.screen.history == []
        client.fail.clear()
        await pilot.press(*"second", "enter")
        await settle(app, pilot)
        assert client.calls[-1][2] == [{"role": "user", "content": "second"}]  # "first" never entered the history
        assert [m["content"] for m in app.screen.history] == ["second", "Hello! **How** can I help? "]


async def test_a_chat_turn_that_fails_midway_is_not_kept(make_app) -> None:
    client = FakeClient(fail={"stream_chat": LOST}, fail_after=2)
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press(*"first", "enter")
        await settle(app, pilot)
        assert alive(app) and len(errors(app)) == 1
        assert app.screen.query_one(".reply").source == "Hello! **How** "  # what came is still on screen
        assert app.screen.history == [] and app.screen.last_reply == ""


async def _poll_dashboard(app, pilot) -> None:
    await pilot.press("r")
    await settle(app, pilot)


async def _poll_servers(app, pilot) -> None:
    app.screen.poll()
    await settle(app, pilot)


async def _poll_monitor(app, pilot) -> None:
    app.screen.sample()
    await settle(app, pilot)


POLLS = [("dashboard", "hardware", _poll_dashboard), ("servers", "backends", _poll_servers),
         ("monitor", "requests_snapshot", _poll_monitor)]


def banner(app) -> str | None:
    """The controller-down banner's text, or None while it is hidden."""
    found = app.screen.query("#controller-banner")
    return str(found.first().render()) if found and found.first().display else None


@pytest.mark.parametrize(("mode", "method", "poll"), POLLS, ids=[p[0] for p in POLLS])
async def test_a_controller_away_is_a_banner_until_it_answers(make_app, mode, method, poll) -> None:
    """No controller: no toast every tick and no stale figures left looking live, but one line on the screen that
    says so and offers the key that starts it again (offered only then); back, the banner goes and it is told."""
    client = FakeClient()
    app = make_app(client, mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert banner(app) is None and app.check_action("start_controller", ()) is False
        client.down = LOST
        for _ in range(3):
            await poll(app, pilot)
        client.down = AWAY
        await poll(app, pilot)
        assert alive(app) and errors(app) == []
        assert banner(app) is not None and "ctrl+s  starts the controller again" in banner(app)
        assert AWAY.title in banner(app)
        assert app.check_action("start_controller", ()) is True
        client.down = None
        await poll(app, pilot)
        assert banner(app) is None
        assert [n.message for n in app._notifications][-1] == "the controller answers again"


async def test_the_banner_key_starts_the_controller_and_every_screen_recovers(make_app) -> None:
    """ctrl+s runs the app's start function (the CLI passes `ensure_controller`); the screen on show fetches again
    at once, and a section opened while it was away fetches again when it shows."""
    client = FakeClient()
    started: list[bool] = []

    def start() -> str:
        started.append(True)
        client.down = None
        return "Started a background controller"

    app = make_app(client, "models")
    app._start_controller = start
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        client.down = AWAY
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("3")  # Servers opens while the controller is away: empty, with the banner
        await settle(app, pilot)
        assert banner(app) is not None and app.screen.query_one("DataTable").row_count <= 1
        await pilot.press("2")
        await settle(app, pilot)
        app.screen.rows.clear()
        app.screen._fill()  # what a Models screen opened with no controller shows: nothing
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        await settle(app, pilot)
        assert started == [True]
        assert banner(app) is None
        assert app.screen.query_one("DataTable").row_count == 4  # fetched again on its own
        assert "Started a background controller" in [n.message for n in app._notifications]
        await pilot.press("3")
        await settle(app, pilot)
        assert banner(app) is None and app.screen.selected == "llama-3.1-8b-instruct-q4_k_m"


async def test_a_long_failure_keeps_its_headline_in_a_short_toast(make_app) -> None:
    """A model server's failure carries its whole log tail: the toast keeps the headline and the start of it."""
    tail = "\n".join(f"llama_model_load: line {i} of the engine's log" for i in range(28))
    client = FakeClient(fail={"load": ControllerError("the controller refused (503)", "tiny failed: " + tail,
                                                         status=503)})
    app = make_app(client, "servers")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        [toast] = [n for n in app._notifications if n.severity == "error"]
        assert toast.message.startswith("the controller refused (503): tiny failed: llama_model_load: line 0")
        assert len(toast.message) < 220 and "\n" not in toast.message


async def test_a_bug_in_a_worker_is_a_notification_too(make_app) -> None:
    client = FakeClient()
    client.backend_list = [{"model": "broken"}]  # a shape the screen cannot read: KeyError in the worker
    app = make_app(client, "servers")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        assert alive(app)
        assert errors(app) == ["reading the model servers failed | KeyError: 'state'"]


async def test_a_controller_started_again_is_reached_with_a_fresh_client(make_app) -> None:
    """A controller started again has a new owner secret: while none answers, each ask uses a new client from the
    app's factory (the CLI's ``ctx.client``), and the screens use the one that answered."""
    old, new = FakeClient(), FakeClient()
    old.down = AWAY
    made: list[FakeClient] = []

    def make() -> FakeClient:
        made.append(new)
        return new

    app = make_app(old, "dashboard")
    app._make_client = make
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert banner(app) is not None
        app.probe()
        await settle(app, pilot)
        assert made and app.client is new and banner(app) is None

"""Every screen at 80x24 and 120x36, against fixed data from the fake client (review before --snapshot-update)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

SIZES = [(80, 24), (120, 36)]


@pytest.fixture(autouse=True)
def one_sample_per_screen(monkeypatch) -> None:
    """A snapshot shows the first poll of each screen only: on a loaded machine a 1 s poll could otherwise land
    before the capture, plotting a second point (seen in CI). The polls themselves are what the flows tests cover."""
    from llmctl.screens import dashboard, monitor, servers

    for module, name in ((dashboard, "REFRESH_EVERY"), (servers, "POLL_EVERY"), (monitor, "SAMPLE_EVERY"),
                         (monitor, "ENGINE_POLL")):
        monkeypatch.setattr(module, name, 3600.0)
SCREENS = ["dashboard", "models", "servers", "chat", "monitor", "bench"]


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_compare, make_app, screen: str, size: tuple[int, int]) -> None:
    async def run_before(pilot) -> None:
        await _settle(pilot)
        if screen == "chat":
            await pilot.press(*"Hi there", "enter")
            await _settle(pilot)
        if screen == "models":
            await pilot.press("down")
            await _settle(pilot)

    assert snap_compare(make_app(mode=screen), terminal_size=size, run_before=run_before)


def test_chat_with_reasoning(snap_compare, make_app) -> None:
    """A reasoning model's thinking, dimmed and set apart above the answer."""
    from fakes import FakeClient

    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press(*"What is 2+2?", "enter")
        await _settle(pilot)

    client = FakeClient(reply="It is **4**.", reasoning="The user asks for 2+2. That is 4; say it plainly.")
    assert snap_compare(make_app(client, mode="chat"), terminal_size=(120, 36), run_before=run_before)


def test_pull_progress(snap_compare, make_app) -> None:
    """A pull of a catalog model half-way: its total bar and a bar per file, under the table (80x24)."""
    from fakes import FakeClient

    async def run_before(pilot) -> None:
        await _settle(pilot)
        pilot.app.screen.query_one("DataTable").move_cursor(row=2)
        await pilot.press("p")
        for _ in range(40):
            await pilot.pause(0.05)
            views = pilot.app.screen.query("PullView")
            if views and views.first().status["files"][1]["done"]:
                break
        await pilot.pause()

    client = FakeClient(pull_hold=9)  # file 1 verified, file 2 at a quarter
    assert snap_compare(make_app(client, mode="models"), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_pulls(snap_compare, make_app, size: tuple[int, int]) -> None:
    """The Dashboard's Pulls lines: one pull running at a third, one cancelled with a quarter kept (partial)."""
    from fakes import FakeClient

    client = FakeClient()

    async def run_before(pilot) -> None:
        for ref, events, cancel in (("qwen2.5-7b-instruct:Q4_K_M", 3, False), ("llama3.2-3b-instruct:Q4_K_M", 2, True)):
            pull = await client.start_pull(ref)
            stream = client.pull_events(pull["id"])
            for _ in range(events):
                await anext(stream)
            if cancel:
                await client.cancel_pull(pull["id"])
                await anext(stream)
            await stream.aclose()
        await pilot.press("r")
        await _settle(pilot)

    assert snap_compare(make_app(client, mode="dashboard"), terminal_size=size, run_before=run_before)


def test_monitor_engines(snap_compare, make_app) -> None:
    """The Monitor's Engines tab: a llama.cpp model's figures (no preemptions: n/a) with its first sample plotted, and
    an Ollama model whose engine reports no metrics."""
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("e")
        await _settle(pilot)

    assert snap_compare(make_app(mode="monitor"), terminal_size=(120, 36), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_what_fits(snap_compare, make_app, size: tuple[int, int]) -> None:
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("f")
        await _settle(pilot)

    assert snap_compare(make_app(mode="models"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_keys_overlay(snap_compare, make_app, size: tuple[int, int]) -> None:
    """? over the Models screen: its own keys first, then the sections and the app-wide ones."""
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await _settle(pilot)

    assert snap_compare(make_app(mode="models"), terminal_size=size, run_before=run_before)


def test_controller_down_banner(snap_compare, make_app) -> None:
    """The Dashboard at 80x24 with no controller: the banner under the header, ctrl+s in the footer."""
    from fakes import FakeClient

    from llmctl.app.client.wire import ControllerUnavailable

    client = FakeClient()

    async def run_before(pilot) -> None:
        await _settle(pilot)
        client.down = ControllerUnavailable("no llmctl controller is running at http://127.0.0.1:7878", "start one")
        await pilot.press("r")
        await _settle(pilot)

    assert snap_compare(make_app(client), terminal_size=(80, 24), run_before=run_before)


def test_import_dialog(snap_compare, make_app) -> None:
    """The import dialog at 80x24: its text whole, inside the screen."""
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("i")
        await pilot.pause()  # not _settle: the import worker waits on this dialog

    assert snap_compare(make_app(mode="models"), terminal_size=(80, 24), run_before=run_before)


def test_bench_after_a_run(snap_compare, make_app, monkeypatch) -> None:
    """Bench at 100x30 after a run at concurrency 1,4,8: a progress line per level, both plots, the saved runs
    (dated in UTC here: the table shows local time)."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    async def run_before(pilot) -> None:
        await _settle(pilot)
        pilot.app.screen.query_one("#bench-runs").focus()
        await pilot.press("b")
        await _settle(pilot)

    assert snap_compare(make_app(mode="bench"), terminal_size=(100, 30), run_before=run_before)


def test_hub_search(snap_compare, make_app) -> None:
    """Hub search at 80x24 after a search: a row per quant with its size and fit badge."""
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("h")
        await _settle(pilot)
        await pilot.press(*"qwen3", "enter")
        await _settle(pilot)

    assert snap_compare(make_app(mode="models"), terminal_size=(80, 24), run_before=run_before)

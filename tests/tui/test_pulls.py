"""Pulling from the Models screen and the "What fits" view, with the fake client (pulls run in the controller; the
screen follows their events)."""

from __future__ import annotations

from fakes import FakeClient
from textual.widgets import DataTable, ProgressBar, Select

from llmctl.app.client.wire import ControllerError, ControllerUnavailable
from llmctl.screens.models import PullUpdated, PullView

QWEN = "qwen2.5-7b-instruct:Q4_K_M"


async def _to_catalog_row(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    table = app.screen.query_one(DataTable)
    table.move_cursor(row=2)  # two local models, then the catalog
    await pilot.pause()


def _notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_p_pulls_a_catalog_row_and_the_model_appears_when_verified(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "models")
    seen: list = []
    async with app.run_test(size=(120, 36), message_hook=seen.append) as pilot:
        await _to_catalog_row(app, pilot)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert ("start_pull", QWEN, None) in client.calls
        table = app.screen.query_one(DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "qwen2.5-7b-instruct-q4_k_m" in names  # registered, listed as a local model
        view = app.screen.query_one(PullView)
        assert view.status["state"] == "done"
        assert view.query_one("#pull-total", ProgressBar).percentage == 1.0
        assert "pulled qwen2.5-7b-instruct:Q4_K_M; registered as qwen2.5-7b-instruct-q4_k_m" in _notes(app)
        updates = [m for m in seen if isinstance(m, PullUpdated)]
        assert updates and updates[-1].status["state"] == "done"


async def test_progress_per_file_and_in_total_then_cancel(make_app) -> None:
    client = FakeClient(pull_hold=4)  # file 1 at 75%, file 2 not started
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await _to_catalog_row(app, pilot)
        await pilot.press("p")
        for _ in range(20):
            await pilot.pause(0.05)
            if app.screen.query(PullView) and app.screen.query_one(PullView).status["done_bytes"]:
                break
        view = app.screen.query_one(PullView)
        assert view.query_one("#pull-file-0", ProgressBar).percentage == 0.75
        assert view.query_one("#pull-file-1", ProgressBar).percentage == 0.0
        assert 0 < view.query_one("#pull-total", ProgressBar).percentage < 0.75
        assert "downloading" in str(view.query_one("#pull-title").render())
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert ("cancel_pull", "p1") in client.calls
        assert view.status["state"] == "cancelled"
        assert any("pull cancelled" in n for n in _notes(app))
        table = app.screen.query_one(DataTable)
        assert table.row_count == 4  # nothing registered


async def test_a_pull_that_breaks_mid_way_is_a_notification_not_an_exit(make_app) -> None:
    lost = ControllerUnavailable("lost the connection to the controller at [b]x", "[@click=app.quit]try again")
    client = FakeClient(fail={"pull_events": lost}, fail_after=3)
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await _to_catalog_row(app, pilot)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running
        view = app.screen.query_one(PullView)
        assert view.status["state"] == "failed"
        assert any("lost the connection to the controller at [b]x" in n for n in _notes(app))  # plain text
        assert len([n for n in _notes(app) if "lost the connection" in n]) == 1


async def test_a_refused_pull_and_a_local_row_are_notifications(make_app) -> None:
    client = FakeClient(fail={"start_pull": ControllerError("the controller refused (503)",
                                                           "offline: cannot list org/x: unset --offline")})
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("p")  # the first row is a local model
        await pilot.pause()
        assert any("local ones are here already" in n for n in _notes(app))
        await _to_catalog_row(app, pilot)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and any("offline: cannot list org/x" in n for n in _notes(app))
        assert not app.screen.query(PullView)


async def test_pulls_already_running_in_the_controller_are_followed_on_open(make_app) -> None:
    client = FakeClient()
    await client.start_pull(QWEN)  # started elsewhere (the CLI, an earlier TUI)
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.screen.query_one(PullView).status["state"] == "done"


def test_progress_messages_collapse_but_never_over_the_end() -> None:
    status = {"id": "p1", "state": "downloading"}
    older, newer = PullUpdated(dict(status), "progress"), PullUpdated(dict(status), "progress")
    assert newer.can_replace(older)
    assert not PullUpdated({"id": "p2", "state": "downloading"}, "progress").can_replace(older)
    assert not newer.can_replace(PullUpdated({"id": "p1", "state": "done"}, "done"))


async def test_what_fits_shows_bars_picks_a_gpu_and_pulls_the_selection(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        from llmctl.screens.fits import FitsScreen

        assert isinstance(app.screen, FitsScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        bar = table.get_row_at(0)[6]
        assert len(bar.plain) == 20 and "█" in bar.plain
        assert "this machine" in str(app.screen.query_one("#fits-device").render())
        app.screen.query_one("#fits-gpu", Select).value = "RTX 4090"
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert ("recommend", 8192, "RTX 4090") in client.calls or any(
            c[0] == "recommend" and c[2] == "RTX 4090" for c in client.calls)
        assert "RTX 4090" in str(app.screen.query_one("#fits-device").render())
        table.move_cursor(row=1)
        await pilot.pause()
        assert "qwen2.5-7b-instruct:Q8_0" in str(app.screen.query_one("#fits-why").render())
        await pilot.press("p")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert not isinstance(app.screen, FitsScreen)
        assert ("start_pull", "qwen2.5-7b-instruct:Q8_0", None) in client.calls

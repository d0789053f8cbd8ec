"""The Monitor's Engines tab against the fake client: each loaded model's figures, "engine reports no metrics" (not
zeros) for an engine that reports none, the highlighted model's history, models coming and going, and a controller
without the route (an older one still running) told once while the rest of the monitor goes on."""

from __future__ import annotations

import copy

from fakes import ENGINE_METRICS, FakeClient, figures
from test_markup import alive
from test_worker_errors import AWAY, errors, settle
from textual.widgets import DataTable, Label, TabbedContent

from llmctl.app.client.wire import ControllerError
from llmctl.screens.engine_panel import EnginePanel

LLAMA, OLLAMA = ENGINE_METRICS[0]["model"], ENGINE_METRICS[1]["model"]


def row(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def detail(app) -> str:
    return str(app.screen.query_one("#engine-detail", Label).render())


async def test_the_engines_tab_shows_each_model_and_says_when_an_engine_reports_nothing(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        assert app.screen.query_one(TabbedContent).active == "monitor-engines"
        table = app.screen.query_one("#engine-table", DataTable)
        assert app.focused is table
        assert row(table, LLAMA) == [LLAMA, "6.1 GiB", "2", "1", "18%", "63%", "n/a"]  # llama.cpp: no preemptions
        assert row(table, OLLAMA) == [OLLAMA, "523.0 MiB", "engine reports no metrics", "", "", "", ""]
        assert detail(app).startswith(f"{LLAMA} on llama-server: 243 prompt tokens (63% from the prefix cache)")
        panel = app.screen.query_one(EnginePanel)
        assert panel.selected == LLAMA
        assert panel.history[LLAMA]["kv"].last() == 18.0  # percent
        assert all(not s.points for s in panel.history[OLLAMA].values())  # nothing plotted, not a line at zero

        client.engine_list[0]["figures"] = figures(running=4, waiting=3, kv=0.5)
        app.screen.sample_engines()
        await settle(app, pilot)
        assert row(table, LLAMA)[2:5] == ["4", "3", "50%"]
        running = [v for _, v in panel.history[LLAMA]["running"].points]
        assert running[0] == 2 and running[-1] == 4 and set(running) == {2, 4}  # the poll may have run meanwhile
        assert panel.history[LLAMA]["waiting"].last() == 3

        await pilot.press("down")
        await settle(app, pilot)
        assert panel.selected == OLLAMA
        assert detail(app) == f"{OLLAMA} on ollama: engine reports no metrics"
        app.screen.sample_engines()  # a refresh keeps the model picked
        await settle(app, pilot)
        assert panel.selected == OLLAMA and table.cursor_row == 1

        await pilot.press("g")
        await settle(app, pilot)
        assert app.screen.query_one(TabbedContent).active == "monitor-gateway"


async def test_models_come_and_go(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        panel = app.screen.query_one(EnginePanel)
        table = app.screen.query_one("#engine-table", DataTable)
        client.engine_list = [{**copy.deepcopy(ENGINE_METRICS[0]), "state": "stopped", "figures": None,
                               "note": "the model is stopped"}, ENGINE_METRICS[1]]
        app.screen.sample_engines()
        await settle(app, pilot)
        assert table.row_count == 1 and LLAMA not in panel.history and panel.selected == OLLAMA
        client.engine_list = [{**copy.deepcopy(ENGINE_METRICS[0]), "state": "starting", "figures": None,
                               "note": "the model is starting"}]
        app.screen.sample_engines()
        await settle(app, pilot)
        assert row(table, LLAMA)[2] == "the model is starting"
        client.engine_list = []
        app.screen.sample_engines()
        await settle(app, pilot)
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "no model loaded"
        assert panel.selected is None and detail(app) == "no model loaded"


async def test_a_controller_without_the_route_says_so_in_the_panel(make_app) -> None:
    old = ControllerError("the controller refused (404)", "Not Found", status=404)  # an older llmctl still running
    app = make_app(FakeClient(fail={"engine_metrics": old}), "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        assert alive(app) and errors(app) == []
        assert "does not report engine metrics: it is an older llmctl" in detail(app)


async def test_a_failing_engine_route_is_told_once_and_the_gateway_plots_go_on(make_app) -> None:
    """Two polls on one screen: one failing while the other succeeds is told once, not once a second."""
    broken = ControllerError("the controller refused (500)", "internal error", status=500)
    client = FakeClient(fail={"engine_metrics": broken})
    client.records = [{"id": 1, "model": "m", "tokens_per_s": 42.0, "ttft_ms": 120.0, "itl_ms": 20.0, "status": 200}]
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        for _ in range(3):
            app.screen.sample_engines()
            app.screen.sample()
            await settle(app, pilot)
        assert alive(app)
        assert errors(app) == ["reading the engines' metrics failed | the controller refused (500): internal error"]
        assert app.screen.series["tps"].last() == 42.0
        client.fail.clear()
        app.screen.sample_engines()
        await settle(app, pilot)
        assert [n.message for n in app._notifications][-1] == "the controller answers again"


async def test_a_controller_away_is_one_banner_for_both_polls(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        client.down = AWAY
        for _ in range(2):
            app.screen.sample_engines()
            app.screen.sample()
            await settle(app, pilot)
        assert errors(app) == [] and app.screen.query_one("#controller-banner").display
        client.down = None
        app.screen.sample_engines()
        await settle(app, pilot)
        assert not app.screen.query_one("#controller-banner").display
        assert [n.message for n in app._notifications].count("the controller answers again") == 1


async def test_the_engines_poll_runs_only_while_the_engines_tab_shows(make_app, monkeypatch) -> None:
    """Each poll costs the controller a scrape of every engine: none on the Gateway tab, none from another mode,
    and none after a controller said it has no such route."""
    from llmctl.screens import monitor

    monkeypatch.setattr(monitor, "ENGINE_POLL", 0.05)
    client = FakeClient()
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.pause(0.5)
        assert client.engine_polls == 0  # the Gateway tab shows first
        await pilot.press("e")
        await pilot.pause(0.5)
        assert client.engine_polls >= 3
        await pilot.press("g")
        await settle(app, pilot)
        seen = client.engine_polls
        await pilot.pause(0.5)
        assert client.engine_polls == seen
        await pilot.press("e")
        await pilot.pause(0.2)
        await pilot.press("1")  # the dashboard: the monitor is suspended with its Engines tab showing
        await settle(app, pilot)
        seen = client.engine_polls
        await pilot.pause(0.5)
        assert client.engine_polls == seen
        await pilot.press("5")  # back: the tab still shows, so the poll goes on
        await pilot.pause(0.5)
        assert client.engine_polls >= seen + 3


async def test_a_controller_without_the_route_is_asked_once(make_app, monkeypatch) -> None:
    from llmctl.screens import monitor

    monkeypatch.setattr(monitor, "ENGINE_POLL", 0.05)
    old = ControllerError("the controller refused (404)", "Not Found", status=404)
    client = FakeClient(fail={"engine_metrics": old})
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause(0.5)
        assert client.engine_polls == 1
        assert "does not report engine metrics" in detail(app)

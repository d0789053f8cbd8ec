"""The Bench screen with the fake client: a run fills the plots and the saved-runs table, cancel and failure leave the
app running; plus the real client's ``bench`` against a mocked endpoint (no model server)."""

from __future__ import annotations

import json

import httpx
from fakes import FakeClient
from textual.widgets import DataTable, Input, Label, Static

from llmctl.app.bench.events import Calibrated, LevelFinished, LevelStarted, Note, RequestFinished
from llmctl.app.client.api import ControllerClient
from llmctl.app.client.wire import ControllerError
from llmctl.screens.bench import BenchScreen, parse_levels, top_throughput


def _notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _run(app, pilot, levels: str = "1,4") -> None:
    await _settle(app, pilot)
    app.screen.query_one("#bench-levels", Input).value = levels
    app.screen.query_one("#bench-runs", DataTable).focus()
    await pilot.press("b")


def _rows(app) -> list[list[str]]:
    table = app.screen.query_one("#bench-runs", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_saved_runs_are_listed_newest_first(make_app) -> None:
    app = make_app(FakeClient(), "bench")
    async with app.run_test(size=(120, 36)) as pilot:
        await _settle(app, pilot)
        assert isinstance(app.screen, BenchScreen)
        rows = _rows(app)
        assert [r[1:] for r in rows] == [["llama-3.1-8b-instruct-q4_k_m", "llama-server", "1,4,8", "211.1"],
                                         ["tiny", "llama-server", "1,4", "121.3"]]


async def test_a_run_with_two_levels_fills_the_plots_and_the_table(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "bench")
    async with app.run_test(size=(120, 36)) as pilot:
        await _run(app, pilot)
        await _settle(app, pilot)
        assert ("bench", "llama-3.1-8b-instruct-q4_k_m", [1, 4], 64) in client.calls
        screen = app.screen
        data = screen.series()
        assert data["concurrency"] == [1.0, 4.0]
        assert data["tokens_per_s"] == [40.0, 40.0 * 4 ** 0.8]
        assert data["ttft_p50"] == [70.0, 130.0] and data["ttft_p90"] == [110.0, 200.0]
        progress = str(screen.query_one("#bench-progress", Static).render())
        assert "c=1: 4 done, 0 failed, 40.0 tok/s, TTFT p50 70 ms" in progress
        assert "c=4: 4 done, 0 failed, 121.3 tok/s, TTFT p50 130 ms" in progress
        assert "saved as 20250103-100000-llama-3.1-8b-instruct-q4_k_m" in progress
        assert str(screen.query_one("#bench-status", Label).render()).startswith("done:")
        assert len(_rows(app)) == 3 and _rows(app)[0][3] == "1,4"  # the new run, on top


async def test_cancel_mid_run_says_cancelled_and_the_app_keeps_running(make_app) -> None:
    client = FakeClient(bench_hold=3)  # calibrated, c=1 started, one request done
    app = make_app(client, "bench")
    async with app.run_test(size=(120, 36)) as pilot:
        await _run(app, pilot)
        for _ in range(40):
            await pilot.pause(0.02)
            if "1/4" in str(app.screen.query_one("#bench-progress", Static).render()):
                break
        await pilot.press("c")
        await _settle(app, pilot)
        assert str(app.screen.query_one("#bench-status", Label).render()) == "cancelled"
        assert app.is_running and app.screen.results == []
        assert len(_rows(app)) == 2  # nothing saved


async def test_a_failure_mid_run_is_a_notification_and_the_app_keeps_running(make_app) -> None:
    client = FakeClient(fail={"bench": ControllerError("the controller refused (503)", "[b]no slot[/b]")},
                        fail_after=8)  # after c=1 finished
    app = make_app(client, "bench")
    async with app.run_test(size=(120, 36)) as pilot:
        await _run(app, pilot)
        await _settle(app, pilot)
        assert app.is_running
        assert "the controller refused (503): [b]no slot[/b]" in _notes(app)  # plain text, not markup
        assert str(app.screen.query_one("#bench-status", Label).render()).startswith("failed:")
        assert app.screen.series()["concurrency"] == [1.0]  # the level that finished stays plotted


async def test_mode_6_opens_bench(make_app) -> None:
    app = make_app(FakeClient(), "dashboard")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("6")
        await _settle(app, pilot)
        assert isinstance(app.screen, BenchScreen)


def test_levels_and_top_throughput() -> None:
    assert parse_levels(" 1, 4,8") == [1, 4, 8]
    for bad in ("", "0", "a,2"):
        try:
            parse_levels(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert top_throughput({"levels": [{"max_concurrency": 8, "output_throughput": 3.0},
                                      {"max_concurrency": 2, "output_throughput": 9.0}]}) == 3.0
    assert top_throughput({"levels": []}) is None


def _endpoint(request: httpx.Request) -> httpx.Response:
    """An OpenAI endpoint that counts prompt words as tokens and streams three tokens."""
    body = json.loads(request.content)
    words = len(body["messages"][0]["content"].split())
    if not body.get("stream"):
        return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": words + 10}})
    lines = [{"choices": [{"delta": {"content": "x"}}]}] * 3
    lines.append({"choices": [], "usage": {"prompt_tokens": words + 10, "completion_tokens": 3}})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in lines) + "data: [DONE]\n\n"
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


async def test_the_real_clients_bench_yields_the_runners_events_and_saves(tmp_path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            assert request.headers["authorization"] == "Bearer k"
            return _endpoint(request)
        if request.url.path == "/llmctl/v1/backends":
            return httpx.Response(200, json={"backends": []})
        if request.url.path == "/llmctl/v1/hardware":
            return httpx.Response(200, json={"cpu": {"model": "x"}, "gpus": []})
        return httpx.Response(404, json={"error": "no"})

    async with ControllerClient("http://127.0.0.1:7878", "k", transport=httpx.MockTransport(handler),
                                bench_dir=tmp_path) as client:
        events = [e async for e in client.bench("tiny", [1, 2], requests=2, max_tokens=3, save=True)]
        kinds = [type(e) for e in events]
        assert kinds[0] is Calibrated and kinds[-1] is Note
        assert kinds.count(LevelStarted) == 2 and kinds.count(RequestFinished) == 4
        finished = [e.result for e in events if isinstance(e, LevelFinished)]
        assert [r["max_concurrency"] for r in finished] == [1, 2] and finished[0]["total_output_tokens"] == 6
        runs = await client.bench_history()
        assert len(runs) == 1 and runs[0]["target"]["model"] == "tiny"
        assert events[-1].text == f"saved as {runs[0]['id']}"

"""The real TUI against a real controller and a real llama.cpp backend on the tiny model."""

from __future__ import annotations

from textual.widgets import Input, Markdown, Select

from llmctl.app.client.api import ControllerClient
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings


async def test_chat_streams_and_the_monitor_moves(controller) -> None:
    from llmctl.app.tui import LlmctlApp

    proc = controller()
    app = LlmctlApp(load_settings(resolve_paths()), ControllerClient(proc.url), mode="chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        assert app.screen.query_one(Select).value == "tiny"
        # the tiny model's random bytes make llama-cpp-python's streaming slow down with length: keep it short
        app.screen.query_one("#chat-max-tokens", Input).value = "64"
        await pilot.press(*"Hello", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply = app.screen.query_one(".reply", Markdown)
        assert len(reply.source) > 0
        stats = str(app.screen.query_one("#chat-stats").render())
        assert "tiny: 64 tokens" in stats and "tok/s" in stats  # EOS never wins in this model
        await pilot.press("f5")
        await pilot.pause(1.5)
        await app.workers.wait_for_complete()
        monitor = app.screen
        assert monitor.series["tps"].last() and monitor.series["tps"].last() > 0
        assert monitor.series["ttft"].last() is not None
        assert monitor.series["cpu"].points and monitor.series["ram"].last() > 0
        await pilot.press("e")  # the Engines tab: what llama.cpp itself reports about the model
        await pilot.pause(1.5)
        await app.workers.wait_for_complete()
        tiny = monitor.query_one("#engine-panel").models["tiny"]
        assert tiny["engine"] == "xllamacpp" and tiny["figures"]["tokens_generated"] >= 64
        assert str(monitor.query_one("#engine-table").get_row("tiny")[2]) == "0"  # nothing running now
        await pilot.press("f3")
        await pilot.pause(1.5)
        await app.workers.wait_for_complete()
        assert str(app.screen.query_one("DataTable").get_row_at(0)[0]) == "tiny"

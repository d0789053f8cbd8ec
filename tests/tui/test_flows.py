"""Pilot tests of each screen's flow with a fake client."""

from __future__ import annotations

from fakes import FakeClient
from textual.widgets import DataTable, Input, Markdown, Select, Static


async def _palette_offers(pilot, app, text: str) -> None:
    """Wait until the command palette's highlighted hit names ``text`` (its search runs in the background: a fixed
    pause is too short on a loaded machine), so Enter runs that command."""
    from textual.command import CommandList, CommandPalette

    for _ in range(500):
        await pilot.pause(0.02)
        if isinstance(app.screen, CommandPalette):
            hits = app.screen.query_one(CommandList)
            index = hits.highlighted
            hit = str(hits.get_option_at_index(index).prompt) if index is not None and hits.option_count else ""
            if text.lower() in hit.lower():
                return
    raise AssertionError(f"the palette never offered {text!r}")


async def test_dashboard_shows_machine_servers_and_endpoint(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert "AMD Ryzen 9 7950X" in str(screen.query_one("#cpu", Static).render())
        table = screen.query_one("#backends", DataTable)
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "llama-3.1-8b-instruct-q4_k_m"
        assert "http://127.0.0.1:7878/v1" in str(screen.query_one("#snippet", Static).render())
        assert "RTX 3090" in str(screen.query("#gpus Label").first().render())
        await pilot.press("y")
        assert app.clipboard == "http://127.0.0.1:7878/v1"


async def test_models_filter_select_and_start(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert table.row_count == 4  # two local, two catalog
        await pilot.press("slash", *"qwen")
        await pilot.pause()
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "qwen2.5-7b-instruct"
        app.screen.query_one("#filter", Input).value = ""
        await pilot.press("escape")
        await pilot.pause()
        table.move_cursor(row=1)
        await pilot.pause()
        detail = str(app.screen.query_one("#detail", Static).render())
        assert "tiny" in detail and "KV cache" in detail and "fits:" in detail
        await pilot.press("s")
        await app.workers.wait_for_complete()
        assert ("load", "tiny") in client.calls


async def test_import_and_remove_through_dialogs(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("i")
        await pilot.pause()
        await pilot.press(*"/models/new.gguf", "enter")
        await pilot.pause()
        assert ("import", "/models/new.gguf", None) in client.calls
        await pilot.press("delete")
        await pilot.pause()
        await pilot.click("#remove-ok")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert ("remove", "llama-3.1-8b-instruct-q4_k_m") in client.calls


async def test_servers_stop_and_start(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "servers")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.query_one(DataTable).row_count == 1
        await pilot.press("x")
        await app.workers.wait_for_complete()
        await pilot.press("s")
        await app.workers.wait_for_complete()
        name = "llama-3.1-8b-instruct-q4_k_m"
        assert client.calls[-2:] == [("unload", name), ("load", name)]


async def test_chat_streams_markdown_and_keeps_history(make_app) -> None:
    client = FakeClient(reply="Hello! **How** can I help?")
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        assert app.screen.query_one(Select).value == "llama-3.1-8b-instruct-q4_k_m"  # the ready one
        await pilot.press(*"Hi there", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply = app.screen.query_one(".reply", Markdown)
        assert reply.source.strip() == "Hello! **How** can I help?"
        stats = str(app.screen.query_one("#chat-stats").render())
        assert "5 tokens" in stats and "first after 50 ms" in stats
        await pilot.press(*"And again", "enter")
        await app.workers.wait_for_complete()
        messages = client.calls[-1][2]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        await pilot.press("ctrl+y")
        assert app.clipboard.startswith("Hello!")


async def test_escape_stops_a_reply(make_app) -> None:
    client = FakeClient(reply=" ".join(["word"] * 200), delay=0.02)
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press(*"go", "enter")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        text = app.screen.query_one(".reply", Markdown).source
        assert 0 < text.count("word") < 200
        assert "stopped" in str(app.screen.query_one("#chat-stats").render())


async def test_monitor_plots_move(make_app) -> None:
    client = FakeClient()
    client.records = [{"id": 1, "model": "m", "tokens_per_s": 42.0, "ttft_ms": 120.0, "itl_ms": 20.0, "status": 200}]
    app = make_app(client, "monitor")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert screen.series["tps"].last() == 42.0 and screen.series["gpu"].last() == 35
        assert "42.0 tok/s" in str(screen.query_one("#monitor-summary").render())


async def test_palette_switches_sections(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        for key, mode in [("2", "models"), ("3", "servers"), ("5", "monitor"), ("1", "dashboard")]:
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode


async def test_html_in_a_reply_is_shown_not_swallowed(make_app) -> None:
    app = make_app(FakeClient(reply="<h2><strong>The title</strong></h2> and text"), "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press(*"x", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        rendered = " ".join(str(block._content) for block in app.screen.query(".reply *") if hasattr(block, "_content"))
        assert "<h2>" in rendered and "The title" in rendered


async def test_palette_has_every_model_verb(make_app) -> None:
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"stop tiny")
        await _palette_offers(pilot, app, "stop tiny")
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert ("unload", "tiny") in client.calls
        await pilot.press("ctrl+p")
        await pilot.press(*"chat with tiny")
        await _palette_offers(pilot, app, "chat with tiny")
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.current_mode == "chat"
        assert app.screen.query_one("#chat-model").value == "tiny"


async def test_reasoning_is_shown_apart_and_counted_but_not_kept(make_app) -> None:
    client = FakeClient(reply="It is 4.", reasoning="Two plus two, carry nothing")
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press(*"2+2?", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        thinking = app.screen.query_one(".reasoning", Static)
        assert thinking.display and str(thinking.render()).strip() == "Two plus two, carry nothing"
        assert thinking.styles.color != app.screen.query_one(".reply").styles.color  # dimmed, apart
        assert app.screen.query_one(".reply", Markdown).source.strip() == "It is 4."
        stats = str(app.screen.query_one("#chat-stats").render())
        assert "8 tokens (5 reasoning)" in stats and "first after 50 ms" in stats
        assert app.screen.history[-1] == {"role": "assistant", "content": "It is 4. "}
        await pilot.press("ctrl+y")
        assert app.clipboard == "It is 4. "


async def test_a_reply_without_reasoning_has_no_reasoning_block(make_app) -> None:
    app = make_app(FakeClient(), "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press(*"hi", "enter")
        await app.workers.wait_for_complete()
        assert not app.screen.query_one(".reasoning").display


async def test_palette_pulls_a_catalog_model_and_opens_bench_with_a_model(make_app) -> None:
    client = FakeClient(pull_hold=2)
    app = make_app(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"pull qwen2.5-7b-instruct:F16")
        await _palette_offers(pilot, app, "qwen2.5-7b-instruct:F16")
        await pilot.press("enter")
        for _ in range(100):
            await pilot.pause()
            if ("start_pull", "qwen2.5-7b-instruct:F16", None) in client.calls:
                break
        assert app.current_mode == "models" and ("start_pull", "qwen2.5-7b-instruct:F16", None) in client.calls
        client.pull_released.set()
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"bench tiny")
        await _palette_offers(pilot, app, "bench tiny")
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.current_mode == "bench" and app.screen.query_one("#bench-model").value == "tiny"

"""What a newcomer met (issue 24): state that was stale, a placeholder sent as a model, keys nobody could find."""

from __future__ import annotations

import copy

from fakes import BACKENDS, FakeClient, local_model
from test_worker_errors import errors, settle
from textual.widgets import Select


async def test_a_failed_server_shows_its_reason_in_the_log_pane(make_app) -> None:
    client = FakeClient(log_lines=[])
    failed = copy.deepcopy(BACKENDS[0])
    failed.update(state="failed", pid=None, error="tensor 'output_norm.weight' not found",
                  last_log_lines=["llama_model_load: error loading model"])
    client.backend_list = [failed]
    app = make_app(client, "servers")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        log = [str(line.text) for line in app.screen.query_one("#server-log").lines]
        assert log == ["llama_model_load: error loading model", "llmctl: tensor 'output_norm.weight' not found"]
        assert "failed: tensor 'output_norm.weight' not found" in str(app.screen.query_one("#log-title").render())
        app.screen.poll()
        await settle(app, pilot)
        assert len(app.screen.query_one("#server-log").lines) == 2  # told once, not every poll


async def test_the_chat_picker_offers_a_model_pulled_meanwhile_and_keeps_the_choice(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.screen.query_one("#chat-model", Select).value = "tiny"
        client.model_list.append(local_model("new-one", "/m/new.gguf", 1, {"quant": "Q4_0"}))
        await pilot.press("f2")
        await settle(app, pilot)
        await pilot.press("f4")
        await settle(app, pilot)
        assert "new-one" in app.screen.names
        assert app.screen.query_one("#chat-model", Select).value == "tiny"


async def test_the_blank_picker_entry_is_never_sent_as_a_model(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.screen.query_one("#chat-model", Select).clear()
        await pilot.press(*"Hi", "enter")
        await settle(app, pilot)
        assert not [c for c in client.calls if c[0] == "chat"]
        assert any("pick a model first" in n.message for n in app._notifications)


async def test_a_reply_cut_by_the_token_limit_says_so(make_app) -> None:
    client = FakeClient()
    client.finish_reason = "length"
    app = make_app(client, "chat")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        await pilot.press(*"Hi", "enter")
        await settle(app, pilot)
        assert "stopped at the max-tokens limit" in str(app.screen.query_one("#chat-stats").render())
        client.finish_reason = "stop"
        await pilot.press(*"Again", "enter")
        await settle(app, pilot)
        assert "max-tokens" not in str(app.screen.query_one("#chat-stats").render())


async def test_a_filter_that_matches_nothing_clears_the_details(make_app) -> None:
    app = make_app(FakeClient(), "models")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "llama-3.1-8b" in str(app.screen.query_one("#detail").render())
        await pilot.press("slash", *"zzz")
        await settle(app, pilot)
        assert "no model matches" in str(app.screen.query_one("#detail").render())
        assert "llama-3.1-8b" not in str(app.screen.query_one("#detail").render())


async def test_a_running_pull_shows_on_its_row_and_c_is_in_the_footer(make_app) -> None:
    client = FakeClient(pull_hold=3)
    app = make_app(client, "models")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.check_action("cancel_pull", ()) is False
        app.screen.query_one("DataTable").move_cursor(row=2)
        await pilot.press("p")
        for _ in range(100):
            await pilot.pause()
            if app.screen.pulls and next(iter(app.screen.pulls.values()))["done_bytes"]:
                break
        table = app.screen.query_one("DataTable")
        row = [str(c) for c in table.get_row("catalog:qwen2.5-7b-instruct")]
        assert row[4].startswith("pulling ") and row[4].endswith("%")
        assert app.screen.check_action("cancel_pull", ()) is True
        client.pull_released.set()
        await settle(app, pilot)


async def test_question_mark_lists_the_screens_keys_and_esc_closes_it(make_app) -> None:
    app = make_app(FakeClient(), "models")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one("#keys-text").render())
        assert type(app.screen).__name__ == "KeysScreen"
        for expected in ("Pull", "What fits", "Sections", "Dashboard, Models, Servers"):
            assert expected in text
        assert "Focus Next" not in text
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelsScreen"


async def test_enter_in_a_bench_field_runs_it(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "bench")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.screen.query_one("#bench-levels").focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert [c for c in client.calls if c[0] == "bench"] and errors(app) == []


async def test_chat_history_is_kept_per_model_and_ctrl_l_forgets_it(make_app) -> None:
    client = FakeClient()
    client.chats["tiny"] = [{"role": "user", "content": "earlier question"},
                            {"role": "assistant", "content": "earlier answer"}]
    app = make_app(client, "chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        name = "llama-3.1-8b-instruct-q4_k_m"
        await pilot.press(*"Hi", "enter")
        await settle(app, pilot)
        assert [m["content"] for m in client.chats[name]] == ["Hi", "Hello! **How** can I help? "]
        app.screen.query_one("#chat-model", Select).value = "tiny"
        await settle(app, pilot)
        assert app.screen.history == client.chats["tiny"]
        assert "earlier answer" in [m.source for m in app.screen.query(".reply")]
        await pilot.press(*"more", "enter")
        await settle(app, pilot)
        assert client.calls[-1][2][:2] == client.chats["tiny"][:2]  # the earlier turns go with the new message
        await pilot.press("ctrl+l")
        await settle(app, pilot)
        assert "tiny" not in client.chats and app.screen.history == []
        app.screen.query_one("#chat-model", Select).value = name
        await settle(app, pilot)
        assert len(app.screen.history) == 2  # the other model's conversation is untouched


async def test_models_shows_the_quant_what_fits_picks_with_its_badge(make_app) -> None:
    """Models named Q4_K_M "no" while What fits ranked a smaller quant "yes": the row now shows the recommender's
    quant, its badge and its size, and a model nothing of which fits shows its smallest quant."""
    from fakes import recommendation

    client = FakeClient()

    async def recommend(ctx: int = 8192, gpu: str | None = None):
        answer = recommendation(gpu)
        answer["options"][1]["quant"] = "F16"  # the catalog's qwen2.5-7b-instruct has Q4_K_M and F16
        return answer

    client.recommend = recommend
    app = make_app(client, "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("DataTable")
        row = [str(c) for c in table.get_row("catalog:qwen2.5-7b-instruct")]
        assert row[:4] == ["qwen2.5-7b-instruct", "F16", "tight", "17.0 GiB"]
        assert app.screen.rows["catalog:qwen2.5-7b-instruct"]["ref"] == "qwen2.5-7b-instruct:F16"
        row = [str(c) for c in table.get_row("catalog:llama-3.3-70b-instruct")]
        assert row[1:3] == ["Q4_K_M", "no"]


async def test_hub_search_lists_quants_with_a_fit_badge_and_pulls_any_result(make_app) -> None:
    client = FakeClient(pull_hold=1)
    app = make_app(client, "models")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("h")
        await settle(app, pilot)
        await pilot.press(*"qwen3", "enter")
        await settle(app, pilot)
        table = app.screen.query_one("#hub-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[:2] + r[3:4] for r in rows] == [["unsloth/Qwen3-4B-GGUF", "Q4_K_M", "~yes"],
                                                  ["unsloth/Qwen3-4B-GGUF", "Q8_0", "~yes"],
                                                  ["unsloth/Qwen3-4B-GGUF", "BF16", "~yes"],
                                                  ["Qwen/Qwen3-4B", "safetensors", "~yes"]]
        assert rows[0][2] == "2.4 GiB"  # 24 GiB of VRAM in the fake: all fit
        await pilot.press("down", "enter")
        for _ in range(100):
            await pilot.pause()
            if ("start_pull", "unsloth/Qwen3-4B-GGUF:Q8_0", None) in client.calls:
                break
        assert ("start_pull", "unsloth/Qwen3-4B-GGUF:Q8_0", None) in client.calls
        assert type(app.screen).__name__ == "ModelsScreen"
        client.pull_released.set()
        await settle(app, pilot)


def test_a_rough_fit_against_the_memory() -> None:
    from llmctl.screens.hub import reference, rough_fit

    gib = 1 << 30
    assert [rough_fit(w * gib, 24 * gib) for w in (4, 18, 21, 40)] == ["yes", "yes", "tight", "no"]
    assert reference("Qwen/Qwen3-4B", "safetensors") == "Qwen/Qwen3-4B"
    assert reference("org/X-GGUF", "Q4_K_M") == "org/X-GGUF:Q4_K_M"

"""Text that is not the UI's own is shown as plain text, never parsed as markup nor bound to actions
(so a model name with [brackets] cannot restyle the UI or bind an action): model names, paths, GGUF metadata, log
lines, chat input and replies, the controller's errors."""

from __future__ import annotations

from fakes import BACKENDS, FakeClient, local_model
from textual.widgets import DataTable, RichLog, Static

from llmctl.app.client.wire import BackendStatus, ControllerError
from llmctl.screens.hub import HubSearchScreen

NAME = "[@click=app.quit]x"  # as markup: a live "quit" action on the letter x
PATH = "/models/[bold]weights.gguf"  # as markup: a style, and the path shown without its brackets
ARCH = "[/INST]"  # as markup: a closing tag with nothing to close, which raises


def screen_text(app) -> str:
    """Everything on the screen as it is drawn (toasts included)."""
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(seg.text for strip in row for seg in strip) for row in update.strips)


def alive(app) -> bool:
    return app._exception is None and app.return_code is None


def hostile_client(**kwargs) -> FakeClient:
    facts = {"architecture": ARCH, "quant": "Q4_K_M", "parameter_count": 1_000_000, "context_length": 4096,
             "name": "[@click=app.quit]gguf"}
    client = FakeClient(models=[local_model(NAME, PATH, 1 << 20, facts, state="ready")], **kwargs)
    client.backend_list = [BackendStatus(**{**BACKENDS[0], "model": NAME})]
    return client


def refuse_quit(app) -> list[str]:
    """Record instead of quitting, so a live action shows up as an entry rather than an ended test."""
    quits: list[str] = []
    app.action_quit = lambda: quits.append("quit")
    return quits


async def test_models_screen_shows_names_paths_and_metadata_as_text(make_app) -> None:
    app = make_app(hostile_client(), "models")
    quits = refuse_quit(app)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert NAME in screen_text(app)  # the table cell
        detail = str(app.screen.query_one("#detail", Static).render())
        assert detail.startswith(NAME) and PATH in detail and ARCH in detail
        await pilot.click("#detail", offset=(0, 0))  # where the action would be bound
        await pilot.click(DataTable, offset=(2, 1))
        await pilot.pause()
        assert quits == [] and alive(app)


async def test_remove_dialog_shows_the_name_as_text(make_app) -> None:
    app = make_app(hostile_client(), "models")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("delete")
        await pilot.pause()
        assert f"Remove {NAME} from llmctl?" in str(app.screen.query_one("Label").render())
        await pilot.press("escape")
        assert alive(app)


async def test_dashboard_and_servers_show_names_and_log_lines_as_text(make_app) -> None:
    client = hostile_client(log_lines=["[red]alarm[/red] then [/] and [@click=app.quit]q"])
    app = make_app(client, "dashboard")
    quits = refuse_quit(app)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert NAME in screen_text(app)
        assert f'model="{NAME}"' in str(app.screen.query_one("#snippet", Static).render())
        await pilot.press("3")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert NAME in screen_text(app) and f"log of {NAME}" in screen_text(app)
        log = app.screen.query_one(RichLog)
        logged = "\n".join(strip.text for strip in log.lines)
        assert "[red]alarm[/red] then [/] and [@click=app.quit]q" in logged
        await pilot.click(DataTable, offset=(2, 1))
        await pilot.pause()
        assert quits == [] and alive(app)


async def test_chat_input_reply_and_model_names_are_text(make_app) -> None:
    client = hostile_client(reply="the tag [/INST] and [@click=app.quit]y stay")
    app = make_app(client, "chat")
    quits = refuse_quit(app)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        assert app.screen.query_one("#chat-model").value == NAME
        assert NAME in screen_text(app)  # the model picker
        await pilot.press(*"[/INST] [b]hi", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert alive(app)
        said = str(app.screen.query_one(".user-message", Static).render())
        assert said == "you  [/INST] [b]hi"
        assert client.calls[-1][2][-1] == {"role": "user", "content": "[/INST] [b]hi"}
        assert "the tag [/INST] and [@click=app.quit]y stay" in screen_text(app)
        assert f"{NAME}: " in str(app.screen.query_one("#chat-stats").render())
        await pilot.click(".user-message", offset=(6, 0))
        await pilot.pause()
        assert quits == [] and alive(app)


async def test_an_error_message_with_markup_is_shown_as_text(make_app) -> None:
    error = ControllerError("the controller refused (503)", "[/INST] [@click=app.quit]model is loading")
    app = make_app(hostile_client(fail={"load": error}), "servers")
    async with app.run_test(size=(120, 36), notifications=True) as pilot:  # toasts drawn, as for a user
        await app.workers.wait_for_complete()
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert alive(app)
        messages = [n.message for n in app._notifications]
        assert f"starting {NAME}..." in messages
        assert "the controller refused (503): [/INST] [@click=app.quit]model is loading" in messages
        await pilot.pause(0.2)
        toasts = [str(toast.render()) for toast in app.screen.query("Toast")]
        assert any("[/INST] [@click=app.quit]model is loading" in t for t in toasts), toasts


async def test_palette_shows_model_verbs_as_text(make_app) -> None:
    app = make_app(hostile_client())
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"start")
        await pilot.pause(0.5)
        assert f"Start {NAME}" in screen_text(app)
        assert alive(app)


async def test_hub_search_shows_the_query_as_text(make_app) -> None:
    """What the user types into Hub search is shown as typed: "[/x]" (a closing tag with nothing to close) crashed
    the TUI with a MarkupError, "[bold]" restyled the status line."""
    from test_worker_errors import settle  # here: that module imports this one

    app = make_app(FakeClient(), "models")
    query = "[bold]q [/x]"
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("h")
        await settle(app, pilot)
        assert isinstance(app.screen, HubSearchScreen)
        await pilot.press(*query, "enter")
        await settle(app, pilot)
        assert alive(app)
        status = str(app.screen.query_one("#hub-status").render())
        assert status == f"nothing llmctl can pull matches {query!r}"

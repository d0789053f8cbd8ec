"""Every screen at 80x24 and 120x36, against fixed data from the fake client (review before --snapshot-update)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

SIZES = [(80, 24), (120, 36)]
SCREENS = ["dashboard", "models", "servers", "chat", "monitor"]


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

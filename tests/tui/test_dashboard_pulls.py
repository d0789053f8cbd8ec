"""The Dashboard's Pulls lines: a pull the controller runs shows there with its progress (wherever it was started),
goes when it is done, and one that stopped with bytes kept shows as partial (the same pull resumes it). The fake
client's pulls move as its event stream is read, as the controller's do."""

from __future__ import annotations

from fakes import FakeClient
from textual.widgets import Static

QWEN = "qwen2.5-7b-instruct:Q4_K_M"


async def _advance(client: FakeClient, pull_id: str, events: int) -> None:
    """Read ``events`` events of the pull's stream (as the controller's download moves on)."""
    stream = client.pull_events(pull_id)
    for _ in range(events):
        await anext(stream)
    await stream.aclose()


async def _pulls_text(app, pilot) -> str | None:
    """What the Dashboard's Pulls box says after a refresh, or None when the box is hidden."""
    await pilot.press("r")
    await app.workers.wait_for_complete()
    await pilot.pause()
    box = app.screen.query_one("#pulls-box")
    return str(app.screen.query_one("#pulls-lines", Static).render()) if box.display else None


async def test_a_running_pull_shows_with_its_percentage_and_goes_when_done(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "dashboard")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        assert await _pulls_text(app, pilot) is None  # no pull: no box
        pull = await client.start_pull(QWEN)
        await _advance(client, pull["id"], 3)  # file 1 (2 GiB) started, at 25%, at 50%: 1 GiB of 3 GiB
        text = await _pulls_text(app, pilot)
        assert text is not None and QWEN in text and "pulling 33%" in text and "1.0 GiB of 3.0 GiB" in text
        stream = client.pull_events(pull["id"], after=3)
        async for _ in stream:  # to the end: verified, registered, done
            pass
        assert client.pull_list[pull["id"]]["state"] == "done"
        assert await _pulls_text(app, pilot) is None


async def test_a_cancelled_pull_with_bytes_kept_shows_as_partial_until_resumed(make_app) -> None:
    client = FakeClient()
    app = make_app(client, "dashboard")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        pull = await client.start_pull(QWEN)
        await _advance(client, pull["id"], 2)  # 512 MiB of file 1
        await client.cancel_pull(pull["id"])
        await _advance(client, pull["id"], 1)  # the stream ends with "cancelled"
        assert client.pull_list[pull["id"]]["state"] == "cancelled"
        text = await _pulls_text(app, pilot)
        assert text is not None and QWEN in text and "partial" in text and "512.0 MiB of 3.0 GiB (cancelled)" in text
        assert "pulling" not in text
        assert "resumes when pulled again" in str(app.screen.query_one("#pulls-title").render())
        resumed = await client.start_pull(QWEN)  # the same pull again: it replaces the partial line
        text = await _pulls_text(app, pilot)
        assert text is not None and text.count(QWEN) == 1 and "pulling 0%" in text and "partial" not in text
        assert resumed["id"] != pull["id"]

"""The TUI says which key scope it holds (issue 23, item 1): in the header, beside the endpoint."""

from __future__ import annotations

from fakes import FakeClient


async def test_the_header_names_the_scope_of_the_tuis_key(make_app) -> None:
    client = FakeClient()
    client.scope = "admin"
    app = make_app(client)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert app.sub_title == "http://127.0.0.1:7878/v1 · admin key"

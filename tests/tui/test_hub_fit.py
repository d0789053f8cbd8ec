"""Hub search's fit badge: a repo and quant the catalog knows get the catalog's verdict (the estimator's, as Models and
What fits show it), any other a rough check marked ``~``. The search itself is the real client's, against the local
Hub-protocol server (tests/hub_server.py); the catalog and the machine are the fake client's (24 GiB of VRAM)."""

from __future__ import annotations

import pytest
from fakes import FakeClient
from test_worker_errors import settle

from llmctl.app.client.api import ControllerClient


class HubClient(FakeClient):
    """The fake controller, searching the Hub as the real client does."""

    async def hub_search(self, query: str) -> list[dict]:
        self.calls.append(("hub_search", query))
        return await ControllerClient.hub_search(self, query)  # type: ignore[arg-type]  # uses no client state


@pytest.fixture
def hub_env(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the "Hub" here is a loopback test server
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return hub


async def test_a_catalog_repo_gets_the_catalog_verdict_and_any_other_a_marked_rough_one(hub_env, make_app) -> None:
    # the fake catalog says qwen2.5-7b-instruct F16 is "tight" here; its few bytes would pass the rough check ("yes")
    hub_env.add_file("bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-Q4_K_M.gguf", b"x" * 100)
    hub_env.add_file("bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-f16.gguf", b"x" * 200)
    hub_env.add_file("someone/Qwen2.5-7B-Other-GGUF", "other-Q4_0.gguf", b"x" * 100)
    app = make_app(HubClient(), "models")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("h")
        await settle(app, pilot)
        await pilot.press(*"qwen2.5", "enter")
        await settle(app, pilot)
        table = app.screen.query_one("#hub-table")
        rows = {(str(r[0]), str(r[1])): str(r[3]) for r in (table.get_row_at(i) for i in range(table.row_count))}
        assert rows == {("bartowski/Qwen2.5-7B-Instruct-GGUF", "Q4_K_M"): "yes",
                        ("bartowski/Qwen2.5-7B-Instruct-GGUF", "F16"): "tight",
                        ("someone/Qwen2.5-7B-Other-GGUF", "Q4_0"): "~yes"}
        legend = str(app.screen.query_one("#hub-legend").render())
        assert "as Models and What fits say" in legend and "~ marks a rough check" in legend


def test_the_fit_cell() -> None:
    from llmctl.screens.hub import fit_cell

    gib = 1 << 30
    known = {("org/x-gguf", "q4_k_m"): "tight"}
    assert str(fit_cell("org/X-GGUF", "Q4_K_M", 1, known, 24 * gib)) == "tight"  # the catalog's, whatever the size
    assert str(fit_cell("org/X-GGUF", "Q8_0", 40 * gib, known, 24 * gib)) == "~no"
    assert str(fit_cell("org/Y", "safetensors", 21 * gib, {}, 24 * gib)) == "~tight"
    assert str(fit_cell("org/Y", "safetensors", gib, {}, 0)) == "?"  # the machine not read

from __future__ import annotations

import pytest
from fakes import FakeClient

from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings


@pytest.fixture
def make_app():
    from llmctl.app.tui import LlmctlApp

    def make(client: FakeClient | None = None, mode: str = "dashboard"):
        return LlmctlApp(load_settings(resolve_paths()), client or FakeClient(), mode=mode)

    return make

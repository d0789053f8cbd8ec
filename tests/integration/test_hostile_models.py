"""Hostile model files against the real llama.cpp engine (xllamacpp): a chat template that loops is refused before
launch when it plainly does, and otherwise stopped by the memory watch while the engine loads, within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from harness import ControllerProcess
from tiny_gguf import write_tiny_llama

from llmctl.catalog.store import ModelStore
from llmctl.catalog.templates import template_problem

PLAIN_LOOP = "{% for i in range(2000000000) %}{{ i }}{% endfor %}"
HIDDEN_LOOP = "{% for i in range(20000 * 100000) %}{{ i }}{% endfor %}"  # no literal the pre-check can read


def test_the_template_check_sees_plain_loops_only() -> None:
    assert "loops 2,000,000,000 times" in template_problem(PLAIN_LOOP)
    assert template_problem("{% for i in range(5, 3000000) %}{% endfor %}") is not None
    assert template_problem(HIDDEN_LOOP) is None  # left to the memory watch
    assert template_problem("{% for m in messages %}{{ m['content'] }}{% endfor %}") is None
    assert template_problem("{% for i in range(3) %}{% endfor %}") is None


def test_a_looping_template_is_refused_or_stopped_with_a_reason(tmp_path: Path, tiny_gguf: Path) -> None:
    home = tmp_path / "home"
    store = ModelStore(home / "data")
    store.import_file(tiny_gguf, "tiny")
    store.import_file(write_tiny_llama(tmp_path / "plain.gguf", chat_template=PLAIN_LOOP), "plain")
    store.import_file(write_tiny_llama(tmp_path / "hidden.gguf", chat_template=HIDDEN_LOOP), "hidden")
    # a small allowance over the estimate, so that the watch trips within a second of the runaway; no prompt
    # cache, so that the estimate is the model's own
    proc = ControllerProcess(home, LLMCTL_BACKENDS__LOAD_MEMORY_SLACK="200MiB",
                             LLMCTL_BACKENDS__PROMPT_CACHE_MIB="0").start()
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        with proc.client() as c:
            # the same allowance loads an honest model: the watch does not trip on an ordinary load
            assert c.post("/v1/chat/completions", json={**chat, "model": "tiny"}).status_code == 200
            r = c.post("/v1/chat/completions", json={**chat, "model": "plain"})
            assert r.status_code == 409 and "loops 2,000,000,000 times" in r.json()["error"]["message"], r.text
            backends = c.get("/llmctl/v1/backends").json()["backends"]
            assert not [b for b in backends if b["model"] == "plain" and b["state"] != "stopped"]  # never started
            t0 = time.monotonic()
            r = c.post("/v1/chat/completions", json={**chat, "model": "hidden"})
            took = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert "past its reservation" in r.json()["error"]["message"]
            hidden = proc.wait_state("hidden", "failed")
            assert "past its reservation" in hidden["error"] and "loops" in hidden["error"]
            print(f"\nthe hidden loop was stopped {took:.1f} s after its request: {hidden['error']}")
            assert took < 30, took
            logs = httpx.get(proc.url + "/llmctl/v1/backends/hidden/logs").json()
            assert any("past its reservation" in line for line in logs["lines"])
    finally:
        proc.kill_everything()

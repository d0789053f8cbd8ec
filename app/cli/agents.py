"""What each coding agent `llmctl launch` starts needs to be told to use a model llmctl serves: its argv, the variables
added to its environment and files of llmctl's own (in llmctl's data folder) it is pointed at. Pure: every builder
maps a :class:`Served` onto an :class:`Invocation`, tested by exact output (tests/unit/test_agents.py).

Each agent is configured only through its own override mechanisms (flags, environment, a config file it is pointed
at); no file of the user's is written. The context window each is given is the one the engine really serves, so
the agent compacts or trims before the engine would refuse a request (the mismatch behind Ollama #18463/#17584).

Minimum contexts (``Agent.min_context``): what the agent's first request needs plus room for an answer and a tool
round trip. Codex's first request measured ≈4.6k tokens and Claude Code's ≈4.1k (issue 21): both fail with 4096
tokens per request and answer with 8192. opencode and aider were not measured here: opencode's built-in prompt and
tool list are larger than Codex's (its docs, like Ollama's, ask for far more), so it gets 16384; aider sends no
tool schemas (it edits through text formats) and a 1k-token repository map by default, so 8192 as for the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KEY_ENV = "LLMCTL_API_KEY"  # the variable an agent reads llmctl's key from, where it can be told which
NO_KEY = "llmctl"  # a placeholder for agents that insist on a key when llmctl requires none


@dataclass(frozen=True, slots=True)
class Served:
    """A model as llmctl serves it, for one agent."""

    base_url: str  # llmctl's endpoint without /v1: http://127.0.0.1:7878
    model: str
    context: int  # tokens one request may fill, as the engine serves it
    api_key: str | None = None  # what llmctl requires of clients, if anything
    tools: bool | None = None  # whether the model can call tools (None: not known)

    @property
    def output_tokens(self) -> int:
        """The most an agent should ask for in one answer: a quarter of the context, at most 32000 (Claude Code's own
        default cap), so that a prompt of three quarters still fits."""
        return min(32000, self.context // 4)

    @property
    def compact_at(self) -> int:
        """Where an agent that compacts its conversation should: the context less an answer's room, less an eighth
        for the next turn (at 8192 tokens: 5120, above the ≈4.6k of Codex's first request)."""
        return self.context - self.output_tokens - self.context // 8


@dataclass(frozen=True, slots=True)
class Invocation:
    argv: tuple[str, ...]
    env: dict[str, str]  # added to llmctl's own environment
    files: dict[str, str] = field(default_factory=dict)  # path -> content, written before the agent starts
    secret_env: tuple[str, ...] = ()  # variables in ``env`` that hold the key (never printed)


@dataclass(frozen=True, slots=True)
class Agent:
    key: str
    title: str
    executable: str
    install: str
    min_context: int
    protocol: str  # what it speaks to llmctl
    build: Callable[[Served, Path, Sequence[str]], Invocation]
    needs_tools: bool = True  # it works through tool calls (aider edits through text formats instead)


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string (what `codex -c` parses)


def codex(s: Served, folder: Path, extra: Sequence[str]) -> Invocation:
    """Codex CLI: a provider of its own given with ``-c`` overrides (its config.toml is not touched), speaking the
    Responses API, with the model's context window and where to compact (Codex has no metadata for a model it does
    not know: "Defaulting to fallback metadata", it says)."""
    p = "model_providers.llmctl"
    overrides = [f"model_provider={_toml('llmctl')}", f"{p}.name={_toml('llmctl')}",
                 f"{p}.base_url={_toml(s.base_url + '/v1')}", f"{p}.wire_api={_toml('responses')}"]
    env: dict[str, str] = {}
    if s.api_key:
        overrides.append(f"{p}.env_key={_toml(KEY_ENV)}")
        env[KEY_ENV] = s.api_key
    overrides += [f"model_context_window={s.context}", f"model_auto_compact_token_limit={s.compact_at}"]
    argv = ["codex"] + [a for o in overrides for a in ("-c", o)] + ["-m", s.model, *extra]
    return Invocation(tuple(argv), env, secret_env=(KEY_ENV,) if s.api_key else ())


CLAUDE_MIN_WINDOW = 100_000  # Claude Code 2.1 raises a lower CLAUDE_CODE_AUTO_COMPACT_WINDOW to this


def claude(s: Served, folder: Path, extra: Sequence[str]) -> Invocation:
    """Claude Code: llmctl's Anthropic Messages endpoint in its environment, the model for both its main and its
    background (small, fast) requests, and its compaction and blocking limits fitted to the served context.

    Read from Claude Code 2.1.197's own code (its binary's strings): it takes ``CLAUDE_CODE_AUTO_COMPACT_WINDOW`` as
    the window, but never below 100000 tokens; it compacts at that window less the output reserve
    (``CLAUDE_CODE_MAX_OUTPUT_TOKENS``, at most 20000) less 13000, or at ``CLAUDE_AUTOCOMPACT_PCT_OVERRIDE`` percent
    of it when that is lower; and it refuses to send a conversation past ``CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE``.
    So a served context N below 100000 is given as the window 100000 with the percentage that puts compaction at
    N less the answer's room less an eighth of N (the next turn's), and the blocking limit at N less the answer's
    room; a larger N is given as it is, with the same percentage."""
    window = max(s.context, CLAUDE_MIN_WINDOW)
    pct = math.floor(s.compact_at * 10000 / window) / 100
    env = {
        "ANTHROPIC_BASE_URL": s.base_url,
        "ANTHROPIC_AUTH_TOKEN": s.api_key or NO_KEY,
        "ANTHROPIC_API_KEY": "",  # a key of the user's for Anthropic must not be sent, nor asked to be approved
        "ANTHROPIC_MODEL": s.model,
        "ANTHROPIC_SMALL_FAST_MODEL": s.model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": s.model,  # the newer name of the small, fast model
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(s.output_tokens),
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": str(window),
        "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": f"{pct:g}",
        "CLAUDE_CODE_BLOCKING_LIMIT_OVERRIDE": str(s.context - s.output_tokens),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return Invocation(("claude", "--model", s.model, *extra), env,
                      secret_env=("ANTHROPIC_AUTH_TOKEN",) if s.api_key else ())


def _file_name(agent: str, model: str, suffix: str) -> str:
    return f"{agent}-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in model) + suffix


def opencode(s: Served, folder: Path, extra: Sequence[str]) -> Invocation:
    """opencode: a config of llmctl's own named by ``OPENCODE_CONFIG`` (opencode merges it over the user's own)
    with an OpenAI-compatible provider and the model's context and output limits."""
    options: dict[str, str] = {"baseURL": s.base_url + "/v1"}
    env: dict[str, str] = {}
    if s.api_key:
        options["apiKey"] = "{env:" + KEY_ENV + "}"  # the key stays out of the file
        env[KEY_ENV] = s.api_key
    model: dict[str, object] = {"name": s.model, "limit": {"context": s.context, "output": s.output_tokens}}
    if s.tools is not None:
        model["tool_call"] = s.tools
    config = {"$schema": "https://opencode.ai/config.json",
              "provider": {"llmctl": {"npm": "@ai-sdk/openai-compatible", "name": "llmctl", "options": options,
                                      "models": {s.model: model}}},
              "model": f"llmctl/{s.model}"}
    path = folder / _file_name("opencode", s.model, ".json")
    env["OPENCODE_CONFIG"] = str(path)
    return Invocation(("opencode", "--model", f"llmctl/{s.model}", *extra), env,
                      {str(path): json.dumps(config, indent=2) + "\n"}, secret_env=(KEY_ENV,) if s.api_key else ())


def aider(s: Served, folder: Path, extra: Sequence[str]) -> Invocation:
    """aider: llmctl's OpenAI-compatible endpoint and a model-metadata file of llmctl's own giving the model's
    input and output limits (aider trims its repository map and history to them). The key travels in
    ``OPENAI_API_KEY``, which aider reads, not on its command line."""
    name = f"openai/{s.model}"
    meta = {name: {"max_input_tokens": s.context, "max_output_tokens": s.output_tokens,
                   "max_tokens": s.output_tokens, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                   "litellm_provider": "openai", "mode": "chat",
                   **({"supports_function_calling": s.tools} if s.tools is not None else {})}}
    path = folder / _file_name("aider", s.model, ".json")
    argv = ("aider", "--openai-api-base", s.base_url + "/v1", "--model", name, "--model-metadata-file", str(path),
            *extra)
    return Invocation(argv, {"OPENAI_API_KEY": s.api_key or NO_KEY}, {str(path): json.dumps(meta, indent=2) + "\n"},
                      secret_env=("OPENAI_API_KEY",) if s.api_key else ())


AGENTS: dict[str, Agent] = {a.key: a for a in (
    Agent("codex", "Codex CLI", "codex", "npm install -g @openai/codex", 8192, "OpenAI Responses", codex),
    Agent("claude", "Claude Code", "claude", "npm install -g @anthropic-ai/claude-code "
          "(or: curl -fsSL https://claude.ai/install.sh | bash)", 8192, "Anthropic Messages", claude),
    Agent("opencode", "opencode", "opencode", "npm install -g opencode-ai (or: curl -fsSL https://opencode.ai/install "
          "| bash)", 16384, "OpenAI chat completions", opencode),
    Agent("aider", "aider", "aider", "python -m pip install aider-install && aider-install", 8192,
          "OpenAI chat completions", aider, needs_tools=False),
)}

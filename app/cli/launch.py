"""``llmctl launch AGENT [MODEL]``: start a coding agent (Codex, Claude Code, opencode, aider) on a model llmctl
serves, with the context window the engine really serves.

The steps: the agent must be installed (else how to install it); a controller must run (one is started in the
background, as the TUI does); the model is the one named, else the one loaded, else the only one registered. Its
context per request must be at least what the agent needs (``agents.Agent.min_context``): when the user's
``[models.NAME]`` sets no ``ctx-size``, llmctl sets the largest that fits here (the estimator's fit,
``catalog.context_fit``), up to the length the model was trained on, and says so; a ``ctx-size`` the user set is
kept as it is. The model is (re)started with its profile read again, the context is read back from the engine
(llama.cpp's ``/slots``; else the deployment record) and the agent gets exactly that (``app.agents``).

``--print`` changes nothing (tests/integration/test_launch.py::test_print_changes_nothing): it starts no controller
and no model and writes neither the profile nor the agent's files; it reads the same state and says what launch
would do: the ctx-size it would write and why, whether the model would be started, the files it would write.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.catalog.errors import ConfigError, LlmctlError


@dataclass
class Target:
    """What launch settled for the model: its name, the context asked for, and what to tell the user."""

    model: str
    ctx: int | None = None  # per request; None: llmctl does not plan this model's context (Ollama, a remote)
    write_profile: bool = False
    tools: bool | None = None
    notes: list[str] = field(default_factory=list)


def _pick_model(name: str | None, listed: list[dict], backends: list[dict]) -> str:
    names = [m["name"] for m in listed]
    if name is not None:
        if name not in names and name.lower() not in names:
            raise LlmctlError(f"no model named {name!r}", f"pick one of: {', '.join(names) or '(none registered)'}.")
        return name if name in names else name.lower()
    ready = [b["model"] for b in backends if b["state"] == "ready" and "chat" in b.get("capabilities", [])]
    if len(ready) == 1:
        return ready[0]
    if len(names) == 1:
        return names[0]
    raise LlmctlError("which model should the agent use?",
                      f"name it: llmctl launch AGENT MODEL (models: {', '.join(names) or 'none; see llmctl pull'}).")


def _plan_context(ctx: Context, name: str, agent_key: str, need: int, *, dry: bool = False) -> Target:
    """The context to serve ``name`` at for an agent needing ``need`` tokens (blocking: reads the model's header and
    the machine's memory; writes nothing). ``dry``: the notes say what would be done (``--print``)."""
    from llmctl.app.deployments import launch_plan
    from llmctl.app.fit_inputs import entry_request, machine_budget
    from llmctl.catalog.context_fit import largest_context
    from llmctl.catalog.facts import facts_from_gguf
    from llmctl.catalog.gguf import read_gguf
    from llmctl.catalog.safetensors_dir import facts_from_model_dir
    from llmctl.runtimes.hardware import probe

    try:
        entry = ctx.store().get(name)
    except LlmctlError:  # not a name the store can hold (ollama/NAME:TAG, REMOTE/MODEL)
        entry = None
    if entry is None:  # an Ollama or remote model: its own server decides its context
        return Target(name)
    path = Path(entry.path)
    header = read_gguf(path) if entry.format == "gguf" else None
    target = Target(name, tools=header.calls_tools if header is not None else None)
    prof = ctx.settings.models.get(name)
    if prof is not None and prof.ctx_size is not None:
        if prof.ctx_size < need:
            raise LlmctlError(f"ctx-size {prof.ctx_size} in [models.{name}] is below the {need} tokens {agent_key} "
                              "needs", f"raise it (llmctl models config {name} ctx-size={need}), or unset it and "
                              f"llmctl sets the largest that fits (llmctl models config {name} --unset ctx-size).")
        target.ctx = prof.ctx_size
        target.notes.append(f"ctx-size {prof.ctx_size} is set in [models.{name}]: kept as it is")
        return target
    facts = facts_from_gguf(header) if header is not None else facts_from_model_dir(path)
    trained = facts.ctx_train or int(entry.facts.get("context_length") or 0)
    if trained and trained < need:
        raise LlmctlError(f"{name} was trained on {trained} tokens of context; {agent_key} needs at least {need}",
                          f"pick a model with a longer context, or set one past its training yourself: "
                          f"llmctl models config {name} ctx-size={need}.")
    report = probe(ctx.paths.models_dir)
    budget = machine_budget(report.gpus, report.ram_available, ctx.settings)
    fit = largest_context(facts, entry_request(ctx.settings, entry, facts, budget)[0], budget, upper=trained or need)
    if fit is None or fit < need:
        raise LlmctlError(f"{name} does not fit here with the {need} tokens of context {agent_key} needs",
                          f"at most {fit or 0} tokens fit (`llmctl fit {name}` shows the memory); stop other "
                          "models, pick a smaller model, or a smaller KV cache type (cache-type-k=q8_0).")
    target.ctx = fit
    # what serve would give it now (an auto context settled against the same memory)
    planned = launch_plan(ctx.settings, entry, store=ctx.store(), data_dir=ctx.paths.data_dir).settle(
        facts, budget).ctx_size
    if fit != planned:
        target.write_profile = True
        verb = "would set" if dry else "set"
        target.notes.append(f"{verb} ctx-size = {fit} in [models.{name}] of {ctx.paths.config_file}: the largest "
                            f"context that fits here (up to the {trained} it was trained on); "
                            f"`llmctl models config {name} --unset ctx-size` undoes it")
    return target


def _running(backend: dict[str, Any] | None) -> bool:
    return backend is not None and backend["state"] in ("ready", "starting")


def _must_start(target: Target, backend: dict[str, Any] | None) -> bool:
    """Whether the model must be (re)started: not running, its profile changes, or it runs at another context."""
    return (target.write_profile or not _running(backend)
            or (target.ctx is not None and backend is not None and backend.get("ctx_size") != target.ctx))


async def _status(client, model: str) -> dict[str, Any] | None:
    """The model's deployment as the engine reports it; None when it is not loaded (unloaded meanwhile)."""
    return next((b for b in await client.backends(engine_metrics=True) if b["model"] == model), None)


async def _serve(client, target: Target) -> dict[str, Any]:
    """Start the model (again, when its context must change) and return its status as the engine reports it."""
    backend = next((b for b in await client.backends() if b["model"] == target.model), None)
    if _must_start(target, backend):
        if _running(backend):
            await client.unload(target.model)
        await client.load(target.model, reload_profile=True)
    else:
        await client.load(target.model)  # waits until it is ready
    status = await _status(client, target.model)
    if status is None:
        raise LlmctlError(f"{target.model} was unloaded as it started", "run the launch again; `llmctl ps` shows "
                          "what is loaded, `llmctl logs` why a model stopped.")
    return status


def _would_serve(target: Target, backend: dict[str, Any] | None, need: int, agent_key: str) -> tuple[int, str]:
    """For ``--print`` when the model would be (re)started: the context it would be served with, and why."""
    if target.ctx is not None:
        if target.write_profile:
            return target.ctx, "would be set in its profile: the largest context that fits here"
        return target.ctx, "would be set when it starts"
    if backend is not None and backend.get("ctx_size"):
        return int(backend["ctx_size"]), "from the deployment"
    return need, f"not known until it starts (its own server decides); shown with {agent_key}'s minimum"


def _served_context(status: dict[str, Any]) -> tuple[int, str]:
    from_engine = (status.get("engine_metrics") or {}).get("context_per_slot")
    if from_engine:
        return int(from_engine), "read from the engine"
    if status.get("ctx_size"):
        return int(status["ctx_size"]), "from the deployment"
    raise LlmctlError(f"the context {status['model']} is served with is not known",
                      "its engine reports none; set ctx-size in its profile.")


@click.command("launch", context_settings={"ignore_unknown_options": True})
@click.argument("agent")
@click.argument("model", required=False)
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--print", "show", is_flag=True,
              help="Show what would run (command, environment, files, context); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --print: one JSON object.")
@pass_ctx
def launch(ctx: Context, agent: str, model: str | None, agent_args: tuple[str, ...], show: bool,
           as_json: bool) -> None:
    """Start a coding agent on a model llmctl serves: codex, claude, opencode or aider.

    \b
    llmctl launch codex qwen-coder              Codex CLI on qwen-coder
    llmctl launch claude                        Claude Code on the model loaded now
    llmctl launch aider qwen-coder -- --yes     arguments after -- go to the agent
    llmctl launch codex qwen-coder --print      what would run; starts and writes nothing
    The model gets at least the context the agent needs: without a ctx-size of yours, the largest that fits.
    """
    from llmctl.app.cli.agents import AGENTS, Served
    from llmctl.app.cli.models_config import update
    from llmctl.app.client.api import controller_url, running_controller
    from llmctl.app.client.background import ensure_controller

    spec = AGENTS.get(agent.lower())
    if spec is None:
        raise ConfigError(f"llmctl cannot launch {agent!r}", f"it launches: {', '.join(AGENTS)}.")
    executable = shutil.which(spec.executable)
    if executable is None and not show:
        raise LlmctlError(f"{spec.title} is not installed: no `{spec.executable}` on PATH",
                          f"install it with: {spec.install} (`llmctl launch {spec.key} --print` shows what would run).")
    no_controller = show and running_controller(ctx.paths) is None
    if no_controller:  # --print starts nothing: the model is one of the store's
        backends: list[dict] = []
        if model is not None and "/" in model and model not in {e.name for e in ctx.store().list()}:
            raise LlmctlError(f"no controller runs, so {model!r} cannot be looked up",
                              "a remote's or an Ollama server's models are listed by the controller: start it "
                              "(`llmctl serve`), then run this again.")
        name = _pick_model(model, [{"name": e.name} for e in ctx.store().list()], backends)
    else:
        if not show:  # --print never starts a controller (one that stopped meanwhile: the call below says so)
            notice = ensure_controller(ctx.settings, ctx.paths)
            if notice:
                click.echo(notice, err=True)

        async def pick(client):
            backends = await client.backends()
            return _pick_model(model, await client.models(), backends), backends

        name, backends = ctx.call(pick)
    target = _plan_context(ctx, name, spec.key, spec.min_context, dry=show)
    backend = next((b for b in backends if b["model"] == name), None)
    start = no_controller or _must_start(target, backend)
    if not show:
        if target.write_profile:
            update(ctx.paths.config_file, name, [f"ctx-size={target.ctx}"], [])
        status = ctx.call(lambda c: _serve(c, target))
        served, source = _served_context(status)
    elif start:
        served, source = _would_serve(target, backend, spec.min_context, spec.key)
        if no_controller:
            target.notes.append("no controller runs: launch would start one in the background")
    else:
        status = ctx.call(lambda c: _status(c, name))
        served, source = _served_context(status) if status is not None else \
            _would_serve(target, None, spec.min_context, spec.key)  # unloaded since: it would be started
    if served < spec.min_context:
        raise LlmctlError(f"{name} is served with {served} tokens of context; {spec.key} needs at least "
                          f"{spec.min_context}", "raise its context (for an Ollama model: its num_ctx).")
    if target.tools is False and spec.needs_tools:
        target.notes.append(f"{name}'s chat template has no tool calling: {spec.title} will not be able to run "
                            "commands or edit files through it")
    keys = ctx.settings.server
    if keys.app_key() is not None and keys.inference_key() is None:  # none configured, or none resolves here
        # an agent runs commands its model chooses: with only an admin key configured it could stop the controller
        target.notes.append("no inference key is configured, so the agent gets an admin key (it could unload models "
                            "or stop llmctl); add a [[server.keys]] entry with role = \"inference\" to give it less")
    folder = ctx.paths.data_dir / "agents"
    inv = spec.build(Served(controller_url(ctx.settings, ctx.paths), name, served,
                            ctx.settings.server.app_key(), target.tools), folder, agent_args)
    _keep_smaller_output_cap(inv.env, os.environ)
    shown_env = {k: ("<hidden: llmctl's API key>" if k in inv.secret_env else v) for k, v in inv.env.items()}
    profile = ({"path": str(ctx.paths.config_file), "set": {"ctx-size": target.ctx}}
               if show and target.write_profile else None)
    if show and as_json:
        emit_json({"agent": spec.key, "model": name, "context": served, "context_source": source,
                   "min_context": spec.min_context, "tools": target.tools, "argv": list(inv.argv), "env": shown_env,
                   "files": inv.files, "notes": target.notes, "installed": executable is not None,
                   "start": start, "profile": profile})
        return
    for note in target.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if show:
        click.echo(f"{spec.title} on {name}: {spec.protocol}; context {served} tokens per request ({source}; "
                   f"{spec.key} needs at least {spec.min_context})")
        if start:
            click.echo(f"{name} would be {'restarted' if _running(backend) else 'started'} with context {served}")
        if profile is not None:
            click.echo(f"\nwould write to {profile['path']}:\n[models.{name}]\nctx-size = {target.ctx}")
        for path, content in inv.files.items():
            click.echo(f"\nwould write file {path}:\n{content}", nl=False)
        click.echo()
        if shown_env:
            click.echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in shown_env.items()) + " \\")
        click.echo(shlex.join(inv.argv))
        if executable is None:
            click.echo(f"({spec.executable} is not installed: {spec.install})")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for path, content in inv.files.items():
        Path(path).write_text(content, encoding="utf-8")
    click.echo(f"starting {spec.title} on {name} (context {served} tokens)", err=True)
    os.execvpe(executable, list(inv.argv), {**os.environ, **inv.env})  # type: ignore[arg-type]


def _keep_smaller_output_cap(env: dict[str, str], user: Mapping[str, str]) -> None:
    """A smaller answer cap the user already set for Claude Code (``CLAUDE_CODE_MAX_OUTPUT_TOKENS``) is kept: the
    one launch works out is the most the served context leaves room for, not a wish."""
    key = "CLAUDE_CODE_MAX_OUTPUT_TOKENS"
    mine, theirs = env.get(key), user.get(key)
    if mine and theirs and theirs.isdigit() and 0 < int(theirs) < int(mine):
        env[key] = theirs

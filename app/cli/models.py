"""`llmctl import`, `export` and `models` (list, info, prune, rm; `models config` is ``models_config.py``): the
registered models, their files and their fit on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.app.format import size
from llmctl.catalog.text import printable


@click.command("import")
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
        from llmctl.app.cli.ollama import import_to_ollama

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


@click.command()
@click.argument("model")
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False), help="The bundle to write (.tar).")
@pass_ctx
def export(ctx: Context, model: str, target: str) -> None:
    """Write MODEL as a bundle (files + manifest with sizes and sha256) for `llmctl import` on another machine."""
    from pathlib import Path

    from llmctl.catalog.bundles import export_bundle

    out = export_bundle(ctx.store().require(model), Path(target).expanduser())
    click.echo(f"wrote {out} ({size(out.stat().st_size)}); on the other machine: llmctl import {out.name}")


@click.group()
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

    from llmctl.app.cli.tables import Col, print_table

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
    from llmctl.app.fit_inputs import entry_request, machine_budget
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
        from llmctl.app.cli.ollama import remove_from_ollama

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

"""`llmctl runtimes`: every engine llmctl knows, whether it is here, its version, what it serves, how to get it."""

from __future__ import annotations

import click

from llmctl.app.cli_context import Context, emit_json, pass_ctx


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@click.pass_context
def runtimes(click_ctx: click.Context, ctx: Context, as_json: bool) -> None:
    """Engines that serve models: found or not, version, formats, and how to get the missing ones."""
    if click_ctx.invoked_subcommand is not None:
        return
    import asyncio

    from llmctl.app.deployments import launch_plan
    from llmctl.app.ollama import describe_ollama
    from llmctl.runtimes.base import EngineUnavailable
    from llmctl.runtimes.registry import describe_engines

    infos = describe_engines(llama_server=ctx.settings.backends.llama_server)
    infos.append(asyncio.run(describe_ollama(ctx.settings, ctx.paths)))
    try:
        default = launch_plan(ctx.settings).engine.key
    except EngineUnavailable:
        default = None
    if as_json:
        emit_json({"default": default, "engines": [{**i.to_json(), "default": i.engine == default} for i in infos]})
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for col in ("ENGINE", "FOUND", "VERSION", "SERVES", "CAN DO"):
        table.add_column(col)
    for i in infos:
        mark = "default" if i.engine == default else ("yes" if i.found else "no")
        table.add_row(Text(i.engine), mark, Text(i.version or "-"), ", ".join(i.formats), ", ".join(i.capabilities))
    console = Console()
    console.print(table)
    for i in infos:
        if i.note:
            console.print(Text(f"\n{i.engine}: {i.note}"))
        if not i.found:
            console.print(Text(f"\n{i.engine}: not found. {i.how_to_get}"))
    if default is None:
        raise click.ClickException("no engine can serve GGUF models here; install one of the above")

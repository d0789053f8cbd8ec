"""The CLI's Ollama verbs: `pull ollama:NAME:TAG`, `import FILE.gguf --to ollama`, `models rm ollama/NAME:TAG`.
They talk to Ollama itself (the attached server, or the one the running controller spawned); the controller sees
the result in its next listing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from llmctl.app.cli.context import Context, emit_json
from llmctl.catalog.text import printable


def pull_ollama(ctx: Context, target: str) -> None:
    """Pull NAME:TAG through Ollama's /api/pull, with a progress bar per layer."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from llmctl.app.ollama import api_for, require_online, to_ollama_name
    from llmctl.runtimes.ollama_wire import PullFinished, PullProgressed

    name = to_ollama_name(target)
    require_online(ctx.settings)

    async def run() -> None:
        async with api_for(ctx.settings, ctx.paths) as api:
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, disable=not os.isatty(1)) as progress:
                tasks: dict[str, int] = {}
                last = None
                async for event in api.pull(name):
                    if isinstance(event, PullProgressed):
                        if event.digest and event.total:
                            if event.digest not in tasks:
                                tasks[event.digest] = progress.add_task(event.digest[7:19], total=event.total)
                            progress.update(tasks[event.digest], completed=event.completed or 0)
                        elif event.status != last:
                            progress.console.print(printable(event.status), markup=False, highlight=False)
                        last = event.status
                    elif isinstance(event, PullFinished):
                        click.echo(f"pulled {name} into Ollama at {api.base_url}; "
                                   f"`llmctl chat ollama/{name}` to try it")

    asyncio.run(run())


def import_to_ollama(ctx: Context, source: Path, name: str | None, as_json: bool) -> None:
    """Upload a GGUF as a blob (unless Ollama has it) and create NAME:TAG from it; record that llmctl made it."""
    from llmctl.app.ollama import CreatedModels, api_for, default_name, import_events
    from llmctl.catalog.gguf import read_gguf
    from llmctl.runtimes.ollama_wire import BlobUploaded, CreateFinished, CreateProgressed

    read_gguf(source)  # refuse a bad file before uploading gigabytes
    model = default_name(source, name)

    async def run() -> None:
        async with api_for(ctx.settings, ctx.paths) as api:
            async for event in import_events(api, source, model):
                if as_json:
                    continue
                if isinstance(event, BlobUploaded):
                    click.echo(f"{'Ollama already has' if event.skipped else 'uploaded'} {source.name} "
                               f"({event.digest[:19]}…)")
                elif isinstance(event, CreateProgressed) and event.status != "success":
                    click.echo(f"  {event.status}")
                elif isinstance(event, CreateFinished):
                    CreatedModels(ctx.paths.data_dir).add(model)
            info = await api.show(model)
        if as_json:
            emit_json({"name": f"ollama/{model}", "ollama_name": model, "engine_url": api.base_url,
                       "capabilities": list(info.capabilities), "template_stop": list(info.stop)})
            return
        click.echo(f"created ollama/{model} in Ollama at {api.base_url} "
                   f"({info.architecture} {info.quantization}, context {info.context_length})")

    asyncio.run(run())


def remove_from_ollama(ctx: Context, name: str, force: bool) -> None:
    """Delete an Ollama model through /api/delete: one llmctl created, or any with --force. Unloaded first."""
    from llmctl.app.ollama import CreatedModels, api_for, to_ollama_name
    from llmctl.catalog.errors import LlmctlError

    model = to_ollama_name(name)
    created = CreatedModels(ctx.paths.data_dir)
    if model not in created.names() and not force:
        raise LlmctlError(f"llmctl did not create ollama/{model}",
                          "it is one of your Ollama models; delete it with `ollama rm`, or pass --force.")

    async def run() -> None:
        async with api_for(ctx.settings, ctx.paths) as api:
            if model in {m.name for m in await api.ps()}:
                await api.unload(model)
            await api.delete(model)

    asyncio.run(run())
    created.discard(model)
    click.echo(f"deleted ollama/{model} from Ollama")

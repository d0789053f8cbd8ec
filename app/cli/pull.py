"""`llmctl pull`: a catalog model or any Hub repo's GGUF into the Hugging Face cache, then registered."""

from __future__ import annotations

import os
from pathlib import Path

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx


@click.command()
@click.argument("target")
@click.option("--revision", default="main", show_default=True)
@click.option("--name", help="Register under this name (default: model-quant).")
@click.option("--force", is_flag=True, help="Rebind --name (or the default name) if it already names another file.")
@click.option("--offline", is_flag=True, help="Make no network call (HF_HUB_OFFLINE=1 does the same).")
@click.option("--json", "as_json", is_flag=True, help="No progress; one JSON object when done (the model, its files).")
@pass_ctx
def pull(ctx: Context, target: str, revision: str, name: str | None, force: bool, offline: bool,
         as_json: bool) -> None:
    """Download a GGUF into the Hugging Face cache and register it: a catalog MODEL[:QUANT], or
    ORG/REPO:QUANT (exact: Q4_K is not Q4_K_M) or ORG/REPO:FILE.gguf. A split model comes with every part, a
    vision model with its projector (mmproj). Resumes after an interruption; verifies size and checksum.
    ollama:NAME:TAG pulls into Ollama through Ollama's own registry client (served as ollama/NAME:TAG)."""
    if target.startswith(("ollama:", "ollama/")):
        from llmctl.app.cli.ollama import pull_ollama

        if as_json:
            raise click.UsageError("--json is for Hugging Face pulls; Ollama pulls report through Ollama")

        pull_ollama(ctx, target)
        return
    from huggingface_hub import get_token
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from llmctl.app.settings import offline as settings_offline  # not at import: --help stays light
    from llmctl.catalog.discovery import hf_cache_dir
    from llmctl.catalog.downloads import FileFinished, FileProgressed, FileStarted, FileWaiting, HubDownloader
    from llmctl.catalog.references import register, resolve
    from llmctl.catalog.text import printable

    offline = offline or settings_offline(ctx.settings)
    cache = hf_cache_dir()
    downloader = HubDownloader(cache, endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
                               token=None if offline else get_token(), offline=offline)
    resolved = resolve(downloader, ctx.store(), target, name=name, revision=revision, force=force)
    t, plan, choice = resolved.target, resolved.plan, resolved.choice
    say = (lambda *_a, **_k: None) if as_json else click.echo
    projector_note = f" + projector {choice.projector}" if choice and choice.projector else ""
    say(f"{t.what}: {len(plan.files)} file(s){projector_note}, {plan.total / 2**30:.2f} GiB from "
               f"{t.repo}@{plan.commit[:10]}")
    paths: dict[str, Path] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=as_json or not os.isatty(1)) as progress:
        total = progress.add_task("total", total=plan.total)
        sizes = {f.name: f.size for f in plan.files}
        tasks: dict[str, int] = {}
        done: dict[str, int] = {}  # bytes on disk per file
        for event in downloader.pull(plan):
            if isinstance(event, FileWaiting):
                say(f"waiting: another pull is fetching {event.name}")
            elif isinstance(event, FileStarted):
                # a mirror's file name: no markup read, no escape sequence obeyed
                tasks[event.name] = progress.add_task(escape(printable(event.name)), total=event.size,
                                                      completed=event.resumed_from)
                done[event.name] = event.resumed_from
                if event.resumed_from:
                    say(f"resuming {event.name} at {event.resumed_from / 2**20:.1f} MiB")
            elif isinstance(event, FileProgressed):
                progress.update(tasks[event.name], completed=event.done)
                done[event.name] = event.done
            elif isinstance(event, FileFinished):  # also for a file already in the cache (no Started event)
                paths[event.name] = event.path
                done[event.name] = sizes[event.name]
                if event.name in tasks:
                    progress.update(tasks[event.name], completed=sizes[event.name])
            progress.update(total, completed=sum(done.values()))
    result = {"repo": t.repo, "commit": plan.commit, "bytes": plan.total,
              "files": {n: str(p) for n, p in paths.items()}}
    if choice is None:
        if as_json:
            emit_json({**result, "model": None, "path": str(next(iter(paths.values())).parent)})
            return
        click.echo(f"pulled {t.what} -> {next(iter(paths.values())).parent}")
        return
    first_path = paths[choice.first]
    projector = paths[choice.projector] if choice.projector else None
    entry = register(ctx.store(), resolved, paths)
    assert entry is not None
    if as_json:
        emit_json({**result, "model": entry.name, "path": entry.path, "projector": entry.projector})
        return
    click.echo(f"pulled {t.what} -> {first_path}" + (f"\nprojector {projector}" if projector else ""))
    click.echo(f"registered as {entry.name}; `llmctl chat {entry.name}` to try it")

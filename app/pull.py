"""`llmctl pull`: a catalog model or any Hub repo's GGUF into the Hugging Face cache, then registered."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from llmctl.app.cli_context import Context, pass_ctx


def selection(target: str):
    """(repo, file selector, name to register, human description) for TARGET."""
    from llmctl.catalog.catalog import default_quant, find_model
    from llmctl.catalog.errors import LlmctlError

    base, _, spec = target.partition(":")
    if "/" not in base:
        model, quant = find_model(target)
        quant = quant or default_quant(model)
        return (model.gguf.repo, _quant_selector(quant), f"{model.name}-{quant.lower()}",
                f"{model.name} {quant}")
    if spec.endswith(".gguf"):
        return base, lambda name: name == spec, Path(spec).stem.lower(), spec
    if spec:
        return base, _quant_selector(spec), f"{base.split('/')[1].lower().removesuffix('-gguf')}-{spec.lower()}", spec
    if base.lower().endswith("-gguf"):
        raise LlmctlError(f"say which file of {base} to pull",
                          f"write {base}:QUANT (e.g. {base}:Q4_K_M) or {base}:FILE.gguf")
    from llmctl.catalog.downloads import safetensors_files

    return base, safetensors_files, None, f"{base} (safetensors, for vLLM)"


def _quant_selector(quant: str):
    wanted = re.compile(rf"(^|[-_.]){re.escape(quant)}([-_.]|$)", re.IGNORECASE)
    return lambda name: name.endswith(".gguf") and bool(wanted.search(Path(name).stem))


@click.command()
@click.argument("target")
@click.option("--revision", default="main", show_default=True)
@click.option("--name", help="Register under this name (default: model-quant).")
@click.option("--offline", is_flag=True, help="Make no network call (HF_HUB_OFFLINE=1 does the same).")
@pass_ctx
def pull(ctx: Context, target: str, revision: str, name: str | None, offline: bool) -> None:
    """Download a GGUF into the Hugging Face cache and register it: a catalog MODEL[:QUANT], or
    ORG/REPO:QUANT or ORG/REPO:FILE.gguf. Resumes after an interruption; verifies size and sha256.
    ollama:NAME:TAG pulls into Ollama through Ollama's own registry client (served as ollama/NAME:TAG)."""
    if target.startswith(("ollama:", "ollama/")):
        from llmctl.app.ollama_cli import pull_ollama

        pull_ollama(ctx, target)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from llmctl.catalog.downloads import FileFinished, FileProgressed, FileStarted, HubDownloader

    repo, select, default_name, what = selection(target)
    offline = offline or ctx.settings.offline or os.environ.get("HF_HUB_OFFLINE") == "1"
    from llmctl.catalog.discovery import hf_cache_dir

    downloader = HubDownloader(hf_cache_dir(), endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
                               token=os.environ.get("HF_TOKEN"), offline=offline)
    plan = downloader.plan(repo, select, revision)
    click.echo(f"{what}: {len(plan.files)} file(s), {plan.total / 2**30:.2f} GiB from {repo}@{plan.commit[:10]}")
    paths: list[Path] = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not os.isatty(1)) as progress:
        total = progress.add_task("total", total=plan.total)
        sizes = {f.name: f.size for f in plan.files}
        tasks: dict[str, int] = {}
        done: dict[str, int] = {}  # bytes on disk per file
        for event in downloader.pull(plan):
            if isinstance(event, FileStarted):
                tasks[event.name] = progress.add_task(event.name, total=event.size, completed=event.resumed_from)
                done[event.name] = event.resumed_from
                if event.resumed_from:
                    click.echo(f"resuming {event.name} at {event.resumed_from / 2**20:.1f} MiB")
            elif isinstance(event, FileProgressed):
                progress.update(tasks[event.name], completed=event.done)
                done[event.name] = event.done
            elif isinstance(event, FileFinished):  # also for a file already in the cache (no Started event)
                paths.append(event.path)
                done[event.name] = sizes[event.name]
                if event.name in tasks:
                    progress.update(tasks[event.name], completed=sizes[event.name])
            progress.update(total, completed=sum(done.values()))
    if default_name is None:  # a safetensors repo: vLLM serves the folder
        click.echo(f"pulled {what} -> {paths[0].parent}")
        return
    first = next((p for p in sorted(paths) if "-00001-of-" in p.name), sorted(paths)[0])
    entry = ctx.store().import_file(first, name or default_name, replace=True)
    click.echo(f"pulled {what} -> {first}\nregistered as {entry.name}; `llmctl chat {entry.name}` to try it")

"""`llmctl pull`: a catalog model or any Hub repo's GGUF into the Hugging Face cache, then registered."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from llmctl.app.cli_context import Context, pass_ctx


@dataclass(frozen=True, slots=True)
class Target:
    """What a pull TARGET names: a repo and, for a GGUF, a quant or a file (neither: a safetensors repo)."""

    repo: str
    quant: str | None
    file: str | None
    default_name: str | None
    what: str


def selection(target: str) -> Target:
    from llmctl.catalog.catalog import default_quant, find_model
    from llmctl.catalog.errors import LlmctlError

    base, _, spec = target.partition(":")
    if "/" not in base:
        model, quant = find_model(target)
        quant = quant or default_quant(model)
        return Target(model.gguf.repo, quant, None, f"{model.name}-{quant.lower()}", f"{model.name} {quant}")
    if spec.lower().endswith(".gguf"):
        from llmctl.catalog.selectors import SPLIT_RE
        from llmctl.catalog.store import name_from_path

        stem = SPLIT_RE.sub("", PurePosixPath(spec).name.removesuffix(".gguf"))
        return Target(base, None, spec, name_from_path(Path(stem)), spec)
    if spec:
        return Target(base, spec, None, f"{base.split('/')[1].lower().removesuffix('-gguf')}-{spec.lower()}", spec)
    if base.lower().endswith("-gguf"):
        raise LlmctlError(f"say which file of {base} to pull",
                          f"write {base}:QUANT (e.g. {base}:Q4_K_M) or {base}:FILE.gguf")
    return Target(base, None, None, None, f"{base} (safetensors, for vLLM)")


@click.command()
@click.argument("target")
@click.option("--revision", default="main", show_default=True)
@click.option("--name", help="Register under this name (default: model-quant).")
@click.option("--force", is_flag=True, help="Rebind --name (or the default name) if it already names another file.")
@click.option("--offline", is_flag=True, help="Make no network call (HF_HUB_OFFLINE=1 does the same).")
@pass_ctx
def pull(ctx: Context, target: str, revision: str, name: str | None, force: bool, offline: bool) -> None:
    """Download a GGUF into the Hugging Face cache and register it: a catalog MODEL[:QUANT], or
    ORG/REPO:QUANT (exact: Q4_K is not Q4_K_M) or ORG/REPO:FILE.gguf. A split model comes with every part, a
    vision model with its projector (mmproj). Resumes after an interruption; verifies size and checksum.
    ollama:NAME:TAG pulls into Ollama through Ollama's own registry client (served as ollama/NAME:TAG)."""
    if target.startswith(("ollama:", "ollama/")):
        from llmctl.app.ollama_cli import pull_ollama

        pull_ollama(ctx, target)
        return
    from huggingface_hub import get_token
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from llmctl.catalog.discovery import hf_cache_dir
    from llmctl.catalog.downloads import (
        FileFinished,
        FileProgressed,
        FileStarted,
        FileWaiting,
        HubDownloader,
        repo_folder,
        safetensors_files,
    )
    from llmctl.catalog.selectors import choose_gguf
    from llmctl.catalog.store import validate_name

    t = selection(target)
    offline = offline or ctx.settings.offline or os.environ.get("HF_HUB_OFFLINE") == "1"
    cache = hf_cache_dir()
    downloader = HubDownloader(cache, endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
                               token=None if offline else get_token(), offline=offline)
    if t.default_name is None:  # a safetensors repo: vLLM serves the folder
        plan, choice = downloader.plan(t.repo, safetensors_files, revision), None
    else:
        listing = downloader.listing(t.repo, revision)
        choice = choose_gguf([f.name for f in listing.files], t.repo, quant=t.quant, file=t.file)
        plan = listing.only(choice.all_files)
        final = validate_name(name or t.default_name)
        existing = ctx.store().get(final)
        first = next(f for f in plan.files if f.name == choice.first)
        blob = (repo_folder(cache, t.repo) / "blobs" / first.key).resolve()
        if existing is not None and Path(existing.path).resolve() != blob and not force:
            from llmctl.catalog.errors import StoreError

            raise StoreError(f"the name {final!r} already belongs to {existing.path}",
                             "pull with --name OTHER to keep both, or --force to point it at the new file.")
    projector_note = f" + projector {choice.projector}" if choice and choice.projector else ""
    click.echo(f"{t.what}: {len(plan.files)} file(s){projector_note}, {plan.total / 2**30:.2f} GiB from "
               f"{t.repo}@{plan.commit[:10]}")
    paths: dict[str, Path] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not os.isatty(1)) as progress:
        total = progress.add_task("total", total=plan.total)
        sizes = {f.name: f.size for f in plan.files}
        tasks: dict[str, int] = {}
        done: dict[str, int] = {}  # bytes on disk per file
        for event in downloader.pull(plan):
            if isinstance(event, FileWaiting):
                click.echo(f"waiting: another pull is fetching {event.name}")
            elif isinstance(event, FileStarted):
                tasks[event.name] = progress.add_task(event.name, total=event.size, completed=event.resumed_from)
                done[event.name] = event.resumed_from
                if event.resumed_from:
                    click.echo(f"resuming {event.name} at {event.resumed_from / 2**20:.1f} MiB")
            elif isinstance(event, FileProgressed):
                progress.update(tasks[event.name], completed=event.done)
                done[event.name] = event.done
            elif isinstance(event, FileFinished):  # also for a file already in the cache (no Started event)
                paths[event.name] = event.path
                done[event.name] = sizes[event.name]
                if event.name in tasks:
                    progress.update(tasks[event.name], completed=sizes[event.name])
            progress.update(total, completed=sum(done.values()))
    if choice is None:
        click.echo(f"pulled {t.what} -> {next(iter(paths.values())).parent}")
        return
    first_path = paths[choice.first]
    projector = paths[choice.projector] if choice.projector else None
    entry = ctx.store().import_file(first_path, final, replace=force, projector=projector)
    click.echo(f"pulled {t.what} -> {first_path}" + (f"\nprojector {projector}" if projector else ""))
    click.echo(f"registered as {entry.name}; `llmctl chat {entry.name}` to try it")

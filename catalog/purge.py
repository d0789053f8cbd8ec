"""What ``models rm --purge`` frees: a pulled model's files on disk, never anything outside the places llmctl
downloads or copies into.

A model pulled from the Hub is a link in the Hugging Face cache (``models--ORG--REPO/snapshots/REV/FILE``) to a
blob (``blobs/SHA256``). Purging removes the link, and the blob only when no other snapshot link in that repo
folder and no other registered model uses it. A file copied into llmctl's model folder is removed with the
folder it was copied into once that folder holds nothing else a model uses. A model that lives anywhere else (an
imported file, another tool's store) is only unregistered: its files are left alone and named as such.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.catalog.store import ModelEntry, model_files


@dataclass(slots=True)
class PurgePlan:
    delete: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes it frees: 0 for a link)
    kept: list[tuple[Path, str]] = field(default_factory=list)  # (path, why it stays)

    @property
    def freed(self) -> int:
        return sum(n for _p, n in self.delete)


def _repo_folder(path: Path, hf_cache: Path) -> Path | None:
    """The ``models--*`` folder holding ``path`` as ``snapshots/REV/...``, when it is in the HF cache."""
    try:
        rel = path.relative_to(hf_cache)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) >= 4 and parts[0].startswith("models--") and parts[1] == "snapshots":
        return hf_cache / parts[0]
    return None


def _links_to(blob: Path, repo: Path, skip: set[Path]) -> bool:
    """Whether any snapshot file in ``repo`` other than ``skip`` resolves to ``blob``."""
    for root, _dirs, files in os.walk(repo / "snapshots"):
        for name in files:
            link = Path(root) / name
            if link in skip:
                continue
            with contextlib.suppress(OSError):
                if link.resolve() == blob:
                    return True
    return False


def plan_purge(entry: ModelEntry, others: list[ModelEntry], *, hf_cache: Path, models_dir: Path) -> PurgePlan:
    """What purging ``entry`` deletes and frees; ``others`` are the other registered models (their files stay)."""
    hf_cache = hf_cache.expanduser().absolute()
    models_dir = models_dir.expanduser().absolute()
    plan = PurgePlan()
    files = [Path(f).absolute() for f in model_files(entry)]
    used = {Path(f).resolve() for o in others if o.name != entry.name for f in model_files(o)}
    used_links = {Path(f).absolute() for o in others if o.name != entry.name for f in model_files(o)}
    for f in files:
        if not f.exists() and not f.is_symlink():
            plan.kept.append((f, "already gone"))
            continue
        repo = _repo_folder(f, hf_cache)
        target = f.resolve()
        if repo is not None:
            if f in used_links:
                plan.kept.append((f, "another registered model uses it"))
                continue
            if f.is_symlink():
                plan.delete.append((f, 0))
                blob = target
                if not blob.is_relative_to(repo / "blobs"):
                    plan.kept.append((blob, "the link points outside the Hugging Face cache"))
                elif target in used or _links_to(blob, repo, set(files)):
                    plan.kept.append((blob, "another snapshot or model uses this blob"))
                else:
                    plan.delete.append((blob, blob.stat().st_size))
            elif target in used:
                plan.kept.append((f, "another registered model uses it"))
            else:
                plan.delete.append((f, f.stat().st_size))
        elif target.is_relative_to(models_dir.resolve()):
            if target in used:
                plan.kept.append((f, "another registered model uses it"))
            else:
                plan.delete.append((target, _size(target)))
        else:
            plan.kept.append((f, "not in the Hugging Face cache or llmctl's model folder: left in place"))
    return plan


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def execute(plan: PurgePlan) -> int:
    """Delete what ``plan`` lists (links before the blobs they point at); returns the bytes freed."""
    import shutil

    for path, _n in plan.delete:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return plan.freed

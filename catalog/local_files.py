"""llmctl's own model folder: ``import --copy`` into it, and what ``models prune`` may delete from it.

A copy goes to a folder named after the model (``models/NAME/``, original file names kept so a split model's
parts still find each other), is written to a hidden ``*.partial`` folder first and renamed into place in one
step; an existing folder is never replaced. Any failure removes the partial folder: nothing half-copied is left,
and no other model's file is touched (issue 8 item 5).

Prune counts every file of every registered model as used: split parts, projectors, a folder model's files:
nothing that belongs to a registered model is pruned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmctl.catalog.errors import StoreError
from llmctl.catalog.gguf import read_gguf
from llmctl.catalog.safetensors_dir import PICKLES, read_model_dir
from llmctl.catalog.store import ModelEntry, ModelStore, model_files, name_from_path, validate_name


def copy_into_store(source: Path, models_dir: Path, store: ModelStore, name: str | None = None, *,
                    replace: bool = False) -> ModelEntry:
    """Validate SOURCE (a GGUF, any part of a split GGUF, or a safetensors folder), copy all of it into
    ``models_dir/NAME/`` and register it."""
    resolved = source.expanduser().resolve()
    if not resolved.is_dir():  # keep the file's own name: a split model's parts are found by it
        resolved = source.expanduser().absolute().parent.resolve() / source.name
    if resolved.is_dir():
        read_model_dir(resolved)  # refuse a bad folder before copying gigabytes
        files: list[Path] = []
        first_name = None
    else:
        info = read_gguf(resolved)  # every part is read: a missing or bad one is refused here
        files = list(info.files)
        first_name = info.path.name
    final = validate_name(name) if name else name_from_path(files[0] if files else resolved)
    old = store.get(final)
    if old is not None and not replace:
        raise StoreError(f"a model named {final!r} already exists (at {old.path})",
                         "pick another name with --name, or remove it first with `llmctl models rm`.")
    target = models_dir / final.replace(":", "_")
    if target.exists():
        raise StoreError(f"{target} already exists",
                         "pick another name with --name, or remove that folder (`llmctl models prune` removes it "
                         "once no model uses it).")
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=models_dir))
    try:
        try:
            if files:
                for f in files:
                    shutil.copyfile(f, partial / f.name)
            else:
                shutil.copytree(resolved, partial, ignore=shutil.ignore_patterns(*(f"*{s}" for s in PICKLES)),
                                dirs_exist_ok=True)
            os.rename(partial, target)  # fails if the folder appeared meanwhile: nothing is replaced
        except (OSError, shutil.Error) as exc:
            raise StoreError(f"copying {resolved} into {models_dir} failed",
                             f"{_short(exc)}. Nothing was kept; fix the source and run the import again.") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        return store.import_file(target / first_name if first_name else target, final, replace=replace)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _short(exc: BaseException) -> str:
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        return "; ".join(str(err[-1]) for err in exc.args[0][:3])
    return str(exc)


@dataclass(frozen=True, slots=True)
class Unused:
    path: Path
    size: int


def unused_files(models_dir: Path, entries: list[ModelEntry]) -> list[Unused]:
    """Files and folders in ``models_dir`` that no registered model uses, and partial copies or downloads."""
    if not models_dir.exists():
        return []
    used_files: set[Path] = set()
    used_dirs: list[Path] = []
    for entry in entries:
        for f in model_files(entry):
            if entry.format != "gguf" and f == Path(entry.path):
                used_dirs.append(f.resolve())  # a folder model: everything in it is its own
            else:
                used_files.add(f.resolve())

    def holds_used(folder: Path) -> bool:
        folder = folder.resolve()
        return any(f.is_relative_to(folder) for f in used_files) or any(
            d.is_relative_to(folder) or folder.is_relative_to(d) for d in used_dirs)

    def is_used(file: Path) -> bool:
        resolved = file.resolve()
        return resolved in used_files or any(resolved.is_relative_to(d) for d in used_dirs)

    found: dict[Path, Unused] = {}
    for child in sorted(models_dir.iterdir()):
        if child.is_dir() and not child.is_symlink():
            if not holds_used(child):
                found[child] = Unused(child, _tree_size(child))
            else:
                for f in child.rglob("*"):
                    if f.is_file() and (f.suffix == ".gguf" or f.name.endswith(".partial")) and not is_used(f):
                        found[f] = Unused(f, f.stat().st_size)
        elif (child.suffix == ".gguf" or child.name.endswith(".partial")) and not is_used(child):
            found[child] = Unused(child, child.lstat().st_size)
    return list(found.values())


def _tree_size(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
    return total


def delete(item: Unused) -> None:
    if item.path.is_dir() and not item.path.is_symlink():
        shutil.rmtree(item.path, ignore_errors=True)
    else:
        item.path.unlink(missing_ok=True)

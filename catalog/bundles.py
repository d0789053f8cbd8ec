"""Model bundles for air-gapped machines: ``llmctl export MODEL --to FILE.tar`` and ``llmctl import FILE.tar``.

A bundle is an uncompressed tar: ``manifest.json`` first (name, facts, every file's size and sha256), then
``files/<name>``. Import never extracts blindly (zip-slip, CVE-2024-45436): it reads the manifest with a size
bound, accepts only regular-file members that the manifest lists under ``files/`` with safe names, streams each
to a partial file while hashing, and moves it into place only when size and sha256 match. A bad bundle leaves
nothing behind, and a bundle named like a registered model is refused unless told to replace it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from llmctl.catalog.downloads import safe_name
from llmctl.catalog.errors import LlmctlError, StoreError
from llmctl.catalog.gguf import read_gguf
from llmctl.catalog.store import ModelEntry, ModelStore, model_files, validate_name

MANIFEST = "manifest.json"
MAX_MANIFEST = 1 << 20
CHUNK = 1 << 20


class BundleError(LlmctlError):
    """A bundle is malformed, does not verify, or would write outside the store."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def export_bundle(entry: ModelEntry, target: Path) -> Path:
    files = model_files(entry)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise BundleError(f"{entry.name}'s file is gone", f"missing: {', '.join(missing)}. Import it again.")
    manifest = {"schema": 1, "name": entry.name, "format": entry.format, "facts": entry.facts,
                "files": [{"name": p.name, "size": p.stat().st_size, "sha256": _sha256(p)} for p in files]}
    data = json.dumps(manifest, indent=1).encode()
    partial = target.with_name(target.name + ".partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for p in files:
                tar.add(p, arcname=f"files/{p.name}", recursive=False)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _open(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle} is not a readable bundle", f"{exc}. Export it again with `llmctl export`.") \
            from None


def import_bundle(bundle: Path, models_dir: Path, store: ModelStore, name: str | None = None, *,
                  replace: bool = False) -> ModelEntry:
    """Install a bundle under ``models_dir/NAME/``. Files are verified into a hidden staging folder and moved into
    place only once the model reads as one; any failure removes everything the import wrote. A model of the same
    name is replaced only with ``replace`` (its folder is kept until the new one is registered)."""
    with _open(bundle) as tar:
        manifest = _read_manifest(tar, bundle)
        final_name = validate_name(name or manifest["name"])
        old = store.get(final_name)
        if old is not None and not replace:
            raise StoreError(f"a model named {final_name!r} already exists (at {old.path})",
                             "pick another name with --name, or replace it with --force.")
        target_dir = models_dir / final_name.replace(":", "_")
        ours = old is not None and _inside(Path(old.path), target_dir)
        if target_dir.exists() and not (replace and ours):
            raise StoreError(f"{target_dir} already exists",
                             "pick another name with --name, or remove that folder (`llmctl models prune` removes "
                             "it once no model uses it).")
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", suffix=".partial", dir=models_dir))
        try:
            written = _extract_all(tar, bundle, manifest, staging)
            first = next((p for p in written if "-00001-of-" in p.name), written[0])
            read_gguf(first)  # a file that is not a model (a script with the right sha256) goes no further
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    aside = target_dir.with_name(f".{target_dir.name}.replaced") if target_dir.exists() else None
    try:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(target_dir, aside)
        os.rename(staging, target_dir)
        entry = store.import_file(target_dir / first.name, final_name, replace=replace)
    except BaseException:
        shutil.rmtree(target_dir if not staging.exists() else staging, ignore_errors=True)
        if aside is not None and aside.exists():
            os.rename(aside, target_dir)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return entry


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _extract_all(tar: tarfile.TarFile, bundle: Path, manifest: dict, folder: Path) -> list[Path]:
    wanted = {f["name"]: f for f in manifest["files"]}
    written: list[Path] = []
    for member in tar:
        if member.name == MANIFEST:
            continue
        if not member.name.startswith("files/") or not member.isreg():
            raise BundleError(f"{bundle} holds an unexpected member {member.name!r}",
                              "only files listed in its manifest are accepted; the bundle is not trustworthy.")
        file_name = safe_name(member.name.removeprefix("files/"))
        spec = wanted.pop(file_name, None)
        if spec is None or "/" in file_name:
            raise BundleError(f"{bundle} holds {member.name!r}, which its manifest does not list",
                              "the bundle is not trustworthy.")
        written.append(_extract(tar, member, spec, folder / file_name))
    if wanted:
        raise BundleError(f"{bundle} is incomplete", f"missing: {', '.join(wanted)}")
    return written


def _read_manifest(tar: tarfile.TarFile, bundle: Path) -> dict:
    member = tar.next()
    if member is None or member.name != MANIFEST or not member.isreg() or member.size > MAX_MANIFEST:
        raise BundleError(f"{bundle} has no manifest first", "it was not made by `llmctl export`.")
    raw = tar.extractfile(member).read(MAX_MANIFEST + 1)
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(manifest["name"], str) or not files or not all(
            isinstance(f["name"], str) and isinstance(f["size"], int) and isinstance(f["sha256"], str) for f in files
        ):
            raise ValueError("fields")
        for f in files:
            safe_name(f["name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{bundle}'s manifest is invalid", f"{exc}. Export it again.") from None
    return manifest


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, spec: dict, target: Path) -> Path:
    if member.size != spec["size"]:
        raise BundleError(f"{member.name} is {member.size} bytes, its manifest says {spec['size']}",
                          "the bundle is damaged; export it again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    source = tar.extractfile(member)
    try:
        with partial.open("wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != spec["sha256"]:
            raise BundleError(f"{member.name} does not match its sha256", "the bundle is damaged; export it again.")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target

"""Bundles: export, import on another "machine", and every way a hostile or damaged bundle is refused."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from llmctl.catalog.bundles import BundleError, export_bundle, import_bundle
from llmctl.catalog.downloads import DownloadError
from llmctl.catalog.errors import LlmctlError, StoreError
from llmctl.catalog.store import ModelStore


def test_round_trip(tmp_path: Path, tiny_gguf: Path) -> None:
    here = ModelStore(tmp_path / "a")
    entry = here.import_file(tiny_gguf, "tiny")
    bundle = export_bundle(entry, tmp_path / "tiny.tar")
    there = ModelStore(tmp_path / "b")
    imported = import_bundle(bundle, tmp_path / "b" / "models", there)
    assert imported.name == "tiny"
    assert Path(imported.path).read_bytes() == tiny_gguf.read_bytes()
    assert Path(imported.path).is_relative_to(tmp_path / "b" / "models")
    assert imported.facts == entry.facts


def _bundle(path: Path, manifest: dict | None, members: dict[str, bytes], kinds: dict[str, bytes] | None = None):
    with tarfile.open(path, "w") as tar:
        if manifest is not None:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (kinds or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target.decode()
            tar.addfile(info)
    return path


def _manifest(name: str, data: bytes) -> dict:
    import hashlib

    return {"schema": 1, "name": "evil", "files": [{"name": name, "size": len(data),
                                                    "sha256": hashlib.sha256(data).hexdigest()}]}


@pytest.mark.parametrize(
    ("manifest_name", "member"),
    [("../escape.gguf", "files/../escape.gguf"), ("/etc/x.gguf", "/etc/x.gguf"), ("x.gguf", "../x.gguf"),
     ("x.gguf", "files/sub/../../x.gguf"), ("C:\\x.gguf", "files/C:\\x.gguf")],
)
def test_traversal_is_refused_and_nothing_is_written(tmp_path: Path, manifest_name: str, member: str) -> None:
    data = b"GGUF" + bytes(100)
    bundle = _bundle(tmp_path / "evil.tar", _manifest(manifest_name, data), {member: data})
    with pytest.raises((BundleError, DownloadError)):
        import_bundle(bundle, tmp_path / "store" / "models", ModelStore(tmp_path / "store"))
    assert not (tmp_path / "escape.gguf").exists() and not (tmp_path / "x.gguf").exists()
    assert not (tmp_path / "store" / "models").exists() or not any((tmp_path / "store" / "models").rglob("*.gguf"))


def test_symlink_members_and_unlisted_files_are_refused(tmp_path: Path) -> None:
    data = b"x" * 10
    link = _bundle(tmp_path / "l.tar", _manifest("m.gguf", data), {}, {"files/m.gguf": b"/etc/passwd"})
    with pytest.raises(BundleError, match="unexpected member"):
        import_bundle(link, tmp_path / "s" / "models", ModelStore(tmp_path / "s"))
    extra = _bundle(tmp_path / "e.tar", _manifest("m.gguf", data), {"files/m.gguf": data, "files/other": b"x"})
    with pytest.raises(BundleError, match="does not list"):
        import_bundle(extra, tmp_path / "s" / "models", ModelStore(tmp_path / "s"))
    assert not list((tmp_path / "s" / "models").rglob("*"))


def test_damaged_bundles_are_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    corrupt = _bundle(tmp_path / "c.tar", _manifest("m.gguf", data), {"files/m.gguf": data[:-1] + b"\x00"})
    with pytest.raises(BundleError, match="sha256"):
        import_bundle(corrupt, tmp_path / "s" / "models", ModelStore(tmp_path / "s"))
    assert not list((tmp_path / "s" / "models").rglob("*"))
    no_manifest = _bundle(tmp_path / "n.tar", None, {"files/m.gguf": data})
    with pytest.raises(BundleError, match="no manifest"):
        import_bundle(no_manifest, tmp_path / "s" / "models", ModelStore(tmp_path / "s"))
    missing = _bundle(tmp_path / "m.tar", _manifest("m.gguf", data), {})
    with pytest.raises(BundleError, match="incomplete"):
        import_bundle(missing, tmp_path / "s" / "models", ModelStore(tmp_path / "s"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(BundleError, match="not a readable bundle"):
        import_bundle(tmp_path / "junk.tar", tmp_path / "s" / "models", ModelStore(tmp_path / "s"))


def test_a_bundle_whose_file_is_not_a_model_leaves_nothing(tmp_path: Path) -> None:
    """A listed file with the right sha256 that is not a GGUF (a script) used to stay behind as models/NAME/run.sh."""
    script = b"#!/bin/sh\necho owned\n"
    bundle = _bundle(tmp_path / "s.tar", _manifest("run.sh", script), {"files/run.sh": script})
    store = ModelStore(tmp_path / "s")
    with pytest.raises(LlmctlError, match=r"run\.sh"):
        import_bundle(bundle, tmp_path / "s" / "models", store)
    assert list((tmp_path / "s" / "models").rglob("*")) == []
    assert store.list() == []


def test_a_bundle_named_like_a_model_is_refused_without_replace(tmp_path: Path, tiny_gguf: Path) -> None:
    """A bundle named like an installed model used to replace it silently."""
    source = ModelStore(tmp_path / "a").import_file(tiny_gguf, "tiny")
    bundle = export_bundle(source, tmp_path / "tiny.tar")
    store = ModelStore(tmp_path / "b")
    first = import_bundle(bundle, tmp_path / "b" / "models", store)
    with pytest.raises(StoreError, match=r"already exists.*--force"):
        import_bundle(bundle, tmp_path / "b" / "models", store)
    assert store.get("tiny") == first and Path(first.path).read_bytes() == tiny_gguf.read_bytes()
    again = import_bundle(bundle, tmp_path / "b" / "models", store, replace=True)  # --force
    assert Path(again.path).is_file() and again.path == first.path
    assert sorted(p.name for p in (tmp_path / "b" / "models").iterdir()) == ["tiny"]  # nothing set aside remains

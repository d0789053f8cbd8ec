"""The model registry: names are validated before anything touches the disk, files are referenced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmctl.catalog.errors import ModelFileError, StoreError
from llmctl.catalog.store import ModelStore, name_from_path, validate_name


@pytest.mark.parametrize(
    "bad", ["../x", "..", "a/../b", "/etc/passwd", "C:\\x", "\\\\server\\share", "a b", "", "-lead", "x" * 200,
            "a..b", "name\x00", "ünïcode"],
)
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(StoreError, match="not a valid model name"):
        validate_name(bad)


@pytest.mark.parametrize("good", ["tiny", "Llama-3.1-8B-Instruct:Q4_K_M", "qwen2.5-7b", "a_b"])
def test_good_names_are_lowercased(good: str) -> None:
    assert validate_name(good) == good.lower()


def test_names_from_file_names() -> None:
    assert name_from_path(Path("/m/Gemma-3-270M-Q4_K_M.gguf")) == "gemma-3-270m-q4_k_m"
    assert name_from_path(Path("/m/weird name (copy).gguf")) == "weird-name-copy"
    assert name_from_path(Path("/m/...gguf")) == "model"


def test_import_list_remove(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path / "data")
    entry = store.import_file(tiny_gguf)
    assert entry.name == "tiny-llama"
    assert entry.path == str(tiny_gguf.resolve())
    assert entry.facts["n_layers"] == 2 and entry.facts["quant"] == "F32"
    # a second store object (another process) sees it
    assert [e.name for e in ModelStore(tmp_path / "data").list()] == ["tiny-llama"]
    assert store.get("TINY-LLAMA") is not None
    store.import_file(tiny_gguf, "Other")
    assert [e.name for e in store.list()] == ["other", "tiny-llama"]
    removed = store.remove("other")
    assert removed.name == "other"
    assert tiny_gguf.exists()  # references: the file is never deleted
    with pytest.raises(StoreError, match="no model named"):
        store.remove("other")


def test_same_name_for_another_file_is_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path / "data")
    store.import_file(tiny_gguf, "m")
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    with pytest.raises(StoreError, match="already exists"):
        store.import_file(copy, "m")
    assert store.import_file(copy, "m", replace=True).path == str(copy.resolve())


def test_import_of_a_bad_file_registers_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "data")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(ModelFileError):
        store.import_file(bad)
    with pytest.raises(StoreError):
        store.import_file(bad, "../../escape")
    assert store.list() == []
    assert not (tmp_path / "data").exists() or not (tmp_path / "data" / "models.json").exists()


def test_corrupt_registry_gives_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "models.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot be read"):
        ModelStore(root).list()


def test_registry_is_written_atomically(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path / "data")
    store.import_file(tiny_gguf)
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads((tmp_path / "data" / "models.json").read_text())["schema"] == 1


def test_a_projector_is_recorded_and_an_older_registry_still_reads(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path)
    projector = tmp_path / "mmproj-F16.gguf"
    projector.write_bytes(tiny_gguf.read_bytes())
    entry = store.import_file(tiny_gguf, "vision", projector=projector)
    assert ModelStore(tmp_path).require("vision").projector == str(projector.resolve()) == entry.projector
    bad = tmp_path / "mmproj-bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ModelFileError):
        store.import_file(tiny_gguf, "vision2", projector=bad)
    # a registry written before projectors existed
    (tmp_path / "models.json").write_text(json.dumps({"schema": 1, "models": [
        {"name": "old", "path": str(tiny_gguf), "format": "gguf", "size": 1, "added_at": 0.0, "facts": {}}]}))
    assert ModelStore(tmp_path).require("old").projector is None

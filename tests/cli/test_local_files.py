"""Split GGUFs (every shard counts as the model's) and `import --copy` (issue 8 items 4, 5), as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_gguf import write_tiny_llama

from llmctl.app.cli.root import cli
from llmctl.catalog.errors import ModelFileError
from llmctl.catalog.facts import facts_from_gguf
from llmctl.catalog.gguf import read_gguf


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("whole") / "tiny.gguf", n_layers=4)


@pytest.fixture
def split(tmp_path: Path) -> list[Path]:
    """The same model as ``whole`` (same seed), in three parts the way gguf-split writes them."""
    (tmp_path / "split").mkdir()
    first = write_tiny_llama(tmp_path / "split" / "tiny.gguf", n_layers=4, split_max_tensors=16)
    parts = sorted(first.parent.glob("tiny-*-of-*.gguf"))
    assert [p.name for p in parts] == [f"tiny-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    return parts


def _json(runner: CliRunner, *args: str) -> dict | list:
    r = runner.invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_every_part_is_read(whole: Path, split: list[Path]) -> None:
    one, parts = read_gguf(whole), read_gguf(split[0])
    assert parts.files == tuple(split) and parts.file_size == sum(p.stat().st_size for p in split)
    assert parts.tensor_bytes == one.tensor_bytes and parts.parameter_count == one.parameter_count
    a, b = facts_from_gguf(one), facts_from_gguf(parts)
    assert (b.weights_bytes, b.layer_bytes, b.output_bytes, b.input_bytes) == \
        (a.weights_bytes, a.layer_bytes, a.output_bytes, a.input_bytes)
    assert read_gguf(split[2]).files == tuple(split)  # naming any part reads the whole model


def test_a_missing_or_foreign_part_is_a_clear_error(split: list[Path], tmp_path: Path) -> None:
    split[1].unlink()
    with pytest.raises(ModelFileError, match=r"part 2 of 3 \(tiny-00002-of-00003\.gguf\) is missing"):
        read_gguf(split[0])
    renamed = tmp_path / "renamed.gguf"
    shutil.copyfile(split[0], renamed)
    with pytest.raises(ModelFileError, match="rename the parts"):
        read_gguf(renamed)


def test_fit_size_and_import_count_every_part(whole: Path, split: list[Path]) -> None:
    runner = CliRunner()
    fit_whole = _json(runner, "fit", str(whole), "--ctx", "1024")
    fit_split = _json(runner, "fit", str(split[0]), "--ctx", "1024")
    assert fit_split["weights_bytes"] == fit_whole["weights_bytes"] > 0
    assert fit_split["total_bytes"] == fit_whole["total_bytes"]
    entry = _json(runner, "import", str(split[1]), "--name", "big")  # any part names the model
    assert entry["path"] == str(split[0]) and entry["size"] == sum(p.stat().st_size for p in split)
    assert entry["facts"]["split_count"] == 3
    info = _json(runner, "models", "info", "big")
    assert info["fit"]["weights_bytes"] == fit_whole["weights_bytes"]


def test_import_copy_copies_every_part_and_prune_keeps_them(split: list[Path], llmctl_home: Path) -> None:
    runner = CliRunner()
    entry = _json(runner, "import", str(split[0]), "--copy")
    assert entry["name"] == "tiny"  # named after the model, not "tiny-00001-of-00003"
    copied = Path(entry["path"]).parent
    assert copied == llmctl_home / "data" / "models" / "tiny"
    assert sorted(p.name for p in copied.iterdir()) == [p.name for p in split]
    for p in split:
        assert (copied / p.name).read_bytes() == p.read_bytes()
    r = runner.invoke(cli, ["models", "prune", "--yes"])
    assert r.exit_code == 0 and "nothing to prune" in r.output, r.output
    assert sorted(p.name for p in copied.iterdir()) == [p.name for p in split]


def test_prune_keeps_every_part_of_a_model_installed_from_a_bundle(split: list[Path], llmctl_home: Path,
                                                                   tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(split[0]), "--name", "src"]).exit_code == 0
    bundle = tmp_path / "b.tar"
    assert runner.invoke(cli, ["export", "src", "--to", str(bundle)]).exit_code == 0
    r = runner.invoke(cli, ["import", str(bundle), "--name", "bundled"])
    assert r.exit_code == 0, r.output
    folder = llmctl_home / "data" / "models" / "bundled"
    stray = llmctl_home / "data" / "models" / "stray.gguf"
    stray.write_bytes(b"GGUF")
    r = runner.invoke(cli, ["models", "prune", "--yes"])
    assert r.exit_code == 0 and "stray.gguf" in r.output
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in split] and not stray.exists()


def test_import_copy_never_replaces_another_models_file(tmp_path: Path, tiny_gguf: Path, llmctl_home: Path) -> None:
    """Two different files both called model.gguf: the second copy used to overwrite the first model's file."""
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copyfile(tiny_gguf, a)
    write_tiny_llama(b, seed=7)
    runner = CliRunner()
    one = _json(runner, "import", str(a), "--copy", "--name", "one")
    two = _json(runner, "import", str(b), "--copy", "--name", "two")
    assert one["path"] != two["path"]
    assert Path(one["path"]).read_bytes() == a.read_bytes()
    assert Path(two["path"]).read_bytes() == b.read_bytes()
    # the same name again: refused before anything is copied, the first copy untouched
    r = runner.invoke(cli, ["import", str(b), "--copy", "--name", "one"])
    assert r.exit_code != 0 and "already exists" in str(r.exception)
    assert Path(one["path"]).read_bytes() == a.read_bytes()
    # a folder of that name that no model owns is not replaced either
    (llmctl_home / "data" / "models" / "three").mkdir()
    r = runner.invoke(cli, ["import", str(b), "--copy", "--name", "three"])
    assert r.exit_code != 0 and "already exists" in str(r.exception)
    assert list((llmctl_home / "data" / "models" / "three").iterdir()) == []


def _safetensors_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    header = json.dumps({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_a_failed_folder_copy_leaves_nothing(tmp_path: Path, llmctl_home: Path) -> None:
    source = _safetensors_folder(tmp_path / "qwen-awq")
    (source / "tokenizer_config.json").symlink_to(tmp_path / "vanished.json")  # a file gone mid-copy
    runner = CliRunner()
    r = runner.invoke(cli, ["import", str(source), "--copy"])
    assert r.exit_code != 0
    assert "copying" in r.exception.title and "Nothing was kept" in r.exception.message
    models = llmctl_home / "data" / "models"
    assert list(models.iterdir()) == []  # no half-copied folder, no partial
    assert json.loads(runner.invoke(cli, ["models", "list", "--json"]).output) == []
    os.unlink(source / "tokenizer_config.json")
    entry = _json(runner, "import", str(source), "--copy")  # fixed: the same import now works
    assert sorted(p.name for p in Path(entry["path"]).iterdir()) == ["config.json", "model.safetensors",
                                                                     "tokenizer.json"]


def test_a_split_model_in_the_hf_cache_is_found_and_imported_whole(split: list[Path], tmp_path: Path) -> None:
    """The cache stores parts as hash-named blobs; only the snapshot's links carry the names that tie them."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--org--big-GGUF"
    snapshot = repo / "snapshots" / ("c" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, part in enumerate(split):
        blob = repo / "blobs" / (str(i) * 64)
        shutil.copyfile(part, blob)
        (snapshot / part.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    total = sum(p.stat().st_size for p in split)
    runner = CliRunner()
    found = [m for m in _json(runner, "models", "list") if m.get("source") == "hf-cache"]
    assert [(m["name"], m["size"]) for m in found] == [(f"org/big-GGUF/{split[0].name}", total)]
    entry = _json(runner, "import", found[0]["path"], "--name", "big")
    assert entry["size"] == total and entry["facts"]["split_count"] == 3
    assert entry["path"] == str(snapshot / split[0].name)
    assert [m["name"] for m in _json(runner, "models", "list")] == ["big"]  # no longer listed as found elsewhere
    copied = _json(runner, "import", str(snapshot / split[0].name), "--copy", "--name", "big-copy")
    assert copied["size"] == total and sorted(p.name for p in Path(copied["path"]).parent.iterdir()) == \
        [p.name for p in split]


@pytest.mark.parametrize(("count", "no", "match"), [(5000, 0, "over the limit of 1000"),
                                                    (2, 1, "says it is part 1 of 2 .*not part 0 of 2")])
def test_hostile_split_headers_are_refused(tmp_path: Path, count: int, no: int, match: str) -> None:
    import gguf
    import numpy as np

    path = tmp_path / f"x-00001-of-{count:05d}.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint16("split.no", no)
    w.add_uint16("split.count", count)
    w.add_tensor("a", np.zeros(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if count == 2:
        shutil.copyfile(path, tmp_path / "x-00002-of-00002.gguf")
    with pytest.raises(ModelFileError, match=match):
        read_gguf(path)

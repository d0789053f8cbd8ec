"""A pulled model is listed by its snapshot path, `models rm --purge` frees its blob only when nothing else uses
it and never touches a file elsewhere, and `pull --json` reports what it registered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_gguf import write_tiny_llama

from llmctl.app.cli.root import cli

REPO = "org/tiny-GGUF"


@pytest.fixture
def env(hub, tmp_path: Path) -> dict[str, str]:
    data = write_tiny_llama(tmp_path / "src.gguf").read_bytes()
    hub.add_file(REPO, "tiny-Q8_0.gguf", data)
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}


def _run(args: list[str], env: dict[str, str], input: str | None = None):
    r = CliRunner().invoke(cli, args, env={**env, "HF_HUB_CACHE": None, "HF_HUB_OFFLINE": None}, input=input)
    assert r.exit_code == 0, r.output
    return r


def test_pull_json_lists_the_snapshot_path_and_purge_frees_the_blob(env, tmp_path: Path) -> None:
    pulled = json.loads(_run(["pull", f"{REPO}:Q8_0", "--json"], env).output)
    path = Path(pulled["path"])
    assert pulled["model"] == "tiny-q8_0" and "/snapshots/" in str(path) and path.name == "tiny-Q8_0.gguf"
    assert path.is_symlink() and "/blobs/" in str(path.resolve())
    listed = json.loads(_run(["models", "list", "--json"], env).output)
    assert [m["path"] for m in listed if m["name"] == "tiny-q8_0"] == [str(path)]
    table = _run(["models", "list"], {**env, "COLUMNS": "200"}).output
    assert "snapshots" in table and "blobs" not in table

    blob = path.resolve()
    # another snapshot links to the same blob (another revision or file of the same bytes): the blob stays
    other = blob.parent.parent / "snapshots" / ("0" * 40) / "tiny-Q8_0.gguf"
    other.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, other.parent), other)
    out = _run(["models", "rm", "tiny-q8_0", "--purge"], env, input="n\n").output
    assert "nothing deleted" in out and path.exists()
    out = _run(["models", "rm", "tiny-q8_0", "--purge", "--yes"], env).output
    assert "another snapshot or model uses this blob" in out and "freed 0 B" in out
    assert not path.exists() and blob.exists()

    # pulled again, with no other link: purging frees the blob's bytes
    other.unlink()
    pulled = json.loads(_run(["pull", f"{REPO}:Q8_0", "--json"], env).output)
    freed = f"{blob.stat().st_size / 1024:.1f} KiB"
    out = _run(["models", "rm", "tiny-q8_0", "--purge", "--yes"], env).output
    assert f"freed {freed}" in out, out
    assert not Path(pulled["path"]).exists() and not blob.exists()
    assert json.loads(_run(["models", "list", "--json"], env).output) == []


def test_purge_leaves_a_file_outside_the_stores_in_place(env, tiny_gguf: Path) -> None:
    _run(["import", str(tiny_gguf), "--name", "mine"], env)
    out = _run(["models", "rm", "mine", "--purge", "--yes"], env).output
    assert "left in place" in out and tiny_gguf.exists()
    assert "freed 0 B" in out

"""Discovery of GGUFs in the HF cache, Ollama's store and LM Studio's folders, on layouts the test lays out."""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.catalog.discovery import discover


def _gguf(path: Path, data: bytes = b"GGUF" + bytes(60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_finds_all_three(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hf = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-7B-Instruct-GGUF"
    blob = _gguf(hf / "blobs" / ("a" * 64))
    link = hf / "snapshots" / "c0ffee" / "qwen2.5-7b-instruct-q4_k_m.gguf"
    link.parent.mkdir(parents=True)
    link.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    _gguf(hf / "snapshots" / "c0ffee" / "big-00002-of-00002.gguf")  # later parts of a split are not listed
    sha = "b" * 64
    ollama = home / ".ollama" / "models"
    _gguf(ollama / "blobs" / f"sha256-{sha}")
    manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "3b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "c" * 64},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{sha}"}]}))
    lm_dir = home / ".lmstudio" / "models" / "lmstudio-community" / "gemma-3-1b-it-GGUF"
    lm = _gguf(lm_dir / "gemma-3-1b-it-Q4_K_M.gguf")
    found = discover({"HOME": str(home), "HF_HOME": str(tmp_path / "hf")})
    by_source = {f.source: f for f in found}
    assert len(found) == 3
    assert by_source["hf-cache"].name == "Qwen/Qwen2.5-7B-Instruct-GGUF/qwen2.5-7b-instruct-q4_k_m.gguf"
    assert by_source["hf-cache"].path == str(blob.resolve())
    assert by_source["ollama"].name == "llama3.2:3b" and by_source["ollama"].path.endswith(f"sha256-{sha}")
    assert by_source["lm-studio"].path == str(lm)


def test_hostile_ollama_manifests_are_ignored(tmp_path: Path) -> None:
    ollama = tmp_path / "ollama"
    (ollama / "blobs").mkdir(parents=True)
    secret = _gguf(tmp_path / "secret.gguf")
    manifests = ollama / "manifests" / "r" / "library" / "m"
    manifests.mkdir(parents=True)
    for tag, digest in {"a": "sha256:../../secret.gguf", "b": "md5:abc", "c": None}.items():
        (manifests / tag).write_text(json.dumps({"layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest}]}))
    (manifests / "d").write_text("{not json")
    found = discover({"HOME": str(tmp_path / "nohome"), "OLLAMA_MODELS": str(ollama),
                      "HF_HOME": str(tmp_path / "nohf")})
    assert found == []
    assert secret.exists()


def test_nothing_anywhere(tmp_path: Path) -> None:
    assert discover({"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}) == []

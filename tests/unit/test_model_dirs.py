"""Safetensors model folders: facts from bounded headers, pickles never read, clear refusal to serve without vLLM."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import pytest

from llmctl.catalog.errors import LlmctlError, ModelFileError
from llmctl.catalog.store import ModelStore


def _safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def _folder(tmp_path: Path, weights: bool = True) -> Path:
    folder = tmp_path / "Qwen2.5-0.5B-Instruct-AWQ"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "num_hidden_layers": 24, "hidden_size": 896, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
        "quantization_config": {"quant_method": "awq", "bits": 4}}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    if weights:
        _safetensors(folder / "model.safetensors", {"a": [4, 8], "b": [16]})
    return folder


def test_folder_is_registered_with_its_facts(tmp_path: Path) -> None:
    entry = ModelStore(tmp_path / "data").import_file(_folder(tmp_path))
    assert entry.format == "safetensors" and entry.name == "qwen2.5-0.5b-instruct-awq"
    f = entry.facts
    assert (f["architecture"], f["n_layers"], f["n_kv_heads"], f["quant"]) == ("qwen2", 24, 2, "AWQ")
    assert f["parameter_count"] == 48 and f["pickles_ignored"] == ["pytorch_model.bin"]


def test_pickles_only_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"no \.safetensors") as err:
        ModelStore(tmp_path / "data").import_file(_folder(tmp_path, weights=False))
    assert "pickle" in err.value.message


def test_lying_header_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        ModelStore(tmp_path / "data").import_file(folder)


def test_serving_a_folder_says_it_needs_vllm(tmp_path: Path, llmctl_home: Path) -> None:
    from llmctl.app.controller.server import Controller
    from llmctl.app.paths import resolve_paths
    from llmctl.app.settings import load_settings

    paths = resolve_paths()
    entry = ModelStore(paths.data_dir).import_file(_folder(tmp_path))
    with pytest.raises(LlmctlError, match="vLLM"):
        asyncio.run(Controller(load_settings(paths), paths)._make_backend(entry))

"""Facts of a Hugging Face model directory (AWQ/GPTQ/FP8 safetensors, served by vLLM), read with bounds:
``config.json`` (at most 1 MiB) and each ``.safetensors`` header (8-byte length, at most 64 MiB of JSON).
Pickle weights (``.bin``, ``.pt``...) are never read; a directory with only those is refused: unpickling
runs whatever code the file holds."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import ModelFileError
from llmctl.catalog.facts import ModelFacts

MAX_CONFIG = 1 << 20
MAX_HEADER = 64 << 20
PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelFileError(f"{path.name} is not a safetensors file", "it is shorter than its header.")
        (n,) = struct.unpack("<Q", raw)
        size = path.stat().st_size
        if n > MAX_HEADER or n + 8 > size:
            raise ModelFileError(f"{path.name} is not a valid safetensors file",
                                 f"its header claims {n} bytes. Re-download it.")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise ModelFileError(f"{path.name} is not a valid safetensors file", "its header is not JSON.") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path.name} is not a valid safetensors file", "its header is not an object.")
    return header


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's ``config.json`` (at most 1 MiB), as a JSON object."""
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is not a directory", "give a model folder with config.json.")
    config_path = folder / "config.json"
    if not config_path.is_file() or config_path.stat().st_size > MAX_CONFIG:
        raise ModelFileError(f"{folder} has no usable config.json", "it must be a Hugging Face model folder.")
    try:
        with config_path.open("rb") as f:
            config = json.loads(f.read(MAX_CONFIG + 1).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{config_path} is not valid JSON", "re-download the model.") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{config_path} is not a JSON object", "re-download the model.")
    return config


def quant_method(config: dict[str, Any]) -> str | None:
    """The checkpoint's quantization method as its ``quantization_config`` names it (lower case), if any."""
    qc = config.get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    return str(method).lower() if method else None


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config: ``text_config`` when a multimodal config nests it (Gemma 3 and the
    like), else the config itself."""
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def head_dim(config: dict[str, Any]) -> int | None:
    """Attention head size: ``head_dim`` when the config gives it, else hidden_size / num_attention_heads."""
    value = config.get("head_dim")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
        return hidden // heads
    return None


def read_model_dir(folder: Path) -> tuple[dict[str, Any], int]:
    """(facts, bytes of safetensors weights) for a model directory."""
    config = read_config(folder)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLES]
        raise ModelFileError(f"{folder} has no .safetensors weights",
                             "llmctl never loads pickle weights" + (f" ({', '.join(pickles)})" if pickles else "")
                             + "; use a safetensors variant of the model.")
    params = 0
    for path in weights:
        for key, tensor in _header(path).items():
            if key != "__metadata__" and isinstance(tensor, dict) and isinstance(tensor.get("shape"), list):
                n = 1
                for d in tensor["shape"]:
                    n *= int(d)
                params += n
    quant = quant_method(config) or config.get("torch_dtype") or "?"
    facts = {
        "architecture": config.get("model_type", "unknown"),
        "name": folder.name,
        "quant": str(quant).upper(),
        "parameter_count": params,  # stored elements; packed 4-bit weights count 8 per int32
        "context_length": config.get("max_position_embeddings"),
        "n_layers": config.get("num_hidden_layers"),
        "n_embd": config.get("hidden_size"),
        "n_heads": config.get("num_attention_heads"),
        "n_kv_heads": config.get("num_key_value_heads") or config.get("num_attention_heads"),
        "vocab_size": config.get("vocab_size"),
        "has_chat_template": (folder / "tokenizer_config.json").is_file(),
        "pickles_ignored": sorted(p.name for p in folder.iterdir() if p.suffix in PICKLES),
    }
    return facts, sum(p.stat().st_size for p in weights)


def facts_from_model_dir(folder: Path) -> ModelFacts:
    """Estimator facts of a Hugging Face model folder: shapes from config.json, weight bytes from the safetensors
    headers' data offsets (exact, packed 4-bit weights included)."""
    config = read_config(folder)
    text = text_config(config)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelFileError(f"{folder} has no .safetensors weights", "use a safetensors variant of the model.")
    total = params = 0
    for path in weights:
        for key, tensor in _header(path).items():
            if key == "__metadata__" or not isinstance(tensor, dict):
                continue
            offsets = tensor.get("data_offsets")
            if isinstance(offsets, list) and len(offsets) == 2:
                total += int(offsets[1]) - int(offsets[0])
            n = 1
            for d in tensor.get("shape") or []:
                n *= int(d)
            params += n

    def num(key: str, default: int = 0) -> int:
        value = text.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    n_head = num("num_attention_heads", 1)
    hd = head_dim(text) or 0
    dtype = text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or "?"
    return ModelFacts(
        architecture=str(text.get("model_type") or config.get("model_type") or "unknown"),
        n_layers=num("num_hidden_layers"), n_embd=num("hidden_size"), n_head=n_head,
        n_head_kv=num("num_key_value_heads", n_head), head_dim_k=hd, head_dim_v=hd,
        n_ff=num("intermediate_size"), n_vocab=num("vocab_size"), ctx_train=num("max_position_embeddings"),
        weights_bytes=total, parameter_count=params, quant=str(quant_method(config) or dtype).upper(),
        source=str(folder), extra={"dtype": str(dtype)},
    )

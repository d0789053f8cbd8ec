"""The bounded GGUF reader: right facts from real files, a clear error fast for every malformed one."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_gguf import write_tiny_llama

from llmctl.catalog.errors import ModelFileError
from llmctl.catalog.gguf import GGML_TYPES, read_gguf


def test_reads_the_facts_of_a_real_file(tiny_gguf: Path) -> None:
    info = read_gguf(tiny_gguf)
    assert info.architecture == "llama"
    assert info.name == "tiny-llama"
    assert (info.n_layers, info.n_embd, info.n_heads, info.n_kv_heads) == (2, 64, 4, 2)
    assert info.context_length == 2048
    assert info.vocab_size == 512
    assert info.quant == "F32"
    assert info.chat_template and "add_generation_prompt" in info.chat_template
    # parameters counted from the tensor table equal what numpy wrote
    reader = gguf.GGUFReader(tiny_gguf)
    assert info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert info.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert info.data_offset == reader.data_offset


def test_f16_file_reports_its_quant(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_llama(tmp_path / "h.gguf", dtype=np.float16))
    assert info.quant == "F16"
    assert any(t.ggml_type == "F16" for t in info.tensors)


def test_type_table_matches_the_gguf_package() -> None:
    for type_id, (name, block, size) in GGML_TYPES.items():
        qtype = gguf.GGMLQuantizationType(type_id)
        assert qtype.name == name
        if name == "Q8_1":
            # gguf-py still lists the old f32 scales (40); ggml's block_q8_1 holds two halves (36). It is an
            # intermediate type that no model file stores.
            continue
        assert gguf.GGML_QUANT_SIZES[qtype] == (block, size)


# a corpus of tiny malformed files ---------------------------------------------------------------------------
def _header(n_tensors: int = 0, n_kv: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_str(key: str, value: bytes, claimed: int | None = None) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(value) if claimed is None else claimed) + value


def _tensor(name: str, dims: list[int], type_id: int = 0, offset: int = 0) -> bytes:
    n = name.encode()
    return (struct.pack("<Q", len(n)) + n + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", type_id, offset))


MALFORMED = {
    "empty": b"",
    "bad magic": b"GGML" + bytes(40),
    "version 1": _header(version=1) + bytes(16),
    "version 99": _header(version=99) + bytes(16),
    "billions of tensors": _header(n_tensors=1 << 40) + bytes(16),
    "billions of kv": _header(n_kv=1 << 40) + bytes(16),
    "more kv than bytes": _header(n_kv=1000) + bytes(64),
    "huge key length": _header(n_kv=1) + struct.pack("<Q", 1 << 62) + bytes(16),
    "huge string value": _header(n_kv=1) + _kv_str("general.name", b"x", claimed=1 << 40),
    "string past end": _header(n_kv=1) + _kv_str("general.name", b"abc", claimed=1000),
    "unknown value type": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77) + bytes(16),
    "huge array": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 60) + bytes(16),
    "array past end": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1000) + bytes(16),
    "string array past end": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 8, 100000)
    + bytes(64),
    "nested array": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 9, 1) + bytes(32),
    "invalid utf-8 key": _header(n_kv=1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<IB", 0, 1) + bytes(16),
    "duplicate key": _header(n_kv=2) + _kv_str("a", b"1") + _kv_str("a", b"2") + bytes(16),
    "alignment not power of two": _header(n_kv=1) + struct.pack("<Q", 17) + b"general.alignment"
    + struct.pack("<II", 4, 3) + bytes(16),
    "too many dims": _header(n_tensors=1) + _tensor("t", [1, 1, 1, 1, 1]) + bytes(64),
    "zero dim": _header(n_tensors=1) + _tensor("t", [0]) + bytes(64),
    "giant dims": _header(n_tensors=1) + _tensor("t", [1 << 39, 1 << 39]) + bytes(64),
    "unknown tensor type": _header(n_tensors=1) + _tensor("t", [32], type_id=200) + bytes(64),
    "row not a block multiple": _header(n_tensors=1) + _tensor("t", [33], type_id=2) + bytes(64),
    "misaligned offset": _header(n_tensors=1) + _tensor("t", [4], offset=3) + bytes(64),
    "tensor past end of file": _header(n_tensors=1) + _tensor("t", [1 << 20]) + bytes(64),
    "duplicate tensor": _header(n_tensors=2) + _tensor("t", [4]) + _tensor("t", [4], offset=32) + bytes(128),
    "huge tensor name": _header(n_tensors=1) + struct.pack("<Q", 1 << 30) + bytes(64),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_get_a_clear_error_fast(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(MALFORMED[case])
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError) as err:
        read_gguf(path)
    assert time.perf_counter() - t0 < 1.0
    assert "bad.gguf" in err.value.title
    assert err.value.message  # says what to do


def test_truncated_real_file_is_rejected(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    for cut in (10, 100, 5000, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            read_gguf(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="is a directory"):
        read_gguf(tmp_path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_headers_only_ever_raise_model_file_error(tiny_gguf: Path, tmp_path: Path, data) -> None:
    """Byte flips, overwrites and truncations of a real header: the reader parses or refuses, nothing else."""
    original = bytearray(tiny_gguf.read_bytes())
    header_end = read_gguf(tiny_gguf).data_offset
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, header_end - 1))
        width = data.draw(st.sampled_from([1, 4, 8]))
        mutated[pos : pos + width] = data.draw(st.binary(min_size=width, max_size=width))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(bytes(mutated))
    t0 = time.perf_counter()
    try:
        info = read_gguf(path)
    except ModelFileError:
        pass
    else:
        assert info.tensor_bytes <= len(mutated)
    assert time.perf_counter() - t0 < 2.0

"""A bounded GGUF header reader.

GGUF files come from strangers, and llama.cpp's own parser has had several memory-safety bugs on malformed
headers (CVE-2024-21802, CVE-2024-23605, CVE-2025-53630). This reader never trusts a count or a length: each is
checked against hard caps and against the bytes left in the file before anything is allocated or read, and
the file is mapped, not loaded, so a 40 GB model costs no memory. Any malformation raises ``ModelFileError``.

A split model (``NAME-00001-of-0000N.gguf``, written by llama.cpp's ``gguf-split``) is read as one: the first
part holds the metadata, every part holds a share of the tensors, and each part carries ``split.no``,
``split.count`` and ``split.tensors.count``. ``read_gguf`` on any part reads every part's header (bounded the
same way) and returns the whole model: all tensors, the total size, every file, so an estimate
or a prune never counts one shard as the whole model.

Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic ``GGUF``, version (2 or 3),
tensor count (u64), metadata kv count (u64), the kv pairs, the tensor infos, padding to
``general.alignment`` (default 32), then tensor data at offsets relative to that aligned start.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import ModelFileError

MAGIC = b"GGUF"
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
MAX_KEY_LEN = 1 << 16
MAX_STRING_LEN = 1 << 24  # chat templates run to tens of KiB; 16 MiB is far past any real value
MAX_ARRAY_LEN = 1 << 26
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 256
MAX_SPLITS = 1000  # llama.cpp names parts with five digits; real models have a few dozen at most
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
KEEP_ARRAY_LEN = 4096  # numeric arrays up to this length are kept (per-layer head counts); longer are counted

# value types
_U8, _I8, _U16, _I16, _U32, _I32, _F32, _BOOL, _STR, _ARR, _U64, _I64, _F64 = range(13)
_SCALARS: dict[int, struct.Struct] = {
    _U8: struct.Struct("<B"),
    _I8: struct.Struct("<b"),
    _U16: struct.Struct("<H"),
    _I16: struct.Struct("<h"),
    _U32: struct.Struct("<I"),
    _I32: struct.Struct("<i"),
    _F32: struct.Struct("<f"),
    _BOOL: struct.Struct("<?"),
    _U64: struct.Struct("<Q"),
    _I64: struct.Struct("<q"),
    _F64: struct.Struct("<d"),
}
_U32S = struct.Struct("<I")
_U64S = struct.Struct("<Q")

# ggml tensor types: id -> (name, elements per block, bytes per block); from ggml.c's type_traits
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# general.file_type -> the quant name people use (llama.cpp's llama_ftype)
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int
    n_bytes: int
    part: int = 0  # which file of a split model holds it (offset is within that file)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What llmctl needs to know about a GGUF file, read from its header only."""

    path: Path
    file_size: int
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    array_lengths: dict[str, int] = field(default_factory=dict)
    data_offset: int = 0
    parts: tuple[Path, ...] = ()  # every file of a split model, in order; empty for a single file

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the model needs: its parts, or the one file."""
        return self.parts or (self.path,)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return str(value) if value is not None else None

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def quant(self) -> str:
        """The file's quant label: general.file_type when present, else the type holding the most bytes."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        by_type: dict[str, int] = {}
        for t in self.tensors:
            by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + t.n_bytes
        return max(by_type, key=by_type.__getitem__) if by_type else "unknown"

    @property
    def context_length(self) -> int | None:
        return _as_int(self.arch_value("context_length"))

    @property
    def n_layers(self) -> int | None:
        return _as_int(self.arch_value("block_count"))

    @property
    def n_embd(self) -> int | None:
        return _as_int(self.arch_value("embedding_length"))

    @property
    def n_heads(self) -> int | None:
        return _as_int(self.arch_value("attention.head_count"))

    @property
    def n_kv_heads(self) -> int | None:
        return _as_int(self.arch_value("attention.head_count_kv")) or self.n_heads

    @property
    def vocab_size(self) -> int | None:
        return self.array_lengths.get("tokenizer.ggml.tokens")

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def calls_tools(self) -> bool | None:
        """Whether the model's chat template renders tool definitions (a template that never reads ``tools`` gives
        the model no way to call one: llama.cpp then has nothing to parse calls from); None without a template."""
        template = self.chat_template
        return None if template is None else template_calls_tools(template)

    def summary(self) -> dict[str, Any]:
        """The facts a model listing shows, JSON-ready."""
        split = {"split_count": len(self.parts)} if self.parts else {}
        return {**split,
            "architecture": self.architecture,
            "name": self.name,
            "quant": self.quant,
            "parameter_count": self.parameter_count,
            "file_size": self.file_size,
            "tensor_bytes": self.tensor_bytes,
            "context_length": self.context_length,
            "n_layers": self.n_layers,
            "n_embd": self.n_embd,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
            "has_chat_template": self.chat_template is not None,
        }


def template_calls_tools(template: str) -> bool:
    """Whether a Jinja chat template reads the request's tools (``tools``, or ``tool_calls`` of earlier turns)."""
    return re.search(r"\btools\b|\btool_calls\b", template) is not None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return max(value)  # per-layer arrays (e.g. head_count_kv): the largest bounds memory
    return None


class _Cursor:
    """Reads little-endian values from a buffer, checking every length against what is left."""

    __slots__ = ("buf", "end", "path", "pos")

    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.path.name} is not a valid GGUF file",
            f"{what} (at byte {self.pos}). Re-download or re-convert the model.",
        )

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.fail(f"truncated while reading {what}")

    def scalar(self, st: struct.Struct, what: str) -> Any:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self, what: str) -> int:
        return self.scalar(_U32S, what)

    def u64(self, what: str) -> int:
        return self.scalar(_U64S, what)

    def string(self, what: str, limit: int = MAX_STRING_LEN) -> str:
        n = self.u64(f"{what} length")
        if n > limit:
            raise self.fail(f"{what} is {n} bytes long, over the limit of {limit}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None

    def skip_string(self, what: str) -> None:
        n = self.u64(f"{what} length")
        if n > MAX_STRING_LEN:
            raise self.fail(f"{what} is {n} bytes long, over the limit of {MAX_STRING_LEN}")
        self.need(n, what)
        self.pos += n


def _read_value(cur: _Cursor, vtype: int, key: str) -> tuple[Any, int | None]:
    """One metadata value; returns (value, array length or None). Long arrays are counted, not kept."""
    if vtype in _SCALARS:
        return cur.scalar(_SCALARS[vtype], key), None
    if vtype == _STR:
        return cur.string(f"value of {key}"), None
    if vtype != _ARR:
        raise cur.fail(f"metadata {key} has unknown value type {vtype}")
    etype = cur.u32(f"array type of {key}")
    count = cur.u64(f"array length of {key}")
    if count > MAX_ARRAY_LEN:
        raise cur.fail(f"array {key} claims {count} items, over the limit of {MAX_ARRAY_LEN}")
    if etype == _STR:
        # every string needs at least its 8-byte length: a count the file cannot hold is rejected up front
        cur.need(count * 8, f"array {key}")
        for _ in range(count):
            cur.skip_string(f"item of {key}")
        return None, count
    if etype not in _SCALARS:
        raise cur.fail(f"array {key} has unsupported item type {etype}")
    st = _SCALARS[etype]
    cur.need(count * st.size, f"array {key}")
    if count <= KEEP_ARRAY_LEN:
        values = [v for (v,) in st.iter_unpack(cur.buf[cur.pos : cur.pos + count * st.size])]
    else:
        values = None
    cur.pos += count * st.size
    return values, count


def _tensor_bytes(cur: _Cursor, name: str, shape: tuple[int, ...], type_id: int) -> tuple[str, int]:
    if type_id not in GGML_TYPES:
        raise cur.fail(f"tensor {name} has unknown ggml type {type_id}")
    type_name, block, type_size = GGML_TYPES[type_id]
    n = 1
    for d in shape:
        if d <= 0 or d > (1 << 40):
            raise cur.fail(f"tensor {name} has an invalid dimension {d}")
        n *= d
        if n > (1 << 50):
            raise cur.fail(f"tensor {name} has too many elements")
    if shape[0] % block:
        raise cur.fail(f"tensor {name}: first dimension {shape[0]} is not a multiple of {type_name}'s block {block}")
    return type_name, n // block * type_size


def split_parts(path: Path) -> list[Path]:
    """The files of a split model named like ``NAME-0000k-of-0000N.gguf``, in order; ``[path]`` otherwise."""
    m = SPLIT_NAME.match(path.name)
    if m is None or not 1 <= int(m["count"]) <= MAX_SPLITS:
        return [path]
    count = int(m["count"])
    return [path.with_name(f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and validate a GGUF model's header: one file, or every part of a split model (any part may be
    named). Raises ModelFileError on anything malformed or missing."""
    info = read_gguf_file(path)
    count = info.metadata.get("split.count")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 1:
        return info
    return _read_split(info, count)


def _split_error(path: Path, what: str, fix: str = "download or copy every part again.") -> ModelFileError:
    return ModelFileError(f"{path.name} is part of a split GGUF model that cannot be read", f"{what}; {fix}")


def _read_split(named: GGUFInfo, count: int) -> GGUFInfo:
    if count > MAX_SPLITS:
        raise _split_error(named.path, f"it claims {count} parts, over the limit of {MAX_SPLITS}")
    m = SPLIT_NAME.match(named.path.name)
    if m is None or int(m["count"]) != count:
        raise _split_error(named.path, f"its header says it is one of {count} parts, but its name is not "
                           f"NAME-0000k-of-{count:05d}.gguf", "rename the parts the way llama.cpp's gguf-split "
                           "names them.")
    paths = split_parts(named.path)
    infos = []
    for i, part in enumerate(paths):
        if part == named.path:
            info = named
        elif not part.is_file():
            raise _split_error(named.path, f"part {i + 1} of {count} ({part.name}) is missing")
        else:
            info = read_gguf_file(part)
        if info.metadata.get("split.no") != i or info.metadata.get("split.count") != count:
            raise _split_error(part, f"{part.name} says it is part {info.metadata.get('split.no')} of "
                               f"{info.metadata.get('split.count')} (counting from 0), not part {i} of {count}")
        infos.append(info)
    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for i, info in enumerate(infos):
        for t in info.tensors:
            if t.name in seen:
                raise _split_error(paths[i], f"tensor {t.name} appears in more than one part")
            seen.add(t.name)
            tensors.append(replace(t, part=i))
    declared = infos[0].metadata.get("split.tensors.count")
    if isinstance(declared, int) and declared != len(tensors):
        raise _split_error(paths[0], f"the parts hold {len(tensors)} tensors, the first part declares {declared}")
    first = infos[0]
    return GGUFInfo(
        path=first.path,
        file_size=sum(info.file_size for info in infos),
        version=first.version,
        metadata=first.metadata,
        tensors=tuple(tensors),
        array_lengths=first.array_lengths,
        data_offset=first.data_offset,
        parts=tuple(paths),
    )


def read_gguf_file(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and validate one GGUF file's header (of a split model: that part only)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ModelFileError(
                    f"{p.name} is not a valid GGUF file", f"it is only {size} bytes long. Re-download it."
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Cursor(buf, p), p, size)
    except FileNotFoundError:
        raise ModelFileError(f"{p} does not exist", "check the path and try again.") from None
    except IsADirectoryError:
        raise ModelFileError(f"{p} is a directory", "give the path of a .gguf file.") from None
    except PermissionError:
        raise ModelFileError(f"{p} cannot be read", "check the file's permissions.") from None


def _parse(cur: _Cursor, path: Path, size: int) -> GGUFInfo:
    cur.need(4, "magic")
    if bytes(cur.buf[0:4]) != MAGIC:
        raise cur.fail("it does not start with the GGUF magic bytes")
    cur.pos = 4
    version = cur.u32("version")
    if version not in (2, 3):
        raise cur.fail(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors > MAX_TENSORS:
        raise cur.fail(f"it claims {n_tensors} tensors, over the limit of {MAX_TENSORS}")
    if n_kv > MAX_KV:
        raise cur.fail(f"it claims {n_kv} metadata entries, over the limit of {MAX_KV}")
    # each kv needs >= 12 bytes (key length + type), each tensor info >= 24: reject impossible counts early
    cur.need(n_kv * 12 + n_tensors * 24, "metadata and tensor table")

    metadata: dict[str, Any] = {}
    array_lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key", MAX_KEY_LEN)
        if key in metadata or key in array_lengths:
            raise cur.fail(f"metadata key {key!r} appears twice")
        vtype = cur.u32(f"type of {key}")
        value, count = _read_value(cur, vtype, key)
        if count is not None:
            array_lengths[key] = count
        if value is not None:
            metadata[key] = value

    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment {alignment!r} is not a power of two")

    infos: list[tuple[str, tuple[int, ...], str, int, int]] = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("tensor name", MAX_TENSOR_NAME)
        if name in seen:
            raise cur.fail(f"tensor {name!r} appears twice")
        seen.add(name)
        n_dims = cur.u32(f"dimension count of {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(cur.u64(f"dimension of {name}") for _ in range(n_dims))
        type_id = cur.u32(f"type of {name}")
        offset = cur.u64(f"offset of {name}")
        if offset % alignment:
            raise cur.fail(f"tensor {name} offset {offset} is not aligned to {alignment}")
        type_name, n_bytes = _tensor_bytes(cur, name, shape, type_id)
        infos.append((name, shape, type_name, offset, n_bytes))

    data_offset = (cur.pos + alignment - 1) // alignment * alignment
    data_size = size - data_offset
    tensors = []
    for name, shape, type_name, offset, n_bytes in infos:
        if offset + n_bytes > data_size:
            raise ModelFileError(
                f"{path.name} is not a valid GGUF file",
                f"tensor {name} runs past the end of the file (the file may be truncated). Re-download it.",
            )
        tensors.append(TensorInfo(name, shape, type_name, offset, n_bytes))
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        metadata=metadata,
        tensors=tuple(tensors),
        array_lengths=array_lengths,
        data_offset=data_offset,
    )

"""Which files of a GGUF repo a pull selector means: ``:QUANT`` (exact, on the quant token of the file name) or
``:FILE.gguf``, every shard of a split model, and the multimodal projector (``mmproj*``) kept apart from the model.

The quant token is the last quant-shaped part of a file's base name, bounded by ``-`` or ``.`` (``_`` is part of
the token: ``Q4_K`` is not ``Q4_K_M``): ``Llama-3.2-1B-Instruct-Q4_K_M.gguf`` -> ``Q4_K_M``,
``model.Q8_0-00001-of-00002.gguf`` -> ``Q8_0``, ``gemma-3-4b-it-UD-Q4_K_XL.gguf`` -> ``UD-Q4_K_XL``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from llmctl.catalog.errors import LlmctlError

SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})$", re.IGNORECASE)
QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q\d(?:_[A-Za-z0-9]+)*|TQ\d_\d|BF16|FP16|F16|F32|MXFP4(?:_MOE)?))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
PROJECTOR_PREFERENCE = ("F16", "BF16", "F32", "Q8_0")


class SelectionError(LlmctlError):
    """A pull selector names no file, or more than one model."""


@dataclass(frozen=True, slots=True)
class GgufChoice:
    files: tuple[str, ...]  # the model's files, shard 1 first
    projector: str | None = None  # an mmproj file pulled alongside, as the model's projector

    @property
    def first(self) -> str:
        return self.files[0]

    @property
    def all_files(self) -> tuple[str, ...]:
        return self.files + ((self.projector,) if self.projector else ())


def is_projector(name: str) -> bool:
    return PurePosixPath(name).name.lower().startswith("mmproj")


def _stem(name: str) -> str:
    return SPLIT_RE.sub("", PurePosixPath(name).name.removesuffix(".gguf").removesuffix(".GGUF"))


def quant_of(name: str) -> str | None:
    """The quant token of a GGUF file name, upper case, or None."""
    found = QUANT_RE.findall(_stem(name))
    return found[-1].upper() if found else None


def _model_key(name: str) -> str:
    """Files with the same key are the shards of one model."""
    path = PurePosixPath(name)
    return str(path.parent / _stem(name)).lower()


def _shard(name: str) -> tuple[int, int]:
    m = SPLIT_RE.search(PurePosixPath(name).name.removesuffix(".gguf"))
    return (int(m.group(1)), int(m.group(2))) if m else (1, 1)


def choose_gguf(names: Iterable[str], repo: str, *, quant: str | None = None, file: str | None = None) -> GgufChoice:
    """The model (every shard) that ``quant`` or ``file`` names in a repo listing, and its projector; a
    SelectionError listing the choices when it names none or several."""
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
    models = [n for n in ggufs if not is_projector(n)]
    if file is not None:
        if file not in ggufs:
            raise SelectionError(f"{repo} has no file {file}",
                                 f"its GGUF files: {', '.join(ggufs)[:600] or 'none'}")
        if is_projector(file):
            raise SelectionError(f"{file} is a multimodal projector, not a model",
                                 f"pull the model ({repo}:QUANT or {repo}:FILE.gguf); its projector comes along.")
        picked = [n for n in models if _model_key(n) == _model_key(file)]
        wanted = quant_of(file)
    else:
        wanted = (quant or "").upper()
        picked = [n for n in models if quant_of(n) == wanted]
        if not picked:
            available = sorted({q for q in map(quant_of, models) if q})
            close = [q for q in available if q.startswith(wanted) or wanted.startswith(q)]
            hint = f"did you mean {' or '.join(f'{repo}:{q}' for q in close)}? " if close else ""
            raise SelectionError(f"{repo} has no {wanted} model file",
                                 f"{hint}quants there: {', '.join(available) or 'none'}"
                                 + ("" if available else f"; GGUF files: {', '.join(ggufs)[:400] or 'none'}"))
        groups = sorted({_model_key(n) for n in picked})
        if len(groups) > 1:
            firsts = [min((n for n in picked if _model_key(n) == g), key=_shard) for g in groups]
            raise SelectionError(f"{repo} has {len(groups)} {wanted} models",
                                 f"pick one with {repo}:FILE.gguf: {', '.join(firsts)}")
    picked.sort(key=_shard)
    _, total = _shard(picked[0])
    have = {_shard(n)[0] for n in picked}
    if total > 1 and have != set(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - have)
        raise SelectionError(f"{picked[0]} is split in {total} parts but {repo} lacks part(s) "
                             f"{', '.join(map(str, missing))}", "the repository is incomplete; pick another quant.")
    return GgufChoice(tuple(picked), _projector([n for n in ggufs if is_projector(n)], wanted))


def _projector(projectors: list[str], quant: str | None) -> str | None:
    """The projector to pull with a model: one of its own quant, else F16, BF16, F32, Q8_0, else the first."""
    if not projectors:
        return None
    by_quant = {quant_of(p): p for p in sorted(projectors)}
    for q in (quant, *PROJECTOR_PREFERENCE):
        if q and q in by_quant:
            return by_quant[q]
    return sorted(projectors)[0]

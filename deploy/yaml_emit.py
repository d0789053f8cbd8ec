"""Block-style YAML with a comment above any value, for manifests a person reads before applying them.

Values are plain dicts, lists, strings, numbers, booleans and None; wrapping one in ``Note(value, why)`` puts
``# why`` above its key (or list item). ``plain()`` strips the notes, giving the data a validator checks, and
tests check ``yaml.safe_load(emit(x)) == plain(x)`` over generated data, so the emitter needs no YAML library
at run time. Strings are written plain only when no YAML 1.1 or 1.2 reader could take them for anything else;
otherwise double-quoted with escapes, or as a literal block when they span lines.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Any

WIDTH = 118
_PLAIN = re.compile(r"(?:--)?[A-Za-z_/][A-Za-z0-9_./-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}


@dataclass(frozen=True, slots=True)
class Note:
    """A value with the reason for it, written as a comment above it."""

    value: Any
    why: str


def plain(obj: Any) -> Any:
    """The data without its notes."""
    if isinstance(obj, Note):
        return plain(obj.value)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def comment(text: str, indent: int = 0) -> list[str]:
    """``# text`` wrapped to the width, one ``#`` line per paragraph line."""
    pad = " " * indent
    out = []
    text = "".join(ch if ch == "\n" or (ch.isprintable() and ch != "\ufeff") else "?" for ch in text)
    for para in text.split("\n"):
        if not para.strip():
            out.append(pad + "#")
            continue
        out += [pad + "# " + line for line in textwrap.wrap(para, max(40, WIDTH - indent - 2),
                                                            break_long_words=False, break_on_hyphens=False)]
    return out


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED and not value.endswith((".", "-")):
            return value
        return quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def quote(text: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, anything else escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F or (code >= 0xA0 and ch.isprintable() and not 0xD800 <= code < 0xE000
                                        and code != 0xFEFF):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _literal_ok(text: str) -> bool:
    """A literal block (``|``) keeps a shell script readable; only for text it can carry exactly."""
    body = text[:-1] if text.endswith("\n") else text
    lines = body.split("\n")
    return (len(lines) > 1 and all(line and line.isascii() and line.isprintable() and line == line.rstrip()
                                   for line in lines) and not lines[0][0].isspace())


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError("mapping keys must be strings")
    return scalar(key)


def _block(value: Any, indent: int) -> tuple[str, list[str]]:
    """(what follows ``key:`` on its line, the lines below it) for a value at this indent."""
    if isinstance(value, dict) and value:
        return "", _mapping(value, indent)
    if isinstance(value, list) and value:
        return "", _sequence(value, indent)
    if isinstance(value, dict):
        return " {}", []
    if isinstance(value, list):
        return " []", []
    if isinstance(value, str) and _literal_ok(value):
        chomp = "" if value.endswith("\n") else "-"
        pad = " " * indent
        return f" |{chomp}", [pad + line for line in value.rstrip("\n").split("\n")]
    return " " + scalar(value), []


def _mapping(data: dict, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for key, value in data.items():
        while isinstance(value, Note):
            out += comment(value.why, indent)
            value = value.value
        head, body = _block(value, indent + 2)
        out.append(f"{pad}{_key(key)}:{head}")
        out += body
    return out


def _sequence(items: list, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for item in items:
        while isinstance(item, Note):
            out += comment(item.why, indent)
            item = item.value
        if isinstance(item, dict) and item:
            inner = _mapping(item, indent + 2)
            out.append(f"{pad}- {inner[0].lstrip()}" if not inner[0].lstrip().startswith("#") else f"{pad}-")
            out += inner[1:] if not inner[0].lstrip().startswith("#") else inner
        elif isinstance(item, list) and item:
            out.append(f"{pad}-")
            out += _sequence(item, indent + 2)
        else:
            head, body = _block(item, indent + 2)
            out.append(f"{pad}-{head}")
            out += body
    return out


def emit(doc: dict, header: str = "") -> str:
    """One YAML document (a mapping), with an optional comment block above it."""
    lines = comment(header) if header else []
    lines += _mapping(doc, 0)
    return "\n".join(lines) + "\n"


def emit_all(docs: list[tuple[str, dict]], header: str = "") -> str:
    """Several documents separated by ``---``, each with its own comment block; ``header`` tops the file."""
    parts = [emit(doc, why) for why, doc in docs]
    top = "\n".join(comment(header)) + "\n" if header else ""
    return top + "".join("---\n" + p for p in parts)

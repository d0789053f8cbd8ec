"""Check a JSON value against the TypedDicts of ``llmctl.app.client.wire`` (keys, nesting and value types)."""

from __future__ import annotations

import types
from typing import Any, NotRequired, Union, get_args, get_origin, get_type_hints, is_typeddict


def problems(value: Any, shape: Any, where: str = "$") -> list[str]:
    """Every way ``value`` differs from ``shape``; empty when it conforms."""
    origin = get_origin(shape)
    if shape is Any:
        return []
    if origin is NotRequired:
        return problems(value, get_args(shape)[0], where)
    if origin in (Union, types.UnionType):
        found = [problems(value, option, where) for option in get_args(shape)]
        return [] if any(not p for p in found) else min(found, key=len)
    if shape is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if is_typeddict(shape):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not {shape.__name__}"]
        hints = get_type_hints(shape, include_extras=True)
        out = [f"{where}.{key}: missing" for key in shape.__required_keys__ if key not in value]
        out += [f"{where}.{key}: not in {shape.__name__}" for key in value if key not in hints]
        for key, hint in hints.items():
            if key in value:
                out += problems(value[key], hint, f"{where}.{key}")
        return out
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        return [p for i, item in enumerate(value) for p in problems(item, get_args(shape)[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a dict"]
        return [p for k, v in value.items() for p in problems(v, get_args(shape)[1], f"{where}.{k}")]
    if shape is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, shape)
    return [] if ok else [f"{where}: {value!r} is not {getattr(shape, '__name__', shape)}"]



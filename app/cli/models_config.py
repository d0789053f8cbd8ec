"""`llmctl models config NAME [key=value ...]`: read and set a model's ``[models.NAME]`` profile in config.toml.

Values are TOML (``ctx-size=16384``, ``pinned=true``, ``args=["--top-k","20"]``); a bare word is a string, and a
comma list fills a list key (``aliases=coder,gpt-4o-mini``). Every change is validated with the same pydantic
model the controller loads, before anything is written; the file is edited with tomlkit (comments and order are
kept) and replaced atomically.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.catalog.errors import ConfigError


def _profile_type():
    from llmctl.app.settings import ModelProfile  # pydantic: not imported for `llmctl --help`

    return ModelProfile


def _key(raw: str) -> str:
    model_profile = _profile_type()
    keys = {alias.replace("-", "_"): name for name, f in model_profile.model_fields.items()
            for alias in (name, *(getattr(f.validation_alias, "choices", None) or ()))}
    key = keys.get(raw.strip().replace("-", "_"))
    if key is None:
        raise ConfigError(f"{raw!r} is not a model setting",
                          f"use one of: {', '.join(sorted(k.replace('_', '-') for k in model_profile.model_fields))}.")
    return key


def _value(key: str, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if _profile_type().model_fields[key].annotation == list[str]:
            return [part.strip() for part in text.split(",") if part.strip()]
        return text


def update(path: Path, name: str, assignments: list[str], unset: list[str],
           check: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Apply ``key=value`` assignments and unsets to [models.NAME]; validate (``check``: what the model's engine says
    of the new profile, e.g. flags in ``args`` it cannot take); write. Returns the new profile."""
    import tomlkit
    from pydantic import ValidationError

    from llmctl.app.settings import read_config_doc, write_config_doc

    doc = read_config_doc(path)
    models = doc.setdefault("models", tomlkit.table(is_super_table=True))
    current = dict(models.get(name, {}))
    changes: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"{item!r} is not key=value", "write e.g. ctx-size=16384 or pinned=true.")
        raw_key, text = item.split("=", 1)
        changes[_key(raw_key)] = _value(_key(raw_key), text.strip())
    merged = {_key(k): v for k, v in current.items()}
    merged.update(changes)
    for raw_key in unset:
        merged.pop(_key(raw_key), None)
    try:
        profile = _profile_type().model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ConfigError(f"[models.{name}] would be invalid", f"{problems}. Nothing was written.") from None
    if check is not None:
        try:
            check(profile)
        except ConfigError as exc:
            raise ConfigError(f"[models.{name}] args: {exc.title}", f"{exc.message} Nothing was written.") from None
    table = tomlkit.table()
    for key, value in merged.items():
        table[key.replace("_", "-")] = value
    if merged:
        models[name] = table
    elif name in models:
        del models[name]
    write_config_doc(path, doc)
    return profile.model_dump(exclude_defaults=True)


@click.command("config")
@click.argument("name")
@click.argument("assignments", nargs=-1)
@click.option("--unset", multiple=True, help="Remove a key (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_config(ctx: Context, name: str, assignments: tuple[str, ...], unset: tuple[str, ...],
                  as_json: bool) -> None:
    """Show or set a model's profile: ctx-size, parallel, cache-type-k, model-draft, aliases, ttl, pinned, ...

    \b
    llmctl models config qwen7b                         show it
    llmctl models config qwen7b ctx-size=16384 pinned=true aliases=coder
    llmctl models config qwen7b --unset ttl
    A running controller picks the change up when it restarts.
    """
    from llmctl.catalog.store import validate_name

    name = validate_name(name)
    path = ctx.paths.config_file
    if assignments or unset:
        from llmctl.app.deployments import check_profile_args

        def check(prof) -> None:
            check_profile_args(ctx.settings, name, prof, ctx.store(), ctx.paths.data_dir)

        profile = update(path, name, list(assignments), list(unset), check)
    else:
        profile = ctx.settings.models.get(name, _profile_type()()).model_dump(exclude_defaults=True)
    if as_json:
        emit_json({"model": name, "file": str(path), "profile": profile})
        return
    click.echo(f"[models.{name}] in {path}")
    for key, value in profile.items():
        click.echo(f"  {key.replace('_', '-')} = {value!r}")
    if not profile:
        click.echo("  (nothing set: [backends] defaults apply)")

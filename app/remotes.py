"""Remotes, composed: ``[remotes.NAME]`` settings become ``RemoteServer`` sources for the controller, with their API
keys read from the environment or the OS keyring (never from llmctl's files), and offline mode applied; and the
config edits behind ``llmctl remotes add|rm``.

Offline mode (``offline = true``, ``--offline`` or ``HF_HUB_OFFLINE=1``) skips every remote whose host is not a
loopback address: it is still listed (with the reason), never contacted, not even resolved through DNS. A remote on
loopback is this machine and stays in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmctl.app.settings import RemoteSettings, Settings, is_loopback, offline, read_config_doc, write_config_doc
from llmctl.catalog.errors import ConfigError, LlmctlError
from llmctl.runtimes.base import RequestTimeouts
from llmctl.runtimes.remote import RemoteServer, RemoteSpec

KEYRING_SERVICE = "llmctl"


def keyring_user(name: str) -> str:
    return f"remote:{name}"


def _keyring():
    """The ``keyring`` module, or None when it is not installed (it is optional)."""
    try:
        import keyring
    except ImportError:
        return None
    return keyring


def key_source(cfg: RemoteSettings) -> str:
    if cfg.key_env:
        return f"env {cfg.key_env}"
    return "keyring" if cfg.keyring else "none"


def resolve_key(name: str, cfg: RemoteSettings) -> tuple[str | None, str | None]:
    """(the API key or None, why the remote cannot be used without it or None)."""
    if cfg.key_env:
        key = os.environ.get(cfg.key_env, "").strip()
        return (key, None) if key else (None, f"its API key variable {cfg.key_env} is not set")
    if cfg.keyring:
        kr = _keyring()
        if kr is None:
            return None, "keyring = true, but the keyring package is not installed (pip install keyring)"
        try:
            key = kr.get_password(KEYRING_SERVICE, keyring_user(name))
        except Exception as exc:  # keyring backends raise their own errors (no D-Bus, locked, ...)
            return None, f"the OS keyring could not be read ({type(exc).__name__})"
        return (key, None) if key else (None, f"no key for it in the OS keyring ({keyring_user(name)})")
    return None, None


def skipped_reason(settings: Settings, cfg: RemoteSettings) -> str | None:
    """Why llmctl must not contact this remote at all, or None."""
    if not cfg.enabled:
        return "disabled (enabled = false)"
    host = urlsplit(cfg.url).hostname or ""
    if offline(settings) and not is_loopback(host):
        return f"offline mode is on (offline / --offline / HF_HUB_OFFLINE): {host} is not this machine"
    return None


def configured_ids(settings: Settings, prefix: str) -> tuple[str, ...]:
    """The ids under ``prefix`` that llmctl's config names: its model profiles (which aliases point to) and their
    fallbacks. A remote takes them even while its list is unknown, without counting them as unlisted names."""
    names = [*settings.models, *(prof.fallback for prof in settings.models.values() if prof.fallback)]
    return tuple(dict.fromkeys(n[len(prefix):] for n in names if n.startswith(prefix) and len(n) > len(prefix)))


def make_spec(settings: Settings, name: str, cfg: RemoteSettings) -> tuple[RemoteSpec, str | None]:
    """The remote's spec and its key; a skipped remote's key is not even read."""
    unusable = skipped_reason(settings, cfg)
    key = None
    if unusable is None:
        key, unusable = resolve_key(name, cfg)
    prefix = cfg.prefix or f"{name}/"
    spec = RemoteSpec(name=name, root=cfg.url, prefix=prefix, models=tuple(cfg.models),
                      configured=configured_ids(settings, prefix),
                      health_interval=cfg.health_interval, backoff_initial=cfg.backoff_initial,
                      backoff_max=cfg.backoff_max, unusable=unusable, key_source=key_source(cfg),
                      timeouts=RequestTimeouts(connect=cfg.connect_timeout, first_byte=cfg.first_byte_timeout,
                                               between_chunks=cfg.read_timeout))
    return spec, key


def make_remotes(settings: Settings, on_change: Callable[[RemoteServer], None] | None = None,
                 transport: Any = None) -> list[RemoteServer]:
    """The controller's remote sources, one per ``[remotes.NAME]`` (none configured: none, and no socket)."""
    out = []
    for name, cfg in settings.remotes.items():
        spec, key = make_spec(settings, name, cfg)
        out.append(RemoteServer(spec, api_key=key, on_change=on_change, transport=transport))
    return out


# --- config edits (`llmctl remotes add|rm`) ------------------------------------------------------------------
def add_remote(path: Path, name: str, values: dict[str, Any], *, replace: bool = False) -> RemoteSettings:
    """Validate ``[remotes.NAME]`` and write it to config.toml (comments and order kept). Never takes a key."""
    import tomlkit
    from pydantic import ValidationError

    from llmctl.app.settings import REMOTE_NAME

    if not REMOTE_NAME.fullmatch(name) or name == "ollama":
        raise ConfigError(f"{name!r} is not a remote name", "use lowercase letters, digits and . _ - (not 'ollama').")
    doc = read_config_doc(path)
    remotes = doc.setdefault("remotes", tomlkit.table(is_super_table=True))
    if name in remotes and not replace:
        raise ConfigError(f"a remote named {name} exists", "pass --replace, or `llmctl remotes rm` it first.")
    values = {k: v for k, v in values.items() if v not in (None, [], ())}
    try:
        cfg = RemoteSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"[remotes.{name}] would be invalid", f"{problems}. Nothing was written.") from None
    prefix = cfg.prefix or f"{name}/"
    others = {(RemoteSettings.model_validate(dict(t)).prefix or f"{n}/") for n, t in remotes.items() if n != name}
    if prefix in others or prefix == "ollama/":
        raise ConfigError(f"the prefix {prefix} is taken", "choose another with --prefix.")
    table = tomlkit.table()
    for key, value in cfg.model_dump(exclude_defaults=True).items():
        table[key] = value
    table["url"] = cfg.url
    remotes[name] = table
    write_config_doc(path, doc)
    return cfg


def remove_remote(path: Path, name: str) -> RemoteSettings:
    doc = read_config_doc(path)
    remotes = doc.get("remotes")
    if remotes is None or name not in remotes:
        raise LlmctlError(f"no remote named {name}", "`llmctl remotes list` shows them.")
    cfg = RemoteSettings.model_validate(dict(remotes[name]))
    del remotes[name]
    if not remotes:
        del doc["remotes"]
    write_config_doc(path, doc)
    return cfg


def store_key(name: str, key: str) -> None:
    kr = _keyring()
    if kr is None:
        raise LlmctlError("the keyring package is not installed",
                          "pip install keyring, or keep the key in an environment variable (--key-env VAR).")
    kr.set_password(KEYRING_SERVICE, keyring_user(name), key)


def forget_key(name: str) -> bool:
    kr = _keyring()
    if kr is None:
        return False
    try:
        kr.delete_password(KEYRING_SERVICE, keyring_user(name))
    except Exception:  # no such entry, or no usable backend
        return False
    return True


async def list_remote_entries(settings: Settings, paths=None, timeout: float = 3.0) -> list:
    """Every remote's models as ``ModelEntry``s (for `llmctl models list`): asked from here, concurrently and
    briefly; a remote that does not answer lists only the models configured for it; skipped ones are not asked."""
    import asyncio

    servers = make_remotes(settings)
    try:
        await asyncio.wait_for(asyncio.gather(*(s.entries() for s in servers), return_exceptions=True), timeout + 1)
    except TimeoutError:
        pass
    out = []
    try:
        for s in servers:
            out += await s.entries() if s.checked_at is not None or s.spec.models or s.spec.unusable else []
    finally:
        for s in servers:
            await s.close()
    return out


async def probe(settings: Settings, timeout: float = 3.0) -> list[dict]:
    """Each remote's status from this process (the CLI with no controller running): one quick check each,
    concurrently; skipped ones are not contacted."""
    import asyncio

    servers = make_remotes(settings)
    try:
        await asyncio.wait_for(asyncio.gather(*(s.check() for s in servers), return_exceptions=True), timeout + 1)
    except TimeoutError:
        pass
    finally:
        for s in servers:
            await s.close()
    return [s.status() for s in servers]

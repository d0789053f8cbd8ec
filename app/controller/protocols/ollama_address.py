"""The Ollama API (and the rest of llmctl's routes) also on Ollama's own address, for clients that only know
``OLLAMA_HOST`` or 127.0.0.1:11434: off by default (``server.ollama_address``), and only when llmctl has no Ollama
engine (``engines.ollama.mode = "off"``: an engine attached there would find llmctl answering as itself) and
nothing else listens there. A non-loopback address needs an API key, as llmctl's own address does."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from aiohttp import web

from llmctl.app.settings import Settings, is_loopback
from llmctl.catalog.errors import LlmctlError
from llmctl.runtimes.ollama import parse_ollama_host
from llmctl.runtimes.sockets import describe_port_owner, port_is_free


def address(settings: Settings) -> tuple[str, int]:
    """Where Ollama's clients look: ``engines.ollama.host``, else ``OLLAMA_HOST``, else 127.0.0.1:11434."""
    url = urlsplit(parse_ollama_host(settings.engines.ollama.host or os.environ.get("OLLAMA_HOST")))
    return url.hostname or "127.0.0.1", url.port or 11434


async def open_site(settings: Settings, runner: web.AppRunner, *, engine: bool) -> tuple[web.TCPSite | None, str]:
    """Listen on Ollama's address too when allowed: the site (None when not), and what to tell the user."""
    try:
        host, port = address(settings)
    except LlmctlError as exc:
        return None, f"not serving the Ollama API on OLLAMA_HOST: {exc.title} ({exc.message})"
    where = f"{host}:{port}"
    if engine:
        return None, (f"not serving the Ollama API on {where}: an Ollama engine is configured (engines.ollama.mode); "
                      'set engines.ollama.mode = "off" to let llmctl answer there')
    if not is_loopback(host) and not settings.server.needs_key:
        return None, f"not serving the Ollama API on {where}: a non-loopback address needs an API key"
    if not port_is_free(host, port):
        return None, f"not serving the Ollama API on {where}: the port is in use by {describe_port_owner(port)}"
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        return None, f"not serving the Ollama API on {where}: {exc.strerror or exc}"
    return site, f"the Ollama API also at http://{where}"

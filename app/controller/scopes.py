"""Key scopes: what a key's role lets it call.

Two roles. ``inference``, the default of a named key (``[[server.keys]]``: a key handed to an app), may call the
client routes (``/v1/...``, Ollama's inference and listing routes) and ``/health``, ``/ready``. ``admin`` may call
anything: also the control API under ``/llmctl/`` (the state-changing routes: shutdown, load/unload, register,
delete, pulls; and the read-only ones, which show every key's usage, engine logs that may carry prompts, recent
requests and file paths) and ``/metrics`` (per-key usage by name). ``server.api_key`` is admin: it was the one key
before named keys existed, and the owner's. The controller's per-start owner key (the CLI's and the TUI's) is admin.

A refusal is a 403 in the OpenAI shape naming the scope the route needs and how to get it.
"""

from __future__ import annotations

from aiohttp import web

from llmctl.app.controller.errors import error_response

INFERENCE, ADMIN = "inference", "admin"
ROLES = (INFERENCE, ADMIN)

# what an inference key may reach: the client protocols (OpenAI and Anthropic under /v1; Ollama's inference and
# listing routes, not its pull/delete/create/copy/push, which manage models) and the liveness probes. Everything
# else needs admin: a route added later is closed to app keys until it is listed here.
_CLIENT_PREFIXES = ("/v1/",)
_OPEN_TO_ANY_KEY = frozenset({"/health", "/ready", "/v1", "/api/chat", "/api/generate", "/api/embed",
                              "/api/embeddings", "/api/tags", "/api/show", "/api/ps", "/api/version"})


def scope_needed(path: str) -> str:
    """The scope a route needs: inference for the client protocols and the probes, admin for everything else
    (the control API under ``/llmctl/``, ``/metrics``, Ollama's model management)."""
    if path in _OPEN_TO_ANY_KEY or (path.startswith(_CLIENT_PREFIXES) and "/.." not in path and "//" not in path):
        return INFERENCE
    return ADMIN


def allowed(role: str, scope: str) -> bool:
    return role == ADMIN or scope == INFERENCE


def refusal(key_name: str, role: str, method: str, path: str, scope: str) -> web.Response:
    return error_response(
        403, f"the API key '{key_name}' has the {role} scope; {method} {path} needs the {scope} scope "
        f"(use an admin key, or give this key role = \"{scope}\" under [[server.keys]])",
        code="insufficient_scope", type="permission_error")

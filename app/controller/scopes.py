"""Key scopes: what a key's role lets it call.

Two roles. ``inference``, the default of a named key (``[[server.keys]]``: a key handed to an app), may call the
client routes (``/v1/...`` and the same without ``/v1``, engine-native routes like ``/tokenize``, Ollama's routes
but those that manage models) and ``/health``, ``/ready``. ``admin`` may call anything: also the control API under
``/llmctl/`` (the state-changing routes: shutdown, load/unload, register, delete, pulls; and the read-only ones,
which show every key's usage, engine logs that may carry prompts, recent requests and file paths), ``/metrics``
(per-key usage by name) and Ollama's ``/api/pull`` and kin. ``server.api_key`` is admin: it was the one key before
named keys existed, and the owner's. The controller's per-start owner key (the CLI's and the TUI's) is admin.

A refusal is a 403 in the OpenAI shape naming the scope the route needs and how to get it.
"""

from __future__ import annotations

from aiohttp import web

from llmctl.app.controller.errors import error_response

INFERENCE, ADMIN = "inference", "admin"
ROLES = (INFERENCE, ADMIN)

# Ollama's routes that manage models rather than use them
OLLAMA_MANAGEMENT = frozenset({"/api/pull", "/api/delete", "/api/create", "/api/copy", "/api/push"})


def scope_needed(route: str) -> str:
    """The scope a route needs, by the path it was registered under (``route_path``): admin for the control API
    under ``/llmctl/``, ``/metrics`` and Ollama's model management; inference for the client protocols, the
    engine-native routes and the probes. Management routes live under ``/llmctl/`` by convention, so a client
    route added later is open to app keys and a control route is not."""
    if route in ("/metrics", "/llmctl") or route.startswith("/llmctl/") or route in OLLAMA_MANAGEMENT:
        return ADMIN
    return INFERENCE


def route_path(request: web.Request) -> str:
    """The path the matched route was registered under (``/llmctl/v1/backends/{model}/load``), so however the
    request spelled its path, the scope is the route's; the request's own path when no route matched (a 404)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def allowed(role: str, scope: str) -> bool:
    return role == ADMIN or scope == INFERENCE


def refusal(key_name: str, role: str, method: str, path: str, scope: str) -> web.Response:
    return error_response(
        403, f"the API key '{key_name}' has the {role} scope; {method} {path} needs the {scope} scope "
        f"(use an admin key, or give this key role = \"{scope}\" under [[server.keys]])",
        code="insufficient_scope", type="permission_error")

"""Key scopes (issue 23, item 1): a named key handed to an app is inference-only. With it, every management route
(shutdown, load/unload, register, delete, pulls) and the read-only control routes answer 403 in the OpenAI shape,
naming the scope needed, and nothing changes; an admin key (``role = "admin"``, or the unnamed ``api_key``) may.
The real controller, in-process, driven with httpx and the openai SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.store import ModelStore
from llmctl.runtimes.process import free_port

APP, OPS, OWNER = "app-secret-1", "ops-secret-22", "owner-secret-333"
CONFIG = f"""
[engines.ollama]
mode = "off"

[server]
api_key = "{OWNER}"

[[server.keys]]
name = "app"
key = "{APP}"
requests_per_minute = 100

[[server.keys]]
name = "ops"
key = "{OPS}"
role = "admin"
"""


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


@pytest.fixture
async def controller(tiny_gguf: Path):
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(CONFIG)
    ModelStore(paths.data_dir).import_file(tiny_gguf, "tiny")
    c = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await c.start()
    yield c
    await c.close()


MANAGEMENT = [
    ("POST", "/llmctl/v1/shutdown", {}),
    ("POST", "/llmctl/v1/backends/tiny/load?wait=false", {}),
    ("POST", "/llmctl/v1/backends/tiny/unload", {}),
    ("POST", "/llmctl/v1/models", {"path": "/etc/passwd", "name": "planted"}),
    ("DELETE", "/llmctl/v1/models/tiny", None),
    ("POST", "/llmctl/v1/pulls", {"ref": "org/repo"}),
    ("DELETE", "/llmctl/v1/pulls/abc", None),
    ("GET", "/llmctl/v1/status", None),
    ("GET", "/llmctl/v1/keys", None),
    ("GET", "/llmctl/v1/backends/tiny/logs", None),
    ("GET", "/llmctl/v1/requests", None),
    ("GET", "/metrics", None),
    ("POST", "/api/pull", {"model": "org/repo"}),  # Ollama's API: pulling manages models
]
TRICKS = ["//llmctl/v1/status", "/v1/../llmctl/v1/status", "/v1/%2e%2e/llmctl/v1/status", "/llmctl%2Fv1/status"]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_inference_key_cannot_manage_the_controller(controller: Controller) -> None:
    async with httpx.AsyncClient(base_url=controller.url, timeout=10) as http:
        for method, path, body in MANAGEMENT:
            r = await http.request(method, path, headers=_auth(APP), json=body)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            error = r.json()["error"]
            assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
            assert "'app' has the inference scope" in error["message"] and "needs the admin scope" in error["message"]
        for path in TRICKS:  # a path spelled to look like a client route reaches no control route
            r = await http.get(path, headers=_auth(APP))
            assert r.status_code in (403, 404), (path, r.status_code)
        # nothing happened: still serving, the model still registered, no pull started
        assert not controller._stop.is_set()
        assert [e.name for e in controller.store.list()] == ["tiny"]
        assert controller.scheduler.backends == {}
        # the client routes stay open to it
        assert (await http.get("/v1/models", headers=_auth(APP))).status_code == 200
        assert (await http.get("/health", headers=_auth(APP))).status_code == 200
        assert (await http.get("/api/tags", headers=_auth(APP))).status_code == 200
    sdk = openai.AsyncOpenAI(base_url=controller.url + "/v1", api_key=APP)
    assert [m.id for m in (await sdk.models.list()).data] == ["tiny"]
    await sdk.close()


async def test_admin_keys_may_manage(controller: Controller) -> None:
    async with httpx.AsyncClient(base_url=controller.url, timeout=10) as http:
        listed = (await http.get("/llmctl/v1/keys", headers=_auth(OPS))).json()["keys"]
        assert {k["name"]: k["role"] for k in listed} == {"default": "admin", "app": "inference", "ops": "admin",
                                                         "(llmctl)": "admin"}
        assert (await http.get("/metrics", headers=_auth(OWNER))).status_code == 200
        r = await http.post("/llmctl/v1/shutdown", headers=_auth(OPS), json={})
        assert r.status_code == 200
    assert controller._stop.is_set()


def test_a_named_key_without_a_role_is_inference_and_the_unnamed_key_admin(monkeypatch) -> None:
    from llmctl.app.controller.server import api_keys

    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(CONFIG)
    s = load_settings(paths)
    assert [(name, role) for name, _secret, _rpm, _tpm, role in api_keys(s)] == [
        ("default", "admin"), ("app", "inference"), ("ops", "admin")]
    # a configured admin key: the unnamed one, else the first named admin key (never an inference one)
    assert s.server.client_key() == OWNER
    # an app llmctl launches gets an inference key when there is one
    assert s.server.app_key() == APP
    paths.config_file.write_text(CONFIG.replace(f'api_key = "{OWNER}"', ""))
    assert load_settings(paths).server.client_key() == OPS


def test_which_scope_each_route_needs() -> None:
    from llmctl.app.controller.scopes import scope_needed

    for path in ("/v1/chat/completions", "/v1/models", "/v1/models/{model}", "/v1/messages", "/v1/responses",
                 "/chat/completions", "/tokenize", "/props", "/health", "/ready", "/", "/api/chat", "/api/generate",
                 "/api/tags", "/api/show"):
        assert scope_needed(path) == "inference", path
    for path in ("/llmctl/v1/shutdown", "/llmctl/v1/backends/{model}/load", "/llmctl/v1/status", "/metrics",
                 "/api/pull", "/api/delete", "/api/create", "/api/copy", "/api/push"):
        assert scope_needed(path) == "admin", path


SPENT = "spent-secret-4444"
CHANGES_STATE = ("load", "unload", "stop", "pin", "pull", "delete", "register", "shutdown", "create", "copy", "push",
                 "models/{")


@pytest.fixture
async def spent_controller(tiny_gguf: Path):
    """The real controller, with an inference key allowed one request a minute."""
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    spent = f'\n[[server.keys]]\nname = "spent"\nkey = "{SPENT}"\nrequests_per_minute = 1\n'
    paths.config_file.write_text(CONFIG + spent)
    ModelStore(paths.data_dir).import_file(tiny_gguf, "tiny")
    c = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await c.start()
    yield c
    await c.close()


async def test_every_registered_route_is_scoped_and_none_open_to_an_app_key_changes_what_runs(
        spent_controller: Controller) -> None:
    """Walks the real app's routes (not a hand-written list): each is classified; each whose path says it changes
    what runs or what is registered needs admin; and no route an inference key may call loads, unloads or pins a
    model outside the key's admission (its rate limit spent: a route that starts a model for it is a hole)."""
    from llmctl.app.controller.scopes import ADMIN, ROLES, scope_needed

    app = spent_controller.build_app()
    routes = sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                     if r.resource is not None and r.method not in ("HEAD", "OPTIONS")})
    assert len(routes) > 30  # the whole surface, not a stub
    open_to_apps = []
    for method, path in routes:
        scope = scope_needed(path)
        assert scope in ROLES, (method, path)
        reads_one_model = method == "GET" and path in ("/v1/models/{model}", "/models/{model}")
        if any(word in path.lower() for word in CHANGES_STATE) and not reads_one_model:
            assert scope == ADMIN, (method, path)
        if scope != ADMIN:
            open_to_apps.append((method, path))
    async with httpx.AsyncClient(base_url=spent_controller.url, timeout=30) as http:
        spend = await http.post("/v1/chat/completions", headers=_auth(SPENT),
                                json={"model": "no-such", "messages": [{"role": "user", "content": "x"}]})
        assert spend.status_code == 404 and spend.headers["x-ratelimit-remaining-requests"] == "0"
        for method, path in open_to_apps:
            url = path.replace("{model}", "tiny").replace("{", "").replace("}", "")
            for body in ({"model": "tiny"}, {"model": "tiny", "keep_alive": -1}, {"model": "tiny", "keep_alive": 0}):
                r = await http.request(method, url, params={"model": "tiny"}, headers=_auth(SPENT),
                                       json=body if method != "GET" else None)
                assert r.status_code != 500, (method, url, r.text)
                assert spent_controller.scheduler.backends == {}, (method, url, body, r.status_code, r.text)
    assert not spent_controller._stop.is_set()
    assert [e.name for e in spent_controller.store.list()] == ["tiny"]

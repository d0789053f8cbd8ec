"""A web page in the user's browser cannot drive the controller. Real controller, no model load."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from llmctl.app.client.api import ControllerClient, ControllerError

EVIL = "https://evil.example"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

# every state-changing route, with a body that would be accepted as JSON
ROUTES = [
    ("POST", "/llmctl/v1/shutdown", {}),
    ("POST", "/llmctl/v1/backends/tiny/load?wait=false", {}),
    ("POST", "/llmctl/v1/backends/tiny/unload", {}),
    ("POST", "/llmctl/v1/models", {"path": "/etc/passwd", "name": "planted"}),
    ("DELETE", "/llmctl/v1/models/tiny", None),
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 2}),
]


def _nothing_happened(proc) -> None:
    """The controller still runs, 'tiny' is still registered, nothing was planted, no backend started."""
    assert proc.proc.poll() is None, proc.output
    with proc.client() as c:
        assert c.get("/llmctl/v1/backends").json()["backends"] == []
        names = [m["name"] for m in c.get("/llmctl/v1/models").json()["models"]]
    assert names == ["tiny"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_foreign_origin_is_refused_on_every_state_changing_route(controller, method, path, body) -> None:
    proc = controller()
    content = json.dumps(body).encode() if body is not None else None
    r = httpx.request(method, proc.url + path, content=content, timeout=10,
                      headers={"Origin": EVIL, "Content-Type": "application/json"})
    assert r.status_code == 403, (path, r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "origin_not_allowed" and err["type"] == "permission_error"
    assert "server.cors_origins" in err["message"] and EVIL in err["message"]
    assert "access-control-allow-origin" not in r.headers
    _nothing_happened(proc)


def test_foreign_origin_cannot_read_either(controller) -> None:
    proc = controller()
    for path in ("/v1/models", "/llmctl/v1/status", "/llmctl/v1/models"):
        r = httpx.get(proc.url + path, headers={"Origin": EVIL}, timeout=30)
        assert r.status_code == 403, path
    preflight = httpx.options(proc.url + "/llmctl/v1/shutdown", headers={"Origin": EVIL}, timeout=30)
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_text_plain_without_origin_is_refused(controller, method, path, body) -> None:
    """The preflight-free form a page can send (and old browsers send it without Origin)."""
    proc = controller()
    content = json.dumps(body).encode() if body is not None else None
    r = httpx.request(method, proc.url + path, content=content, headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 415, (path, r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type" and "application/json" in err["message"]
    _nothing_happened(proc)


def test_json_requests_and_listed_origins_still_work(controller, tmp_path: Path, tiny_gguf: Path) -> None:
    proc = controller(LLMCTL_SERVER__CORS_ORIGINS='["http://app.local"]')
    r = httpx.post(proc.url + "/llmctl/v1/models", json={"path": str(tiny_gguf), "name": "again"},
                   headers={"Origin": "http://app.local"}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.local"

    async def via_client() -> None:  # the CLI's and the TUI's client: body-less POST and DELETE say JSON too
        async with ControllerClient(proc.url) as client:
            assert (await client.remove_model("again"))["name"] == "again"
            with pytest.raises(ControllerError) as err:
                await client.unload("tiny")
            assert err.value.status == 404  # not 415: the request got through to the route
            assert (await client.shutdown())["status"] == "stopping"

    asyncio.run(via_client())
    assert proc.proc.wait(30) == 0


def test_host_header_is_parsed_not_prefix_matched(controller) -> None:
    proc = controller()
    for host in ("127.evil.com", "127.0.0.1.evil.com", "localhost.evil.com", "evil.example"):
        r = httpx.get(proc.url + "/v1/models", headers={"Host": f"{host}:{proc.port}"}, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "bad_host", host
    for host in ("localhost", f"localhost:{proc.port}", "127.0.0.2", f"[::1]:{proc.port}"):
        assert httpx.get(proc.url + "/v1/models", headers={"Host": host}, timeout=30).status_code == 200, host

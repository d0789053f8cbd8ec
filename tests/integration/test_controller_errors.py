"""Issue 8 item 12: an unexpected error is an OpenAI-shaped 500 plus a logged traceback; the background
controller's log is bounded; the models route does not re-read GGUF headers on every poll. Real controller
processes; no model is loaded."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from harness import ControllerProcess

from llmctl.app.client.api import running_controller
from llmctl.app.client.background import ensure_controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.store import ModelStore
from llmctl.runtimes.process import free_port

MALFORMED = {"schema": 1, "models": [{"path": "/models/x.gguf", "format": "gguf"}]}  # no "name"


def _break_registry(home: Path) -> None:
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "data" / "models.json").write_text(json.dumps(MALFORMED))


def test_malformed_registry_entry_is_an_openai_shaped_500_with_a_logged_traceback(controller, home: Path) -> None:
    proc = controller()
    _break_registry(home)
    for path in ("/v1/models", "/llmctl/v1/models", "/llmctl/v1/status"):
        r = httpx.get(proc.url + path, timeout=30)
        assert r.status_code == 500, (path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        err = r.json()["error"]
        assert err["type"] == "server_error" and err["code"] == "internal_error"
        assert "TypeError" in err["message"]
    proc.wait_output("Traceback (most recent call last)", timeout=30)
    assert "unexpected error in GET /v1/models" in proc.output
    assert proc.proc.poll() is None  # and it keeps serving
    assert httpx.get(proc.url + "/health", timeout=30).status_code == 200


@pytest.fixture
def background(llmctl_home: Path, monkeypatch):
    """A controller started the way the TUI starts it (ensure_controller), with a small log cap."""
    monkeypatch.setenv("LLMCTL_SERVER__PORT", str(free_port()))
    monkeypatch.setenv("LLMCTL_SERVER__LOG_MAX_BYTES", str(64 * 1024))
    paths = resolve_paths()
    settings = load_settings(paths)
    assert ensure_controller(settings, paths) is not None
    live = running_controller(paths)
    yield paths, live
    from harness import kill_pid, pid_gone

    if live and not pid_gone(int(live["pid"]), timeout=0.1):
        kill_pid(int(live["pid"]))


def test_background_controller_log_is_rotated_at_its_cap(background) -> None:
    paths, live = background
    url = live["url"]
    _break_registry(paths.data_dir.parent)  # LLMCTL_HOME/data
    log = paths.logs_dir / "controller.log"
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(150):  # each logs a traceback of about 1 KiB
            assert c.get("/v1/models").status_code == 500
        paths.data_dir.joinpath("models.json").unlink()
        r = c.post("/llmctl/v1/shutdown", json={})
        assert r.status_code == 200
    deadline = time.monotonic() + 20
    while running_controller(paths) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    files = sorted(p.name for p in paths.logs_dir.iterdir())
    assert files == ["controller.log", "controller.log.1", "controller.log.2"], files
    for name in files:
        assert (paths.logs_dir / name).stat().st_size <= 64 * 1024 + 4096, name
    text = "".join((paths.logs_dir / n).read_text() for n in files)
    assert "Traceback" in text and "unexpected error in GET /v1/models" in text
    assert "OpenAI endpoint at" in log.read_text() + text  # its events go to the same log


def test_models_route_caches_header_facts_by_path_size_and_mtime(tmp_path: Path, tiny_gguf: Path) -> None:
    home = tmp_path / "home"
    model = tmp_path / "m.gguf"
    shutil.copyfile(tiny_gguf, model)
    ModelStore(home / "data").import_file(model, "m")
    proc = ControllerProcess(home).start()
    try:
        with proc.client() as c:
            first = c.get("/llmctl/v1/models").json()["models"][0]
            assert first["fit"] is not None, first
            # same size, same mtime, different bytes: a cached answer does not read the file again
            st = model.stat()
            model.write_bytes(b"\0" * st.st_size)
            os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
            again = c.get("/llmctl/v1/models").json()["models"][0]
            assert "problem" not in again and again["fit"] is not None, again
            stable = ("weights_bytes", "kv_cache_bytes", "total_bytes", "n_layers")  # not the live RAM figures
            assert [again["fit"][k] for k in stable] == [first["fit"][k] for k in stable]
            # a new mtime is a new file: read again (and now found broken)
            os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            changed = c.get("/llmctl/v1/models").json()["models"][0]
            assert changed["fit"] is None and "not a valid GGUF" in changed["problem"]
    finally:
        proc.kill_everything()

"""The supervisor and controller lifecycle against real processes: on-demand start, crash restart, crash loop,
bad files, backends dying mid-stream, and no orphans after SIGINT, SIGTERM or SIGKILL."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest
from harness import ControllerProcess, kill_pid, pid_gone, run_cli
from tiny_gguf import write_tiny_llama

from llmctl.catalog.store import ModelStore

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}


def _chat(proc: ControllerProcess, **kw) -> httpx.Response:
    return httpx.post(proc.url + "/v1/chat/completions", json={**CHAT, **kw}, timeout=60)


def test_on_demand_start_and_cli_views(controller, home: Path) -> None:
    proc = controller()
    with proc.client() as c:
        assert c.get("/llmctl/v1/backends").json()["backends"] == []
    r = _chat(proc)  # the first request starts the model and waits for it
    assert r.status_code == 200, r.text
    ready = proc.wait_state("tiny", "ready")
    assert ready["pid"] and ready["memory_bytes"] > 0 and ready["restarts"] == 0
    env = {"LLMCTL_SERVER__PORT": str(proc.port)}
    ps = run_cli(home, "ps", "--json", **env)
    assert ps.returncode == 0, ps.stderr
    assert json.loads(ps.stdout)[0]["state"] == "ready"
    logs = run_cli(home, "logs", "tiny", "-n", "500", **env)
    assert logs.returncode == 0 and "llmctl: starting" in logs.stdout
    chat = run_cli(home, "chat", "tiny", "-m", "hello", "--max-tokens", "5", "--temperature", "0", **env)
    assert chat.returncode == 0 and "5 tokens" in chat.stdout
    stop = run_cli(home, "stop", "tiny", **env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert pid_gone(ready["pid"])
    start = run_cli(home, "start", "tiny", **env)
    assert start.returncode == 0 and "ready" in start.stdout


def test_killed_backend_is_restarted(controller) -> None:
    proc = controller()
    assert _chat(proc).status_code == 200
    first = proc.wait_state("tiny", "ready")
    kill_pid(first["pid"])
    assert pid_gone(first["pid"])
    b = proc.wait_state("tiny", "ready", where=lambda b: b["pid"] != first["pid"])
    assert b["restarts"] == 1
    assert _chat(proc).status_code == 200


def test_crash_loop_ends_failed_with_log_lines(controller, home: Path) -> None:
    proc = controller(LLMCTL_BACKENDS__MAX_RESTARTS="1", LLMCTL_BACKENDS__RETRY_FAILED_AFTER="600")
    assert _chat(proc).status_code == 200
    last = None
    for _ in range(2):
        b = proc.wait_state("tiny", "ready", where=lambda b, last=last: b["pid"] != last)
        last = b["pid"]
        kill_pid(last)
        assert pid_gone(last)
    failed = proc.wait_state("tiny", "failed")
    assert "crashed 2 times" in failed["error"]
    assert failed["last_log_lines"], "the failure shows the backend's last log lines"
    r = _chat(proc)
    assert r.status_code == 503 and r.json()["error"]["code"] == "backend_failed"
    ps = run_cli(home, "ps", LLMCTL_SERVER__PORT=str(proc.port))
    assert "failed" in ps.stdout and "last log lines" in ps.stdout
    # an explicit start tries again and succeeds
    again = run_cli(home, "start", "tiny", LLMCTL_SERVER__PORT=str(proc.port))
    assert again.returncode == 0, again.stderr[:300]


def test_unloadable_file_fails_at_once_without_restarts(controller, home: Path, tmp_path: Path) -> None:
    broken = write_tiny_llama(tmp_path / "broken.gguf", omit_tensor="output_norm.weight")
    ModelStore(home / "data").import_file(broken, "broken")
    proc = controller()
    r = httpx.post(proc.url + "/v1/chat/completions", json={**CHAT, "model": "broken"}, timeout=60)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "backend_failed" and "while loading" in err["message"]
    b = proc.backend("broken")
    assert b["state"] == "failed" and b["restarts"] == 0
    assert "tensor 'output_norm.weight' not found" in b["error"]  # llama.cpp's own reason, up front
    assert b["last_log_lines"]


def test_backend_dying_mid_stream_ends_the_clients_stream(controller) -> None:
    proc = controller()
    assert _chat(proc).status_code == 200
    pid = proc.wait_state("tiny", "ready")["pid"]
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="x", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "long"}],
                                            max_tokens=1900, temperature=0, stream=True)
    received = 0
    t0 = time.monotonic()
    with pytest.raises(openai.APIError, match="stopped mid-stream"):
        for _chunk in stream:
            received += 1
            if received == 5:
                kill_pid(pid)
    assert 5 <= received < 1900
    assert time.monotonic() - t0 < 20  # ended, not hung
    with proc.client() as c:
        rec = c.get("/llmctl/v1/requests", params={"limit": 1}).json()["requests"][-1]
    assert rec["status"] == 502 and "mid-stream" in rec["error"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_leave_no_backend(controller, sig: int) -> None:
    proc = controller()
    assert _chat(proc).status_code == 200
    pid = proc.wait_state("tiny", "ready")["pid"]
    assert proc.stop(sig) == 0
    assert pid_gone(pid, timeout=5)
    assert "all backends stopped" in proc.output
    assert json.loads((proc.home / "state" / "backends.json").read_text()) == {}
    assert not (proc.home / "state" / "controller.json").exists()


def test_sigkill_orphan_is_reaped_by_the_next_controller(controller) -> None:
    proc = controller()
    assert _chat(proc).status_code == 200
    pid = proc.wait_state("tiny", "ready")["pid"]
    proc.stop(signal.SIGKILL)
    time.sleep(0.3)
    assert not pid_gone(pid, timeout=0.5), "the backend outlives a SIGKILLed controller (its own group)"
    nxt = controller()
    nxt.wait_output("stopped orphaned backend tiny")
    assert pid_gone(pid, timeout=10)
    assert _chat(nxt).status_code == 200


def test_port_taken_by_a_foreign_process_is_a_clear_error(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(home, "serve", "--port", str(port), timeout=30)
    assert r.returncode == 1
    assert f"port {port} is already in use" in r.stderr and "--port" in r.stderr


def test_non_loopback_bind_without_key_is_refused(home: Path) -> None:
    r = run_cli(home, "serve", "--host", "0.0.0.0", timeout=30)
    assert r.returncode == 1
    assert "without an API key" in r.stderr and "--api-key" in r.stderr


def test_api_key_guards_every_route(controller) -> None:
    proc = controller("--api-key", "s3cret-key")
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/llmctl/v1/status"),
                         ("POST", "/llmctl/v1/backends/tiny/load"), ("POST", "/llmctl/v1/shutdown"),
                         ("GET", "/metrics"), ("GET", "/health"), ("GET", "/no/such/route")]:
        r = httpx.request(method, proc.url + path, timeout=10, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, (path, r.status_code)
        assert r.json()["error"]["code"] == "invalid_api_key"
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="s3cret-key", max_retries=0)
    assert client.chat.completions.create(**CHAT).choices[0].message.content
    assert httpx.get(proc.url + "/v1/models", headers={"x-api-key": "s3cret-key"}).status_code == 200
    assert httpx.get(proc.url + "/v1/models", headers={"Authorization": "Bearer"}).status_code == 401  # no key


def test_an_empty_or_short_api_key_is_refused(home: Path) -> None:
    for key in ("", "short"):
        r = run_cli(home, "serve", "--host", "0.0.0.0", "--api-key", key, timeout=30)
        assert r.returncode == 1 and "--api-key" in r.stderr and "at least 8" in r.stderr, r.stderr


def test_shutdown_command_stops_everything(controller, home: Path) -> None:
    proc = controller()
    assert _chat(proc).status_code == 200
    pid = proc.wait_state("tiny", "ready")["pid"]
    r = run_cli(home, "shutdown", LLMCTL_SERVER__PORT=str(proc.port))
    assert r.returncode == 0
    assert proc.proc.wait(30) == 0
    assert pid_gone(pid)


def test_cli_without_controller_says_what_to_do(home: Path) -> None:
    r = run_cli(home, "ps", LLMCTL_SERVER__PORT="1")
    assert r.returncode == 1
    assert "no llmctl controller is running" in r.stderr and "llmctl serve" in r.stderr


def test_request_during_a_long_load_gets_503_with_retry_after(controller) -> None:
    proc = controller(LLMCTL_BACKENDS__LOAD_WAIT="0.001")
    r = _chat(proc)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "model_loading"
    proc.wait_state("tiny", "ready")  # the load goes on; the retry succeeds
    assert _chat(proc).status_code == 200


def test_cors_is_llmctls_own_policy(controller) -> None:
    proc = controller(LLMCTL_SERVER__CORS_ORIGINS='["http://app.local"]')
    allowed = httpx.get(proc.url + "/v1/models", headers={"Origin": "http://app.local"}, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == "http://app.local"
    other = httpx.get(proc.url + "/v1/models", headers={"Origin": "http://evil.example"}, timeout=10)
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    preflight = httpx.options(proc.url + "/v1/chat/completions", headers={"Origin": "http://app.local"}, timeout=10)
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    # streamed responses carry it too; the backend's own (permissive) CORS headers never pass through
    with httpx.stream("POST", proc.url + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"Origin": "http://app.local"}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.local"
        assert r.headers.get_list("access-control-allow-origin") == ["http://app.local"]

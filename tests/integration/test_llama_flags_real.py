"""llama-server flags in a model's profile reach the real default engine (xllamacpp) through a real controller: the
model loads with them and serves what they ask; a flag the wheel cannot take is refused before any process starts."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
from harness import run_cli


def _write_args(home: Path, args: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(f"[models.tiny]\nargs = {args}\n")


def _engine_get(backend: dict, path: str, **kw) -> httpx.Response:
    """Straight to the engine, with the launch's own key (read from its process, as only its user can)."""
    key = psutil.Process(backend["pid"]).environ()["LLAMA_API_KEY"]
    return httpx.request(kw.pop("method", "GET"), f"http://127.0.0.1:{backend['port']}{path}",
                         headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


def test_a_model_loads_with_reranking_and_a_sampling_default(home: Path, controller) -> None:
    _write_args(home, '["--reranking", "--top-k", "20"]')
    proc = controller()
    r = run_cli(home, "start", "tiny", "--json", LLMCTL_SERVER__PORT=str(proc.port))
    assert r.returncode == 0, r.stderr + proc.output
    backend = proc.wait_state("tiny", "ready")
    props = _engine_get(backend, "/props").json()
    assert props["default_generation_settings"]["params"]["top_k"] == 20
    rerank = _engine_get(backend, "/v1/rerank", method="POST", json={"query": "a", "documents": ["b", "c"]})
    assert rerank.status_code == 200 and len(rerank.json()["results"]) == 2


def test_a_flag_the_wheel_cannot_take_is_refused_before_a_launch(home: Path, controller) -> None:
    _write_args(home, '["--control-vector", "cv.gguf"]')  # written by hand: `models config` would refuse it
    proc = controller()
    r = run_cli(home, "start", "tiny", LLMCTL_SERVER__PORT=str(proc.port))
    assert r.returncode == 1
    assert "[models.tiny] args: llama.cpp flag --control-vector cannot be given to the default engine" in r.stderr
    assert proc.proc is not None and psutil.Process(proc.proc.pid).children() == []  # no engine was started

"""The CLI's Ollama verbs against the Ollama fixture (recorded Ollama 0.23.0), found through OLLAMA_HOST:
`models list`, `import --to ollama`, `models rm`, `pull ollama:…` (offline), `runtimes`, `fit`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import run_cli
from ollama_fixture import RECORDED_NAME, OllamaFixture

from llmctl.app.cli.root import cli
from llmctl.catalog.errors import LlmctlError


@pytest.fixture
def digest(tiny_gguf: Path) -> str:
    return f"sha256:{hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()}"


@pytest.fixture
def fx(digest, monkeypatch):
    with OllamaFixture(gguf_digest=digest, time_scale=0.1) as f:
        monkeypatch.setenv("OLLAMA_HOST", f.host)
        yield f


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_models_list_includes_ollamas_models_with_their_source(runner, fx, tiny_gguf):
    fx.seed_model()
    assert runner.invoke(cli, ["import", str(tiny_gguf), "--name", "tiny"]).exit_code == 0
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    assert [(m["name"], m["where"]) for m in listed] == [("tiny", "llmctl"), (f"ollama/{RECORDED_NAME}", "ollama")]
    assert listed[1]["facts"]["quant"] == "Q4_1" and listed[1]["facts"]["context_length"] == 8192
    table = runner.invoke(cli, ["models", "list"]).output
    assert "ollama/smollm2:135m" in table and " ollama " in table


def test_models_list_without_ollama_is_unchanged(runner, monkeypatch, tiny_gguf):
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    assert runner.invoke(cli, ["import", str(tiny_gguf), "--name", "tiny"]).exit_code == 0
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    assert [m["name"] for m in listed] == ["tiny"]


def test_import_to_ollama_uploads_the_blob_then_creates_and_the_model_appears(runner, fx, tiny_gguf, digest,
                                                                              llmctl_home):
    r = runner.invoke(cli, ["import", str(tiny_gguf), "--to", "ollama", "--name", "smollm2:135m"])
    assert r.exit_code == 0, r.output
    assert fx.requests[:3] == [("HEAD", f"/api/blobs/{digest}"), ("POST", f"/api/blobs/{digest}"),
                               ("POST", "/api/create")]
    assert f"uploaded {tiny_gguf.name}" in r.output and "using autodetected template chatml" in r.output
    assert "created ollama/smollm2:135m" in r.output
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    assert [m["name"] for m in listed] == ["ollama/smollm2:135m"]
    created = json.loads((llmctl_home / "data" / "ollama-created.json").read_text())
    assert created == {"models": ["smollm2:135m"]}

    r = runner.invoke(cli, ["models", "rm", "ollama/smollm2:135m"])  # llmctl created it: deleted
    assert r.exit_code == 0, r.output
    assert fx.requests[-1] == ("DELETE", "/api/delete") and fx.models == {}
    assert json.loads((llmctl_home / "data" / "ollama-created.json").read_text()) == {"models": []}


def test_rm_refuses_a_model_llmctl_did_not_create_unless_forced(runner, fx):
    fx.seed_model(loaded_for_s=300)
    r = runner.invoke(cli, ["models", "rm", "ollama/smollm2:135m"])
    assert r.exit_code != 0 and isinstance(r.exception, LlmctlError)
    assert "llmctl did not create" in r.exception.title and RECORDED_NAME in fx.models
    assert ("DELETE", "/api/delete") not in fx.requests
    r = runner.invoke(cli, ["models", "rm", "ollama/smollm2:135m", "--force"])
    assert r.exit_code == 0, r.output
    assert fx.models == {} and fx._listed()[0].expires_ns <= fx.now_ns()  # unloaded, then deleted


def test_pull_without_network_is_one_clear_error_line(fx, tmp_path):
    out = run_cli(tmp_path / "home", "pull", "ollama:llama3.2:1b", OLLAMA_HOST=fx.host, HF_HUB_OFFLINE="0")
    assert out.returncode == 1, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: Ollama could not reach its registry to pull llama3.2:1b"], out.stderr
    assert "no such host" in out.stderr and "llmctl import" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "pulling manifest" in out.stdout


def test_pull_in_offline_mode_says_it_needs_the_network(fx, tmp_path):
    out = run_cli(tmp_path / "home", "pull", "ollama:llama3.2:1b", OLLAMA_HOST=fx.host)  # HF_HUB_OFFLINE=1
    assert out.returncode == 1 and "error: pulling from Ollama's registry needs the network" in out.stderr
    assert ("POST", "/api/pull") not in fx.requests and "Traceback" not in out.stderr


def test_runtimes_lists_the_attached_ollama(runner, fx):
    data = json.loads(runner.invoke(cli, ["runtimes", "--json"]).output)
    ollama = next(e for e in data["engines"] if e["engine"] == "ollama")
    assert (ollama["version"], ollama["url"], ollama["found"]) == ("0.23.0", fx.url, True)
    assert ollama["note"] == f"attached at {fx.url}"
    assert "ollama" in runner.invoke(cli, ["runtimes"]).output


def test_runtimes_with_ollama_off(runner, monkeypatch):
    monkeypatch.setenv("LLMCTL_ENGINES__OLLAMA__MODE", "off")
    data = json.loads(runner.invoke(cli, ["runtimes", "--json"]).output)
    ollama = next(e for e in data["engines"] if e["engine"] == "ollama")
    assert ollama["url"] is None and ollama["note"].startswith("off")


def test_fit_estimates_the_gguf_blob_behind_an_ollama_model(runner, fx, tiny_gguf, digest, tmp_path):
    fx.seed_model(loaded_for_s=300)
    r = runner.invoke(cli, ["fit", "ollama/smollm2:135m", "--ctx", "512", "--json"])
    assert r.exit_code != 0 and "not on this machine" in r.exception.title  # the blob is not in OLLAMA_MODELS
    blobs = tmp_path / "ollama-models" / "blobs"  # conftest's OLLAMA_MODELS
    blobs.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, blobs / f"sha256-{digest[7:]}")
    r = runner.invoke(cli, ["fit", "ollama/smollm2:135m", "--ctx", "512", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["model"].startswith("ollama/smollm2:135m (") and data["total_bytes"] > 0
    assert data["ollama_size_bytes"] == 190948608  # Ollama's own figure: the model is loaded
    text = runner.invoke(cli, ["fit", "ollama/smollm2:135m", "--ctx", "512"]).output
    assert "Ollama now" in text

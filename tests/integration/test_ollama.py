"""Ollama as an engine through the real controller process (`llmctl serve`), attached through OLLAMA_HOST to the
Ollama fixture (recorded Ollama 0.23.0; no Ollama binary runs here): /v1/models, the openai SDK chatting streamed
and not, completions and embeddings, `llmctl ps` following a keep_alive unload, and an attached Ollama that keeps
answering after `llmctl shutdown`."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from harness import ControllerProcess, run_cli
from ollama_fixture import RECORDED_NAME, OllamaFixture

NAME = f"ollama/{RECORDED_NAME}"
ASK = [{"role": "user", "content": "Name a colour."}]  # the recorded request (06-openai)


@pytest.fixture
def fx(tiny_gguf: Path):
    digest = f"sha256:{hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()}"
    with OllamaFixture(gguf_digest=digest, time_scale=0.1) as f:
        f.seed_model()
        yield f


@pytest.fixture
def ctl(home: Path, fx):
    proc = ControllerProcess(home, OLLAMA_HOST=fx.host).start()
    proc.wait_output("ollama 0.23.0 attached at", timeout=30)
    yield proc
    proc.kill_everything()


def _ps(home: Path, fx) -> dict:
    out = run_cli(home, "ps", "--json", OLLAMA_HOST=fx.host)
    assert out.returncode == 0, out.stderr
    return next(b for b in json.loads(out.stdout) if b["model"] == NAME)


def test_models_and_chat_through_the_gateway_with_the_openai_sdk(ctl, fx, home):
    sdk = openai.OpenAI(base_url=ctl.url + "/v1", api_key="unused")
    ids = {m.id: m for m in sdk.models.list().data}
    assert set(ids) == {"tiny", NAME} and ids[NAME].owned_by == "ollama"
    assert sdk.models.retrieve(NAME).id == NAME

    reply = sdk.chat.completions.create(model=NAME, messages=ASK, max_tokens=16, temperature=0)
    assert reply.choices[0].message.content == "The most popular color among the 100,000 people surveyed"
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens > 0

    chunks = list(sdk.chat.completions.create(model=NAME, messages=ASK, max_tokens=16, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content and len(chunks) > 3
    assert chunks[-1].usage is not None and chunks[-1].choices == []

    done = sdk.completions.create(model=NAME, prompt="The capital of France is", max_tokens=16, temperature=0)
    assert done.choices[0].text.startswith("Paris")
    # the SDK asks for base64 vectors, which the recording does not cover: the recorded body, through httpx
    emb = httpx.post(ctl.url + "/v1/embeddings", json={"model": NAME, "input": "hello world"}, timeout=30).json()
    assert len(emb["data"][0]["embedding"]) == 8  # the recording kept the first 8 of 576 numbers

    # Ollama was asked by its own name; the gateway's metrics saw the requests
    assert ("POST", "/v1/chat/completions") in fx.requests and ("POST", "/v1/embeddings") in fx.requests
    with ctl.client() as c:
        recent = c.get("/llmctl/v1/requests").json()["requests"]
    assert {r["model"] for r in recent} == {NAME} and all(r["status"] == 200 for r in recent)

    b = _ps(home, fx)
    assert (b["runtime"], b["state"], b["memory_bytes"], b["command"]) == ("ollama", "ready", 190948608, "attached")
    with ctl.client() as c:  # the Monitor's Engines tab: Ollama has no /metrics, /api/ps gives the loaded size
        models = c.get("/llmctl/v1/engine-metrics").json()["models"]
    m = next(m for m in models if m["model"] == NAME)
    assert (m["engine"], m["figures"], m["note"], m["memory_bytes"]) == ("ollama", None, "engine reports no metrics",
                                                                          190948608)


def test_a_keep_alive_unload_shows_in_ps_and_llmctl_never_stops_an_attached_ollama(ctl, fx, home):
    out = run_cli(home, "start", NAME, OLLAMA_HOST=fx.host)
    assert out.returncode == 0, out.stderr
    assert f"{NAME} is ready" in out.stdout
    assert _ps(home, fx)["state"] == "ready"

    # another client unloads it (what `ollama stop` sends: keep_alive 0)
    r = httpx.post(fx.url + "/api/generate", json={"model": RECORDED_NAME, "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    time.sleep(0.1)  # Ollama lists it ~35 ms longer, expires_at in the past
    b = _ps(home, fx)
    assert b["state"] == "stopped" and b["memory_bytes"] is None

    # a request loads it again; `llmctl stop` unloads it through keep_alive 0
    sdk = openai.OpenAI(base_url=ctl.url + "/v1", api_key="unused")
    sdk.chat.completions.create(model=NAME, messages=ASK, max_tokens=16, temperature=0)
    assert _ps(home, fx)["state"] == "ready"
    out = run_cli(home, "stop", NAME, OLLAMA_HOST=fx.host)
    assert out.returncode == 0 and "stopped" in out.stdout, out.stderr
    assert fx.requests.count(("POST", "/api/generate")) >= 3

    out = run_cli(home, "shutdown", OLLAMA_HOST=fx.host)
    assert out.returncode == 0, out.stderr
    assert ctl.proc.wait(30) == 0
    assert httpx.get(fx.url + "/api/version").json() == {"version": "0.23.0"}  # still answering
    assert ("DELETE", "/api/delete") not in fx.requests


def test_an_unknown_ollama_model_is_a_404_in_openais_shape(ctl):
    r = httpx.post(ctl.url + "/v1/chat/completions", json={"model": "ollama/nope:1b", "messages": ASK})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert NAME in r.json()["error"]["message"]


def test_the_ollama_api_on_llmctls_port_reaches_an_attached_ollamas_models(ctl, fx):
    """The `ollama` client against llmctl's port, for a model of the attached Ollama: by its Ollama name too, through
    that engine's OpenAI routes as /v1 goes; its own routes and n > 1 it does not serve are refused naming it."""
    import ollama

    client = ollama.Client(host=ctl.url, timeout=60)
    assert NAME in [m.model for m in client.list().models]
    opts = {"num_predict": 16, "temperature": 0}  # the recorded request (06-openai)
    whole = client.chat(model=RECORDED_NAME, messages=ASK, options=opts)
    assert whole.message.content == "The most popular color among the 100,000 people surveyed"
    assert whole.done_reason == "length" and whole.eval_count > 0 and whole.model == RECORDED_NAME
    parts = list(client.chat(model=NAME, messages=ASK, options=opts, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content and parts[-1].done
    raw = client.generate(model=NAME, prompt="The capital of France is", raw=True, options=opts)
    assert raw.response.startswith("Paris")
    vec = client.embed(model=NAME, input="hello world").embeddings[0]
    assert len(vec) == 8  # the recording kept the first 8 of 576 numbers
    tok = httpx.post(ctl.url + "/tokenize", json={"model": NAME, "content": "x"}, timeout=30)
    assert tok.status_code == 400 and tok.json()["error"]["code"] == "unsupported_capability"
    assert "does not serve /tokenize" in tok.json()["error"]["message"]
    two = httpx.post(ctl.url + "/v1/chat/completions", json={"model": NAME, "messages": ASK, "n": 2}, timeout=30)
    assert two.status_code == 400 and "one choice per request" in two.json()["error"]["message"]

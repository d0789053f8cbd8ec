"""The Ollama API on llmctl's port, driven with the real `ollama` client against a real controller and a real
llama.cpp engine (the tiny model): list, show, ps, chat and generate streamed and not, embed, load/unload by
keep_alive, errors in Ollama's shape, and /api/pull running llmctl's own pull from the local Hub test server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import pytest
from harness import ControllerProcess
from tiny_gguf import CHAT_TEMPLATE, write_tiny_llama

from llmctl.catalog.store import ModelStore

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ollama-0.23.0"
PROFILES = """
[models.tiny-embed]
embeddings = true
pooling = "mean"
"""
OPTS = {"num_predict": 6, "temperature": 0, "seed": 7}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, tiny_gguf: Path):
    home = tmp_path_factory.mktemp("ollama-api")
    store = ModelStore(home / "data")
    store.import_file(tiny_gguf, "tiny")
    store.import_file(tiny_gguf, "tiny-embed")
    tools = "{% if tools %}<|tools|>{{ tools | tojson }}\n{% endif %}" + CHAT_TEMPLATE
    store.import_file(write_tiny_llama(home / "tools.gguf", chat_template=tools), "tiny-tools")
    (home / "extra.toml").write_text(PROFILES)
    proc = ControllerProcess(home, LLMCTL_CONFIG=str(home / "extra.toml")).start()
    yield proc
    proc.kill_everything()


@pytest.fixture(scope="module")
def client(ctl) -> ollama.Client:
    return ollama.Client(host=ctl.url, timeout=120)


def _recorded(name: str, path: str) -> dict:
    lines = (FIXTURES / name).read_text().splitlines()
    return next(r for r in map(json.loads, lines) if r["path"] == path)


def test_list_and_show_name_models_as_ollama_does(client: ollama.Client, ctl) -> None:
    listed = {m.model: m for m in client.list().models}
    assert set(listed) == {"tiny:latest", "tiny-embed:latest", "tiny-tools:latest"}
    tiny = listed["tiny:latest"]
    assert tiny.details.format == "gguf" and tiny.details.family == "llama" and tiny.size > 0
    assert len(tiny.digest) == 64
    # the same keys as Ollama 0.23.0 answered
    recorded = _recorded("02-create-from-gguf.jsonl", "/api/tags")["response_body"]["models"][0]
    raw = httpx.get(ctl.url + "/api/tags").json()["models"][0]
    assert raw.keys() == recorded.keys() and raw["details"].keys() == recorded["details"].keys()
    shown = client.show("tiny")  # no tag: :latest
    assert shown.capabilities == ["completion"] and shown.modelinfo["llama.context_length"] == 2048
    assert shown.template.startswith("{% for m in messages %}")  # the GGUF's own chat template
    assert client.show("tiny-embed:latest").capabilities == ["embedding"]
    assert client.show("tiny-tools").capabilities == ["completion", "tools"]  # its template renders tools
    version = httpx.get(ctl.url + "/api/version")
    assert version.json() == _recorded("01-version-and-empty.jsonl", "/api/version")["response_body"]


def test_chat_streamed_and_not_say_the_same_with_counts_and_durations(client: ollama.Client) -> None:
    whole = client.chat(model="tiny", messages=HI, options=OPTS, stream=False)
    assert whole.done and whole.done_reason == "length" and whole.message.role == "assistant"
    assert whole.eval_count == 6 and whole.prompt_eval_count > 0
    assert whole.total_duration >= whole.eval_duration > 0
    parts = list(client.chat(model="tiny:latest", messages=HI, options=OPTS, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].done_reason == "length"
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].eval_count == 6 and parts[-1].prompt_eval_count == whole.prompt_eval_count
    assert parts[-1].model == "tiny:latest"  # the name as the client gave it


def test_chat_stream_lines_have_ollamas_keys(ctl) -> None:
    recorded = _recorded("05-chat-stream.jsonl", "/api/chat")
    with httpx.stream("POST", ctl.url + "/api/chat", json={"model": "tiny", "messages": HI, "options": OPTS},
                      timeout=60) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    want = [json.loads(line) for line in recorded["response_body"]]
    assert lines[0].keys() == want[0].keys()
    assert lines[-1].keys() == want[-1].keys()  # done, done_reason, total/load/prompt_eval/eval durations, counts


def test_generate_raw_and_templated(client: ollama.Client) -> None:
    opts = {**OPTS, "num_predict": 5}  # 6 ends inside a UTF-8 character, which the engine holds back in a stream
    raw = client.generate(model="tiny", prompt="Once upon", raw=True, options=opts, stream=False)
    assert raw.done and raw.eval_count == 5 and raw.response
    streamed = list(client.generate(model="tiny", prompt="Once upon", raw=True, options=opts, stream=True))
    assert "".join(p.response for p in streamed) == raw.response and streamed[-1].done
    templated = client.generate(model="tiny", prompt="Once upon", options=OPTS)
    assert templated.response and templated.prompt_eval_count > raw.prompt_eval_count  # the template's tokens


def test_embed_and_the_older_embeddings(client: ollama.Client) -> None:
    r = client.embed(model="tiny-embed", input=["a", "b c"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 64 and r.prompt_eval_count > 0
    assert len(client.embeddings(model="tiny-embed", prompt="a").embedding) == 64
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="tiny", input="a")
    assert err.value.status_code == 400 and "embeddings" in err.value.error


def test_load_ps_and_unload_by_keep_alive(client: ollama.Client, ctl) -> None:
    loaded = client.generate(model="tiny", keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load"
    running = {m.model: m for m in client.ps().models}
    assert running["tiny:latest"].context_length == 2048 and running["tiny:latest"].expires_at is not None
    unloaded = client.generate(model="tiny", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "tiny:latest" not in {m.model for m in client.ps().models}


def test_errors_are_ollamas(client: ollama.Client, ctl) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=HI)
    assert err.value.status_code == 404 and err.value.error == "model 'no-such-model' not found"
    recorded = _recorded("03-errors.jsonl", "/api/chat")
    r = httpx.post(ctl.url + "/api/chat", json=recorded["request_body"])
    assert (r.status_code, r.json()) == (recorded["status"], recorded["response_body"])
    bad = httpx.post(ctl.url + "/api/chat", json={"model": "tiny", "messages": HI, "format": 3})
    assert bad.status_code == 400 and "format" in bad.json()["error"]


def test_requests_are_recorded_under_the_ollama_route(ctl, client: ollama.Client) -> None:
    client.chat(model="tiny", messages=HI, options=OPTS, stream=False)
    recs = httpx.get(ctl.url + "/llmctl/v1/requests").json()["requests"]
    last = [r for r in recs if r["endpoint"] == "/api/chat"][-1]
    assert last["model"] == "tiny" and last["status"] == 200 and last["completion_tokens"] == 6


def test_pull_runs_llmctls_pull_with_ollamas_progress(controller, hub, tmp_path: Path) -> None:
    data = write_tiny_llama(tmp_path / "p.gguf").read_bytes()
    hub.add_file("org/pulled-GGUF", "pulled-F32.gguf", data)
    proc = controller(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
    client = ollama.Client(host=proc.url, timeout=60)
    progress = list(client.pull("hf.co/org/pulled-GGUF:F32", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    files = [p for p in progress if p.digest]
    assert files and files[-1].completed == files[-1].total == len(data)
    assert "writing manifest" in statuses
    names = [m.model for m in client.list().models]
    assert len(names) == 2 and any("pulled" in n for n in names)  # `tiny` and the new one
    assert client.pull("hf.co/org/pulled-GGUF:F32", stream=False).status == "success"  # there already
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("hf.co/org/missing-GGUF:Q4_0", stream=False)
    assert err.value.status_code == 500


def test_ollamas_own_address_is_served_only_when_asked_and_no_ollama_engine_is_on(controller) -> None:
    from llmctl.runtimes.process import free_port

    port = free_port()
    proc = controller(LLMCTL_SERVER__OLLAMA_ADDRESS="true", LLMCTL_ENGINES__OLLAMA__MODE="off",
                      OLLAMA_HOST=f"127.0.0.1:{port}")
    proc.wait_output(f"the Ollama API also at http://127.0.0.1:{port}", timeout=30)
    assert [m.model for m in ollama.Client(host=f"127.0.0.1:{port}", timeout=30).list().models] == ["tiny:latest"]
    proc.kill_everything()  # one controller per home
    other = free_port()
    engine_on = controller(LLMCTL_SERVER__OLLAMA_ADDRESS="true", OLLAMA_HOST=f"127.0.0.1:{other}")
    engine_on.wait_output(f"not serving the Ollama API on 127.0.0.1:{other}: an Ollama engine", timeout=30)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{other}/api/version")

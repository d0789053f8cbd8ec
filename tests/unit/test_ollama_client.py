"""llmctl's Ollama protocol client (runtimes/ollama.py) against the Ollama fixture (recorded Ollama 0.23.0), and
against hostile answers from an httpx MockTransport."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from ollama_fixture import RECORDED_NAME, OllamaFixture, load_transcript

from llmctl.catalog.errors import LlmctlError
from llmctl.runtimes.ollama import (
    OllamaApi,
    find_ollama,
    keep_alive_seconds,
    parse_ollama_host,
    serve_command,
    sha256_file,
    to_ollama_keep_alive,
)
from llmctl.runtimes.ollama_wire import (
    MAX_BODY,
    MAX_LINE,
    BlobUploaded,
    CreateFinished,
    CreateProgressed,
    OllamaError,
    PullFinished,
    PullProgressed,
)


@pytest.fixture
def digest(tiny_gguf: Path) -> str:
    return f"sha256:{hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()}"


@pytest.fixture
def fx(digest):
    """The fixture, with the tiny GGUF standing in for the recorded SmolLM2 file."""
    with OllamaFixture(gguf_digest=digest, time_scale=0.1) as f:
        yield f


@pytest.fixture
async def api(fx):
    async with OllamaApi(fx.url) as a:
        yield a


async def test_detects_a_running_ollama_and_its_version(api, fx):
    assert await api.is_running()
    assert await api.version() == "0.23.0"
    assert await api.list_models() == [] and await api.ps() == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OllamaApi(parse_ollama_host(f"127.0.0.1:{port}")) as nobody:
        assert not await nobody.is_running()
        with pytest.raises(OllamaError, match="Cannot reach Ollama") as err:
            await nobody.list_models()
        assert "OLLAMA_HOST" in err.value.message


async def test_import_uploads_the_blob_then_creates_and_the_model_appears(api, fx, tiny_gguf, digest):
    events = [e async for e in api.import_gguf("smollm2:135m", tiny_gguf)]
    assert events[0] == BlobUploaded(digest, tiny_gguf.stat().st_size, skipped=False)
    recorded = [json.loads(line)["status"] for line in load_transcript("02-create-from-gguf.jsonl")[3]["response_body"]]
    statuses = [e.status for e in events if isinstance(e, CreateProgressed)]
    assert statuses == [s.replace("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", digest[7:])
                        for s in recorded]
    assert events[-1] == CreateFinished("smollm2:135m")
    # the wire: HEAD (404) → POST blob → create with files only
    assert fx.requests[:3] == [("HEAD", f"/api/blobs/{digest}"), ("POST", f"/api/blobs/{digest}"),
                               ("POST", "/api/create")]

    (model,) = await api.list_models()
    assert (model.name, model.family, model.parameter_size, model.quantization, model.size) == (
        "smollm2:135m", "llama", "134.52M", "Q4_1", 98363007)
    info = await api.show("smollm2:135m")
    assert info.context_length == 8192 and info.architecture == "llama" and info.parameter_count == 134515008
    assert info.capabilities == ("completion",)
    assert info.stop == ("<|im_start|>", "<|im_end|>") and info.template.startswith("{{- range .Messages }}")
    assert info.model_digest == digest  # the GGUF blob behind the model, for fit

    again = await api.push_blob(tiny_gguf)  # HEAD 200: not sent twice
    assert again.skipped and fx.requests[-1] == ("HEAD", f"/api/blobs/{digest}")


async def test_load_shows_in_ps_and_keep_alive_zero_unloads(api, fx):
    fx.seed_model()
    await api.load(RECORDED_NAME)
    (loaded,) = await api.ps()
    now = datetime.now(UTC)
    assert (loaded.name, loaded.size, loaded.size_vram, loaded.context_length) == (RECORDED_NAME, 190948608, 0, 4096)
    assert 295 < (loaded.expires_at - now).total_seconds() <= 300 and not loaded.forever

    await api.unload(RECORDED_NAME)
    (lingering,) = await api.ps()  # still listed a few ms, expires_at = the unload (recorded)
    assert lingering.expires_at <= datetime.now(UTC)
    await asyncio.sleep(0.06)
    assert await api.ps() == []

    await api.load(RECORDED_NAME, keep_alive="5s")
    (loaded,) = await api.ps()
    assert 4 < (loaded.expires_at - datetime.now(UTC)).total_seconds() <= 5
    fx.advance(6)
    assert await api.ps() == []
    await api.load(RECORDED_NAME, keep_alive=-1)
    (loaded,) = await api.ps()
    assert loaded.forever and loaded.expires_at.year > 2300


async def test_pull_without_network_ends_in_a_clear_error(api):
    events = []
    with pytest.raises(LlmctlError) as err:
        async for e in api.pull("llama3.2:1b"):
            events.append(e)
    assert events == [PullProgressed("llama3.2:1b", "pulling manifest")]
    assert not any(isinstance(e, PullFinished) for e in events)
    assert "could not reach its registry" in err.value.title
    assert "no such host" in err.value.message and "llmctl import" in err.value.message


async def test_errors_are_mapped_with_what_to_do(api, fx, tiny_gguf):
    with pytest.raises(OllamaError) as err:
        await api.show("no-such-model")
    assert err.value.status == 404 and "no model 'no-such-model'" in err.value.title
    with pytest.raises(OllamaError, match="no model"):
        await api.load("no-such-model")
    with pytest.raises(OllamaError, match="no model"):
        await api.delete("no-such-model")
    # an unknown blob: HTTP 200 and an error as the last NDJSON line (no "success")
    with pytest.raises(OllamaError) as err:
        async for _ in api.create("bad-blob:latest", {"x.gguf": "sha256:" + "0" * 64}):
            pass
    assert "does not have the uploaded file" in err.value.title and err.value.status is None
    # bytes that do not match the digest: refused, nothing stored
    wrong = "sha256:" + hashlib.sha256(b"not the same bytes").hexdigest()
    with pytest.raises(OllamaError, match="corrupted") as err:
        await api.push_blob(tiny_gguf, wrong)
    assert err.value.status == 400 and not await api.has_blob(wrong)
    with pytest.raises(OllamaError, match="Invalid Ollama model name"):
        await api.show("../etc/passwd")


async def test_delete_removes_the_model_but_not_a_loaded_runner(api, fx):
    fx.seed_model(loaded_for_s=600)
    await api.delete(RECORDED_NAME)
    assert await api.list_models() == []
    assert [m.name for m in await api.ps()] == [RECORDED_NAME]  # Ollama does not stop the runner (recorded)
    with pytest.raises(OllamaError, match="no model"):
        await api.delete(RECORDED_NAME)


# --- hostile answers --------------------------------------------------------------------------------------------
def _api(handler) -> OllamaApi:
    return OllamaApi("http://127.0.0.1:9", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("tags", [
    {"models": [{"model": "x:1", "digest": "../../etc", "size": 1}]},
    {"models": [{"model": "x:1", "digest": "a" * 64, "size": -5}]},
    {"models": [{"model": "x:1", "digest": "a" * 64, "size": "big"}]},
    {"models": [{"model": "../x", "digest": "a" * 64, "size": 1}]},
    {"models": "nope"},
    ["not", "an", "object"],
])
async def test_malformed_answers_are_refused(tags):
    async with _api(lambda req: httpx.Response(200, json=tags)) as api:
        with pytest.raises(OllamaError, match="unexpected"):
            await api.list_models()


async def test_reads_are_bounded():
    big = b'{"models":[' + b" " * (MAX_BODY + 10) + b"]}"
    async with _api(lambda req: httpx.Response(200, content=big)) as api:
        with pytest.raises(OllamaError):
            await api.list_models()
    line = b'{"status":"' + b"x" * (MAX_LINE + 10) + b'"}\n'
    async with _api(lambda req: httpx.Response(200, content=line,
                                               headers={"content-type": "application/x-ndjson"})) as api:
        with pytest.raises(OllamaError):
            [e async for e in api.pull("x:1")]


async def test_a_pull_that_stops_without_success_is_an_error():
    lines = b'{"status":"pulling manifest"}\n{"status":"downloading","digest":"sha256:' + b"a" * 64 + \
        b'","total":10,"completed":5}\n'
    async with _api(lambda req: httpx.Response(200, content=lines,
                                               headers={"content-type": "application/x-ndjson"})) as api:
        events = []
        with pytest.raises(OllamaError, match="ended early"):
            async for e in api.pull("x:1"):
                events.append(e)
    assert events[1] == PullProgressed("x:1", "downloading", "sha256:" + "a" * 64, 5, 10)


# --- pure helpers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "url"), [
    (None, "http://127.0.0.1:11434"), ("", "http://127.0.0.1:11434"),
    ("example.com", "http://example.com:11434"), ("10.0.0.5:8080", "http://10.0.0.5:8080"),
    (":5678", "http://127.0.0.1:5678"), ("http://box", "http://box:80"), ("https://box", "https://box:443"),
    ("http://127.0.0.1:11556", "http://127.0.0.1:11556"), ("https://box:99/ollama/", "https://box:99/ollama"),
    ("0.0.0.0", "http://127.0.0.1:11434"), ("0.0.0.0:11500", "http://127.0.0.1:11500"),
    ("[::1]:11434", "http://[::1]:11434"), ('"127.0.0.1:11556"', "http://127.0.0.1:11556"),
])
def test_ollama_host_is_parsed_as_ollama_does(value, url):
    assert parse_ollama_host(value) == url


def test_a_bad_ollama_host_is_a_config_error():
    with pytest.raises(OllamaError, match="OLLAMA_HOST"):
        parse_ollama_host("ftp://box")


@pytest.mark.parametrize(("value", "seconds", "sent"), [
    ("5m", 300, "5m"), ("1h30m", 5400, "1h30m"), ("300ms", 0.3, "300ms"), (300, 300, 300), ("300", 300, 300),
    (0, 0, 0), ("0", 0, 0), ("0s", 0, "0s"), (-1, math.inf, -1), ("-1m", math.inf, -1), (None, None, -1),
])
def test_keep_alive_as_ollama_means_it(value, seconds, sent):
    if value is not None:
        assert keep_alive_seconds(value) == seconds
    assert to_ollama_keep_alive(value) == sent


@pytest.mark.parametrize("value", ["soon", "5 minutes", True, "m5", ""])
def test_keep_alive_nonsense_is_refused(value):
    with pytest.raises(OllamaError, match="keep_alive"):
        keep_alive_seconds(value)


def test_serve_command_golden(tmp_path):
    user_env = {"PATH": "/usr/bin", "HOME": "/home/ann", "OLLAMA_HOST": "0.0.0.0:11434",
                "OLLAMA_MODELS": "/home/ann/.ollama/models", "OLLAMA_ORIGINS": "*", "LANG": "C.UTF-8"}
    argv, env = serve_command("/usr/local/bin/ollama", 41234, tmp_path / "store", user_env,
                              keep_alive="10m", num_parallel=2)
    assert argv == ["/usr/local/bin/ollama", "serve"]
    assert env == {"PATH": "/usr/bin", "HOME": "/home/ann", "LANG": "C.UTF-8",
                   "OLLAMA_HOST": "127.0.0.1:41234", "OLLAMA_MODELS": str(tmp_path / "store"),
                   "OLLAMA_KEEP_ALIVE": "10m", "OLLAMA_NUM_PARALLEL": "2"}
    assert user_env["OLLAMA_HOST"] == "0.0.0.0:11434"  # the caller's mapping is not changed


def test_find_ollama_on_path():
    assert find_ollama(lambda name: f"/opt/bin/{name}") == "/opt/bin/ollama"
    assert find_ollama(lambda name: None) is None


def test_sha256_file_streams(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"ab" * 1_000_000)
    seen = []
    assert sha256_file(f, chunk=300_000, progress=lambda d, t: seen.append(d)) == \
        "sha256:" + hashlib.sha256(b"ab" * 1_000_000).hexdigest()
    assert seen[-1] == 2_000_000 and len(seen) == 7

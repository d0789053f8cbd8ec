"""`llmctl bench`'s statistics against hand-computed values, vLLM's key names, goodput, saved runs and comparison."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import pytest

from llmctl.app.bench.results import (
    BenchError,
    RequestSample,
    compare_runs,
    find_run,
    list_runs,
    llama_bench_entry,
    new_run,
    parse_goodput,
    percentile,
    sample_std,
    save_run,
    std,
    summarize,
)
from llmctl.app.bench.runner import LoadSpec, Runner, Target, is_token_chunk
from llmctl.app.cli.bench import _spread_goodput
from llmctl.app.cli.bench_display import LEVEL_COLS, fit_columns

VLLM_KEYS = {"completed", "failed", "request_throughput", "output_throughput", "total_token_throughput",
             "request_goodput"} | {f"{s}_{m}_ms" for s in ("mean", "median", "std", "p50", "p90", "p95", "p99")
                                   for m in ("ttft", "tpot", "itl", "e2el")}


def test_percentile_interpolates_linearly_like_numpy() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    # rank (n-1)p/100: p50 -> 1.5 -> 2.5; p90 -> 2.7 -> 3 + 0.7; p99 -> 2.97 -> 3.97
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile(xs, 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_std_is_population_and_llama_bench_stddev_is_sample() -> None:
    assert std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(1.25))  # np.std
    assert sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3))  # n - 1
    assert sample_std([5.0]) == 0.0
    entry = llama_bench_entry("pp512", 512, 0, [100.0, 110.0, 120.0])
    assert entry["avg_ts"] == pytest.approx(110.0) and entry["stddev_ts"] == pytest.approx(10.0)


def _samples() -> list[RequestSample]:
    return [
        # ttft 100 ms, 11 tokens over 1.1 s -> tpot (1.1 - 0.1) / 10 = 100 ms; gaps 100 ms x 10
        RequestSample(ok=True, ttft=0.1, e2el=1.1, itl=[0.1] * 10, output_tokens=11, prompt_tokens=10),
        # ttft 300 ms, 21 tokens over 2.3 s -> tpot 2.0 / 20 = 100 ms; gaps 50 and 150 ms alternating
        RequestSample(ok=True, ttft=0.3, e2el=2.3, itl=[0.05, 0.15] * 10, output_tokens=21, prompt_tokens=10),
        RequestSample(ok=False, error="HTTP 500: boom"),
    ]


def test_summarize_by_hand() -> None:
    r = summarize(_samples(), duration=2.0, slos={"ttft": 200})
    assert r.keys() >= VLLM_KEYS
    assert (r["completed"], r["failed"]) == (2, 1)
    assert r["total_input_tokens"] == 20 and r["total_output_tokens"] == 32
    assert r["request_throughput"] == pytest.approx(1.0)  # 2 completed / 2 s
    assert r["output_throughput"] == pytest.approx(16.0)  # 32 / 2
    assert r["total_token_throughput"] == pytest.approx(26.0)  # (20 + 32) / 2
    assert r["request_goodput"] == pytest.approx(0.5)  # only the 100 ms TTFT meets ttft:200
    assert r["mean_ttft_ms"] == pytest.approx(200.0) and r["median_ttft_ms"] == pytest.approx(200.0)
    assert r["std_ttft_ms"] == pytest.approx(100.0)
    assert r["p90_ttft_ms"] == pytest.approx(280.0)  # 100 + 0.9 x 200
    assert r["mean_tpot_ms"] == pytest.approx(100.0) and r["std_tpot_ms"] == pytest.approx(0.0, abs=1e-9)
    # ITL pools every gap: 10 x 100, 10 x 50, 10 x 150 -> mean 100, median 100, population std sqrt(5000/3)
    assert r["mean_itl_ms"] == pytest.approx(100.0) and r["median_itl_ms"] == pytest.approx(100.0)
    assert r["std_itl_ms"] == pytest.approx(math.sqrt(2 * 10 * 50**2 / 30))
    assert r["p99_itl_ms"] == pytest.approx(150.0)
    assert r["mean_e2el_ms"] == pytest.approx(1700.0) and r["p50_e2el_ms"] == pytest.approx(1700.0)
    assert r["output_throughput_per_stream"] == pytest.approx(10.0)  # 1 / 100 ms
    assert r["errors"] == {"HTTP 500: boom": 1}


def test_goodput_needs_every_slo_and_is_null_without_slos() -> None:
    assert summarize(_samples(), 2.0)["request_goodput"] is None
    both = summarize(_samples(), 2.0, {"ttft": 500, "tpot": 99})  # tpot 100 ms misses 99 for both
    assert both["request_goodput"] == 0.0
    assert summarize(_samples(), 2.0, {"e2el": 2300})["request_goodput"] == pytest.approx(1.0)


def test_all_failed_gives_nulls_not_zero_latencies() -> None:
    r = summarize([RequestSample(ok=False, error="x")] * 3, 1.0)
    assert r["completed"] == 0 and r["failed"] == 3 and r["mean_ttft_ms"] is None and r["p99_e2el_ms"] is None


def test_parse_goodput_vllm_syntax() -> None:
    assert parse_goodput(["ttft:500", "tpot:50", "e2el:10000"]) == {"ttft": 500, "tpot": 50, "e2el": 10000}
    for bad in (["ttft"], ["itl:5"], ["ttft:abc"], ["ttft:-1"]):
        with pytest.raises(BenchError):
            parse_goodput(bad)
    # vLLM writes several values after one flag; click takes one per flag
    assert _spread_goodput(["m", "--goodput", "ttft:500", "tpot:50", "--json"]) == \
        ["m", "--goodput", "ttft:500", "--goodput", "tpot:50", "--json"]


def _run(tmp: Path, tok_s: float, ttft: float, concurrency: int = 4) -> dict:
    run = new_run({"model": "m", "engine": "xllamacpp", "quant": "Q4_1"}, {"max_tokens": 64}, {"cpu": "x"})
    run["levels"] = [{"profile": "concurrent", "max_concurrency": concurrency, "output_throughput": tok_s,
                      "median_ttft_ms": ttft, "failed": 0}]
    return json.loads(save_run(tmp, run).read_text())


def test_save_history_find_and_compare(tmp_path: Path) -> None:
    a = _run(tmp_path, 100.0, 200.0)
    b = _run(tmp_path, 120.0, 300.0)
    (tmp_path / "junk.json").write_text("{}")
    runs = list_runs(tmp_path)
    assert [r["id"] for r in runs] == [a["id"], b["id"]] and a["id"] != b["id"]
    assert find_run(tmp_path, "1")["id"] == a["id"] and find_run(tmp_path, "-1")["id"] == b["id"]
    assert find_run(tmp_path, b["id"])["id"] == b["id"]
    assert find_run(tmp_path, str(tmp_path / f"{a['id']}.json"))["id"] == a["id"]
    with pytest.raises(BenchError, match="no saved benchmark"):
        find_run(tmp_path, "nope")
    deltas = {d.metric: d for d in compare_runs(a, b)}
    tput, ttft = deltas["output_throughput"], deltas["median_ttft_ms"]
    assert (tput.change, tput.percent, tput.verdict) == (20.0, 20.0, "better")
    assert (ttft.change, ttft.percent, ttft.verdict) == (100.0, 50.0, "worse")
    assert deltas["failed"].verdict == "same"


def test_level_table_fits_80_columns_most_telling_first() -> None:
    level = summarize(_samples(), 2.0)
    level.update(profile="concurrent", max_concurrency=8)
    shown, dropped = fit_columns(LEVEL_COLS, [level], 80)
    headers = [c.header for c in shown]
    assert headers[:4] == ["load", "ok/fail", "out tok/s", "tok/s/stream"] and "TTFT p50" in headers
    width = sum(max(len(c.header), len(str(c.cell(level)))) for c in shown) + 2 * (len(shown) - 1)
    assert width <= 80 and dropped > 0
    wide, none_dropped = fit_columns(LEVEL_COLS, [level], 400)
    assert none_dropped == 0 and len(wide) == len(LEVEL_COLS)


def _chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    event: dict = {"choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        event["usage"] = usage
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _stream(events: list[tuple[float, bytes]]) -> Runner:
    """A Runner whose server sends each event after its delay (seconds)."""

    async def body():
        for delay, event in events:
            await asyncio.sleep(delay)
            yield event
        yield b"data: [DONE]\n\n"

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return Runner(Target("http://engine/v1", "m"), LoadSpec(), transport=httpx.MockTransport(handler))


async def test_empty_content_chunks_are_tokens_as_vllm_times_them() -> None:
    """vLLM sends one chunk per token, content "" for a token that ends inside a UTF-8 character; vllm bench serve
    times every one. llmctl used to time only printable pieces: TTFT waited for the first, ITL merged the gaps."""
    step = 0.05
    usage = {"prompt_tokens": 7, "completion_tokens": 4}
    events = [(0.0, _chunk({"role": "assistant", "content": ""})),  # vLLM's preamble, right before token 1
              (step, _chunk({"content": ""})), (step, _chunk({"content": ""})), (step, _chunk({"content": "é"})),
              (step, _chunk({"content": ""}, finish="length")), (0.0, _chunk(None, usage=usage))]
    async with _stream(events) as runner:
        s = await runner.stream_one("hi", 4)
    assert s.ok and s.output_tokens == 4 and s.tokens_from == "usage"
    assert step * 0.9 <= s.ttft < 2 * step  # the first token, not the first printable one (3 steps in)
    assert len(s.itl) == 3 and all(gap >= step * 0.9 for gap in s.itl)
    only_partial = [(0.0, _chunk({"role": "assistant", "content": ""})), (step, _chunk({"content": ""})),
                    (step, _chunk({"content": ""}, finish="length"))]
    async with _stream(only_partial) as runner:
        s = await runner.stream_one("hi", 2)
    assert s.ok and s.output_tokens == 2 and s.tokens_from == "deltas"  # was "the stream ended without a token"


def test_which_chunks_are_tokens() -> None:
    assert is_token_chunk({"delta": {"content": ""}})  # vLLM: a token held back mid-character
    assert is_token_chunk({"delta": {"reasoning_content": "hm"}}) and is_token_chunk({"delta": {"reasoning": ""}})
    assert is_token_chunk({"delta": {"role": "assistant", "content": "The"}})  # Ollama: role on every chunk
    assert not is_token_chunk({"delta": {"role": "assistant", "content": ""}})  # vLLM's preamble, Ollama's finish
    assert not is_token_chunk({"delta": {"role": "assistant", "content": None}})  # llama.cpp's preamble
    assert not is_token_chunk({"delta": {}, "finish_reason": "length"})  # llama.cpp's finish
    assert not is_token_chunk({"text": "x"})  # no delta: not a chat chunk

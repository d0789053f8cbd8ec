"""`llmctl bench` as a user runs it: a subprocess against the real controller serving a real (tiny) model on the
default engine; then --save, history and compare."""

from __future__ import annotations

import json

from harness import run_cli

VLLM_KEYS = {"completed", "failed", "request_throughput", "output_throughput", "total_token_throughput",
             "request_goodput"} | {f"{s}_{m}_ms" for s in ("mean", "median", "std", "p50", "p90", "p95", "p99")
                                   for m in ("ttft", "tpot", "itl", "e2el")}


def test_bench_against_the_real_controller_then_history_and_compare(controller, home) -> None:
    controller()
    args = ("bench", "tiny", "--concurrency", "1,2", "--requests", "4", "--max-tokens", "8", "--prompt-tokens", "48")
    out = run_cli(home, *args, "--json", "--save", "--goodput", "ttft:60000", "tpot:60000", timeout=240)
    assert out.returncode == 0, out.stderr + out.stdout
    run = json.loads(out.stdout)
    assert run["target"]["via"] == "llmctl" and run["target"]["model"] == "tiny"
    assert run["target"]["engine"] and run["target"]["parallel"] >= 1
    assert run["machine"]["cpu"] and run["machine"]["ram_total"] > 0 and run["machine"]["role"] == "server"
    assert run["settings"]["prompt_calibration"].startswith("probe")
    assert [lv["max_concurrency"] for lv in run["levels"]] == [1, 2]
    for level in run["levels"]:
        assert level.keys() >= VLLM_KEYS
        assert level["completed"] == 4 and level["failed"] == 0
        assert level["mean_ttft_ms"] > 0 and level["p99_e2el_ms"] >= level["p50_e2el_ms"] > 0
        assert level["output_throughput"] > 0 and level["request_throughput"] > 0
        assert level["total_output_tokens"] == 4 * 8 and level["output_tokens_from"] == "usage"  # ignore_eos
        assert abs(level["total_input_tokens"] / 4 - 48) <= 8  # the server's count of calibrated prompts
        assert level["request_goodput"] == level["request_throughput"]

    out = run_cli(home, *args, "--save", timeout=240, COLUMNS="80")  # the table, as a person sees it
    assert out.returncode == 0, out.stderr + out.stdout
    lines = out.stdout.splitlines()
    assert any(line.startswith("c=2") for line in lines) and "out tok/s" in out.stdout
    assert max(map(len, lines)) <= 80

    out = run_cli(home, "bench", "history", "--json")
    saved = json.loads(out.stdout)
    assert len(saved) == 2 and saved[0]["id"] == run["id"]
    assert "tiny" in run_cli(home, "bench", "history").stdout

    out = run_cli(home, "bench", "compare", "1", "2", "--json")
    assert out.returncode == 0, out.stderr
    diff = json.loads(out.stdout)
    assert (diff["a"], diff["b"]) == (saved[0]["id"], saved[1]["id"])
    tput = [d for d in diff["deltas"] if d["metric"] == "output_throughput"]
    assert [d["level"] for d in tput] == ["c=1", "c=2"] and all(d["verdict"] in ("better", "worse", "same")
                                                                for d in tput)
    assert {c["key"] for c in diff["changed"]} == {"settings.goodput"}
    text = run_cli(home, "bench", "compare", COLUMNS="80").stdout
    assert "output tok/s" in text and "settings.goodput" in text

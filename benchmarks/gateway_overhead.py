"""What the gateway costs: the same requests sent straight to the gateway's own backend and through llmctl, alternating.

    .venv/bin/python benchmarks/gateway_overhead.py [--engine xllamacpp|llama-server] [--requests 300] [--streams 30]
                                                   [--baseline-tree DIR]

Starts a real controller (`llmctl serve`) on a tiny random-weight GGUF and lets it start its backend. The direct
side talks to that same backend process, with its per-launch key read where the engine reads it (the backend
process's environment, ``LLAMA_API_KEY``: the key the gateway sends as ``Authorization: Bearer``), so the
difference is the gateway's alone (no twin engine, whose own noise would count as the gateway's). Direct and
gateway requests alternate (the order flips every pair, so drift hits both sides). Prints:
- added latency of a non-streamed 1-token completion: p50 and p99 of (through - direct), per pair;
- streamed tokens/s through / direct (ratio of medians) and TTFT through - direct (median of pair differences).

``--baseline-tree DIR``: a second controller runs from another source tree (a checkout of llmctl, e.g.
``git archive main | tar -x -C DIR/llmctl``; DIR goes first on its PYTHONPATH), on a backend of its own, and its
pairs are interleaved with this tree's in the same run, so "before" and "after" share the machine's load.
Targets (issue 22): <= 0.5 ms p50, <= 2 ms p99, ratio >= 0.98, TTFT <= +1 ms. Numbers, not a pass/fail.
The tiny model streams thousands of tokens/s, a stress case where the per-token relay cost shows (and on 2 cores
the client, the gateway and the backend compete for CPU); `--model` with a real GGUF gives the everyday figure.
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_gguf import write_tiny_llama  # noqa: E402

from llmctl.catalog.store import ModelStore  # noqa: E402
from llmctl.runtimes.llama_cpp import API_KEY_ENV  # noqa: E402
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


def streamed(client: httpx.Client, url: str, tokens: int) -> tuple[float, float, int, float]:
    """(ttft seconds, tokens/s after the first, tokens, tokens/s from sending the request to the stream's end)"""
    try:
        return _streamed(client, url, tokens)
    except httpx.RemoteProtocolError:
        return _streamed(client, url, tokens)


def _streamed(client: httpx.Client, url: str, tokens: int) -> tuple[float, float, int, float]:
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
    end = time.perf_counter()
    assert first is not None and last is not None and n > 1
    return first - t0, (n - 1) / (last - first), n, n / (end - t0)


@dataclass
class Side:
    """One controller and its backend: the gateway's URL, the backend's, and the figures gathered."""

    label: str
    proc: subprocess.Popen
    gateway: str
    direct: str = ""
    key: str = ""
    runtime: str = ""
    diffs: list[float] = field(default_factory=list)
    d_lat: list[float] = field(default_factory=list)
    g_lat: list[float] = field(default_factory=list)
    ttft_diffs: list[float] = field(default_factory=list)
    d_rates: list[float] = field(default_factory=list)
    g_rates: list[float] = field(default_factory=list)
    whole: dict[str, list[float]] = field(default_factory=dict)  # URL -> tokens/s over each whole stream


def start(label: str, home: Path, model: Path, args, pythonpath: str | None = None) -> Side:
    ModelStore(home / "data").import_file(model, "bench")
    port = free_port()
    env = {**os.environ, "LLMCTL_HOME": str(home), "LLMCTL_BACKENDS__THREADS": "1",
           "LLMCTL_BACKENDS__PARALLEL": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "llmctl", "serve", "--port", str(port), "--engine", args.engine, "bench"]
    if args.engine == "llama-server":
        argv += ["--llama-server", args.llama_server]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Side(label, proc, f"http://127.0.0.1:{port}")


def attach(side: Side, client: httpx.Client) -> None:
    """Wait for the side's backend, then find its address and read its key where the engine reads it."""
    for _ in range(600):
        try:
            if client.post(side.gateway + "/llmctl/v1/backends/bench/load", json={}).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    backend = client.get(side.gateway + "/llmctl/v1/backends").json()["backends"][0]
    side.runtime = f"{backend['runtime']} (pid {backend['pid']})"
    side.direct = f"http://127.0.0.1:{backend['port']}"
    side.key = psutil.Process(backend["pid"]).environ()[API_KEY_ENV]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    native = os.environ.get("LLMCTL_TEST_LLAMA_SERVER") or shutil.which("llama-server")
    ap.add_argument("--engine", default="xllamacpp", choices=("xllamacpp", "llama-server"))
    ap.add_argument("--llama-server", default=native, help="native llama-server, for --engine llama-server")
    ap.add_argument("--model", type=Path, help="a GGUF to serve (default: a tiny random-weight llama)")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--streams", type=int, default=30)
    ap.add_argument("--stream-tokens", type=int, default=200)
    ap.add_argument("--baseline-tree", type=Path, help="also measure a controller run from this source tree")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or write_tiny_llama(Path(tmp) / "bench.gguf", n_layers=2, n_embd=64)
        sides = [start("this tree", Path(tmp) / "home", model, args)]
        if args.baseline_tree:
            sides.append(start(f"baseline {args.baseline_tree}", Path(tmp) / "home-base", model, args,
                               str(args.baseline_tree.resolve())))
        try:
            with httpx.Client(timeout=60) as client:
                for side in sides:
                    attach(side, client)
                    print(f"{side.label}: backend {side.runtime} at {side.direct}, gateway {side.gateway}")
                clients = {s.label: httpx.Client(timeout=60, headers={"Authorization": f"Bearer {s.key}"})
                           for s in sides}
                for side in sides:
                    for _ in range(20):  # warm both paths
                        unary(clients[side.label], side.direct)
                        unary(client, side.gateway)
                for i in range(args.requests):
                    for side in (sides if i % 2 else sides[::-1]):
                        direct_client = clients[side.label]
                        if i % 2:
                            g, d = unary(client, side.gateway), unary(direct_client, side.direct)
                        else:
                            d, g = unary(direct_client, side.direct), unary(client, side.gateway)
                        side.diffs.append(g - d)
                        side.d_lat.append(d)
                        side.g_lat.append(g)
                for i in range(args.streams):
                    for side in (sides if i % 2 else sides[::-1]):
                        pair = [(clients[side.label], side.direct, side.d_rates), (client, side.gateway, side.g_rates)]
                        if i % 2:
                            pair.reverse()
                        ttfts = {}
                        for http, url, rates in pair:
                            ttft, rate, _n, overall = streamed(http, url, args.stream_tokens)
                            rates.append(rate)
                            side.whole.setdefault(url, []).append(overall)
                            ttfts[url] = ttft
                        side.ttft_diffs.append(ttfts[side.gateway] - ttfts[side.direct])
                for c in clients.values():
                    c.close()
        finally:
            for side in sides:
                side.proc.terminate()
                side.proc.wait(30)

    for side in sides:
        report(side, args)


def report(side: Side, args) -> None:
    def p50(v: list[float]) -> str:
        return f"{statistics.median(v) * 1000:7.3f} ms"

    def p99(v: list[float]) -> str:
        return f"{percentile(v, 99) * 1000:7.3f} ms"

    print(f"\n== {side.label}")
    print(f"non-streamed 1-token completion, {args.requests} alternating pairs")
    print(f"  direct  p50 {p50(side.d_lat)}   p99 {p99(side.d_lat)}")
    print(f"  gateway p50 {p50(side.g_lat)}   p99 {p99(side.g_lat)}")
    print(f"  added   p50 {p50(side.diffs)}   p99 {p99(side.diffs)}   (target <= 0.5 / <= 2 ms)")
    print(f"streamed chat, {args.stream_tokens} tokens, {args.streams} alternating pairs")
    d, g = statistics.median(side.d_rates), statistics.median(side.g_rates)
    print(f"  tokens/s direct {d:8.1f}   gateway {g:8.1f}   ratio {g / d:.3f}   (target >= 0.98)")
    wd, wg = statistics.median(side.whole[side.direct]), statistics.median(side.whole[side.gateway])
    print(f"  whole stream (request to end) tokens/s direct {wd:8.1f}   gateway {wg:8.1f}   ratio {wg / wd:.3f}")
    print(f"  TTFT added p50 {statistics.median(side.ttft_diffs) * 1000:+.3f} ms   (target <= +1 ms)")

if __name__ == "__main__":
    main()

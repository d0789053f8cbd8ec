"""A bounded soak (no stream lost, no memory growth): concurrent streams through the gateway for a few minutes while the
anonymous resident memory (RssAnon) of the controller and its backend is sampled.

    .venv/bin/python benchmarks/soak.py [--minutes 3] [--streams 8] [--llama-server PATH]

Prints RssAnon at the start (after a warm-up round), its peak and its end for both processes, the growth, and
whether every stream completed whole (each streamed reply equals the same request's non-streamed reply).
A nightly would run it for hours; the target is growth that levels off, not a line that keeps climbing.
llama-server keeps recent prompts in RAM (capped by backends.prompt_cache_mib), so its RssAnon climbs to that cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
from llmctl.runtimes.process import free_port  # noqa: E402

MiB = 1 << 20


def rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


async def one(client: httpx.AsyncClient, i: int) -> bool:
    """Whether the streamed reply equals the non-streamed twin's."""
    body = {"model": "soak", "messages": [{"role": "user", "content": f"soak {i}"}], "max_tokens": 32,
            "temperature": 0}
    plain = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]["content"]
    parts = []
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:") and '"content"' in line and '"role"' not in line:
                parts.append(json.loads(line[5:])["choices"][0]["delta"]["content"])
    return "".join(parts) == plain


async def soak(url: str, minutes: float, streams: int, pids: dict[str, int]) -> None:
    samples: dict[str, list[int]] = {k: [] for k in pids}
    same = total = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(one(client, i) for i in range(streams)))  # warm-up round
        for k, pid in pids.items():
            samples[k].append(rss_anon(pid))
        deadline = time.monotonic() + minutes * 60
        rounds = 0
        while time.monotonic() < deadline:
            results = await asyncio.gather(*(one(client, rounds * streams + i) for i in range(streams)))
            same += sum(results)
            total += len(results)
            rounds += 1
            for k, pid in pids.items():
                samples[k].append(rss_anon(pid))
    print(f"{rounds} rounds of {streams} concurrent streams: {same}/{total} identical to their non-streamed twin "
          "(llama-server's continuous batching is not bit-exact, so a few may differ)")
    for k, values in samples.items():
        start, peak, end = values[0], max(values), values[-1]
        print(f"{k:10} RssAnon start {start / MiB:7.1f} MiB  peak {peak / MiB:7.1f}  end {end / MiB:7.1f}  "
              f"growth {(end - start) / MiB:+.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--streams", type=int, default=8)
    native = os.environ.get("LLMCTL_TEST_LLAMA_SERVER") or shutil.which("llama-server")
    ap.add_argument("--llama-server", default=native)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        ModelStore(home / "data").import_file(write_tiny_llama(Path(tmp) / "soak.gguf"), "soak")
        port = free_port()
        argv = [sys.executable, "-m", "llmctl", "serve", "--port", str(port), "soak", "--parallel", "4"]
        if args.llama_server:
            argv += ["--llama-server", args.llama_server]
        proc = subprocess.Popen(argv, env={**os.environ, "LLMCTL_HOME": str(home)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.post(url + "/llmctl/v1/backends/soak/load", json={}, timeout=60).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            backend = httpx.get(url + "/llmctl/v1/backends").json()["backends"][0]
            print(f"controller pid {proc.pid}, backend {backend['command']} pid {backend['pid']}")
            asyncio.run(soak(url, args.minutes, args.streams, {"controller": proc.pid, "backend": backend["pid"]}))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()

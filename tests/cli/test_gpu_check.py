"""scripts/gpu-check.sh (benchmarks/gpu_check.py): its --dry-run runs llmctl as a user does against the CPU engine
(xllamacpp) and writes the report the GPU run writes; without a GPU the plain command refuses at once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
MiB = 1 << 20


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL_")}
    env["PYTHON"] = sys.executable  # the interpreter running the tests, whose bin/ holds llmctl
    env["HOME"] = str(tmp_path)  # nothing of the user's is read or written
    return env


@pytest.mark.integration
def test_dry_run_writes_the_report_from_real_engine_log_lines(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["version"] == 1 and report["mode"] == "dry-run" and report["errors"] == []
    assert report["complete"] is True
    assert report["gpu"] is None and report["build"] is None and report["offload"] is None
    assert report["hw"]["cpu"]["logical_cores"] >= 1 and report["doctor"]["rc"] == 0
    ran = [" ".join(c["argv"][1:3]) for c in report["llmctl_commands"]]
    for command in ("hw --json", "fit dry-4l-512-q8_0-c8192x1", "start dry-4l-512-q8_0-c8192x1", "bench run"):
        assert any(r.startswith(command) for r in ran), (command, ran)

    assert [c["name"] for c in report["cases"]] == ["dry-4l-512-q8_0-c8192x1", "dry-2l-256-f16-c1024x8"]
    for case in report["cases"]:
        lines = case["engine_log"]["lines"]
        # the measured side is llama.cpp's own lines, summed here again from the text
        assert any("CPU_Mapped model buffer size" in line for line in lines), lines
        logged = sum(round(float(m.group(1)) * MiB) for line in lines
                     for m in [re.search(r"buffer size = +([\d.]+) MiB", line)] if m)
        k = case["comparison"]
        assert k["buffers"]["measured"] == logged > 0
        assert k["buffers"]["estimate"] == sum(case["fit"][f] for f in (
            "weights_bytes", "repack_bytes", "kv_cache_bytes", "compute_bytes", "output_bytes"))
        assert k["buffers"]["error"] == pytest.approx((k["buffers"]["estimate"] - logged) / logged, abs=1e-4)
        # weights and KV are exact arithmetic: a wrong parse or a wrong file would show here
        assert abs(k["terms"]["weights"]["error"]) < 0.01 and abs(k["terms"]["kv"]["error"]) < 0.01
        assert case["fit"]["gpu_layers"] == 0 and "gpu_buffers" not in k and "nvml" not in k
        assert case["ps"] and case["ps"][0]["engine"]

    (bench,) = report["bench"]
    assert bench["case"] == "dry-2l-256-f16-c1024x8"
    assert [lv["concurrency"] for lv in bench["levels"]] == [1, 8]
    assert all(lv["completed"] == 8 and lv["failed"] == 0 and lv["output_throughput"] > 0 for lv in bench["levels"])
    assert "dry-4l-512-q8_0-c8192x1" in proc.stdout and "concurrency 8" in proc.stdout  # the table


@pytest.mark.skipif(bool(shutil.which("nvidia-smi")), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_and_fails_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "report")], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert "no NVIDIA GPU on this machine" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "report").exists()
    assert time.monotonic() - started < 20

"""`llmctl hw`, `fit`, `recommend` and `doctor` as a user runs them (offline, no GPU here)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from llmctl.app.cli.root import cli

GiB = 1 << 30


def _json(*args: str) -> dict:
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_hw_json(llmctl_home: Path) -> None:
    import psutil

    data = _json("hw")
    assert data["cpu"]["logical_cores"] == psutil.cpu_count(logical=True)
    assert 1 <= data["cpu"]["physical_cores"] <= data["cpu"]["logical_cores"]
    assert data["ram_total"] == psutil.virtual_memory().total
    assert 0 < data["ram_available"] <= data["ram_total"]
    assert Path(data["disk_path"]).is_relative_to(llmctl_home) or llmctl_home.is_relative_to(data["disk_path"])
    assert data["disk_free"] > 0
    # the GPU report agrees with itself: GPUs listed exactly when the probe succeeded, and a reason otherwise
    if data["gpu_status"] == "ok":
        assert data["gpus"] and all(g["vram_total"] >= g["vram_free"] >= 0 for g in data["gpus"])
    else:
        assert data["gpus"] == [] and data["gpu_detail"]
        assert data["gpu_status"] in ("no-library", "no-driver", "no-device", "error")


def test_fit_fields_for_a_file(tiny_gguf: Path) -> None:
    data = _json("fit", str(tiny_gguf), "--ctx", "2048", "--parallel", "1")
    for key in ("weights_bytes", "kv_cache_bytes", "compute_bytes", "overhead_bytes", "total_bytes", "gpu_bytes",
                "cpu_bytes", "gpu_layers", "fits"):
        assert key in data
    assert data["kv_cache_bytes"] == 2 * 2048 * 32 * 2 * 2  # 2 layers x 2048 cells x (2 KV heads x 16) x K+V x f16
    assert data["fits"] == "yes" and data["gpu_layers"] == 0
    # by default fit plans serve's launch: backends.parallel (4) slots sharing one pool, counted once
    assert _json("fit", str(tiny_gguf), "--ctx", "2048")["kv_cache_bytes"] == data["kv_cache_bytes"]


def test_fit_plans_for_a_3090() -> None:
    data = _json("fit", "qwen2.5-14b-instruct:Q8_0", "--gpu", "RTX 3090", "--ram", "64GiB", "--ctx", "8192")
    assert data["gpu_layers"] == data["n_layers"] + 1 and data["fits"] in ("yes", "tight")
    assert 14 * GiB < data["gpu_bytes"] < 24 * GiB
    too_big = _json("fit", "llama-3.3-70b-instruct:Q8_0", "--vram", "24GiB", "--ram", "32GiB")
    assert too_big["fits"] == "no"


def test_fit_text_and_errors() -> None:
    r = CliRunner().invoke(cli, ["fit", "gemma-3-4b-it", "--vram", "8GiB", "--ram", "16GiB"])
    assert r.exit_code == 0 and "KV cache" in r.output and "fits: yes" in r.output
    bad = CliRunner().invoke(cli, ["fit", "gemma-3-4b-it", "--vram", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.output


def test_recommend_for_a_3090() -> None:
    data = _json("recommend", "--gpu", "RTX 3090", "--ram", "64GiB", "--top", "5")
    top = data["options"][0]
    assert top["fits"] in ("yes", "tight") and top["gpu_layers"] == top["n_layers"]
    assert "RTX 3090" in data["plan"]
    text = CliRunner().invoke(cli, ["recommend", "--gpu", "RTX 3090", "--ram", "64GiB", "--top", "3"]).output
    assert "best quality that fits" in text


def test_doctor_runs_and_reports() -> None:
    r = CliRunner().invoke(cli, ["doctor"])
    lines = r.output.splitlines()
    assert any(line.startswith("ok   CPU ") for line in lines) and any("model store" in line for line in lines)
    # every problem is a FIX line with what to do under it; the summary and the exit code agree with them
    fixes = [i for i, line in enumerate(lines) if line.startswith("FIX  ")]
    assert all(lines[i + 1].lstrip().startswith("-> ") for i in fixes), r.output
    if fixes:
        assert lines[-1] == f"{len(fixes)} problem(s)" and r.exit_code == 1, r.output
    else:
        assert lines[-1] == "all good" and r.exit_code == 0, r.output

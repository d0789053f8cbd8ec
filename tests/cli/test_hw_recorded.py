"""`hw`, `fit`, `recommend` and `doctor` on recorded machines (tests/fixtures/hw/, pointed at with
LLMCTL_HW_RECORDING) and on planned ones (--gpu); this machine's own no-GPU path runs for real elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmctl.app.cli.root import cli

HW = Path(__file__).parent.parent / "fixtures" / "hw"
GiB, MiB = 1 << 30, 1 << 20
MACHINES = sorted(p.name for p in HW.iterdir() if (p / "machine.json").exists())


def run(monkeypatch, machine: str | None, *args: str):
    if machine:
        monkeypatch.setenv("LLMCTL_HW_RECORDING", str(HW / machine))
    r = CliRunner().invoke(cli, list(args))
    return r


@pytest.mark.parametrize("machine", MACHINES)
def test_hw_json_for_each_recorded_machine(monkeypatch, llmctl_home: Path, machine: str) -> None:
    r = run(monkeypatch, machine, "hw", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["recorded"] and data["gpu_status"] == "ok"
    [gpu] = data["gpus"]
    expected = {"macbook-pro-m2-pro-32gb": ("Apple M2 Pro", "unified", ["Metal"], 21845),
                "macbook-pro-m3-max-64gb": ("Apple M3 Max", "unified", ["Metal"], 49152),
                "linux-radeon-rx-7900-xtx": ("Radeon RX 7900 XTX", "discrete", ["ROCm/HIP", "Vulkan"], 24560),
                "linux-intel-arc-a770-xpu-smi": ("Intel(R) Arc(TM) A770 Graphics", "discrete", ["SYCL", "Vulkan"],
                                                 15473),
                "linux-intel-arc-a770-vulkan": ("Intel(R) Arc(tm) A770 Graphics (DG2)", "discrete", ["Vulkan"],
                                                16384)}[machine]
    assert (gpu["name"], data["memory"], gpu["backends"], gpu["vram_total"] // MiB) == expected
    if data["memory"] == "unified":
        assert gpu["vram_total"] < data["ram_total"] and gpu["vram_free"] <= data["ram_available"]


def test_hw_text_on_a_mac_names_the_pool_and_how_to_raise_the_limit(monkeypatch, llmctl_home: Path) -> None:
    out = run(monkeypatch, "macbook-pro-m2-pro-32gb", "hw").output
    assert "8P + 4E" in out and "unified memory" in out and "GPU limit 21.3 GiB" in out
    assert "sudo sysctl iogpu.wired_limit_mb=" in out and "never changes it" in out


def test_fit_on_a_planned_m2_pro_32gb(monkeypatch, llmctl_home: Path) -> None:
    r = run(monkeypatch, None, "fit", "llama-3.1-8b-instruct:Q4_K_M", "--gpu", "M2 Pro 32GB")
    assert r.exit_code == 0, r.output
    assert "unified 32 GiB, GPU limit 21.3 GiB" in r.output
    assert "33 of 33 layers" in r.output and "one unified pool" in r.output and "fits: yes" in r.output
    data = json.loads(run(monkeypatch, None, "fit", "llama-3.1-8b-instruct:Q4_K_M", "--gpu", "M2 Pro 32GB",
                          "--json").output)
    assert data["memory"] == "unified" and data["total_bytes"] == data["gpu_bytes"] + data["cpu_bytes"]
    assert "unified 32 GiB, GPU limit 21.3 GiB" in data["plan"]


def test_fit_on_the_recorded_mac_uses_its_pool(monkeypatch, llmctl_home: Path) -> None:
    data = json.loads(run(monkeypatch, "macbook-pro-m2-pro-32gb", "fit", "qwen2.5-32b-instruct:Q4_K_M",
                          "--ctx", "16384", "--json").output)
    assert data["memory"] == "unified" and "unified 32 GiB, GPU limit 21.3 GiB" in data["plan"]
    assert data["fits"] == "no"  # 19 GiB of weights + KV: over 21.4 GiB free of the pool, whatever the split
    # left to auto, the context is cut to what the pool holds, never below llama.cpp's --fit floor of 4096
    auto = json.loads(run(monkeypatch, "macbook-pro-m2-pro-32gb", "fit", "qwen2.5-32b-instruct:Q4_K_M",
                          "--json").output)
    assert auto["context"]["why"] == "memory" and auto["context"]["ctx"] == 4096 and auto["fits"] != "yes"


def test_recommend_on_the_recorded_64gb_mac(monkeypatch, llmctl_home: Path) -> None:
    data = json.loads(run(monkeypatch, "macbook-pro-m3-max-64gb", "recommend", "--json").output)
    top = data["options"][0]
    assert top["gpu_layers"] == top["n_layers"] and top["gpu_bytes"] <= 48 * GiB
    assert top["model"] in ("llama-3.3-70b-instruct", "qwen2.5-32b-instruct", "qwen3-32b")
    assert "unified 64 GiB, GPU limit 48 GiB" in data["plan"]


@pytest.mark.parametrize("gpu", ["M3 Max 64GB", "RX 7900 XTX", "Arc A770"])
def test_recommend_for_other_vendors(monkeypatch, llmctl_home: Path, gpu: str) -> None:
    r = run(monkeypatch, None, "recommend", "--gpu", gpu, "--ram", "64GiB", "--json", "--top", "3")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["options"] and data["options"][0]["gpu_layers"]


def test_doctor_on_a_radeon_says_the_engine_cannot_use_it(monkeypatch, llmctl_home: Path) -> None:
    out = run(monkeypatch, "linux-radeon-rx-7900-xtx", "doctor").output
    assert "Radeon RX 7900 XTX is here (ROCm/HIP or Vulkan)" in out and "GGML_HIP" in out

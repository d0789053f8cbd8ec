"""The GPU check's reading of llama.cpp's CUDA log lines (benchmarks/gpucheck/report.py), which no machine here can
produce: the lines are written with llama.cpp's own format strings (src/llama-model.cpp, llama-kv-cache.cpp,
llama-context.cpp of the xllamacpp 2026.10.11549 sources) and the buffer names its CUDA backend gives
(``CUDA0``, ``CUDA_Host``, ``CPU_Mapped``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpucheck.report import compare, parse_log

MiB = 1 << 20


def model(name: str, mib: float) -> str:
    return "load_tensors: %12s model buffer size = %8.2f MiB" % (name, mib)  # noqa: UP031 (llama.cpp's printf)


def kv(name: str, mib: float) -> str:
    return "llama_kv_cache: %10s KV buffer size = %8.2f MiB" % (name, mib)  # noqa: UP031


def output(name: str, mib: float) -> str:
    return "llama_context: %10s  output buffer size = %8.2f MiB" % (name, mib)  # noqa: UP031


def compute(name: str, mib: float) -> str:
    return "sched_reserve: %10s compute buffer size = %8.2f MiB" % (name, mib)  # noqa: UP031


def load(ngl: int) -> list[str]:
    """An 8B llama with ngl of 33 layers on CUDA0: weights split, KV split, compute on both sides."""
    return ["load_tensors: offloading output layer to GPU",
            f"load_tensors: offloading {ngl - 1} repeating layers to GPU",
            "load_tensors: offloaded %d/%d layers to GPU" % (ngl, 33),  # noqa: UP031
            model("CPU_Mapped", 3200.5), model("CUDA0", 4900.25), output("CUDA_Host", 0.49),
            kv("CUDA0", 640.0), kv("CPU", 384.0), compute("CUDA0", 560.0), compute("CUDA_Host", 24.01)]


def test_cuda_lines_are_summed_per_side_and_the_last_load_counts() -> None:
    log = parse_log(["0.00.01 I " + line for line in load(0)[3:]] + load(20))  # an earlier load, then the real one
    assert log["offloaded"] == [20, 33]
    assert log["gpu"] == {"model": round(4900.25 * MiB), "repack": 0, "KV": 640 * MiB, "compute": 560 * MiB,
                          "output": 0}
    assert log["cpu"] == {"model": round(3200.5 * MiB), "repack": 0, "KV": 384 * MiB,
                          "compute": round(24.01 * MiB), "output": round(0.49 * MiB)}
    assert len(log["lines"]) == 7


def test_an_estimate_under_what_cuda_allocated_is_negative() -> None:
    log = parse_log(load(20))
    gpu_buffers = sum(log["gpu"].values())
    context = 300 * MiB
    fit = {"weights_bytes": round(8100.75 * MiB), "repack_bytes": 0, "kv_cache_bytes": 1024 * MiB,
           "compute_bytes": 560 * MiB, "output_bytes": round(0.49 * MiB),
           "gpu_bytes": gpu_buffers - 100 * MiB + context, "gpu_layers": 20, "n_layers": 32}
    k = compare(fit, log, context, nvml_delta=gpu_buffers + 400 * MiB)
    assert k["gpu_layers"] == {"estimate": 20, "measured": 20, "of": 33}
    assert k["terms"]["kv"]["error"] == 0.0 and k["terms"]["weights"]["error"] == 0.0
    assert k["terms"]["compute"]["error"] == pytest.approx(560 / 584.01 - 1, abs=1e-4)  # CUDA_Host's share too
    assert k["gpu_buffers"]["error"] == pytest.approx(-100 / (gpu_buffers / MiB), abs=1e-4)
    assert k["nvml"]["error"] < 0  # NVML saw the context and 400 MiB beyond the buffers

"""Hardware probing: the no-NVML path for real, the NVML path with readings recorded from real cards."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import psutil

from llmctl.runtimes.hardware import NvmlProbe, probe, read_cpu

GiB = 1 << 30


class RecordedNvml:
    """Stands in for the pynvml module with readings taken from an RTX 3090 (driver 550.54.14, CUDA 12.4)."""

    class NVMLError(Exception):
        pass

    class NVMLError_DriverNotLoaded(NVMLError):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    def __init__(self, cards: list[dict], init_error: type | None = None) -> None:
        self.cards = cards
        self.init_error = init_error
        self.shut = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error("recorded failure")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.cards)

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.14"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        return self.cards[i]

    def nvmlDeviceGetName(self, h: dict) -> str:
        return h["name"]

    def nvmlDeviceGetMemoryInfo(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(total=h["total"], free=h["free"], used=h["total"] - h["free"])

    def nvmlDeviceGetCudaComputeCapability(self, h: dict) -> tuple[int, int]:
        return h["cc"]

    def nvmlDeviceGetUtilizationRates(self, h: dict) -> SimpleNamespace:
        if h.get("util") is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=h["util"], memory=0)


RTX_3090 = {"name": "NVIDIA GeForce RTX 3090", "total": 25769803776, "free": 25110708224, "cc": (8, 6), "util": 3}


def test_recorded_rtx_3090() -> None:
    nvml = RecordedNvml([RTX_3090, {**RTX_3090, "free": 1 * GiB, "util": None}])
    gpus, status, detail = NvmlProbe(nvml).read()
    assert status == "ok" and "2 NVIDIA GPU" in detail
    g = gpus[0]
    assert (g.name, g.vram_total, g.vram_free) == ("NVIDIA GeForce RTX 3090", 24 * GiB, 25110708224)
    assert (g.driver, g.cuda_version, g.compute_capability, g.utilization) == ("550.54.14", "12.4", "8.6", 3)
    assert gpus[1].utilization is None  # an unsupported reading is left out, not fatal
    assert nvml.shut


def test_nvml_failures_say_why() -> None:
    assert NvmlProbe(RecordedNvml([], RecordedNvml.NVMLError_DriverNotLoaded)).read()[1] == "no-driver"
    assert NvmlProbe(RecordedNvml([], RecordedNvml.NVMLError_LibraryNotFound)).read()[1] == "no-library"
    assert NvmlProbe(RecordedNvml([])).read()[1:] == ("no-device", "the NVIDIA driver is loaded but reports no GPU")


def test_real_probe_on_this_machine(tmp_path: Path) -> None:
    report = probe(tmp_path / "not" / "yet" / "made")
    assert report.ram_total == psutil.virtual_memory().total
    assert 0 < report.ram_available <= report.ram_total
    assert report.disk_free > 0
    assert report.cpu.logical_cores >= report.cpu.physical_cores >= 1
    if not report.gpus:  # the machines this runs on have no GPU: the real no-NVML path says why
        assert report.gpu_status in ("no-library", "no-driver", "no-device") and report.gpu_detail
    assert not (tmp_path / "not").exists()


def test_cpu_flags_are_the_ones_llama_cpp_uses() -> None:
    cpu = read_cpu()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in flags.replace("\n", " "):
        assert "avx2" in cpu.flags
    assert all(f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                     "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm") for f in cpu.flags)

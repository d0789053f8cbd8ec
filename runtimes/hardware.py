"""What this machine has: CPU (cores, the ISA flags llama.cpp cares about), RAM, free disk, NVIDIA GPUs.

NVML sits behind a small seam: ``NvmlProbe`` takes the ``pynvml`` module (or anything with its functions),
so tests feed it recorded readings of real cards while the no-NVML path runs for real on machines without one.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

# the flags that change which llama.cpp kernels run
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    vram_total: int
    vram_free: int
    driver: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None
    utilization: int | None = None  # percent


@dataclass(frozen=True, slots=True)
class CpuInfo:
    model: str
    arch: str
    physical_cores: int
    logical_cores: int
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HardwareReport:
    cpu: CpuInfo
    ram_total: int
    ram_available: int
    disk_path: str
    disk_free: int
    gpus: tuple[GpuInfo, ...] = ()
    gpu_status: str = "ok"  # ok | no-library | no-driver | no-device | error
    gpu_detail: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GpuProbe(Protocol):
    def read(self) -> tuple[list[GpuInfo], str, str]:
        """(gpus, status, human explanation)."""
        ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlProbe:
    """NVIDIA GPUs through NVML (nvidia-ml-py). ``nvml`` defaults to the real ``pynvml`` module."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def read(self) -> tuple[list[GpuInfo], str, str]:
        try:
            nv = self._module()
        except ImportError:
            return [], "no-library", "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            name = type(exc).__name__
            if "LibraryNotFound" in name:
                return [], "no-library", "the NVIDIA driver library (libnvidia-ml) is not on this machine"
            if "DriverNotLoaded" in name:
                return [], "no-driver", "an NVIDIA library is present but the driver is not loaded (is the GPU on?)"
            return [], "error", f"NVML failed to start: {exc}"
        try:
            count = nv.nvmlDeviceGetCount()
            if count == 0:
                return [], "no-device", "the NVIDIA driver is loaded but reports no GPU"
            driver = _text(nv.nvmlSystemGetDriverVersion())
            cuda = nv.nvmlSystemGetCudaDriverVersion()
            cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
            gpus = []
            for i in range(count):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                try:
                    major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
                    cc = f"{major}.{minor}"
                except nv.NVMLError:
                    cc = None
                try:
                    util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
                except nv.NVMLError:
                    util = None
                gpus.append(GpuInfo(i, _text(nv.nvmlDeviceGetName(h)), int(mem.total), int(mem.free), driver,
                                    cuda_version, cc, util))
            return gpus, "ok", f"{count} NVIDIA GPU(s), driver {driver}"
        except nv.NVMLError as exc:
            return [], "error", f"NVML failed while reading the GPUs: {exc}"
        finally:
            try:
                nv.nvmlShutdown()
            except nv.NVMLError:
                pass


def read_cpu() -> CpuInfo:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    if platform.machine().lower() in ("arm64", "aarch64") and not flags:
        flags.add("neon")  # every 64-bit ARM core has it
    return CpuInfo(
        model=model or "unknown",
        arch=platform.machine(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        flags=tuple(f for f in CPU_FLAGS if f in flags),
    )


def probe(disk_path: Path, gpu_probe: GpuProbe | None = None) -> HardwareReport:
    """Read the machine. ``disk_path`` is where models are stored (its nearest existing parent is measured)."""
    mem = psutil.virtual_memory()
    existing = disk_path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    gpus, status, detail = (gpu_probe or NvmlProbe()).read()
    return HardwareReport(
        cpu=read_cpu(),
        ram_total=mem.total,
        ram_available=mem.available,
        disk_path=str(disk_path),
        disk_free=shutil.disk_usage(existing).free,
        gpus=tuple(gpus),
        gpu_status=status,
        gpu_detail=detail,
    )

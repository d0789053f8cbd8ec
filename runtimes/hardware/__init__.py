"""What this machine has: CPU (cores, the ISA flags llama.cpp cares about), RAM, free disk, and its GPUs.

GPUs are read by a set of probes behind one small interface (``GpuProbe.read() -> (gpus, status, detail)``):
NVIDIA through NVML (``nvidia``), Apple Silicon through sysctl and system_profiler (``apple``), AMD through ROCm's
tools (``amd``), Intel through xpu-smi or Vulkan's device list (``intel``). ``probes_for(host)`` picks those that
apply to the platform and ``AllProbes`` merges what they find. Each reports which llama.cpp backend would use the
GPU (Metal, CUDA, ROCm/HIP, Vulkan, SYCL).

On Apple Silicon RAM and GPU memory are one pool: the report says ``memory = "unified"``, ``ram_*`` is the pool,
and the GPU's ``vram_total`` is the share of it Metal lets the GPU hold (never extra memory).
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from llmctl.runtimes.hardware.amd import AmdProbe
from llmctl.runtimes.hardware.apple import AppleProbe, read_apple_cpu
from llmctl.runtimes.hardware.base import (
    CpuInfo,
    GpuInfo,
    GpuProbe,
    HardwareReport,
    Host,
    this_host,
)
from llmctl.runtimes.hardware.intel import IntelProbe
from llmctl.runtimes.hardware.nvidia import NvmlProbe

__all__ = ["CPU_FLAGS", "AllProbes", "AmdProbe", "AppleProbe", "CpuInfo", "GpuInfo", "GpuProbe", "HardwareReport",
           "Host", "IntelProbe", "NvmlProbe", "probe", "probes_for", "read_cpu", "this_host"]

# the flags that change which llama.cpp kernels run
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm")
_STATUS_ORDER = ("error", "no-driver", "no-device", "no-library")  # the most telling "none found" first


class AllProbes:
    """Every probe that applies here, merged: GPUs renumbered in order, each probe's word kept."""

    def __init__(self, probes: list[GpuProbe]) -> None:
        self.probes = probes

    def read(self) -> tuple[list[GpuInfo], str, str]:
        gpus: list[GpuInfo] = []
        found, missing = [], []
        for p in self.probes:
            got, status, detail = p.read()
            for g in got:
                gpus.append(_renumber(g, len(gpus)))
            (found if got else missing).append((status, detail))
        if gpus:
            return gpus, "ok", "; ".join(d for _s, d in found)
        if not missing:
            return [], "no-device", "no GPU probe applies to this platform"
        status = min((s for s, _d in missing), key=lambda s: _STATUS_ORDER.index(s) if s in _STATUS_ORDER else 9)
        return [], status, "; ".join(d for _s, d in missing)


def _renumber(g: GpuInfo, index: int) -> GpuInfo:
    from dataclasses import replace

    return g if g.index == index else replace(g, index=index)


def probes_for(host: Host) -> GpuProbe:
    """The GPU probes for ``host``'s platform. NVML is a library of this machine: a recording never has it."""
    if host.system == "Darwin":
        return AllProbes([AppleProbe(host)] if host.apple_silicon else [])
    probes: list[GpuProbe] = [] if host.recorded else [NvmlProbe()]
    return AllProbes([*probes, AmdProbe(host), IntelProbe(host)])


def read_cpu(host: Host | None = None) -> CpuInfo:
    host = host or this_host()
    if host.system == "Darwin":
        return read_apple_cpu(host)
    here = host.recorded is None
    model = (platform.processor() or platform.machine()) if here else host.machine
    flags: set[str] = set()
    physical: set[tuple[str, str]] = set()
    phys_id = ""
    logical = 0
    for line in (host.read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor":
            logical += 1
        elif key == "model name" and model in ("", host.machine, platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key == "physical id":
            phys_id = value.strip()
        elif key == "core id":
            physical.add((phys_id, value.strip()))
    if host.machine.lower() in ("arm64", "aarch64") and not flags:
        flags.add("neon")  # every 64-bit ARM core has it
    if here:
        phys_count = psutil_count(False)
        logical_count = psutil_count(True)
    else:
        logical_count = logical or 1
        phys_count = len(physical) or logical_count
    return CpuInfo(
        model=model or "unknown",
        arch=host.machine,
        physical_cores=phys_count,
        logical_cores=logical_count,
        flags=tuple(f for f in CPU_FLAGS if f in flags),
    )


def psutil_count(logical: bool) -> int:
    import psutil

    return psutil.cpu_count(logical=logical) or os.cpu_count() or 1


def probe(disk_path: Path, gpu_probe: GpuProbe | None = None, host: Host | None = None) -> HardwareReport:
    """Read the machine (or the recorded ``host``). ``disk_path`` is where models are stored (its nearest
    existing parent is measured, always on this machine)."""
    host = host or this_host()
    ram_total, ram_available = host.memory()
    existing = disk_path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    gpus, status, detail = (gpu_probe or probes_for(host)).read()
    unified = any(g.unified for g in gpus)
    notes = [g.note for g in gpus if g.note]
    if unified:
        notes.insert(0, "unified memory: RAM and GPU memory are one pool; RAM figures are the pool, and the GPU "
                        "may hold up to its limit of it")
    return HardwareReport(
        cpu=read_cpu(host),
        ram_total=ram_total,
        ram_available=ram_available,
        disk_path=str(disk_path),
        disk_free=shutil.disk_usage(existing).free,
        gpus=tuple(gpus),
        gpu_status=status,
        gpu_detail=detail,
        notes=notes,
        memory="unified" if unified else "discrete",
        recorded=host.recorded,
    )

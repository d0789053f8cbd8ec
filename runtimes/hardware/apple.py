"""Apple Silicon: one pool of unified memory that the CPU and the GPU (Metal) share.

Read with ``sysctl`` (memory, chip, performance/efficiency cores, ``iogpu.wired_limit_mb``), ``vm_stat`` (free
memory of a recording; this machine's comes from psutil) and ``system_profiler SPDisplaysDataType -json`` (GPU
name, cores, Metal family).

The GPU may hold only part of the pool: Metal reports the limit as ``recommendedMaxWorkingSetSize``, and
llama.cpp's Metal backend logs it at start-up (in MB of 10^6 bytes). Public llama.cpp logs show 2/3 of RAM on
8-32 GB machines (about 22906 MB = 21,845 MiB on 32 GB) and about 3/4 on 64 GB and up (about 51540 MB on 64 GB).
Between those (36, 48 GB) no log was at hand: the lower fraction is assumed. The limit follows the
``iogpu.wired_limit_mb`` sysctl when it is set (macOS 14+; 0 = the default): ``sudo sysctl
iogpu.wired_limit_mb=N`` raises it until the next reboot. llmctl reads it and never changes it.
"""

from __future__ import annotations

import re

from llmctl.runtimes.hardware.base import CpuInfo, GiB, GpuInfo, Host, MiB, as_int, clean_name, key_values, parse_json

SYSCTL_KEYS = ("hw.memsize", "hw.physicalcpu", "hw.logicalcpu", "hw.perflevel0.physicalcpu",
               "hw.perflevel1.physicalcpu", "machdep.cpu.brand_string", "iogpu.wired_limit_mb",
               "hw.optional.arm.FEAT_DotProd", "hw.optional.arm.FEAT_I8MM")
SYSCTL = ("sysctl", *SYSCTL_KEYS)
SYSTEM_PROFILER = ("system_profiler", "SPDisplaysDataType", "-json")
VM_STAT = ("vm_stat",)
MACOS_KEEPS = 4 * GiB  # what macOS and the user's apps keep of the pool when planning for a Mac (or 1/8)


def macos_reserve(total: int) -> int:
    """What to leave to macOS and other apps when planning for a Mac that is not this one."""
    return max(MACOS_KEEPS, total // 8)


def working_set_limit(memsize: int, wired_limit_mb: int | None = None) -> tuple[int, str]:
    """(bytes the GPU may hold, why): ``iogpu.wired_limit_mb`` when set, else Metal's default fraction."""
    if wired_limit_mb:
        limit = min(wired_limit_mb * MiB, memsize)
        return limit, f"iogpu.wired_limit_mb = {wired_limit_mb} (set on this Mac)"
    gib = memsize / GiB
    if gib >= 64:
        return memsize * 3 // 4, "3/4 of memory (Metal's default on 64 GB and up)"
    if gib <= 32:
        return memsize * 2 // 3, "2/3 of memory (Metal's default up to 32 GB)"
    return memsize * 2 // 3, "2/3 of memory (Metal's default at 32 GB; not measured between 32 and 64 GB)"


def raise_limit_hint(memsize: int) -> str:
    target = max(memsize - 8 * GiB, memsize * 3 // 4) // MiB
    return (f"sudo sysctl iogpu.wired_limit_mb={target} lets the GPU hold more (until reboot; leave macOS 8 GiB). "
            "llmctl never changes it.")


def _sysctl(host: Host) -> dict[str, str]:
    return key_values(host.run(SYSCTL))


def read_apple_cpu(host: Host) -> CpuInfo:
    s = _sysctl(host)
    perf, eff = as_int(s.get("hw.perflevel0.physicalcpu")), as_int(s.get("hw.perflevel1.physicalcpu"))
    physical = as_int(s.get("hw.physicalcpu")) or ((perf or 0) + (eff or 0)) or 1
    flags = ["neon"]
    if s.get("hw.optional.arm.FEAT_DotProd") == "1":
        flags.append("asimddp")
    if s.get("hw.optional.arm.FEAT_I8MM") == "1":
        flags.append("i8mm")
    return CpuInfo(model=clean_name(s.get("machdep.cpu.brand_string") or "Apple Silicon"), arch=host.machine,
                   physical_cores=physical, logical_cores=as_int(s.get("hw.logicalcpu")) or physical,
                   flags=tuple(flags), performance_cores=perf, efficiency_cores=eff)


def vm_stat_available(text: str | None) -> int | None:
    """Free + inactive pages (what psutil calls available on macOS) from ``vm_stat``'s output."""
    if not text:
        return None
    m = re.search(r"page size of (\d+) bytes", text)
    page = as_int(m.group(1)) if m else None
    values = {k: as_int(v.rstrip(".")) for k, v in key_values(text).items()}
    if not page or values.get("Pages free") is None:
        return None
    return page * ((values.get("Pages free") or 0) + (values.get("Pages inactive") or 0))


class AppleProbe:
    """The Apple Silicon GPU: its name and cores from system_profiler, its share of the pool from sysctl."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def read(self) -> tuple[list[GpuInfo], str, str]:
        if not self.host.apple_silicon:
            return [], "no-device", "not an Apple Silicon Mac"
        s = _sysctl(self.host)
        memsize = as_int(s.get("hw.memsize"))
        if not memsize:
            return [], "error", "sysctl did not report hw.memsize"
        name, cores, metal = clean_name(s.get("machdep.cpu.brand_string") or "Apple Silicon"), None, None
        data = parse_json(self.host.run(SYSTEM_PROFILER))
        items = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "apple" in str(item.get("spdisplays_vendor", "")).lower() + str(
                    item.get("sppci_model", "")).lower():
                name = clean_name(item.get("sppci_model") or item.get("_name") or name)
                cores = as_int(item.get("sppci_cores"))
                family = str(item.get("spdisplays_mtlgpufamilysupport", ""))
                metal = clean_name(family.removeprefix("spdisplays_").replace("metal", "Metal ")) if family else None
                break
        wired = as_int(s.get("iogpu.wired_limit_mb"))
        limit, why = working_set_limit(memsize, wired)
        _total, available = self.host.memory()
        gpu = GpuInfo(0, name, limit, max(0, min(limit, available)), driver=metal, vendor="apple",
                      backends=("Metal",), source="sysctl + system_profiler", unified=True, cores=cores, arch=metal,
                      note=f"unified memory; GPU limit {limit / GiB:.1f} GiB = {why}. "
                           + ("" if wired else raise_limit_hint(memsize)))
        return [gpu], "ok", (f"{name}: unified memory {memsize / GiB:.0f} GiB, the GPU may hold "
                             f"{limit / GiB:.1f} GiB ({why})")


def apple_memory(host: Host) -> tuple[int, int] | None:
    """(total, available) of a recorded Mac: sysctl hw.memsize and vm_stat."""
    total = as_int(_sysctl(host).get("hw.memsize"))
    available = vm_stat_available(host.run(VM_STAT))
    if not total or available is None:
        return None
    return total, min(available, total)

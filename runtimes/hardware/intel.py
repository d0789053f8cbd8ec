"""Intel GPUs (Arc, Data Center GPU): ``xpu-smi`` (Level Zero) where installed, else the Vulkan loader's own
device list (``vulkaninfo --summary``).

``xpu-smi`` reads Level Zero, the interface llama.cpp's SYCL backend runs on, and reports memory. Without it the
only list at hand is Vulkan's: it names each device and its driver but not its memory, so the GPU is reported
with VRAM unknown (0) and that is said; callers may fill it from llmctl's table of cards. Only discrete Intel
GPUs are counted there: an integrated one shares the host's RAM and is only mentioned.
"""

from __future__ import annotations

import re

from llmctl.runtimes.hardware.base import GpuInfo, Host, as_int, clean_name, parse_json

XPU_SMI = ("xpu-smi", "discovery", "-j")
VULKANINFO = ("vulkaninfo", "--summary")
INTEL_VENDOR = 0x8086
MAX_GPUS = 64


def xpu_smi_device(device_id: int) -> tuple[str, ...]:
    return ("xpu-smi", "discovery", "-d", str(device_id), "-j")


def parse_xpu_smi(listing: str | None, details: dict[int, str | None]) -> list[GpuInfo]:
    data = parse_json(listing)
    items = data.get("device_list") if isinstance(data, dict) else None
    gpus = []
    for item in items[:MAX_GPUS] if isinstance(items, list) else []:
        if not isinstance(item, dict) or str(item.get("device_type", "GPU")).upper() != "GPU":
            continue
        if str(item.get("device_function_type", "physical")).lower() == "virtual":
            continue
        dev_id = as_int(item.get("device_id")) or 0
        detail = parse_json(details.get(dev_id))
        d = {**item, **(detail if isinstance(detail, dict) else {})}
        total = as_int(d.get("memory_physical_size_byte")) or 0
        free = as_int(d.get("memory_free_size_byte"))
        gpus.append(GpuInfo(len(gpus), clean_name(d.get("device_name") or "Intel GPU"), total,
                            max(0, min(free if free is not None else total, total)),
                            driver=clean_name(d["driver_version"]) if d.get("driver_version") else None,
                            vendor="intel", backends=("SYCL", "Vulkan"), source="xpu-smi (Level Zero)",
                            cores=as_int(d.get("number_of_eus")),
                            note="" if free is not None else "free memory not reported; the total is assumed free"))
    return gpus


def parse_vulkaninfo_summary(text: str | None) -> tuple[list[GpuInfo], list[str]]:
    """(discrete Intel GPUs, names of integrated ones) from ``vulkaninfo --summary``'s ``Devices:`` section."""
    devices: list[dict[str, str]] = []
    for line in (text or "").splitlines()[:20_000]:
        if re.match(r"^GPU\d+:\s*$", line.strip()):
            devices.append({})
        elif devices and "=" in line:
            key, _, value = line.partition("=")
            devices[-1][key.strip()] = value.strip()
    gpus, integrated = [], []
    for d in devices[:MAX_GPUS]:
        if as_int(d.get("vendorID")) != INTEL_VENDOR:
            continue
        name = clean_name(d.get("deviceName"))
        if d.get("deviceType") != "PHYSICAL_DEVICE_TYPE_DISCRETE_GPU":
            integrated.append(name)
            continue
        driver = d.get("driverInfo") or d.get("driverVersion")
        gpus.append(GpuInfo(len(gpus), name, 0, 0, driver=clean_name(driver) if driver else None, vendor="intel",
                            backends=("Vulkan",), source="vulkaninfo (Vulkan's device list)",
                            note="from Vulkan's own device list, which does not report memory: VRAM unknown"))
    return gpus, integrated


class IntelProbe:
    def __init__(self, host: Host) -> None:
        self.host = host

    def read(self) -> tuple[list[GpuInfo], str, str]:
        listing = self.host.run(XPU_SMI)
        if listing is not None:
            data = parse_json(listing)
            ids = [as_int(i.get("device_id")) or 0 for i in (data or {}).get("device_list", [])[:MAX_GPUS]
                   if isinstance(i, dict)] if isinstance(data, dict) else []
            gpus = parse_xpu_smi(listing, {i: self.host.run(xpu_smi_device(i)) for i in ids})
            if gpus:
                return gpus, "ok", f"{len(gpus)} Intel GPU(s) through xpu-smi (Level Zero)"
        summary = self.host.run(VULKANINFO)
        if listing is None and summary is None:
            return [], "no-library", "no Intel GPU tools (xpu-smi, vulkaninfo) on this machine"
        gpus, integrated = parse_vulkaninfo_summary(summary)
        also = f"; integrated, sharing RAM, not counted: {', '.join(integrated)}" if integrated else ""
        if gpus:
            return gpus, "ok", (f"{len(gpus)} Intel GPU(s) from Vulkan's own device list (no xpu-smi: memory is "
                                f"not reported there){also}")
        return [], "no-device", f"no discrete Intel GPU (xpu-smi, vulkaninfo){also}"

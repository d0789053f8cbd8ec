"""AMD GPUs (Radeon, Radeon PRO, Instinct) through ROCm's tools: the ``amdsmi`` Python bindings where installed,
else ``amd-smi static --json`` + ``amd-smi metric --mem-usage --json``, else ``rocm-smi ... --json``.

These tools come with ROCm, so a GPU they list can run llama.cpp's ROCm/HIP backend (if its gfx target is one
the build supports) and its Vulkan backend. amd-smi's JSON has changed shape across ROCm 6 and 7 (a bare list
or ``{"gpu_data": [...]}``; sizes as ``{"value", "unit"}``), so the parser looks for each field in the known
places and skips what it cannot read.
"""

from __future__ import annotations

from typing import Any

from llmctl.runtimes.hardware.base import GpuInfo, Host, MiB, as_int, clean_name, parse_json

AMD_SMI_STATIC = ("amd-smi", "static", "--asic", "--vram", "--driver", "--json")
AMD_SMI_MEM = ("amd-smi", "metric", "--mem-usage", "--json")
ROCM_SMI = ("rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json")
BACKENDS = ("ROCm/HIP", "Vulkan")
MAX_GPUS = 64


def _gpu_list(data: Any) -> list[dict]:
    if isinstance(data, dict):
        data = data.get("gpu_data", data.get("gpus"))
    return [g for g in data[:MAX_GPUS] if isinstance(g, dict)] if isinstance(data, list) else []


def _name(asic: dict) -> str:
    return clean_name(asic.get("market_name") or asic.get("product_name") or "AMD GPU")


def parse_amd_smi(static_text: str | None, mem_text: str | None) -> list[GpuInfo]:
    mem = {}
    for i, g in enumerate(_gpu_list(parse_json(mem_text))):
        usage = g.get("mem_usage") if isinstance(g.get("mem_usage"), dict) else {}
        mem[as_int(g.get("gpu")) if g.get("gpu") is not None else i] = usage
    gpus = []
    for i, g in enumerate(_gpu_list(parse_json(static_text))):
        index = as_int(g.get("gpu")) if g.get("gpu") is not None else i
        asic = g.get("asic") if isinstance(g.get("asic"), dict) else {}
        vram = g.get("vram") if isinstance(g.get("vram"), dict) else {}
        driver = g.get("driver") if isinstance(g.get("driver"), dict) else {}
        total = as_int(vram.get("size"), MiB) or as_int(vram.get("vram_size_mb"), MiB) or 0
        usage = mem.get(index, {})
        total = as_int(usage.get("total_vram"), MiB) or total
        free = as_int(usage.get("free_vram"), MiB)
        used = as_int(usage.get("used_vram"), MiB)
        if free is None:
            free = total - used if used is not None else total
        gpus.append(GpuInfo(len(gpus), _name(asic), total, max(0, min(free, total)),
                            driver=clean_name(driver.get("version") or driver.get("driver_version") or "") or None,
                            vendor="amd", backends=BACKENDS, source="amd-smi",
                            cores=as_int(asic.get("num_compute_units")),
                            arch=clean_name(asic.get("target_graphics_version")) if asic.get(
                                "target_graphics_version") else None,
                            note="" if free is not None or used is not None else "free VRAM not reported"))
    return gpus


def parse_rocm_smi(text: str | None) -> list[GpuInfo]:
    data = parse_json(text)
    if not isinstance(data, dict):
        return []
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    driver = system.get("Driver version")
    gpus = []
    for key in sorted((k for k in data if str(k).startswith("card")), key=lambda k: as_int(k[4:]) or 0)[:MAX_GPUS]:
        card = data[key]
        if not isinstance(card, dict):
            continue
        total = as_int(card.get("VRAM Total Memory (B)")) or 0
        used = as_int(card.get("VRAM Total Used Memory (B)"))
        name = card.get("Card Series") or card.get("Card series") or card.get("Card SKU") or "AMD GPU"
        gfx = card.get("GFX Version")
        gpus.append(GpuInfo(len(gpus), clean_name(name), total, max(0, total - (used or 0)),
                            driver=clean_name(driver) if driver else None, vendor="amd", backends=BACKENDS,
                            source="rocm-smi", arch=clean_name(gfx) if gfx else None,
                            note="" if used is not None else "used VRAM not reported"))
    return gpus


class AmdProbe:
    """AMD GPUs. ``amdsmi`` is the bindings module (tests pass a stand-in; None tries to import it on this
    machine, never on a recorded one)."""

    def __init__(self, host: Host, amdsmi: Any = None) -> None:
        self.host = host
        self._amdsmi = amdsmi

    def _bindings(self) -> list[GpuInfo] | None:
        smi = self._amdsmi
        if smi is None:
            if self.host.recorded:
                return None
            try:
                import amdsmi as smi  # type: ignore[import-not-found]
            except Exception:  # ImportError, or the bindings failing to find libamd_smi
                return None
        try:
            smi.amdsmi_init()
        except Exception:
            return None
        try:
            gpus = []
            for h in list(smi.amdsmi_get_processor_handles())[:MAX_GPUS]:
                asic = smi.amdsmi_get_gpu_asic_info(h)
                usage = smi.amdsmi_get_gpu_vram_usage(h)  # MB
                try:
                    driver = smi.amdsmi_get_gpu_driver_info(h).get("driver_version")
                except Exception:
                    driver = None
                total = (as_int(usage.get("vram_total")) or 0) * MiB
                used = (as_int(usage.get("vram_used")) or 0) * MiB
                gfx = asic.get("target_graphics_version")
                gpus.append(GpuInfo(len(gpus), _name(asic), total, max(0, total - used),
                                    driver=clean_name(driver) if driver else None, vendor="amd", backends=BACKENDS,
                                    source="amdsmi (Python bindings)", cores=as_int(asic.get("num_compute_units")),
                                    arch=clean_name(gfx) if gfx else None))
            return gpus
        except Exception:
            return None
        finally:
            try:
                smi.amdsmi_shut_down()
            except Exception:
                pass

    def read(self) -> tuple[list[GpuInfo], str, str]:
        gpus = self._bindings()
        if gpus:
            return gpus, "ok", f"{len(gpus)} AMD GPU(s) through the amdsmi bindings"
        static = self.host.run(AMD_SMI_STATIC)
        if static is not None:
            gpus = parse_amd_smi(static, self.host.run(AMD_SMI_MEM))
            if gpus:
                return gpus, "ok", f"{len(gpus)} AMD GPU(s) through amd-smi"
        text = self.host.run(ROCM_SMI)
        if text is not None:
            gpus = parse_rocm_smi(text)
            if gpus:
                return gpus, "ok", f"{len(gpus)} AMD GPU(s) through rocm-smi"
            return [], "no-device", "rocm-smi runs but lists no GPU (is the amdgpu driver loaded?)"
        if static is not None:
            return [], "no-device", "amd-smi runs but lists no GPU (is the amdgpu driver loaded?)"
        return [], "no-library", "no ROCm tools (amd-smi, rocm-smi) on this machine"

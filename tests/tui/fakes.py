"""A stand-in for the controller client, for pilot and snapshot tests of the TUI (the real client is exercised
by the end-to-end test against a real controller). Every answer is fixed, so screens render the same each run.

It cannot drift from the real client: ``test_fake_client.py`` checks that every public method of
``ControllerClient`` is here with the same signature (annotations included), and that what the fake answers and what
a real controller answers both have the shapes of ``llmctl.app.shapes``. Any method can be made to raise:
``FakeClient(fail={"load": ControllerError(...)})``, or ``client.fail["models"] = ...`` later.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from llmctl.app.shapes import (
    BackendStatus,
    Catalog,
    CatalogModel,
    CatalogQuant,
    ChatPart,
    ChatTurn,
    Cpu,
    FitEstimate,
    Gpu,
    Hardware,
    LocalModel,
    LogChunk,
    ModelEntry,
    Reasoning,
    RequestRecord,
    RequestsSnapshot,
    Shutdown,
)

GiB = 1 << 30
MiB = 1 << 20

HARDWARE = Hardware(
    cpu=Cpu(model="AMD Ryzen 9 7950X", arch="x86_64", physical_cores=16, logical_cores=32,
            flags=["avx", "avx2", "fma", "f16c", "avx512f"]),
    ram_total=64 * GiB, ram_available=40 * GiB, disk_path="/models", disk_free=500 * GiB,
    gpus=[Gpu(index=0, name="NVIDIA GeForce RTX 3090", vram_total=24 * GiB, vram_free=18 * GiB, driver="550.54.14",
              cuda_version="12.4", compute_capability="8.6", utilization=35)],
    gpu_status="ok", gpu_detail="1 NVIDIA GPU(s), driver 550.54.14", cpu_percent=12.0, notes=[],
)

ESTIMATE = FitEstimate(
    weights_bytes=4600 * MiB, repack_bytes=0, kv_cache_bytes=1024 * MiB, compute_bytes=560 * MiB, output_bytes=MiB,
    overhead_bytes=480 * MiB, total_bytes=6665 * MiB, gpu_bytes=6200 * MiB, cpu_bytes=465 * MiB, gpu_layers=33,
    n_layers=32, kv_cells=8192, fits="yes", reason="GPU: 6.1 GiB of 18.0 GiB VRAM (34%)",
    runtime="llama.cpp (llama-server)", notes=[])


def local_model(name: str, path: str, size: int, facts: dict[str, Any], state: str = "stopped",
                fit: FitEstimate | None = ESTIMATE) -> LocalModel:
    return LocalModel(name=name, path=path, format="gguf", size=size, added_at=0.0, facts=facts, state=state,
                      fit=fit)


MODELS = [
    local_model("llama-3.1-8b-instruct-q4_k_m", "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4920 * MiB,
                {"architecture": "llama", "quant": "Q4_K_M", "parameter_count": 8_030_000_000,
                 "context_length": 131072}, state="ready"),
    local_model("tiny", "/models/tiny.gguf", MiB,
                {"architecture": "llama", "quant": "F32", "parameter_count": 139584, "context_length": 2048},
                fit=FitEstimate(**{**ESTIMATE, "total_bytes": 80 * MiB, "gpu_layers": 3})),
]

CATALOG = Catalog(ctx=8192, models=[
    CatalogModel(name="qwen2.5-7b-instruct", family="qwen2.5", params_b=7.62, uses=["chat"], license="apache-2.0",
                 repo="bartowski/Qwen2.5-7B-Instruct-GGUF",
                 quants=[CatalogQuant(quant="Q4_K_M", fits="yes", total_bytes=6 * GiB, gpu_layers=29, reason="ok",
                                      estimate=ESTIMATE),
                         CatalogQuant(quant="F16", fits="tight", total_bytes=17 * GiB, gpu_layers=29, reason="tight",
                                      estimate=FitEstimate(**{**ESTIMATE, "fits": "tight"}))]),
    CatalogModel(name="llama-3.3-70b-instruct", family="llama-3", params_b=70.6, uses=["chat"], license="llama3.3",
                 repo="bartowski/Llama-3.3-70B-Instruct-GGUF",
                 quants=[CatalogQuant(quant="Q4_K_M", fits="no", total_bytes=45 * GiB, gpu_layers=30,
                                      reason="too big",
                                      estimate=FitEstimate(**{**ESTIMATE, "fits": "no", "reason": "needs 45.0 GiB"}))]),
])

BACKENDS = [
    BackendStatus(model="llama-3.1-8b-instruct-q4_k_m", runtime="llama.cpp", command="llama-server", state="ready",
                  pid=4242, port=40001, uptime=754.0, restarts=0, memory_bytes=6200 * MiB, in_flight=0, error=None,
                  log_path="/state/logs/x.log", last_log_lines=[]),
]

LOG_LINES = ["--- llmctl: starting llama-server --model x.gguf", "main: server is listening"]


def record(id: int, model: str, tokens_per_s: float = 100.0, ttft_ms: float = 50.0, itl_ms: float = 10.0
           ) -> RequestRecord:
    return RequestRecord(id=id, model=model, endpoint="/v1/chat/completions", stream=True, started_at=0.0,
                         status=200, ttft_ms=ttft_ms, itl_ms=itl_ms, duration_ms=100.0, prompt_tokens=5,
                         completion_tokens=5, tokens_per_s=tokens_per_s, error=None)


class FakeClient:
    base_url = "http://127.0.0.1:7878"

    def __init__(self, reply: str = "Hello! **How** can I help?", delay: float = 0.0, *, reasoning: str = "",
                 models: list[LocalModel] | None = None, log_lines: list[str] | None = None,
                 fail: dict[str, BaseException] | None = None, fail_after: int | None = None) -> None:
        """``reasoning``: words streamed as ``Reasoning`` before the reply. ``fail``: method name -> the
        exception it raises. ``fail_after``: stream_chat raises its ``fail`` entry after that many pieces."""
        self.reply = reply
        self.reasoning = reasoning
        self.delay = delay
        self.fail = dict(fail or {})
        self.fail_after = fail_after
        self.calls: list[tuple] = []
        self.backend_list = copy.deepcopy(BACKENDS)
        self.model_list = copy.deepcopy(MODELS if models is None else models)
        self.log_lines = list(LOG_LINES if log_lines is None else log_lines)
        self.records: list[RequestRecord] = []

    def _answer(self, method: str) -> None:
        if method in self.fail and not (method == "stream_chat" and self.fail_after is not None):
            raise self.fail[method]

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def status(self) -> dict[str, Any]:
        self._answer("status")
        return {"version": "test", "url": self.base_url, "backends": len(self.backend_list)}

    async def hardware(self) -> Hardware:
        self._answer("hardware")
        return copy.deepcopy(HARDWARE)

    async def backends(self) -> list[BackendStatus]:
        self._answer("backends")
        return self.backend_list

    async def models(self) -> list[LocalModel]:
        self._answer("models")
        return self.model_list

    async def catalog(self, ctx: int = 8192) -> Catalog:
        self._answer("catalog")
        return CATALOG

    async def load(self, model: str, wait: bool = True, timeout: float = 600.0) -> BackendStatus:
        self.calls.append(("load", model))
        self._answer("load")
        return BackendStatus(**{**BACKENDS[0], "model": model, "state": "ready"})

    async def unload(self, model: str) -> BackendStatus:
        self.calls.append(("unload", model))
        self._answer("unload")
        return BackendStatus(**{**BACKENDS[0], "model": model, "state": "stopped", "pid": None, "uptime": None})

    async def logs(self, model: str, tail: int = 100, since: int | None = None) -> LogChunk:
        self._answer("logs")
        lines = [] if since else self.log_lines[-tail:]
        return LogChunk(model=model, lines=lines, next=100, state="ready", log_path="/x.log")

    async def requests(self, limit: int = 50) -> list[RequestRecord]:
        self._answer("requests")
        return self.records[-limit:]

    async def requests_snapshot(self, limit: int = 100) -> RequestsSnapshot:
        self._answer("requests_snapshot")
        return RequestsSnapshot(requests=self.records[-limit:], in_flight=0)

    async def shutdown(self) -> Shutdown:
        self._answer("shutdown")
        return Shutdown(status="stopping")

    async def import_model(self, path: str, name: str | None = None) -> ModelEntry:
        self.calls.append(("import", path, name))
        self._answer("import_model")
        return ModelEntry(name=name or "imported", path=path, format="gguf", size=MiB, added_at=0.0, facts={})

    async def remove_model(self, name: str) -> ModelEntry:
        self.calls.append(("remove", name))
        self._answer("remove_model")
        entry = next((m for m in self.model_list if m["name"] == name), None)
        return ModelEntry(name=name, path=entry["path"] if entry else "/x.gguf", format="gguf", size=MiB,
                          added_at=0.0, facts={})

    async def stream_chat(self, model: str, messages: list[dict], **params: Any) -> AsyncIterator[ChatPart]:
        self.calls.append(("chat", model, copy.deepcopy(messages), params))
        self._answer("stream_chat")
        turn = ChatTurn(ttft_s=0.05)
        pieces: list[str | Reasoning] = [Reasoning(w + " ") for w in self.reasoning.split()]
        pieces += [word + " " for word in self.reply.split(" ")]
        for n, piece in enumerate(pieces):
            if self.fail_after is not None and n == self.fail_after:
                raise self.fail["stream_chat"]
            if self.delay:
                await asyncio.sleep(self.delay)
            turn.tokens += 1
            if isinstance(piece, Reasoning):
                turn.reasoning += piece.text
                turn.reasoning_tokens += 1
            else:
                turn.text += piece
            yield piece
        turn.seconds = 0.05 + 0.01 * turn.tokens
        self.records.append(record(len(self.records) + 1, model))
        yield turn

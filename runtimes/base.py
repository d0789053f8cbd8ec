"""The one protocol every runtime adapter follows, and the typed inputs it takes.

An adapter is pure: it turns a ``LaunchSpec`` into argv, names its readiness probe and reads its own log
lines. Spawning, watching and stopping processes is written once, in ``runtimes.process``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from llmctl.catalog.errors import LlmctlError


class RuntimeFailure(LlmctlError):
    """A backend could not be started or kept running."""


class PortInUseError(RuntimeFailure):
    """The port asked for is held by a process llmctl did not start."""


class BackendFailed(RuntimeFailure):
    """A backend died while loading or crash-looped; ``log_tail`` holds its last lines."""

    def __init__(self, title: str, message: str = "", log_tail: list[str] | None = None) -> None:
        super().__init__(title, message)
        self.log_tail = log_tail or []


class BackendState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"  # crashed after being ready; waiting out its backoff
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything needed to start one model server. Host is loopback: only the gateway faces clients."""

    model_name: str
    model_path: Path
    port: int
    host: str = "127.0.0.1"
    ctx_size: int = 4096
    n_gpu_layers: int = 0
    threads: int = 1
    parallel: int = 1
    prompt_cache_mib: int | None = None  # llama-server's host-RAM prompt cache cap (--cache-ram); None: its default
    chat_template: str | None = None  # a built-in template family ("gemma", "chatml"), or None: the model's own
    extra_args: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """A runtime found on this machine."""

    name: str
    executable: str
    version: str | None = None


class RuntimeAdapter(Protocol):
    """What the supervisor needs from a runtime."""

    name: str  # the runtime ("llama.cpp")
    launcher: str  # how it is launched ("llama-server", "llama_cpp.server")

    def build_command(self, spec: LaunchSpec) -> list[str]:
        """The argv that starts the server (pure)."""
        ...

    def health_path(self) -> str:
        """The HTTP path that answers 200 only once the model is loaded and requests can be served."""
        ...

    def supports_embeddings(self) -> bool: ...

    def failure_reason(self, lines: list[str]) -> str | None:
        """The line of the server's own output that says why it failed to load, if any."""
        ...

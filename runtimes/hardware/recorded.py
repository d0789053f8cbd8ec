"""A machine that is not this one, replayed from its recorded outputs (the tests' fixtures, and a way to ask
``llmctl hw`` / ``fit`` / ``recommend`` about a machine one does not have).

A recording is a folder with ``machine.json``::

    {"name": "MacBook Pro M2 Pro 32 GB", "system": "Darwin", "machine": "arm64",
     "commands": {"sysctl hw.memsize ...": "sysctl.txt", "vm_stat": "vm_stat.txt"},
     "files": {"/proc/cpuinfo": "cpuinfo.txt", "/proc/meminfo": "meminfo.txt"}}

Commands are keyed by their argv joined with spaces; a command not in the recording is "not installed".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from llmctl.runtimes.hardware.base import MAX_OUTPUT, Host, as_int, key_values


def _meminfo(text: str | None) -> tuple[int, int] | None:
    values = key_values(text)
    total, available = as_int(values.get("MemTotal"), 1024), as_int(values.get("MemAvailable"), 1024)
    if not total or available is None:
        return None
    return total, min(available, total)


def recorded_host(folder: Path) -> Host:
    """The Host a recording describes; ValueError when ``machine.json`` is missing or malformed."""
    try:
        spec = json.loads((folder / "machine.json").read_text())
        commands = {str(k): str(v) for k, v in spec.get("commands", {}).items()}
        files = {str(k): str(v) for k, v in spec.get("files", {}).items()}
        system, machine = str(spec["system"]), str(spec["machine"])
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{folder} is not a hardware recording: {exc}") from None

    def read(name: str | None) -> str | None:
        if name is None:
            return None
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:
            return None  # a recording names files inside its own folder only
        try:
            return path.read_text(errors="replace")[:MAX_OUTPUT]
        except OSError:
            return None

    def run(argv: Sequence[str]) -> str | None:
        return read(commands.get(" ".join(argv)))

    def read_text(path: str) -> str | None:
        return read(files.get(path))

    def memory() -> tuple[int, int]:
        from llmctl.runtimes.hardware.apple import apple_memory

        found = apple_memory(host) if system == "Darwin" else _meminfo(read_text("/proc/meminfo"))
        if found is None:
            raise ValueError(f"the recording {folder} has no memory reading (sysctl + vm_stat, or /proc/meminfo)")
        return found

    host = Host(system, machine, run=run, memory=memory, read_text=read_text,
                recorded=str(spec.get("name") or folder.name))
    return host

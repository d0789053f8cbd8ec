"""The benchmark runner's progress events. Apart from the runner so that screens, which show them, import no HTTP
client (the screens contract in pyproject)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Calibrated:
    method: str  # "probe" | "approximation"
    detail: str


@dataclass(frozen=True, slots=True)
class LevelStarted:
    label: str
    total: int


@dataclass(frozen=True, slots=True)
class RequestFinished:
    label: str
    done: int
    total: int
    ok: bool


@dataclass(frozen=True, slots=True)
class LevelFinished:
    label: str
    result: dict


@dataclass(frozen=True, slots=True)
class Note:
    text: str


BenchEvent = Calibrated | LevelStarted | RequestFinished | LevelFinished | Note

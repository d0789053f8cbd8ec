"""Timestamped samples of one measure over the monitor's window (the Monitor screen and its engine panel)."""

from __future__ import annotations

from collections import deque

WINDOW = 300  # seconds of history kept and shown


class Series:
    """Timestamped samples of one measure, trimmed to the window."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float | None) -> None:
        if value is not None:
            self.points.append((t, value))
        while self.points and self.points[0][0] < t - WINDOW:
            self.points.popleft()

    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

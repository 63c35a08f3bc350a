"""The one clock of the kiosk.

Everything that needs the time takes a `Clock`, so tests can drive time by hand and the pure core
never reads a clock at all (time comes in as an input).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (may jump; used for records shown to people)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going backwards (used for timeouts)."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock for tests: starts at `start` and moves only when told to."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a manual clock only moves forward")
        self._wall += seconds
        self._mono += seconds

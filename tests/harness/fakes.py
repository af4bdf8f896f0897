"""Simulated time for tests of deadlines and retries: a clock and a sleep that advances it."""

from __future__ import annotations


class FakeTime:
    """A monotonic clock that moves only when told to (or when `sleep` is awaited)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

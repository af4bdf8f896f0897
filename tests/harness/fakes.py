"""Fakes for unit tests: simulated time (a clock and a sleep that advances it), and Secrets."""

from __future__ import annotations

from typing import Any


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


class FakeSecrets:
    """A SecretResolver over a dict {(namespace, name, key): value}, recording every read."""

    def __init__(self, values: dict[tuple[str, str, str], str] | None = None) -> None:
        self.values = dict(values or {})
        self.reads: list[tuple[str, str, str]] = []

    async def get(self, namespace: str, ref: Any, *, deadline: Any) -> str:
        wanted = (namespace, ref.name, ref.key)
        self.reads.append(wanted)
        if wanted not in self.values:
            raise LookupError(f"secret {namespace}/{ref.name} has no key {ref.key!r}")
        return self.values[wanted]

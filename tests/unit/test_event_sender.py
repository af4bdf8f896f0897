"""Events are queued by the pass and sent apart from it: in order per Rollout, bounded, and a
failure to send one never stops the rest."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from herdsman.cluster.events import EventSender
from herdsman.cluster.kube import KubeError

pytestmark = pytest.mark.unit


def event(name: str, reason: str, ns: str = "shop") -> dict[str, Any]:
    return {
        "metadata": {"generateName": f"{name}.", "namespace": ns},
        "involvedObject": {"kind": "Rollout", "name": name, "namespace": ns},
        "reason": reason,
    }


class Kube:
    """Creates Events after a random delay; fails those whose reason says so."""

    def __init__(self, seed: int = 0, gate: asyncio.Event | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.rng = random.Random(seed)
        self.gate = gate

    async def create(self, url: str, body: dict[str, Any], *, deadline: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.rng.random() / 1000)
        if body["reason"] == "Refused":
            raise KubeError(422, "Invalid", "no")
        if body["reason"] == "Broken":
            raise RuntimeError("a bug in the client")
        self.sent.append((url, body["involvedObject"]["name"], body["reason"]))
        return body


def test_emit_never_waits_and_each_rollouts_events_arrive_in_order() -> None:
    async def run() -> tuple[Kube, list[int]]:
        kube = Kube(seed=7)
        sender = EventSender(kube, senders=4)  # type: ignore[arg-type]
        queued = []
        for i in range(50):
            for name in ("a", "b", "c", "d", "e"):
                sender.emit("shop", name, event(name, f"Step{i}"))
            queued.append(len(kube.sent))
        await sender.close(drain=5.0)
        return kube, queued

    kube, queued = asyncio.run(run())
    assert queued == [0] * 50  # nothing was sent while the pass was emitting
    assert len(kube.sent) == 250
    assert {url for url, _, _ in kube.sent} == {"/api/v1/namespaces/shop/events"}
    for name in ("a", "b", "c", "d", "e"):
        assert [r for _, n, r in kube.sent if n == name] == [f"Step{i}" for i in range(50)]


def test_a_refused_or_broken_event_does_not_stop_the_ones_behind_it() -> None:
    async def run() -> Kube:
        kube = Kube()
        sender = EventSender(kube, senders=1)  # type: ignore[arg-type]
        for reason in ("Refused", "First", "Broken", "Second"):
            sender.emit("shop", "a", event("a", reason))
        await sender.close(drain=5.0)
        return kube

    assert [r for _, _, r in asyncio.run(run()).sent] == ["First", "Second"]


def test_a_full_queue_drops_and_counts_instead_of_growing() -> None:
    dropped: list[int] = []

    async def run() -> tuple[Kube, int]:
        gate = asyncio.Event()  # the API server is stuck until the gate opens
        kube = Kube(gate=gate)
        sender = EventSender(kube, senders=1, capacity=3, on_drop=lambda: dropped.append(1))  # type: ignore[arg-type]
        for i in range(10):
            sender.emit("shop", "a", event("a", f"E{i}"))
            await asyncio.sleep(0)  # the sender takes the first one and blocks on the gate
        queued = sender.queued
        gate.set()
        await sender.close(drain=5.0)
        return kube, queued

    kube, queued = asyncio.run(run())
    assert queued == 3
    # One in flight, three queued; the other six dropped and counted.
    assert [r for _, _, r in kube.sent] == ["E0", "E1", "E2", "E3"]
    assert len(dropped) == 6


def test_close_gives_up_on_a_stuck_api_server_after_the_drain_time() -> None:
    async def run() -> float:
        kube = Kube(gate=asyncio.Event())  # never opens
        sender = EventSender(kube, senders=2)  # type: ignore[arg-type]
        sender.emit("shop", "a", event("a", "Stuck"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sender.close(drain=0.2)
        return loop.time() - started

    assert 0.15 < asyncio.run(run()) < 2.0

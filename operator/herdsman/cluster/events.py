"""Events leave a pass through a queue, and a few tasks of their own send them.

A pass that announced three transitions (a new revision, its first step, its server group) used
to wait for three Event POSTs after its status write, so the first pass of each of 1,000
releases started at once held its worker for five API round trips instead of two. An Event is a
courtesy — the Rollout's status is the record — so the pass hands its Events over and moves on.

Each Rollout's Events go through one sender, in the order they were announced (kubectl sorts
them by a timestamp with one-second resolution, so order within a second is the order sent).
The queues are bounded: when the API server cannot keep up, Events are dropped and counted
(`herdsman_events_dropped_total`), as client-go's recorder drops them, rather than grow without
end. On a clean stop the queues get a moment to drain; an operator killed loses the Events
still queued, as it would have lost those of the pass it was in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import EVENTS, Kube, KubeError

log = logging.getLogger("herdsman.events")

SENDERS = 4
CAPACITY = 2000  # per sender: about 6 Events per release, so a few hundred releases' worth
SECONDS = 10.0  # one Event's budget, retries included


class EventSender:
    def __init__(
        self,
        kube: Kube,
        *,
        senders: int = SENDERS,
        capacity: int = CAPACITY,
        seconds: float = SECONDS,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.kube = kube
        self.senders = max(1, senders)
        self.capacity = max(1, capacity)
        self.seconds = seconds
        self._on_drop = on_drop
        # Created on first use, on the loop that runs the passes.
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Queue one Event about the Rollout `namespace/name`; never waits."""
        if not self._queues:
            self._start()
        # crc32, not hash(): the same Rollout maps to the same sender in every process.
        queue = self._queues[zlib.crc32(f"{namespace}/{name}".encode()) % self.senders]
        try:
            queue.put_nowait(body)
        except asyncio.QueueFull:
            log.debug("event for %s/%s dropped: the queue is full", namespace, name)
            if self._on_drop is not None:
                self._on_drop()

    @property
    def queued(self) -> int:
        return sum(q.qsize() for q in self._queues)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queues = [asyncio.Queue(self.capacity) for _ in range(self.senders)]
        self._tasks = [loop.create_task(self._send(q)) for q in self._queues]

    async def _send(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            ns = body["metadata"]["namespace"]
            try:
                await self.kube.create(EVENTS.url(ns), body, deadline=Deadline(self.seconds))
            except (KubeError, TimeoutError, ConnectionError) as err:
                # Retried within its budget already; the status holds the transition anyway.
                log.debug("event %s for %s/%s not recorded: %s", body["reason"], ns,
                          body["involvedObject"]["name"], err)  # fmt: skip
            except Exception:
                # A sender that died would silently stop every Rollout's Events behind it.
                log.exception("event %s for %s not recorded", body["reason"], ns)
            finally:
                queue.task_done()

    async def close(self, drain: float = 2.0) -> None:
        """Give the queued Events up to `drain` seconds to go out, then stop the senders."""
        if self._queues:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(q.join() for q in self._queues)), timeout=drain
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queues, self._tasks = [], []

"""A workqueue: a bounded number of workers over keys, as client-go's controllers run theirs.

Why not a task per Rollout (a Kopf daemon each, as before): at 10,000 rollouts the daemons,
their stoppers and Kopf's live copy of every body were most of the operator's memory, and every
one of them could start a pass at once (the memory peak of a busy minute stays in the heap).
Here the work is:

- **one pass per key at a time**: a key woken while its pass runs is marked and queued again
  when the pass ends, so no two passes of one rollout ever overlap;
- **wake-ups coalesced**: a key already queued is not queued twice, however many watch events
  arrive;
- **fair**: keys are served first come, first served, and a key goes to the back when woken
  again, so one busy rollout cannot starve the rest — except that a key added as `urgent` (a
  user changed the Rollout's spec) goes ahead of the keys woken by status changes: the time from
  `kubectl apply` to the first action is what people feel, and it no longer waits behind
  every ReplicaSet status update of every other release;
- **timers in one heap**: pauses, measurements, back-offs and resyncs are (when, key) entries;
  only a key's earliest timer counts, later ones are dropped when they come up;
- **observable**: how long keys wait for a worker (by what woke them) goes to `observe_wait`,
  and `pending()` / `running()` say how deep the queue is and how many workers are busy —
  what tells a user whether `--workers` or the API server is what a slow release waits on;
- **gated**: workers take keys only while the gate is open (this replica is the one acting, see
  handlers.py); closing it cancels the passes in flight, as a crash would, and forgets the
  queue, since the watch that refills it is paused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger("herdsman.workqueue")

K = TypeVar("K", bound=Hashable)


class Done:
    """What a pass returns when its key needs no more passes (the object is gone)."""


DONE = Done()

# A pass returns: seconds until its key is due again (0: at once), None: only when woken, or DONE.
Due = float | None | Done


@dataclass
class WorkQueue(Generic[K]):
    handler: Callable[[K], Coroutine[Any, Any, Due]]
    workers: int = 64
    clock: Callable[[], float] = time.monotonic
    # Called as a worker takes a key: (urgent, seconds it waited since it was queued).
    observe_wait: Callable[[bool, float], None] | None = None
    # (0: urgent, 1: not; arrival number, key); an entry whose key is no longer in _queued at
    # that priority is stale (served already, or promoted) and skipped.
    _fifo: asyncio.PriorityQueue[tuple[int, int, K]] = field(default_factory=asyncio.PriorityQueue)
    _queued: dict[K, int] = field(default_factory=dict)
    _since: dict[K, float] = field(default_factory=dict)  # when each queued key was queued
    _running: dict[K, asyncio.Task[Due]] = field(default_factory=dict)
    _again: dict[K, bool] = field(default_factory=dict)  # woken mid-pass -> urgent
    _due: dict[K, float] = field(default_factory=dict)
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _timer: asyncio.Event = field(default_factory=asyncio.Event)
    _open: bool = True

    # --- what the watch handlers and the passes call -------------------------------------------

    def add(self, key: K, *, urgent: bool = False) -> None:
        """Queue `key` for a pass now (a watch event, or a timer that came up)."""
        if not self._open:
            return  # not acting: what is due now is found again when acting resumes
        priority = 0 if urgent else 1
        if key in self._running:
            self._again[key] = urgent or self._again.get(key, False)
        elif self._queued.get(key, 2) > priority:
            self._queued[key] = priority
            self._since[key] = self.clock()  # a promotion to urgent counts from the promotion
            self._fifo.put_nowait((priority, next(self._seq), key))

    def add_after(self, key: K, seconds: float) -> None:
        """Queue `key` in `seconds`, unless an earlier timer for it is already set."""
        if seconds <= 0:
            self.add(key)
            return
        if not self._open:
            return
        when = self.clock() + seconds
        if self._due.get(key, float("inf")) <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        self._timer.set()

    def forget(self, key: K) -> None:
        """No more passes for `key` unless it is added again (its timers are dropped)."""
        self._due.pop(key, None)
        self._again.pop(key, None)

    def recheck(self) -> None:
        """Look at the timers now rather than when the earliest is due (the clock was moved)."""
        self._timer.set()

    def pending(self) -> int:
        """Keys waiting for a worker."""
        return len(self._queued)

    def running(self) -> int:
        """Passes in flight (busy workers)."""
        return len(self._running)

    def timers(self) -> int:
        """Keys with a timer set."""
        return len(self._due)

    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        if not self._open:
            self._open = True
            log.info("acting: passes run")

    def close(self) -> None:
        """Stop acting: cancel the passes in flight and forget every queued key and timer."""
        if not self._open:
            return
        self._open = False
        log.info("not acting: no pass runs until this replica acts again")
        for task in self._running.values():
            task.cancel()
        while not self._fifo.empty():
            self._fifo.get_nowait()
        self._queued.clear()
        self._since.clear()
        self._again.clear()
        self._due.clear()
        self._heap.clear()

    # --- the workers ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the workers and the timer until cancelled."""
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        tasks.append(asyncio.create_task(self._timers()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _worker(self) -> None:
        while True:
            priority, _, key = await self._fifo.get()
            if self._queued.get(key) != priority:
                continue  # stale: served already, or promoted to urgent
            del self._queued[key]
            since = self._since.pop(key, None)
            if not self._open:
                continue
            if self.observe_wait is not None and since is not None:
                self.observe_wait(priority == 0, self.clock() - since)
            self._due.pop(key, None)  # this pass serves any timer that was set for it
            task = asyncio.create_task(self.handler(key))
            self._running[key] = task
            try:
                due = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    task.cancel()
                    raise  # the worker itself is being cancelled
                continue  # the gate closed on this pass; the queue was cleared with it
            except Exception:
                # The handler turns its own failures into a back-off; this is a bug in it.
                log.exception("pass for %s failed", key)
                due = 5.0
            finally:
                self._running.pop(key, None)
            if isinstance(due, Done):
                self.forget(key)
            elif key in self._again:
                self.add(key, urgent=self._again.pop(key))
            elif due is not None:
                self.add_after(key, due)

    async def _timers(self) -> None:
        while True:
            self._timer.clear()
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) == when:  # else superseded by an earlier timer, or served
                    del self._due[key]
                    self.add(key)
            wait = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer.wait(), wait)

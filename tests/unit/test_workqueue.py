"""The workqueue's promises (workqueue.py): one pass per key at a time, wake-ups coalesced,
first come first served, the earliest timer wins, and a closed gate runs nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herdsman.reconcile import spec_unseen
from herdsman.workqueue import DONE, Due, WorkQueue

pytestmark = pytest.mark.unit


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


class Recorder:
    """A handler that records passes, holds them until released, and returns what it is told."""

    def __init__(self, due: Callable[[str], Due] = lambda _: None) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.in_flight: set[str] = set()
        self.overlap = False
        self.release = asyncio.Event()
        self.release.set()
        self.due = due

    async def __call__(self, key: str) -> Due:
        if key in self.in_flight:
            self.overlap = True
        self.in_flight.add(key)
        self.started.append(key)
        try:
            await self.release.wait()
            await asyncio.sleep(0)
            return self.due(key)
        finally:
            self.in_flight.discard(key)
            self.finished.append(key)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_wake_ups_of_a_queued_key_coalesce_and_order_is_first_come_first_served() -> None:
    async def scenario() -> None:
        rec = Recorder()
        queue: WorkQueue[str] = WorkQueue(rec, workers=1)
        for key in ("a", "b", "a", "c", "b", "a"):
            queue.add(key)
        task = asyncio.create_task(queue.run())
        await settle()
        assert rec.started == ["a", "b", "c"]
        task.cancel()

    run(scenario())


def test_a_key_woken_during_its_pass_runs_once_more_after_it_never_beside_it() -> None:
    async def scenario() -> None:
        rec = Recorder()
        rec.release.clear()
        queue: WorkQueue[str] = WorkQueue(rec, workers=4)
        task = asyncio.create_task(queue.run())
        queue.add("a")
        await settle()
        for _ in range(5):
            queue.add("a")  # watch events while its pass runs
        await settle()
        assert rec.started == ["a"]
        rec.release.set()
        await settle()
        assert rec.started == ["a", "a"]
        assert not rec.overlap
        task.cancel()

    run(scenario())


def test_the_earliest_timer_wins_and_a_pass_serves_it() -> None:
    async def scenario() -> None:
        now = [0.0]
        rec = Recorder()
        queue: WorkQueue[str] = WorkQueue(rec, workers=2, clock=lambda: now[0])
        task = asyncio.create_task(queue.run())
        queue.add_after("a", 30)
        queue.add_after("a", 5)  # earlier: replaces
        queue.add_after("a", 60)  # later: ignored
        assert queue.timers() == 1
        now[0] = 4.9
        queue.recheck()  # the fake clock moved
        await settle()
        assert rec.started == []
        now[0] = 5.0
        queue.recheck()
        await settle()
        assert rec.started == ["a"]
        now[0] = 100.0
        queue.recheck()
        await settle()
        assert rec.started == ["a"], "the 30 s and 60 s timers were superseded"
        task.cancel()

    run(scenario())


def test_a_pass_that_says_done_leaves_no_timer_and_due_sets_one() -> None:
    async def scenario() -> None:
        rec = Recorder(due=lambda key: DONE if key == "gone" else 7.0)
        queue: WorkQueue[str] = WorkQueue(rec, workers=2)
        task = asyncio.create_task(queue.run())
        queue.add("gone")
        queue.add("here")
        await settle()
        assert sorted(rec.finished) == ["gone", "here"]
        assert queue.timers() == 1
        task.cancel()

    run(scenario())


def test_a_closed_gate_cancels_passes_in_flight_and_runs_nothing_until_opened() -> None:
    async def scenario() -> None:
        rec = Recorder()
        rec.release.clear()
        queue: WorkQueue[str] = WorkQueue(rec, workers=2)
        task = asyncio.create_task(queue.run())
        queue.add("a")
        queue.add("b")
        queue.add_after("c", 1)
        await settle()
        assert sorted(rec.in_flight) == ["a", "b"]
        queue.close()
        await settle()
        assert rec.in_flight == set(), "passes in flight were cancelled"
        assert queue.timers() == 0
        assert queue.pending() == 0
        rec.release.set()
        queue.add("d")  # a late watch event while not acting
        await settle()
        assert rec.started == ["a", "b"]
        queue.open()
        queue.add("e")
        await settle()
        assert rec.started == ["a", "b", "e"]
        task.cancel()

    run(scenario())


def test_a_handler_that_raises_is_retried_later_and_the_worker_survives() -> None:
    async def scenario() -> None:
        calls: list[str] = []

        async def handler(key: str) -> Due:
            calls.append(key)
            if key == "bad":
                raise RuntimeError("bug")
            return None

        queue: WorkQueue[str] = WorkQueue(handler, workers=1)
        task = asyncio.create_task(queue.run())
        queue.add("bad")
        queue.add("good")
        await settle()
        assert calls == ["bad", "good"]
        assert queue.timers() == 1  # "bad" comes back after a back-off
        task.cancel()

    run(scenario())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=40),
    st.integers(1, 4),
)
def test_every_woken_key_gets_a_pass_after_its_last_wake_and_never_two_at_once(
    wakes: list[str], workers: int
) -> None:
    async def scenario() -> None:
        rec = Recorder()
        queue: WorkQueue[str] = WorkQueue(rec, workers=workers)
        task = asyncio.create_task(queue.run())
        woken_at: dict[str, int] = {}
        for i, key in enumerate(wakes):
            queue.add(key)
            woken_at[key] = len(rec.started)  # passes started before this wake
            if i % 3 == 0:
                await asyncio.sleep(0)
        await settle()
        await settle()
        assert not rec.overlap
        for key, before in woken_at.items():
            assert key in rec.started[before:], f"{key} was woken and never served after"
        assert len(rec.started) <= len(wakes)
        task.cancel()

    run(scenario())


def test_an_urgent_key_goes_ahead_of_status_wake_ups_and_is_served_once() -> None:
    async def scenario() -> None:
        rec = Recorder()
        queue: WorkQueue[str] = WorkQueue(rec, workers=1)
        for key in ("a", "b", "c"):
            queue.add(key)
        queue.add("c", urgent=True)  # promoted: a user changed its spec
        queue.add("d", urgent=True)
        queue.add("a", urgent=False)  # already queued: no second pass
        task = asyncio.create_task(queue.run())
        await settle()
        assert rec.started == ["c", "d", "a", "b"]
        task.cancel()

    run(scenario())


def test_urgency_woken_during_a_pass_is_kept_for_the_pass_after_it() -> None:
    async def scenario() -> None:
        rec = Recorder()
        rec.release.clear()
        queue: WorkQueue[str] = WorkQueue(rec, workers=1)
        task = asyncio.create_task(queue.run())
        queue.add("a")
        await settle()
        queue.add("b")
        queue.add("a", urgent=True)  # its spec changed while its pass ran
        rec.release.set()
        await settle()
        assert rec.started == ["a", "a", "b"]
        task.cancel()

    run(scenario())


def test_a_spec_the_last_pass_has_not_recorded_is_urgent() -> None:
    def body(generation: int | None, observed: int | None) -> dict[str, Any]:
        return {"metadata": {"generation": generation}, "status": {"observedGeneration": observed}}

    assert spec_unseen(body(2, 1))  # kubectl apply: a new generation
    assert spec_unseen(body(1, None))  # created, no pass yet
    assert not spec_unseen(body(2, 2))  # a status update of a recorded spec
    assert not spec_unseen({"metadata": {}})


def test_each_wait_is_observed_from_the_queueing_by_what_woke_it() -> None:
    async def scenario() -> None:
        now = [100.0]
        waits: list[tuple[bool, float]] = []
        rec = Recorder()
        rec.release.clear()
        queue: WorkQueue[str] = WorkQueue(rec, workers=1, clock=lambda: now[0])
        queue.observe_wait = lambda urgent, seconds: waits.append((urgent, seconds))
        queue.add("a")
        now[0] = 101.0
        queue.add("b")
        queue.add("a")  # coalesced: still counted from its first queueing
        now[0] = 103.0
        queue.add("c")
        queue.add("c", urgent=True)  # promoted: counted from the promotion
        now[0] = 104.0
        task = asyncio.create_task(queue.run())
        await settle()
        assert rec.started == ["c"]
        assert (queue.pending(), queue.running()) == (2, 1)
        assert waits == [(True, 1.0)]
        now[0] = 110.0
        rec.release.set()
        await settle()
        assert rec.started == ["c", "a", "b"]
        assert waits == [(True, 1.0), (False, 10.0), (False, 9.0)]
        assert (queue.pending(), queue.running()) == (0, 0)
        task.cancel()

    run(scenario())


def test_a_queue_exports_its_depth_busy_workers_and_waits() -> None:
    from herdsman import metrics

    depth, busy = [5], [2]
    waited = metrics.track_queue("test", lambda: depth[0], lambda: busy[0])
    waited(True, 0.3)
    waited(False, 7.0)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, {"queue": "test", **labels})

    assert sample("herdsman_workqueue_depth") == 5
    assert sample("herdsman_workqueue_busy_workers") == 2
    depth[0] = 0  # read at the scrape, not when tracked
    assert sample("herdsman_workqueue_depth") == 0
    assert sample("herdsman_workqueue_wait_seconds_count", wake="spec") == 1
    assert sample("herdsman_workqueue_wait_seconds_bucket", wake="spec", le="0.25") == 0
    assert sample("herdsman_workqueue_wait_seconds_bucket", wake="spec", le="0.5") == 1
    assert sample("herdsman_workqueue_wait_seconds_sum", wake="status") == 7.0

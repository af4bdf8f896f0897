"""Experiments run on a workqueue (experiments.py): a watch event queues a pass, a deleted
Experiment's last pass ends its key, and a replica that stops acting forgets them all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from herdsman.experiments import ExperimentRuntime

pytestmark = pytest.mark.unit


class GoneKube:
    """Every GET finds nothing: the Experiment was deleted."""

    def __init__(self) -> None:
        self.gets: list[str] = []

    async def get(self, url: str, **_: Any) -> None:
        self.gets.append(url)


def test_a_deleted_experiment_gets_one_last_pass_and_is_forgotten() -> None:
    async def scenario() -> None:
        kube = GoneKube()
        runtime = ExperimentRuntime(kube=kube)  # type: ignore[arg-type]
        task = asyncio.create_task(runtime.queue.run())
        runtime.observed("shop", "exp", "checkout")
        for _ in range(100):
            if kube.gets and not runtime.queue.pending():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert len(kube.gets) == 1
        assert kube.gets[0].endswith("/namespaces/shop/experiments/exp")
        runtime.wake("shop", "exp")  # forgotten: a wake-up for it queues nothing
        assert runtime.queue.pending() == 0
        assert runtime.queue.timers() == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_replica_that_stops_acting_runs_nothing_until_it_acts_again() -> None:
    async def scenario() -> None:
        kube = GoneKube()
        runtime = ExperimentRuntime(kube=kube)  # type: ignore[arg-type]
        runtime.stop_acting()
        task = asyncio.create_task(runtime.queue.run())
        runtime.observed("shop", "exp", None)
        await asyncio.sleep(0.05)
        assert kube.gets == []
        runtime.start_acting()  # it knows "exp" from the watch: a pass now
        for _ in range(100):
            if kube.gets:
                break
            await asyncio.sleep(0.01)
        assert len(kube.gets) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 10))

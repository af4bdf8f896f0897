"""A pass whose inputs are exactly those its predecessor decided on does nothing (issue 17).

At 1,000 rollouts one release woke each rollout ~27 times — every ReplicaSet status update,
every echo of our own writes — for ~20 API calls in all. These tests pin down when a pass may
be skipped (same Rollout, same Deployment, same observed world, nothing due) and when it must
run (any input changed, its due time came, the last pass failed, analysis runs exist).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from harness.rollouts import rollout
from herdsman import reconcile
from herdsman.cluster.apply import Applier
from herdsman.cluster.budget import Deadline
from herdsman.cluster.cache import Cache, slim
from herdsman.cluster.kube import Kube, KubeError

pytestmark = pytest.mark.unit


class FakeKube(Kube):
    """Answers writes like the API server would, and records them."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str]] = []
        self.version = 100
        self.fail = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        deadline: Deadline,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        if self.fail:
            raise KubeError(500, "InternalError", "boom")
        self.calls.append((method, path))
        if method == "GET":
            return {"items": []} if query else None
        self.version += 1
        if method == "POST" and isinstance(body, dict):
            out = copy.deepcopy(body)
            out["metadata"].update(
                resourceVersion=str(self.version), uid=f"u{self.version}", generation=1
            )
            out["metadata"].setdefault("namespace", "ns")
            if self.on_write is not None:
                self.on_write(out)
            return out
        return {}


class World:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.cache = Cache()
        self.kube.on_write = self.cache.note
        self.groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.cache.bind("ReplicaSet", self.groups)
        self.cache.bind("AnalysisRun", {})
        self.now = 1000.0
        self.runtime = reconcile.Runtime(
            kube=self.kube,
            applier=Applier(self.kube),
            cache=self.cache,
            monotonic=lambda: self.now,
        )
        self.body = rollout(
            "r", replicas=2, steps=[{"setWeight": 50}, {"pause": {}}], services=False
        )
        self.body["metadata"].update(namespace="ns", uid="ru", resourceVersion="1", generation=1)
        self.cache.bind_rollout("ns", "r", self.body)
        self.decided = 0
        self.loop = asyncio.new_event_loop()

    def run(self, runtime: reconcile.Runtime | None = None) -> Any:
        return self.loop.run_until_complete((runtime or self.runtime).reconcile("ns", "r"))

    def ready(self, replicas: int, **status: Any) -> None:
        """The watch delivers v001 with this status (as the controller manager reports it)."""
        written = self.cache.owned("ReplicaSet", "ns", "r")
        rs = slim(written[0])
        rs["metadata"]["resourceVersion"] = str(self.kube.version + 50)
        rs["status"] = {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
            **status,
        }
        self.kube.version += 50
        self.groups[("ns", "r")] = [rs]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World()
    real = reconcile.decide

    def counted(*args: Any, **kwargs: Any) -> Any:
        w.decided += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(reconcile, "decide", counted)
    yield w
    w.loop.close()


def test_same_inputs_are_decided_once_and_any_change_is_decided_again(world: World) -> None:
    world.run()  # creates v001
    assert world.decided == 1
    world.ready(2)
    world.run()
    decided, calls = world.decided, len(world.kube.calls)
    world.run()
    world.run()
    assert world.decided == decided, "passes on unchanged inputs decided again"
    assert len(world.kube.calls) == calls, "passes on unchanged inputs wrote"

    # A status field the engine never reads changes: still nothing to decide.
    world.ready(2, fullyLabeledReplicas=2)
    world.run()
    assert world.decided == decided

    # One it reads changes: decided again.
    world.ready(1)
    world.run()
    assert world.decided == decided + 1

    # The Rollout changes (its template, here): decided again.
    world.body["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    world.run()
    assert world.decided == decided + 2


def test_a_due_time_or_a_resync_always_decides(world: World) -> None:
    world.run()
    world.ready(2)
    world.run()
    decided = world.decided
    world.run()
    assert world.decided == decided
    world.now += reconcile.RESYNC_SECONDS + 1
    world.run()
    assert world.decided == decided + 1


def test_after_a_failed_pass_the_next_one_decides(world: World) -> None:
    world.run()
    world.ready(2)
    world.run()
    decided = world.decided
    world.kube.fail = True
    world.cache.refresh("ns", "r")  # the next read is a GET: it fails
    with pytest.raises(KubeError):
        world.run()
    world.kube.fail = False
    world.run()
    assert world.decided == decided + 1


def test_a_restarted_operator_decides_its_first_pass(world: World) -> None:
    world.run()
    world.ready(2)
    world.run()
    fresh = reconcile.Runtime(
        kube=world.kube, applier=Applier(world.kube), cache=world.cache, monotonic=lambda: 0.0
    )
    decided = world.decided
    world.run(fresh)
    assert world.decided == decided + 1

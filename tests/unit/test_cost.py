"""Release cost: extra replica-seconds beyond the stable size, exact and never a write storm."""

from __future__ import annotations

import pytest
from sim import Sim, manifest

from herdsman.api.rollout import ServerGroupStatus
from herdsman.engine.cost import extra_by_role

pytestmark = pytest.mark.unit


def row(name: str, role: str, replicas: int) -> ServerGroupStatus:
    return ServerGroupStatus(
        name=name, revision=1, role=role, pod_template_hash="h", replicas=replicas
    )  # type: ignore[arg-type]


def test_only_pods_beyond_the_stable_size_cost_extra() -> None:
    # Replica ratio: the canary replaces stable pods, nothing extra.
    assert extra_by_role([row("a", "stable", 8), row("b", "canary", 2)], 10)["canary"] == 0
    # A router keeps the stable group full: every canary pod is extra.
    assert extra_by_role([row("a", "stable", 10), row("b", "canary", 2)], 10)["canary"] == 2
    # Blue/green: the whole preview is extra; the active group is the stable size.
    assert extra_by_role([row("a", "active", 10), row("b", "preview", 10)], 10)["preview"] == 10
    # The baseline is charged first: it exists only for the comparison.
    charged = extra_by_role(
        [row("a", "stable", 10), row("b", "canary", 2), row("c", "baseline", 2)], 10
    )
    assert charged == {"baseline": 2, "preview": 0, "canary": 2, "old": 0}


def test_a_surge_is_charged_for_exactly_as_long_as_it_lasts() -> None:
    s = Sim(
        manifest(
            replicas=10, steps=[{"setWeight": 50}, {"pause": {}}], maxSurge=2, maxUnavailable=0
        )
    )
    s.run_until(lambda s: s.status.phase == "Healthy")
    s.set_image("app:v2")
    s.reconcile()  # canary created with 2 surge pods: 12 asked for, 2 extra
    s.tick(30)
    s.reconcile()  # no pod came up yet: nothing changes, nothing is written
    s.settle()
    s.tick(5)
    s.reconcile()  # pods up: the pass shifts and accounts the 35 s of 2 extra pods
    cost = s.status.cost
    assert cost is not None
    assert cost.canary_replica_seconds == pytest.approx(70.0)


def test_a_quiet_rollout_rewrites_no_status() -> None:
    s = Sim(manifest(replicas=4, steps=[{"setWeight": 50}, {"pause": {}}]))
    s.run_until(lambda s: s.status.phase == "Paused" or s.status.phase == "Healthy")
    s.set_image("app:v2")
    s.run_until(lambda s: s.status.phase == "Paused")
    before = s.body["status"]
    s.tick(600)
    d = s.reconcile()
    assert d.status.to_wire() == before
    assert not d.transitions

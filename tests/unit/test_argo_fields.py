"""Rollout fields with Argo's semantics: antiAffinity, rollbackWindow, minPodsPerReplicaSet,
canary scaleDownDelayRevisionLimit, blueGreen.maxUnavailable (engine, on the Sim)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sim import Sim, manifest
from test_engine_invariants import converged
from test_engine_scenarios import PROMOTE_STEPS, ROUTER, SERVICES, at_step, healthy, reasons

from herdsman.api.rollout import Rollout
from herdsman.engine.affinity import with_anti_affinity
from herdsman.engine.decide import decide
from herdsman.engine.world import PodView, ServiceState
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.unit


def created_templates(sim: Sim, since: int = 0) -> dict[str, dict[str, Any]]:
    return {g.name: g.template for d in sim.history[since:] for g in d.desired.create_groups}


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 40}}, "preferred"),
        ({"requiredDuringSchedulingIgnoredDuringExecution": {}}, "required"),
    ],
)
def test_anti_affinity_keeps_the_new_group_off_the_stable_groups_nodes(
    rule: dict[str, Any], field: str
) -> None:
    sim = healthy(manifest(antiAffinity=rule))
    first = created_templates(sim)["checkout-v001"]
    assert "affinity" not in first["spec"]  # nothing older to avoid
    mark = len(sim.history)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    anti = created_templates(sim, mark)["checkout-v002"]["spec"]["affinity"]["podAntiAffinity"]
    term = {
        "labelSelector": {"matchLabels": {LABEL_GROUP: "checkout-v001"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    if field == "preferred":
        assert anti["preferredDuringSchedulingIgnoredDuringExecution"] == [
            {"weight": 40, "podAffinityTerm": term}
        ]
    else:
        assert anti["requiredDuringSchedulingIgnoredDuringExecution"] == [term]
    # The revision is the spec's template: the injected rule does not make it another one.
    assert sim.status.current_revision == 2


def test_anti_affinity_keeps_the_users_own_affinity() -> None:
    template = {
        "spec": {
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]
                }
            }
        }
    }
    rule = Rollout.model_validate(
        manifest(antiAffinity={"requiredDuringSchedulingIgnoredDuringExecution": {}})
    ).spec.strategy.canary
    assert rule is not None
    out = with_anti_affinity(template, rule.anti_affinity, "g-v001")
    terms = out["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0] == {"topologyKey": "zone"}
    assert len(terms) == 2
    assert template["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ] == [{"topologyKey": "zone"}]


def _to_v3_then_back_to_v1(body: dict[str, Any]) -> tuple[Sim, int]:
    sim = healthy(body)
    for image in ("app:v2", "app:v3"):
        sim.set_image(image)
        sim.run_until(at_step(1))
        sim.promote(full=True)
        sim.run_until(converged)
    mark = len(sim.history)
    sim.set_image("app:v1")
    return sim, mark


def test_rollback_window_fast_tracks_a_rollback_within_it() -> None:
    body = manifest(steps=PROMOTE_STEPS)
    body["spec"]["rollbackWindow"] = {"revisions": 2}
    sim, mark = _to_v3_then_back_to_v1(body)
    sim.run_until(converged)
    assert reasons(sim, mark).count("FastRollback") == 1
    assert "StepStarted" not in reasons(sim, mark)


def test_a_rollback_beyond_the_window_goes_through_the_steps() -> None:
    body = manifest(steps=PROMOTE_STEPS)
    body["spec"]["rollbackWindow"] = {"revisions": 1}
    sim, mark = _to_v3_then_back_to_v1(body)
    sim.run_until(at_step(1))
    assert "FastRollback" not in reasons(sim, mark)
    assert sim.status.canary_server_group == "checkout-v001"


def test_without_a_window_every_kept_revision_is_a_fast_rollback() -> None:
    sim, mark = _to_v3_then_back_to_v1(manifest(steps=PROMOTE_STEPS))
    sim.run_until(converged)
    assert reasons(sim, mark).count("FastRollback") == 1


def test_min_pods_per_replica_set_lifts_a_small_canary() -> None:
    body = manifest(
        replicas=10,
        steps=[{"setWeight": 5}, {"pause": {}}],
        trafficRouting=ROUTER,
        minPodsPerReplicaSet=3,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    assert sim.groups["checkout-v002"].replicas == 3  # 5% of 10 is 1 pod; at least 3


def test_min_pods_per_replica_set_never_exceeds_spec_replicas() -> None:
    body = manifest(
        replicas=2,
        steps=[{"setWeight": 5}, {"pause": {}}],
        trafficRouting=ROUTER,
        minPodsPerReplicaSet=5,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    assert sim.groups["checkout-v002"].replicas == 2


def test_scale_down_delay_revision_limit_keeps_only_the_newest_previous_group_warm() -> None:
    body = manifest(
        replicas=4,
        steps=[{"setWeight": 50}, {"pause": {}}],
        trafficRouting=ROUTER,
        scaleDownDelaySeconds=600,
        scaleDownDelayRevisionLimit=1,
        **SERVICES,
    )
    sim = healthy(body)
    for image in ("app:v2", "app:v3"):
        sim.set_image(image)
        sim.run_until(at_step(1))
        sim.promote(full=True)
        sim.run_until(
            lambda s, i=image: (
                s.status.phase == "Healthy"
                and s.status.stable_server_group == f"checkout-v00{i[-1]}"
            )
        )
    for _ in range(5):
        sim.reconcile()
        sim.settle()
    # v002 (the newest previous) waits out its delay; v001 went down at once.
    assert sim.groups["checkout-v002"].replicas == 4
    assert sim.groups["checkout-v001"].replicas == 0


@pytest.mark.parametrize(("max_unavailable", "deleted"), [(None, 1), (2, 2), ("50%", 2)])
def test_blue_green_max_unavailable_bounds_a_restart(
    max_unavailable: int | str | None, deleted: int
) -> None:
    body = manifest(replicas=4)
    bg: dict[str, Any] = {"activeService": "checkout"}
    if max_unavailable is not None:
        bg["maxUnavailable"] = max_unavailable
    body["spec"]["strategy"] = {"blueGreen": bg}
    sim = Sim.of(body)
    sim.services["checkout"] = ServiceState("checkout", True)
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.body["spec"]["restartAt"] = (sim.now - timedelta(seconds=1)).isoformat()
    pods = tuple(
        PodView(f"p{i}", "checkout-v001", sim.now - timedelta(hours=1), True) for i in range(4)
    )
    decision = decide(sim.rollout, replace(sim.world(), pods=pods), sim.now)
    assert len(decision.desired.delete_pods) == deleted

"""Canary scenarios on the real control plane, told the way a user would tell them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout
from herdsman.cli import actions
from herdsman.cluster.kube import ROLLOUTS
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.e2e

STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {"duration": "1s"}},
]


def started_steps(operator: OperatorProcess) -> list[str]:
    return [
        t.message.split(": ", 1)[1]
        for t in operator.transitions("checkout")
        if t.reason == "StepStarted"
    ]


def test_a_canary_runs_every_step_to_completion(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=STEPS))
    rollouts.wait_healthy("checkout-v001")

    rollouts.set_image(IMAGE_V2)
    # At 20% the replica ratio is 2 canary pods of 10.
    rollouts.wait(
        lambda s: s.get("canaryWeight") == 20 and s.get("weights", {}).get("canary") == 20,
        what="20% canary",
    )
    sizes = rollouts.sizes()
    assert sizes["checkout-v002"] == (2, 2)
    assert rollouts.selector("checkout-canary")[LABEL_GROUP] == "checkout-v002"
    assert rollouts.selector("checkout")[LABEL_GROUP] == "checkout-v001"

    status = rollouts.wait_healthy("checkout-v002", timeout=60)
    assert status["weights"] == {"stable": 100, "canary": 0, "baseline": 0}
    rollouts.wait(
        lambda _: rollouts.sizes() == {"checkout-v001": (0, 0), "checkout-v002": (10, 10)},
        what="the old group drained",
    )
    assert rollouts.selector("checkout")[LABEL_GROUP] == "checkout-v002"
    assert rollouts.selector("checkout-canary")[LABEL_GROUP] == "checkout-v002"
    # The steps ran in order, each announced once.
    assert started_steps(operator) == ["setWeight 20", "pause 2s", "setWeight 50", "pause 1s"]
    assert operator.logged("checkout", "RolloutCompleted").count("RolloutCompleted") == 1
    # A user can follow it in the log alone: every line names rollout, revision, step, weight.
    completed = operator.wait_for("RolloutCompleted", rollout="checkout")
    assert completed.revision == "2"
    assert completed.rollout.endswith("/checkout")
    assert not operator.errors()


def test_an_indefinite_pause_waits_for_promote(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        rollout(steps=[{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}])
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait_phase("Paused", step="2/4")
    assert status["pauseConditions"][0]["reason"] == "PauseStep"
    assert rollouts.sizes()["checkout-v002"] == (3, 3)

    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_phase("Paused", step="4/4")
    assert rollouts.sizes()["checkout-v002"] == (6, 6)
    # A second promote for a step already left is stale and must not skip the next pause.
    rollouts.rest.patch(
        ROLLOUTS.url(rollouts.ns, "checkout", "status"), {"status": {"promote": {"fromStep": 1}}}
    )
    rollouts.wait(lambda s: s.get("promote") is None, what="stale promote consumed")
    assert rollouts.status()["phase"] == "Paused"

    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    assert operator.logged("checkout", "Promoted", "Promoted").count("Promoted") == 2


def test_promote_full_skips_every_remaining_step(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        rollout(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/4")

    actions.promote(rollouts.rest, rollouts.ns, "checkout", full=True)
    rollouts.wait_healthy("checkout-v002")
    assert "setWeight 50" not in started_steps(operator)
    assert "PromotedFull" in operator.logged("checkout", "PromotedFull")


def test_abort_returns_traffic_to_stable_and_retry_starts_over(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=[{"setWeight": 40}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")

    actions.abort(rollouts.rest, rollouts.ns, "checkout")
    status = rollouts.wait(
        lambda s: s.get("phase") == "Degraded" and s.get("weights", {}).get("stable") == 100,
        what="aborted",
    )
    assert "aborted by user" in status["message"]
    rollouts.wait(
        lambda s: rollouts.sizes() == {"checkout-v001": (10, 10), "checkout-v002": (0, 0)},
        what="canary gone",
    )
    assert rollouts.selector("checkout-canary")[LABEL_GROUP] == "checkout-v001"
    assert operator.logged("checkout", "RolloutAborted").count("RolloutAborted") == 1

    actions.retry(rollouts.rest, rollouts.ns, "checkout")
    status = rollouts.wait_phase("Paused", step="2/2")
    assert status["attempt"] == 1
    assert rollouts.sizes()["checkout-v002"] == (4, 4)
    assert "RolloutRetried" in operator.logged("checkout", "RolloutRetried")


def test_undo_goes_back_to_an_existing_group_without_steps(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    steps_before = len(started_steps(operator))

    assert actions.undo(rollouts.rest, rollouts.ns, "checkout") == 1
    rollouts.wait_healthy("checkout-v001")
    # The group that still existed was reused: no new revision, no steps run again.
    assert set(rollouts.groups()) == {"checkout-v001", "checkout-v002"}
    assert len(started_steps(operator)) == steps_before
    assert "FastRollback" in operator.logged("checkout", "FastRollback")
    assert rollouts.status()["currentRevision"] == 1


def test_undo_mid_canary_sends_traffic_back_to_the_warm_stable(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")

    actions.undo(rollouts.rest, rollouts.ns, "checkout", to_revision=1)
    rollouts.wait_healthy("checkout-v001")
    # Healthy as soon as the stable serves everything; the old group's pods drain right after.
    rollouts.wait(
        lambda _: rollouts.sizes() == {"checkout-v001": (10, 10), "checkout-v002": (0, 0)},
        what="the canary drained",
    )


def test_a_new_revision_mid_rollout_abandons_the_half_done_canary(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=[{"setWeight": 30}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")

    rollouts.set_image(IMAGE_V3)
    status = rollouts.wait(
        lambda s: s.get("canaryServerGroup") == "checkout-v003" and s.get("phase") == "Paused",
        what="v003 canary paused",
    )
    assert status["stableServerGroup"] == "checkout-v001"
    rollouts.wait(lambda s: rollouts.sizes().get("checkout-v002") == (0, 0), what="v002 drained")
    assert rollouts.sizes()["checkout-v003"] == (3, 3)
    assert operator.logged("checkout", "NewRevision", "NewRevision").count("NewRevision") == 2


def test_an_hpa_scales_the_rollout_through_the_scale_subresource(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(replicas=4, steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    scale = rollouts.rest.get(ROLLOUTS.url(rollouts.ns, "checkout", "scale"))
    assert scale is not None
    assert scale["spec"]["replicas"] == 4
    assert scale["status"]["selector"] == "app=checkout"

    # What an HPA does: write spec.replicas through /scale.
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout", "scale"), {"spec": {"replicas": 8}})
    rollouts.wait(
        lambda s: s.get("availableReplicas") == 8 and s.get("phase") == "Healthy", what="8 pods"
    )

    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    assert rollouts.sizes()["checkout-v002"] == (4, 4)
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout", "scale"), {"spec": {"replicas": 4}})
    rollouts.wait(
        lambda s: rollouts.sizes() == {"checkout-v001": (2, 2), "checkout-v002": (2, 2)},
        what="50/50 of 4",
    )
    scale = rollouts.rest.get(ROLLOUTS.url(rollouts.ns, "checkout", "scale"))
    assert scale is not None
    assert scale["status"]["replicas"] == 4


def test_the_operator_killed_mid_rollout_finishes_it_after_restart(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(
        rollout(
            steps=[
                {"setWeight": 20},
                {"pause": {"duration": "3s"}},
                {"setWeight": 60},
                {"pause": {}},
            ]
        )
    )
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait(lambda s: s.get("step") == "2/4", what="the timed pause")
    operator.kill()

    # While it is down the timed pause runs out: nothing moves until an operator is back.
    before = rollouts.sizes()
    time.sleep(3.5)
    assert rollouts.sizes() == before

    operator.start()
    rollouts.wait_phase("Paused", step="4/4", timeout=60)
    assert rollouts.sizes()["checkout-v002"] == (6, 6)
    actions.promote(rollouts.rest, rollouts.ns, "checkout")
    rollouts.wait_healthy("checkout-v002")
    # Nothing was created twice, and no step was announced twice across the restart.
    assert set(rollouts.groups()) == {"checkout-v001", "checkout-v002"}
    assert started_steps(operator) == [
        "setWeight 20",
        "pause 3s",
        "setWeight 60",
        "pause (until promoted)",
    ]


def test_a_semantically_wrong_spec_is_reported_and_touches_nothing(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    rollouts.create(rollout(steps=[{"setWeight": 50}, {"pause": {}}]))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    rollouts.wait_phase("Paused", step="2/2")
    sizes, stable_sel, canary_sel = (
        rollouts.settled_sizes(),
        rollouts.selector("checkout"),
        rollouts.selector("checkout-canary"),
    )

    body = rollouts.get()
    body["spec"]["strategy"]["canary"]["canaryService"] = "checkout"
    body["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE_V3
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": body["spec"]})
    status = rollouts.wait(
        lambda s: any(
            c["type"] == "InvalidSpec" and c["status"] == "True" for c in s.get("conditions", [])
        ),
        what="InvalidSpec",
    )
    assert "spec.strategy.canary.canaryService: must differ from stableService" in status["message"]
    assert status["phase"] == "Degraded"
    time.sleep(1.5)
    # The running groups and the traffic are exactly as they were; no v003 was created.
    assert rollouts.sizes() == sizes
    assert rollouts.selector("checkout") == stable_sel
    assert rollouts.selector("checkout-canary") == canary_sel

    # A missing Service is just as clear, and fixing the spec resumes the rollout.
    body["spec"]["strategy"]["canary"]["canaryService"] = "nope"
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": body["spec"]})
    rollouts.wait(
        lambda s: "Service 'nope' not found" in s.get("message", ""),
        what="missing service reported",
    )
    body["spec"]["strategy"]["canary"]["canaryService"] = "checkout-canary"
    rollouts.rest.patch(ROLLOUTS.url(rollouts.ns, "checkout"), {"spec": body["spec"]})
    rollouts.wait(lambda s: s.get("canaryServerGroup") == "checkout-v003", what="resumed with v003")
    assert "SpecValid" in operator.logged("checkout", "SpecValid")


def test_restart_replaces_every_pod_without_going_below_the_floor(
    operator: OperatorProcess, rollouts: Rollouts
) -> None:
    # 4 pods, maxUnavailable 1: never fewer than 3 ready while the pods are replaced.
    rollouts.create(rollout(replicas=4, steps=[{"setWeight": 50}], maxUnavailable=1, maxSurge=0))
    rollouts.wait_healthy("checkout-v001")
    before = {p["metadata"]["name"] for p in rollouts.pods()}
    time.sleep(1.1)  # creation times have one-second resolution; restartAt must be later
    actions.restart(rollouts.rest, rollouts.ns, "checkout")

    lowest = 4
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = rollouts.pods()
        ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and _ready(p)]
        lowest = min(lowest, len(ready))
        names = {p["metadata"]["name"] for p in ready}
        if rollouts.status().get("restartedAt") and len(names) == 4 and not names & before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"pods not replaced: {rollouts.status()}")
    assert lowest >= 3, f"{lowest} ready pods at one point, the floor is 3"
    assert "Restarted" in operator.logged("checkout", "Restarted")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

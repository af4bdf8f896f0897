"""The blue/green engine on the simulated cluster: every gate, every way back, and the one promise
that matters most — the active service never selects a group that is not fully available."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import T0, Sim, manifest

from herdsman.engine.world import Decision, ServiceState
from herdsman.naming import LABEL_GROUP

pytestmark = pytest.mark.unit

V1, V2, V3 = "checkout-v001", "checkout-v002", "checkout-v003"
PRE, POST = "checkout-v002-prepromotion-a0", "checkout-v002-postpromotion-a0"
ANALYSIS = {"templates": [{"templateName": "health"}]}


def bg_manifest(*, replicas: int = 4, image: str = "app:v1", **strategy: Any) -> dict[str, Any]:
    bg: dict[str, Any] = {"activeService": "checkout", "previewService": "checkout-preview"}
    bg.update(strategy)
    body = manifest(replicas=replicas, image=image)  # the canary manifest, strategy swapped
    body["spec"]["strategy"] = {"blueGreen": {k: v for k, v in bg.items() if v is not None}}
    return body


def healthy(replicas: int = 4, **strategy: Any) -> Sim:
    """A blue/green rollout at rest on v001, its services in the cluster."""
    sim = Sim(bg_manifest(replicas=replicas, **strategy))
    for svc in ("checkout", "checkout-preview"):
        sim.services[svc] = ServiceState(svc, True, {"app": "checkout"})
    sim.run_until(lambda s: s.status.phase == "Healthy")
    return sim


def active(sim: Sim) -> str | None:
    return sim.services["checkout"].selector.get(LABEL_GROUP)


def preview(sim: Sim) -> str | None:
    return sim.services["checkout-preview"].selector.get(LABEL_GROUP)


def sizes(sim: Sim) -> dict[str, tuple[int, int]]:
    return {n: (g.replicas, g.available) for n, g in sim.groups.items()}


def reasons(sim: Sim) -> list[str]:
    return [t.reason for d in sim.history for t in d.transitions]


def step(sim: Sim, seconds: float = 1.0) -> Decision:
    """One pass, then the pods it asked for come up and time moves on."""
    d = sim.reconcile()
    sim.settle()
    sim.tick(seconds)
    return d


def set_run(sim: Sim, name: str, phase: str, message: str = "") -> None:
    sim.runs[name] = replace(sim.runs[name], phase=phase, message=message)


def scale_down_at(sim: Sim, group: str) -> Any:
    return next(r.scale_down_at for r in sim.status.server_groups if r.name == group)


def bg(sim: Sim) -> Any:
    assert sim.status.blue_green is not None
    return sim.status.blue_green


# --- the happy paths ------------------------------------------------------------------------------


def test_the_first_revision_is_made_active_once_every_pod_is_available() -> None:
    sim = Sim(bg_manifest())
    for svc in ("checkout", "checkout-preview"):
        sim.services[svc] = ServiceState(svc, True, {"app": "checkout"})
    d = sim.reconcile()
    assert [g.name for g in d.desired.create_groups] == [V1]
    assert "checkout" not in d.desired.selectors  # no pod is available yet
    sim.groups[V1] = replace(sim.groups[V1], available=3)
    assert "checkout" not in sim.reconcile().desired.selectors
    sim.settle()
    d = sim.reconcile()
    assert d.desired.selectors["checkout"] == V1
    assert sim.status.phase == "Healthy"
    assert bg(sim).active_server_group == V1
    assert reasons(sim).count("Initialized") == 1


def test_auto_promotion_switches_the_active_service_once_the_preview_is_ready() -> None:
    sim = healthy()
    sim.set_image("app:v2")
    d = step(sim)
    assert [g.name for g in d.desired.create_groups] == [V2]
    assert d.desired.create_groups[0].replicas == 4  # a full-size preview
    # Nothing selects a group without pods.
    assert active(sim) == V1
    assert preview(sim) == V1
    assert sim.status.phase == "Progressing"
    assert bg(sim).preview_server_group == V2

    d = sim.reconcile()
    # Ready: the preview and the active service move in the same pass, the old group stays warm.
    assert d.desired.selectors == {"checkout": V2, "checkout-preview": V2}
    assert sim.status.stable_server_group == V2
    assert sizes(sim) == {V1: (4, 4), V2: (4, 4)}
    assert scale_down_at(sim, V1) == sim.now + timedelta(seconds=30)
    roles = {r.name: r.role for r in sim.status.server_groups}
    assert roles == {V2: "active", V1: "old"}
    assert sim.status.phase == "Healthy"
    assert bg(sim).preview_server_group is None
    assert [t.reason for t in d.transitions] == [
        "PreviewReady",
        "ActiveSwitched",
        "RolloutCompleted",
        "RolloutHealthy",
    ]
    assert d.requeue_after == 30


def test_the_old_group_scales_down_after_the_delay_and_not_before() -> None:
    sim = healthy(scaleDownDelaySeconds=20)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.stable_server_group == V2)
    switched = sim.now
    while sim.now < switched + timedelta(seconds=19):
        step(sim)
        assert sizes(sim)[V1] == (4, 4)
    sim.now = switched + timedelta(seconds=20)
    d = sim.reconcile()
    assert d.desired.scale == {V1: 0}
    assert [t.reason for t in d.transitions] == ["ScaledDown"]
    assert scale_down_at(sim, V1) is None
    assert [t.reason for t in sim.reconcile().transitions] == []


def test_manual_promotion_waits_for_promote() -> None:
    sim = healthy(autoPromotionEnabled=False)
    sim.set_image("app:v2")
    step(sim)
    d = step(sim)
    assert [t.reason for t in d.transitions] == ["PreviewReady"]
    assert preview(sim) == V2
    assert active(sim) == V1
    for _ in range(5):
        step(sim, 60)
    assert sim.status.phase == "Paused"
    assert "waiting for promotion" in sim.status.message
    assert [p.reason for p in sim.status.pause_conditions] == ["BlueGreenPause"]
    assert active(sim) == V1

    sim.patch_status(promote={"full": False})
    d = sim.reconcile()
    assert d.desired.selectors == {"checkout": V2}
    assert [t.reason for t in d.transitions][:2] == ["Promoted", "ActiveSwitched"]
    assert sim.status.promote is None
    assert sim.status.phase == "Healthy"


def test_a_promote_made_before_the_preview_is_ready_waits_for_it() -> None:
    sim = healthy(autoPromotionEnabled=False)
    sim.set_image("app:v2")
    sim.reconcile()
    sim.patch_status(promote={"full": False})
    sim.reconcile()  # pods not up: nothing to approve yet, and the request is kept
    assert sim.status.promote is not None
    assert active(sim) == V1
    sim.settle()
    d = sim.reconcile()
    assert d.desired.selectors["checkout"] == V2
    assert sim.status.promote is None


def test_auto_promotion_seconds_promotes_after_the_wait() -> None:
    sim = healthy(autoPromotionSeconds=60)
    sim.set_image("app:v2")
    step(sim)
    d = sim.reconcile()
    ready_at = sim.now
    assert d.requeue_after == 60
    assert sim.status.phase == "Paused"
    assert "auto-promotion at" in sim.status.message
    sim.now = ready_at + timedelta(seconds=59)
    d = sim.reconcile()
    assert active(sim) == V1
    assert d.requeue_after == pytest.approx(1)
    assert d.transitions == []
    sim.now = ready_at + timedelta(seconds=60)
    d = sim.reconcile()
    assert active(sim) == V2
    assert [t.reason for t in d.transitions][:2] == ["AutoPromoted", "ActiveSwitched"]


def test_a_small_preview_grows_to_full_size_before_the_switch() -> None:
    sim = healthy(replicas=6, previewReplicaCount=2, autoPromotionEnabled=False)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    assert sizes(sim)[V2] == (2, 2)
    assert preview(sim) == V2
    sim.patch_status(promote={"full": False})
    d = sim.reconcile()
    assert d.desired.scale == {V2: 6}
    assert "checkout" not in d.desired.selectors
    sim.groups[V2] = replace(sim.groups[V2], available=5)
    assert "checkout" not in sim.reconcile().desired.selectors
    sim.settle()
    assert sim.reconcile().desired.selectors == {"checkout": V2}


# --- analysis ---------------------------------------------------------------------------------------


def test_pre_promotion_analysis_gates_the_switch() -> None:
    sim = healthy(prePromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    d = sim.reconcile()
    [run] = d.desired.create_runs
    assert (run.name, run.kind, run.revision, run.attempt) == (PRE, "prePromotion", 2, 0)
    assert run.analysis.templates[0].template_name == "health"
    for _ in range(3):
        step(sim, 10)
    assert active(sim) == V1
    assert "pre-promotion analysis running" in sim.status.message
    set_run(sim, PRE, "Successful")
    d = sim.reconcile()
    assert d.desired.selectors == {"checkout": V2}
    assert [t.reason for t in d.transitions][:2] == ["AnalysisPassed", "ActiveSwitched"]


def test_a_failed_pre_promotion_analysis_never_moves_the_active_service() -> None:
    sim = healthy(prePromotionAnalysis=ANALYSIS, abortScaleDownDelaySeconds=10)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    set_run(sim, PRE, "Failed", "error rate 0.2")
    d = sim.reconcile()
    assert "checkout" not in d.desired.selectors
    assert d.desired.selectors == {"checkout-preview": V1}
    assert sim.status.phase == "Degraded"
    assert sim.status.abort is True
    assert "error rate 0.2" in sim.status.message
    assert [t.reason for t in d.transitions] == ["RolloutAborted"]
    # The preview group stays up for abortScaleDownDelaySeconds, then goes.
    aborted = sim.now
    assert scale_down_at(sim, V2) == aborted + timedelta(seconds=10)
    assert sizes(sim)[V2] == (4, 4)
    sim.now = aborted + timedelta(seconds=10)
    sim.reconcile()
    assert sizes(sim)[V2] == (0, 0)
    assert all(active(sim) == V1 for _ in sim.history)


def test_an_inconclusive_analysis_pauses_until_promoted() -> None:
    sim = healthy(prePromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    set_run(sim, PRE, "Inconclusive", "no data")
    d = sim.reconcile()
    assert sim.status.phase == "Paused"
    assert [t.reason for t in d.transitions] == ["AnalysisInconclusive"]
    assert [t.reason for t in sim.reconcile().transitions] == []
    sim.patch_status(promote={"full": False})
    assert sim.reconcile().desired.selectors == {"checkout": V2}


def test_an_abort_while_paused_on_an_inconclusive_result_says_it_was_the_user() -> None:
    sim = healthy(prePromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    set_run(sim, PRE, "Inconclusive", "no data")
    sim.reconcile()
    assert sim.status.message.startswith("analysis inconclusive")
    sim.patch_status(abort=True)
    sim.reconcile()
    assert sim.status.message == "aborted by user"


def test_post_promotion_analysis_keeps_the_old_group_warm_until_it_passes() -> None:
    sim = healthy(postPromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    d = step(sim)
    assert d.desired.selectors["checkout"] == V2
    assert [r.name for r in d.desired.create_runs] == [POST]
    for _ in range(10):
        step(sim, 60)
    # The previous group holds every pod and no deadline while the verdict is out.
    assert sizes(sim) == {V1: (4, 4), V2: (4, 4)}
    assert scale_down_at(sim, V1) is None
    assert sim.status.stable_server_group == V1
    assert {r.name: r.role for r in sim.status.server_groups} == {V2: "active", V1: "stable"}
    assert sim.status.phase == "Progressing"
    assert "kept warm" in sim.status.message
    set_run(sim, POST, "Successful")
    d = sim.reconcile()
    assert sim.status.stable_server_group == V2
    assert scale_down_at(sim, V1) == sim.now + timedelta(seconds=30)
    assert "RolloutCompleted" in [t.reason for t in d.transitions]


def test_a_failed_post_promotion_analysis_switches_straight_back() -> None:
    sim = healthy(postPromotionAnalysis=ANALYSIS, abortScaleDownDelaySeconds=5)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    step(sim)
    assert active(sim) == V2
    set_run(sim, POST, "Failed", "p99 too high")
    d = sim.reconcile()
    # One pass: back to the warm group first, nothing else before it.
    assert d.desired.selectors == {"checkout": V1, "checkout-preview": V1}
    assert d.desired.traffic_first
    assert d.desired.scale == {}  # nothing needed to grow: V1 was kept at full size
    assert sim.status.phase == "Degraded"
    assert "p99 too high" in sim.status.message
    [aborted] = [t for t in d.transitions if t.reason == "RolloutAborted"]
    assert "active service back to checkout-v001" in aborted.message
    sim.now += timedelta(seconds=5)
    sim.reconcile()
    assert sizes(sim) == {V1: (4, 4), V2: (0, 0)}


def test_promote_full_skips_both_analyses_but_not_availability() -> None:
    sim = healthy(
        replicas=4,
        previewReplicaCount=1,
        prePromotionAnalysis=ANALYSIS,
        postPromotionAnalysis=ANALYSIS,
    )
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    assert PRE in sim.runs
    sim.patch_status(promote={"full": True})
    d = sim.reconcile()
    assert PRE in d.desired.terminate_runs
    assert d.desired.scale == {V2: 4}
    assert "checkout" not in d.desired.selectors
    assert {r.name: r.phase for r in sim.status.analysis_runs} == {PRE: "Skipped", POST: "Skipped"}
    sim.settle()
    d = sim.reconcile()
    assert d.desired.selectors["checkout"] == V2
    assert d.desired.create_runs == []
    assert sim.status.stable_server_group == V2


# --- abort, retry, undo, new revisions, pause -------------------------------------------------------


def test_abort_and_retry_start_the_preview_over_with_new_run_names() -> None:
    sim = healthy(prePromotionAnalysis=ANALYSIS, abortScaleDownDelaySeconds=30)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    sim.patch_status(abort=True)
    d = sim.reconcile()
    assert PRE in d.desired.terminate_runs
    assert sim.status.message == "aborted by user"
    assert sim.status.phase == "Degraded"
    assert [t.reason for t in sim.reconcile().transitions] == []

    sim.patch_status(abort=False)
    d = sim.reconcile()
    assert sim.status.attempt == 1
    assert "RolloutRetried" in [t.reason for t in d.transitions]
    # The group was still warm: ready at once, and this attempt's run is a new one.
    assert [r.name for r in d.desired.create_runs] == ["checkout-v002-prepromotion-a1"]
    assert sim.status.phase == "Progressing"


def test_undo_within_the_window_is_one_switch_and_no_new_pod() -> None:
    sim = healthy(scaleDownDelaySeconds=300)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.stable_server_group == V2)
    step(sim, 30)
    sim.set_image("app:v1")  # what `kubectl herdsman undo` writes
    d = sim.reconcile()
    assert d.desired.selectors == {"checkout": V1, "checkout-preview": V1}
    assert d.desired.create_groups == []
    assert d.desired.scale == {}
    assert sim.status.stable_server_group == V1
    assert sim.status.current_revision == 1
    assert [t.reason for t in d.transitions][:3] == [
        "NewRevision",
        "FastRollback",
        "RollbackCompleted",
    ]
    assert scale_down_at(sim, V2) == sim.now + timedelta(seconds=300)


def test_undo_after_the_window_scales_up_first_and_then_switches() -> None:
    sim = healthy(scaleDownDelaySeconds=10)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.stable_server_group == V2)
    sim.run_until(lambda s: sizes(s)[V1] == (0, 0))
    sim.set_image("app:v1")
    d = sim.reconcile()
    assert d.desired.scale == {V1: 4}
    assert "checkout" not in d.desired.selectors
    assert active(sim) == V2
    sim.settle()
    assert sim.reconcile().desired.selectors["checkout"] == V1


def test_a_new_revision_during_preview_drops_the_unpromoted_group_at_once() -> None:
    sim = healthy(autoPromotionEnabled=False)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    sim.set_image("app:v3")
    d = sim.reconcile()
    assert d.desired.scale == {V2: 0}
    assert [g.name for g in d.desired.create_groups] == [V3]
    assert active(sim) == V1
    assert sim.status.pause_conditions == []
    assert bg(sim).preview_server_group == V3


def test_a_new_revision_during_post_promotion_returns_to_stable_and_keeps_the_abandoned_warm() -> (
    None
):
    sim = healthy(postPromotionAnalysis=ANALYSIS, scaleDownDelaySeconds=15)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    assert active(sim) == V2
    sim.set_image("app:v3")
    d = sim.reconcile()
    assert d.desired.selectors["checkout"] == V1
    assert POST in d.desired.terminate_runs
    assert scale_down_at(sim, V2) == sim.now + timedelta(seconds=15)
    assert "active service back to checkout-v001" in d.transitions[0].message


def test_coming_back_to_a_revision_never_reads_its_old_verdicts() -> None:
    sim = healthy(postPromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    set_run(sim, POST, "Failed", "p99 too high")
    step(sim)
    sim.set_image("app:v3")
    step(sim)
    sim.set_image("app:v2")
    d = step(sim)  # v2 is still warm from its abort: previewed and switched at once
    assert sim.status.attempt == 1
    assert [r.name for r in d.desired.create_runs] == ["checkout-v002-postpromotion-a1"]
    assert active(sim) == V2
    assert not sim.status.abort


def test_spec_paused_holds_everything_and_resume_carries_on() -> None:
    sim = healthy(autoPromotionEnabled=True)
    body = sim.body
    body["spec"]["paused"] = True
    sim.set_image("app:v2")
    d = sim.reconcile()
    assert d.desired.empty
    assert sim.status.phase == "Paused"
    assert [p.reason for p in sim.status.pause_conditions] == ["UserPause"]
    sim.body["spec"]["paused"] = False
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert active(sim) == V2
    assert sim.status.pause_conditions == []


def test_scale_down_delay_revision_limit_bounds_the_warm_groups() -> None:
    sim = healthy(scaleDownDelaySeconds=600, scaleDownDelayRevisionLimit=1)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.stable_server_group == V2)
    sim.set_image("app:v3")
    sim.run_until(lambda s: s.status.stable_server_group == V3)
    step(sim)
    assert sizes(sim)[V2] == (4, 4)
    assert sizes(sim)[V1] == (0, 0)


def test_preview_pods_that_never_come_up_exceed_the_progress_deadline() -> None:
    sim = healthy()
    sim.body["spec"]["progressDeadlineSeconds"] = 60
    sim.body["spec"]["progressDeadlineAbort"] = True
    sim.set_image("app:v2")
    for _ in range(20):  # pods never come up
        d = sim.reconcile()
        if "ProgressDeadlineExceeded" in reasons(sim):
            break
        sim.tick(10)
    assert d.requeue_after == 0
    assert sim.now - T0 >= timedelta(seconds=60)
    sim.reconcile()
    assert sim.status.abort
    assert sim.status.phase == "Degraded"
    assert sim.status.message.startswith("progress deadline exceeded")
    assert active(sim) == V1


def test_scale_to_zero_releases_without_a_pod() -> None:
    sim = healthy(replicas=0, postPromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    sim.run_until(lambda s: POST in s.runs)
    set_run(sim, POST, "Successful")
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert sim.status.stable_server_group == V2
    assert active(sim) == V2


def test_a_lost_status_mid_release_records_the_group_it_protects() -> None:
    sim = healthy(autoPromotionEnabled=False)
    sim.set_image("app:v2")
    step(sim)
    sim.body["status"] = {}  # restored from a backup without status
    mark = len(sim.history)
    step(sim)
    assert sim.status.stable_server_group == V1
    assert active(sim) == V1
    assert {r.name: r.role for r in sim.status.server_groups} == {V1: "active", V2: "preview"}
    sim.patch_status(promote={"full": False})
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert "Initialized" not in [t.reason for d in sim.history[mark:] for t in d.transitions]
    assert sim.status.stable_server_group == V2


# --- changing strategy --------------------------------------------------------------------------------


def canary_at_rest() -> Sim:
    from sim import manifest

    sim = Sim(manifest(replicas=4, stableService="checkout", canaryService="checkout-canary"))
    for svc in ("checkout", "checkout-canary", "checkout-preview"):
        sim.services[svc] = ServiceState(svc, True, {"app": "checkout"})
    sim.run_until(lambda s: s.status.phase == "Healthy")
    return sim


def to_blue_green(sim: Sim, image: str | None = None) -> None:
    strategy = bg_manifest()["spec"]["strategy"]
    sim.body["spec"]["strategy"] = strategy
    if image:
        sim.set_image(image)


def test_a_canary_at_rest_becomes_blue_green_for_its_next_revision() -> None:
    sim = canary_at_rest()
    to_blue_green(sim, "app:v2")
    d = step(sim)
    assert not any(c.type == "InvalidSpec" for c in sim.status.conditions)
    assert [g.name for g in d.desired.create_groups] == [V2]
    assert d.desired.create_groups[0].replicas == 4  # a full preview, not a 20% canary
    assert sim.status.canary_server_group is None
    assert sim.status.step is None
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert active(sim) == V2


def test_changing_strategy_while_a_canary_is_in_flight_is_refused_and_touches_nothing() -> None:
    sim = canary_at_rest()
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.phase == "Paused")
    before = sizes(sim), dict(sim.services)
    to_blue_green(sim)
    d = sim.reconcile()
    assert d.desired.empty
    assert sim.status.phase == "Degraded"
    assert "spec.strategy: cannot change from canary to blueGreen" in sim.status.message
    assert "canary checkout-v002 is in flight" in sim.status.message
    assert (sizes(sim), dict(sim.services)) == before
    # Put back, it carries on as a canary.
    sim.body["spec"]["strategy"] = {
        "canary": {
            "stableService": "checkout",
            "canaryService": "checkout-canary",
            "steps": [{"setWeight": 20}, {"pause": {}}],
        }
    }
    sim.reconcile()
    assert sim.status.phase == "Paused"


def test_a_blue_green_preview_in_flight_refuses_a_change_to_canary_and_allows_it_at_rest() -> None:
    sim = healthy(autoPromotionEnabled=False)
    sim.set_image("app:v2")
    step(sim)
    step(sim)
    canary = {
        "canary": {
            "stableService": "checkout",
            "canaryService": "checkout-preview",
            "steps": [{"setWeight": 50}, {"pause": {}}],
        }
    }
    original = sim.body["spec"]["strategy"]
    sim.body["spec"]["strategy"] = canary
    assert sim.reconcile().desired.empty
    assert "cannot change from blueGreen to canary" in sim.status.message
    sim.body["spec"]["strategy"] = original
    sim.patch_status(promote={"full": False})
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.body["spec"]["strategy"] = canary
    sim.reconcile()
    assert sim.status.phase == "Healthy"
    assert sim.status.blue_green is None
    sim.set_image("app:v3")
    sim.run_until(lambda s: s.status.phase == "Paused")
    assert sim.status.canary_server_group == V3
    assert sizes(sim)[V3] == (2, 2)


# --- crash safety and the promises the loop depends on -------------------------------------------------


def test_a_pass_killed_after_the_switch_is_finished_by_the_next_without_a_second_announcement() -> (
    None
):
    sim = healthy(postPromotionAnalysis=ANALYSIS)
    sim.set_image("app:v2")
    step(sim)
    before = sim.body.get("status")
    d = sim.reconcile()
    assert d.desired.selectors["checkout"] == V2
    # The operator dies after the selector write, before the run and the status are written.
    sim.body["status"] = before
    sim.runs.clear()
    d = sim.reconcile()
    # What the lost pass would have said about the preview is history; the switch is announced.
    assert [t.reason for t in d.transitions] == ["ActiveSwitched", "AnalysisStarted"]
    assert [r.name for r in d.desired.create_runs] == [POST]
    assert "checkout" not in d.desired.selectors
    assert [t.reason for t in sim.reconcile().transitions] == []


# Weighted so that runs go deep (pods arrive, verdicts come) and still meet every user action.
ACTIONS = (
    ["settle"] * 4
    + ["settle-some", "tick", "wait", "wait"]
    + ["pass", "pass", "fail", "inconclusive"]
    + ["promote", "promote", "promote-full", "abort", "abort", "retry"]
    + ["v2", "v3", "undo", "pause", "resume"]
)
SCENARIOS = st.lists(st.sampled_from(ACTIONS), min_size=3, max_size=40).map(lambda a: ["v2", *a])
SPECS = st.fixed_dictionaries(
    {
        "replicas": st.integers(0, 6),
        "previewReplicaCount": st.one_of(st.none(), st.integers(0, 6)),
        "autoPromotionEnabled": st.sampled_from([True, True, False]),
        "autoPromotionSeconds": st.one_of(st.none(), st.integers(0, 30)),
        "prePromotionAnalysis": st.one_of(st.none(), st.just(ANALYSIS)),
        "postPromotionAnalysis": st.sampled_from([None, ANALYSIS, ANALYSIS, ANALYSIS]),
        "scaleDownDelaySeconds": st.integers(0, 60),
        "abortScaleDownDelaySeconds": st.integers(0, 60),
        "scaleDownDelayRevisionLimit": st.one_of(st.none(), st.integers(0, 2)),
    }
)


def act(sim: Sim, action: str, rng: random.Random) -> None:
    images = {"v2": "app:v2", "v3": "app:v3", "undo": "app:v1"}
    if action == "settle":
        sim.settle()
    elif action == "settle-some":
        sim.settle(rng)
    elif action == "tick":
        sim.tick(1)
    elif action == "wait":
        sim.tick(rng.randint(5, 90))
    elif action == "promote":
        sim.patch_status(promote={"full": False})
    elif action == "promote-full":
        sim.patch_status(promote={"full": True})
    elif action == "abort":
        sim.patch_status(abort=True)
    elif action == "retry":
        sim.patch_status(abort=False)
    elif action in ("pass", "fail", "inconclusive"):
        phase = {"pass": "Successful", "fail": "Failed", "inconclusive": "Inconclusive"}[action]
        for name, run in list(sim.runs.items()):
            if not run.done and not run.terminated:
                sim.runs[name] = replace(run, phase=phase)
    elif action in images:
        sim.set_image(images[action])
    elif action in ("pause", "resume"):
        sim.body["spec"]["paused"] = action == "pause"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=SPECS,
    actions=SCENARIOS,
    seed=st.integers(0, 2**16),
    start=st.sampled_from(["at rest", "switched"]),
)
def test_the_active_service_only_ever_selects_a_fully_available_group(
    spec: dict[str, Any], actions: list[str], seed: int, start: str
) -> None:
    """For every spec and every sequence of user actions, pod arrivals and analysis verdicts:

    - the active service selects a group only while it holds spec.replicas available pods
      (pods never die in the sim, so the warm group we switch back to is always full);
    - the group it selects is never scaled down while it is selected;
    - an aborted (or failed) release leaves the active service on the stable group, and while
      the active service selects anything else, the stable group is kept at full size;
    - a pass that changes nothing in the world changes nothing in status and announces nothing.
    """
    rng = random.Random(seed)
    if start == "switched":
        # Start where a wrong move costs most: v2 serves, its verdict is out, v1 is the way back.
        spec = {**spec, "postPromotionAnalysis": ANALYSIS}
        sim = healthy(**spec)
        sim.set_image("app:v2")
        step(sim)
        sim.patch_status(promote={"full": False})
        for _ in range(3):
            for run in list(sim.runs.values()):
                if run.kind == "prePromotion" and not run.done:
                    sim.runs[run.name] = replace(run, phase="Successful")
            step(sim)
        assert active(sim) == V2, sim.status
        actions = actions[1:]  # not the leading "v2"
    else:
        sim = healthy(**spec)
    for action in actions:
        act(sim, action, rng)
        world = sim.world()
        d = sim.reconcile()
        selected = active(sim)
        total = sim.rollout.spec.replicas
        assert selected is not None
        observed = world.group(selected)
        if observed is None:
            # Only at zero replicas: an empty group created (first, by apply) in this very pass.
            assert total == 0, f"active selects {selected}, which does not exist"
            assert selected in [g.name for g in d.desired.create_groups]
        else:
            assert observed.available >= total, (
                f"active selects {selected} with {observed.available}/{total} available"
                f" after {action}"
            )
        assert d.desired.scale.get(selected, total) >= total
        assert selected not in d.desired.delete_groups
        stable = sim.status.stable_server_group
        failed = [
            r.name
            for r in sim.runs.values()
            if r.phase == "Failed"
            and r.revision == sim.status.current_revision
            and r.attempt == sim.status.attempt
        ]
        if failed:
            assert sim.status.abort, f"{failed} failed, yet the release goes on"
        if sim.status.abort:
            assert selected == stable, f"aborted, yet active selects {selected}"
        if selected != stable:
            assert sim.groups[stable].replicas == total, "the way back is not warm"
        # A pass on the world our own writes made announces nothing (runs the sim created move
        # from Pending to Running, so status may follow once) — unless they created a group: an
        # empty one (0 pods asked) is ready as soon as it exists. The pass after changes nothing.
        again = sim.reconcile()
        if not d.desired.create_groups:
            assert again.transitions == [], [t.reason for t in again.transitions]
        status = sim.body["status"]
        last = sim.reconcile()
        assert last.transitions == []
        assert last.desired.empty, last.desired
        assert sim.body["status"] == status

"""Engine bugs found by the property tests, each as its minimal reproduction.

Every test here states the promise the engine should keep. Each was committed marked
`xfail(strict=True)` while its bug stood, and the mark came off with the fix: they now guard
against the bug coming back.
"""

from __future__ import annotations

import random

import pytest
from sim import Sim, manifest
from test_engine_invariants import converged
from test_engine_scenarios import ROUTER, SERVICES, at_step, healthy, reasons

from herdsman.engine.decide import decide
from herdsman.engine.weights import GroupCount, canary_replicas, limits, step_towards

pytestmark = pytest.mark.unit

ANALYSIS = {"analysis": {"templates": [{"templateName": "h"}]}}


# --- crashes: _promote wants a group at 0 it has no blueprint for -----------------------------------


def test_a_new_revision_at_zero_replicas_becomes_stable() -> None:
    # Scale-to-zero (KEDA, or an HPA with minReplicas 0) is a normal state. At 0 replicas the
    # canary group is never created (its target is 0, so "reached" without existing), and
    # _promote's final Targets names it without a blueprint: every pass raises, forever.
    sim = healthy(manifest(replicas=0, steps=[]))
    sim.set_image("app:v2")
    sim.run_until(converged)
    assert sim.status.stable_server_group == "checkout-v002"


def test_a_baseline_rollout_without_steps_completes() -> None:
    # _promote always names the baseline at 0 (targets.want(base, 0)) without a blueprint; if
    # no step ever created it, groups.scale looks the blueprint up and raises. The world never
    # changes, so this is a crash loop, not a hiccup.
    sim = healthy(manifest(replicas=4, steps=[], baseline=True))
    sim.set_image("app:v2")
    sim.run_until(converged)


def test_a_baseline_rollout_survives_its_baseline_being_deleted_during_promotion() -> None:
    # During promotion the baseline drops its role, reaches 0 pods and is deleted as garbage
    # while the canary's last pods are still starting; the next pass names it again in
    # _promote (want 0, no blueprint) and raises until those pods are up.
    sim = healthy(manifest(replicas=4, steps=[{"setWeight": 25}], baseline=True))
    sim.set_image("app:v2")
    for _ in range(4):  # promotion under way: the canary grows, the baseline goes to 0
        sim.reconcile()
        sim.settle()
        sim.tick()
    for _ in range(3):  # the canary's last pod is slow; the baseline is at 0 and deleted
        sim.reconcile()
        sim.tick()
    sim.run_until(converged)


# --- stuck: targets below the floor ------------------------------------------------------------------


def test_dynamic_stable_scale_with_a_smaller_canary_scale_converges() -> None:
    # 4 pods, maxUnavailable 1 (floor 3). setWeight 50 gives canary 2 / stable 2. The next step
    # scales the canary to 0; dynamicStableScale still sizes stable at 4 - canary_replicas(50%)
    # = 2, so the targets add up to 2 < floor 3: the canary may shrink 2 -> 1 and never to 0.
    # The step never completes; the progress deadline fires on a rollout nobody can unstick.
    body = manifest(
        replicas=4,
        steps=[{"setWeight": 50}, {"setCanaryScale": {"replicas": 0}}],
        maxSurge=0,
        maxUnavailable=1,
        trafficRouting=ROUTER,
        dynamicStableScale=True,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(converged)


def test_dynamic_stable_scale_never_sizes_below_the_floor_for_a_small_canary_scale() -> None:
    # Found by the invariant walks after B4 was fixed: 8 pods, maxUnavailable 1 (floor 7),
    # setWeight 32 then setCanaryScale 1. Stable was sized for the weight (8 - 3 = 5) and the
    # canary for its scale (1): 6 pods asked for, under the floor, so the canary could never
    # shrink from 2 and the progress deadline fired. Stable now keeps the floor's share.
    body = manifest(
        replicas=8,
        steps=[{"setWeight": 32}, {"setCanaryScale": {"replicas": 1}}],
        maxSurge=0,
        maxUnavailable=1,
        trafficRouting=ROUTER,
        dynamicStableScale=True,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(converged, limit=400)
    assert sim.status.stable_server_group == "checkout-v002"


# --- the router is told one thing, status says another --------------------------------------------


def test_status_weights_match_the_router_before_the_canary_is_up() -> None:
    # status.weights is "the traffic split actually in effect". While the canary has no
    # available pod the router is (rightly) told 0, but status claims 80/20.
    sim = healthy(
        manifest(steps=[{"setWeight": 20}, {"pause": {}}], trafficRouting=ROUTER, **SERVICES)
    )
    sim.set_image("app:v2")
    d = sim.reconcile()
    assert d.desired.traffic is not None
    assert d.desired.traffic.canary_weight == 0
    assert d.status.weights.canary == d.desired.traffic.canary_weight


def test_status_weights_match_the_router_with_a_baseline() -> None:
    # TrafficTarget carries only the canary weight and group: the router sends 80/20 to
    # stable/canary and nothing to the baseline, yet status reports 60/20/20 — and the
    # canary-vs-baseline analysis believes the baseline is serving traffic.
    body = manifest(
        steps=[{"setWeight": 20}, {"pause": {}}], baseline=True, trafficRouting=ROUTER, **SERVICES
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    d = sim.run_until(at_step(1))
    t = d.desired.traffic
    assert t is not None
    routed_baseline = getattr(t, "baseline_weight", 0)
    assert (d.status.weights.canary, d.status.weights.baseline) == (
        t.canary_weight,
        routed_baseline,
    )
    assert d.status.weights.stable == 100 - t.canary_weight - routed_baseline


def test_router_weight_never_outruns_the_canary_pods_that_carry_it() -> None:
    # With a router the replicas no longer carry the weight by themselves, so the engine must
    # wait for the canary's pods before sending their share: _shift/_promote only check that
    # *one* canary pod is available. On promotion the router gets 100% while the canary has
    # the 2 pods it had at 20%: a capacity incident on every release.
    sim = healthy(
        manifest(
            steps=[{"setWeight": 20}, {"pause": {"duration": 5}}],
            trafficRouting=ROUTER,
            **SERVICES,
        )
    )
    sim.set_image("app:v2")
    rng = random.Random(1)
    for _ in range(60):
        before = sim.world()
        d = sim.reconcile()
        canary = before.group("checkout-v002")
        t = d.desired.traffic
        if t is not None and t.canary_group == "checkout-v002" and canary is not None:
            needed = canary_replicas(10, t.canary_weight)
            assert canary.available >= needed, (
                f"router told {t.canary_weight}% with {canary.available}/10 canary pods up"
            )
        if converged(sim):
            break
        sim.settle(rng)
        sim.tick(2)


# --- analysis ----------------------------------------------------------------------------------------


def test_an_inconclusive_background_analysis_holds_the_rollout() -> None:
    # "analysis inconclusive: promote or abort" — the phase says Paused, but _progress never
    # looks at the Inconclusive pause: timed pauses end, weights grow, and the rollout even
    # completes to 100% on an analysis that could not vouch for it.
    body = manifest(
        replicas=4,
        steps=[{"setWeight": 25}, {"pause": {"duration": 10}}, {"setWeight": 50}, {"pause": {}}],
        analysis={"templates": [{"templateName": "h"}]},
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.set_runs("Inconclusive", kind="background", message="not enough data")
    for _ in range(30):
        sim.reconcile()
        sim.settle()
        sim.tick(5)
    assert sim.status.phase == "Paused"
    assert sim.status.current_step_index == 1, "moved on while paused on an inconclusive analysis"
    assert sim.status.canary_weight == 25


def test_a_background_analysis_failing_during_the_final_promotion_aborts() -> None:
    # Background analysis runs "until the rollout completes", but _background() stops looking
    # once the step index passes the last step: a Failed verdict arriving while the canary
    # scales to 100% is never read, and the release completes Healthy on a failed analysis.
    body = manifest(steps=[{"setWeight": 20}], analysis={"templates": [{"templateName": "h"}]})
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.current_step_index == 1)  # promotion under way
    assert sim.status.phase != "Healthy"
    sim.set_runs("Failed", kind="background", message="error rate 30%")
    for _ in range(10):
        sim.reconcile()
        sim.settle()
        sim.tick()
    assert sim.status.abort
    assert sim.status.stable_server_group == "checkout-v001"
    assert sim.status.weights.stable == 100


def test_rolling_a_revision_out_again_runs_its_analysis_again() -> None:
    # v2 reaches its analysis step; the user rolls back to v1 (the run is terminated, which
    # completes it with what it has — Successful here) and later applies v2 again. The group
    # is reused (revision 2) and the attempt counter restarts at 0, so the run name
    # checkout-v002-step1-a0 is the old one: the step "passes" on a verdict measured on other
    # traffic, and a terminated run at that. (An old Failed run would abort it instead.)
    sim = healthy(manifest(replicas=4, steps=[{"setWeight": 25}, ANALYSIS, {"pause": {}}]))
    sim.set_image("app:v2")
    sim.run_until(lambda s: "checkout-v002-step1-a0" in s.runs)
    sim.set_image("app:v1")
    sim.run_until(converged)
    mark = len(sim.history)
    sim.set_image("app:v2")
    for _ in range(10):
        sim.reconcile()
        sim.settle()
        sim.tick()
    assert "AnalysisPassed" not in reasons(sim, mark), "passed without running an analysis"
    assert sim.status.current_step_index == 1
    assert any(not r.terminated and not r.done for r in sim.runs.values())


def test_a_long_analysis_step_is_not_a_stalled_rollout() -> None:
    # decide._progress_deadline promises "pauses and analyses take the time they are given",
    # but only pause conditions stop the clock: an analysis step (10 x 1m is typical) longer
    # than the deadline marks the rollout Degraded — and aborts it with progressDeadlineAbort.
    body = manifest(replicas=4, steps=[{"setWeight": 25}, ANALYSIS, {"setWeight": 50}])
    body["spec"]["progressDeadlineSeconds"] = 120
    body["spec"]["progressDeadlineAbort"] = True
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(lambda s: bool(s.runs))
    for _ in range(20):  # ten minutes of measuring
        sim.reconcile()
        sim.settle()
        sim.tick(30)
    assert "ProgressDeadlineExceeded" not in reasons(sim)
    assert not sim.status.abort
    assert sim.status.phase != "Degraded"


# --- state the engine did not make ------------------------------------------------------------------


def test_a_rollout_whose_status_was_lost_records_the_stable_it_protects() -> None:
    # Status is lost (restored from a backup without it, as Velero does) mid-rollout. _stable()
    # rightly falls back to the group serving most pods and points stableService at it, but
    # never writes it to status.stableServerGroup: the plugin shows no stable, and when that
    # group reaches 0 pods the release is announced as "Initialized ... first revision: made
    # stable without steps" — and any steps after a setWeight 100 are skipped.
    sim = healthy(manifest(replicas=4, steps=[{"setWeight": 25}, {"pause": {}}], **SERVICES))
    sim.set_image("app:v2")
    sim.body["status"] = {}
    sim.run_until(at_step(1))
    assert sim.status.stable_server_group == "checkout-v001"
    mark = len(sim.history)
    sim.promote(1)
    sim.run_until(converged)
    assert "RolloutCompleted" in reasons(sim, mark)
    assert "Initialized" not in reasons(sim, mark)


def test_turning_the_baseline_off_mid_rollout_keeps_weights_a_valid_split() -> None:
    # status.baselineServerGroup is only ever cleared on paths that run with baseline on; with
    # it switched off (and a later step above 50%, which the CRD allows without a baseline),
    # the routed split is computed as 100 - 60 - 60 = -20.
    body = manifest(
        steps=[{"setWeight": 30}, {"pause": {}}], baseline=True, trafficRouting=ROUTER, **SERVICES
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    canary = sim.body["spec"]["strategy"]["canary"]
    canary["baseline"] = False
    canary["steps"] = [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    sim.body["metadata"]["generation"] += 1
    sim.promote(1)
    for _ in range(5):
        d = sim.reconcile()
        w = d.status.weights
        assert min(w.stable, w.canary, w.baseline) >= 0, w
        assert w.stable + w.canary + w.baseline == 100, w
        sim.settle()
        sim.tick()


def test_pods_about_to_be_removed_are_not_counted_towards_the_floor() -> None:
    # Right after a scale-down, a ReplicaSet's status can still count the pod it is about to
    # delete (availableReplicas 2 with spec.replicas 1, observedGeneration caught up). The
    # budget `sum(available) - floor` counts that pod, so the last real pod is taken as well:
    # 0 available with a floor of 1. Counting min(available, replicas) per group keeps it.
    lim = limits(2, 0, 1)  # floor 1
    groups = [
        GroupCount("old", replicas=1, available=2, target=0),
        GroupCount("new", replicas=1, available=0, target=2),
    ]
    out = step_towards(groups, lim)
    left = sum(min(g.available, g.replicas, out[g.name]) for g in groups)
    assert left >= lim.floor, f"{out}: {left} available, floor {lim.floor}"


# --- a pass with no news that still writes ------------------------------------------------------------


def test_completing_with_a_router_leaves_nothing_to_rewrite() -> None:
    # On completion with a router the old stable is given a scaleDownAt even when it holds no
    # pods (spec.replicas 0 here; with dynamicStableScale after a setWeight 100 too). The next
    # pass drops the row's scaleDownAt (recorded_scale_down only keeps groups with pods): a
    # second status write, and a second wake-up, for one state change.
    body = manifest(
        replicas=0,
        steps=[{"pause": {"duration": 1}}],
        trafficRouting=ROUTER,
        scaleDownDelaySeconds=30,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    d = sim.run_until(lambda s: s.status.stable_server_group == "checkout-v002")
    assert "RolloutCompleted" in [t.reason for t in d.transitions]
    again = decide(sim.rollout, sim.world(), sim.now)
    assert again.status.to_wire() == d.status.to_wire()


# --- user intents during a fast rollback ------------------------------------------------------------


def _fast_rollback_under_way() -> Sim:
    sim = healthy(manifest(replicas=4, steps=[{"setWeight": 50}]))
    sim.set_image("app:v2")
    sim.run_until(converged)
    sim.set_image("app:v1")
    sim.reconcile()
    assert "FastRollback" in reasons(sim, len(sim.history) - 1)
    return sim


def test_an_abort_during_a_fast_rollback_is_honoured_or_dropped() -> None:
    # run() takes the FastRollback branch before looking at status.abort, so the abort does
    # nothing — yet it stays in status: phase Degraded "aborted" (no RolloutAborted) while
    # the rollback carries on; completion is still Degraded, and the next pass with no news
    # flips it to Healthy (a status write and a RolloutHealthy for nothing).
    sim = _fast_rollback_under_way()
    sim.abort()
    d = sim.reconcile()
    honoured = "RolloutAborted" in [t.reason for t in d.transitions]
    assert honoured or not sim.status.abort, "abort neither acted on nor dropped"


def test_a_promote_during_a_fast_rollback_is_consumed() -> None:
    # Same branch, same leak: status.promote lingers until the rollback completes, and is then
    # cleared by a pass that has nothing else to say.
    sim = _fast_rollback_under_way()
    sim.promote(full=True)
    sim.reconcile()
    assert sim.status.promote is None


# --- Sim sanity: the reproductions above rely on these behaving ------------------------------------


def test_terminated_runs_complete_like_the_analysis_controller_completes_them() -> None:
    # herdsman.analysis.runs: spec.terminate completes a run "with what it has"; the Sim models
    # the common outcome (Successful). B8 depends on it; this keeps the Sim honest about it.
    sim = Sim.of(manifest(replicas=2, steps=[{"setWeight": 50}, ANALYSIS]))
    sim.run_until(converged)
    sim.set_image("app:v2")
    sim.run_until(lambda s: bool(s.runs))
    sim.set_image("app:v3")
    sim.reconcile()
    (run,) = sim.runs.values()
    assert run.terminated
    assert run.phase == "Successful"

"""The engine's promises as stories: one named situation each, end to end on the Sim.

The random walks (test_engine_invariants.py) find what nobody thought of; these pin what the
product promises in words a reader can check against the issue. Tests marked
`xfail(strict=True)` expose bugs that are not fixed yet: they flip to failures (XPASS) the day
the fix lands, so the mark is removed then.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from sim import Sim, manifest
from test_engine_invariants import Checker, converged, drive

from herdsman.engine.decide import decide
from herdsman.engine.weights import canary_replicas, limits
from herdsman.engine.world import Decision, ServiceState, Transition

pytestmark = pytest.mark.unit

STEP_RE = re.compile(r"^step (\d+)/(\d+)")
ROUTER = {"gatewayAPI": {"httpRoute": "checkout"}}
SERVICES = {"stableService": "checkout", "canaryService": "checkout-canary"}
PROMOTE_STEPS = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 30},
    {"pause": {}},
    {"setWeight": 60},
    {"pause": {}},
]


# --- helpers ---------------------------------------------------------------------------------------


def healthy(body: dict[str, Any], **kwargs: Any) -> Sim:
    """A sim whose first revision is up and Healthy."""
    sim = Sim.of(body, **kwargs)
    sim.run_until(lambda s: s.status.phase == "Healthy")
    return sim


def announced(sim: Sim, since: int = 0) -> list[Transition]:
    return [t for d in sim.history[since:] for t in d.transitions]


def reasons(sim: Sim, since: int = 0) -> list[str]:
    return [t.reason for t in announced(sim, since)]


def started_steps(sim: Sim, since: int = 0) -> list[int]:
    """Zero-based indices named by the StepStarted transitions since `since`."""
    out = []
    for t in announced(sim, since):
        m = STEP_RE.match(t.message)
        if t.reason == "StepStarted" and m:
            out.append(int(m.group(1)) - 1)
    return out


def at_step(index: int, *, paused: bool = True) -> Any:
    return lambda s: (
        s.status.current_step_index == index and (not paused or s.status.phase == "Paused")
    )


def sizes(sim: Sim) -> dict[str, int]:
    return {name: g.replicas for name, g in sim.groups.items()}


def no_writes(d: Decision) -> bool:
    w = d.desired
    return not (
        w.create_groups
        or w.scale
        or w.delete_groups
        or w.selectors
        or w.create_runs
        or w.terminate_runs
        or w.delete_pods
    )


# --- first revision -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [{"setWeight": 20}, {"pause": {}}],
        [{"analysis": {"templates": [{"templateName": "h"}]}}],
    ],
    ids=["no-steps", "weights-and-pause", "analysis"],
)
@pytest.mark.parametrize("routed", [False, True], ids=["replicas", "router"])
def test_first_revision_becomes_stable_directly_without_steps(
    steps: list[dict[str, Any]], routed: bool
) -> None:
    # There is nothing to compare a first revision with: running its steps would pause a brand
    # new service (and its analysis would judge it against nothing).
    extra = {**SERVICES, "trafficRouting": ROUTER} if routed else {}
    sim = Sim.of(manifest(replicas=5, steps=steps, **extra))
    sim.run_until(converged)
    assert sim.status.stable_server_group == "checkout-v001"
    assert list(sim.groups) == ["checkout-v001"]
    assert reasons(sim).count("Initialized") == 1
    assert "StepStarted" not in reasons(sim)
    assert "AnalysisStarted" not in reasons(sim)
    assert sim.runs == {}
    assert sim.status.current_step_index == (len(steps) or None)


# --- step sequence and promotion ------------------------------------------------------------------


@pytest.mark.parametrize("blue_green", [False, True], ids=["canary", "blue-green"])
def test_a_release_whose_stable_was_deleted_by_hand_says_so_not_first_revision(
    blue_green: bool,
) -> None:
    # Scaled to zero, the stable ReplicaSet deleted by hand, then a new image: there is nothing
    # left to protect, so the release takes over directly — announced as a warning that names
    # the lost stable, not as a second "first revision" (found by the invariant walk).
    body = manifest(replicas=0, steps=[{"setWeight": 50}, {"pause": {}}])
    if blue_green:
        body["spec"]["strategy"] = {"blueGreen": {"activeService": "checkout"}}
    sim = Sim.of(body)
    sim.services["checkout"] = ServiceState("checkout", True, {"app": "checkout"})
    sim.run_until(lambda s: s.status.phase == "Healthy")
    mark = len(sim.history)
    del sim.groups["checkout-v001"]
    sim.set_image("app:v2")
    sim.run_until(converged)
    gone = [t for t in announced(sim, mark) if t.reason == "StableGone"]
    assert [t.warning for t in gone] == [True]
    assert "checkout-v001" in gone[0].message
    assert "Initialized" not in reasons(sim, mark)
    assert sim.status.stable_server_group == "checkout-v002"


def test_every_step_of_a_run_is_announced_in_order() -> None:
    # The Events and log are how people follow a rollout: each step must appear, in order,
    # the first included (it was once announced only on a retry: bug B6).
    sim = healthy(
        manifest(steps=[{"setWeight": 20}, {"pause": {"duration": 5}}, {"setWeight": 50}])
    )
    mark = len(sim.history)
    sim.set_image("app:v2")
    sim.run_until(converged)
    assert started_steps(sim, mark) == [0, 1, 2]


def test_a_retry_announces_every_step_in_order() -> None:
    sim = healthy(manifest(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.abort()
    sim.run_until(lambda s: s.canary_size() == 0 and s.status.weights.stable == 100)
    mark = len(sim.history)
    sim.retry()
    sim.run_until(at_step(1))
    assert reasons(sim, mark)[0] == "RolloutRetried"
    assert started_steps(sim, mark) == [0, 1]
    assert sim.status.attempt == 1


def test_promote_from_the_current_step_skips_exactly_that_step() -> None:
    sim = healthy(manifest(steps=PROMOTE_STEPS))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    mark = len(sim.history)
    sim.promote(1)
    sim.run_until(at_step(3))
    assert reasons(sim, mark).count("Promoted") == 1
    assert started_steps(sim, mark) == [2, 3]
    assert sim.status.promote is None  # consumed: a second click cannot skip another step
    assert sim.canary_size() == canary_replicas(10, 30)


@pytest.mark.parametrize("offset", [-1, -2, 1], ids=["stale", "older", "future"])
def test_promote_naming_another_step_does_nothing(offset: int) -> None:
    # The plugin names the step the user saw: a double click, or a click on a stale screen,
    # must not skip a step nobody looked at.
    sim = healthy(manifest(steps=PROMOTE_STEPS))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.promote(1)
    sim.run_until(at_step(3))
    before = sim.status.model_copy()
    mark = len(sim.history)
    sim.promote(3 + offset)
    for _ in range(5):
        sim.reconcile()
        sim.settle()
        sim.tick(30)
    assert sim.status.current_step_index == 3
    assert sim.status.phase == "Paused"
    assert sim.status.promote is None  # dropped, not left to fire later
    assert "Promoted" not in reasons(sim, mark)
    assert started_steps(sim, mark) == []
    assert sim.status.weights == before.weights


def test_promote_full_skips_every_remaining_step() -> None:
    sim = healthy(manifest(steps=PROMOTE_STEPS))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    mark = len(sim.history)
    sim.promote(full=True)
    sim.run_until(converged)
    assert reasons(sim, mark).count("PromotedFull") == 1
    assert started_steps(sim, mark) == []
    assert sim.status.stable_server_group == "checkout-v002"


@pytest.mark.parametrize("duration", [30, "30s", "1m"])
def test_a_timed_pause_is_never_left_early_and_left_on_time(duration: int | str) -> None:
    seconds = {30: 30, "30s": 30, "1m": 60}[duration]
    sim = healthy(
        manifest(steps=[{"setWeight": 20}, {"pause": {"duration": duration}}, {"setWeight": 50}])
    )
    sim.set_image("app:v2")
    d = sim.run_until(at_step(1))
    entered = sim.now
    # The operator is woken when the pause ends, not a moment later.
    assert d.requeue_after == seconds
    for wait in (1, seconds // 2, seconds - 1):
        sim.now = entered
        sim.tick(wait)
        sim.reconcile()
        assert sim.status.current_step_index == 1, f"left a {seconds}s pause after {wait}s"
    sim.now = entered
    sim.tick(seconds)
    sim.reconcile()
    assert sim.status.current_step_index == 2


# --- new revisions, undo --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"baseline": True}, {**SERVICES, "trafficRouting": ROUTER}],
    ids=["replicas", "baseline", "router"],
)
def test_a_new_revision_mid_rollout_abandons_the_canary_cleanly(extra: dict[str, Any]) -> None:
    steps = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "h"}]}},
        {"pause": {}},
    ]
    sim = healthy(manifest(steps=steps, **extra))
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.current_step_index == 1 and s.runs)
    v2_run = next(iter(sim.runs))
    mark = len(sim.history)
    sim.set_image("app:v3")
    first = sim.reconcile()
    # Steps restart at 0 for the new revision, with a clean slate.
    assert sim.status.current_step_index == 0
    assert sim.status.attempt == 0
    assert sim.status.canary_server_group == "checkout-v003"
    assert v2_run in first.desired.terminate_runs  # the half-done analysis is stopped
    sim.run_until(lambda s: "checkout-v003-step1-a0" in s.runs)
    sim.set_runs("Successful")
    sim.run_until(at_step(2))
    assert reasons(sim, mark).count("NewRevision") == 1
    assert "abandoning canary checkout-v002" in announced(sim, mark)[0].message
    assert sim.groups["checkout-v002"].replicas == 0
    assert sim.groups["checkout-v003"].replicas > 0
    assert sim.status.stable_server_group == "checkout-v001"
    sim.promote(2)
    sim.run_until(converged)
    assert sim.status.stable_server_group == "checkout-v003"


@pytest.mark.parametrize("routed", [False, True], ids=["replicas", "router"])
def test_undo_to_an_older_group_is_a_fast_rollback(routed: bool) -> None:
    # Rolling back to a version that already ran must be fast: its group still exists, so no
    # steps, no analysis, no new group — just scale it up and move traffic.
    extra = {**SERVICES, "trafficRouting": ROUTER, "scaleDownDelaySeconds": 0} if routed else {}
    sim = healthy(manifest(steps=PROMOTE_STEPS, **extra))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.promote(full=True)
    sim.run_until(converged)
    groups_before = set(sim.groups)
    mark = len(sim.history)
    sim.set_image("app:v1")
    sim.run_until(converged)
    assert set(sim.groups) == groups_before
    assert "StepStarted" not in reasons(sim, mark)
    assert "ServerGroupCreated" not in reasons(sim, mark)
    assert reasons(sim, mark).count("FastRollback") == 1
    assert reasons(sim, mark).count("RollbackCompleted") == 1
    assert sim.status.stable_server_group == "checkout-v001"
    assert sim.groups["checkout-v002"].replicas == 0


def test_undo_to_the_stable_image_mid_rollout_returns_to_stable() -> None:
    sim = healthy(manifest(steps=PROMOTE_STEPS))
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.promote(1)
    sim.run_until(at_step(3))
    mark = len(sim.history)
    sim.set_image("app:v1")
    sim.run_until(converged)
    assert "StepStarted" not in reasons(sim, mark)
    assert sim.status.stable_server_group == "checkout-v001"
    assert sim.groups["checkout-v002"].replicas == 0


# --- abort ----------------------------------------------------------------------------------------


def test_abort_in_replica_mode_takes_the_canary_pods_at_once_even_below_the_floor() -> None:
    # THE documented exception to the availability floor. Without a router the canary's pods
    # *are* its traffic share: waiting for the stable group to grow back first would keep
    # sending users to a version someone just judged bad. So an abort removes the canary's
    # pods in the very pass that sees it, traffic first, even though fewer pods are available
    # than maxUnavailable allows; the stable group then grows back within the surge.
    body = manifest(steps=[{"setWeight": 60}, {"pause": {}}], maxSurge="25%", maxUnavailable=0)
    sim = healthy(body)
    lim = limits(10, "25%", 0)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    assert sizes(sim) == {"checkout-v001": 4, "checkout-v002": 6}
    sim.abort()
    d = sim.reconcile()
    assert d.desired.traffic_first
    assert d.desired.scale["checkout-v002"] == 0  # at once, whole
    available = sum(g.available for g in sim.groups.values())
    assert available < lim.floor  # below the floor, by design
    assert reasons(sim, len(sim.history) - 1) == ["RolloutAborted"]
    # ...and only the canary went: the stable group keeps every pod and grows back.
    assert sim.groups["checkout-v001"].available == 4
    sim.run_until(lambda s: s.groups["checkout-v001"].available == 10)
    assert sim.status.weights.stable == 100
    assert sim.status.phase == "Degraded"


def test_abort_with_a_router_moves_traffic_at_once_and_keeps_the_canary_warm_briefly() -> None:
    body = manifest(
        steps=[{"setWeight": 40}, {"pause": {}}],
        trafficRouting=ROUTER,
        abortScaleDownDelaySeconds=30,
        **SERVICES,
    )
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    sim.abort()
    d = sim.reconcile()
    aborted_at = sim.now
    assert d.desired.traffic_first
    assert d.desired.traffic is not None
    assert d.desired.traffic.canary_weight == 0
    assert sim.status.weights.stable == 100
    assert sim.services["checkout"].selector["herdsman.dev/server-group"] == "checkout-v001"
    assert sim.canary_size() == 4  # warm, in case the abort is undone by a retry
    sim.run_until(lambda s: s.canary_size() == 0)
    assert (sim.now - aborted_at).total_seconds() >= 30


# --- invalid specs --------------------------------------------------------------------------------


def _same_service(sim: Sim) -> None:
    sim.body["spec"]["strategy"]["canary"]["canaryService"] = "checkout"


def _stable_missing(sim: Sim) -> None:
    del sim.services["checkout"]


def _canary_gone(sim: Sim) -> None:
    sim.services["checkout-canary"] = ServiceState("checkout-canary", exists=False)


def _template_missing(sim: Sim) -> None:
    sim.missing_templates.add("AnalysisTemplate/h")


def _analysis_unbuildable(sim: Sim) -> None:
    sim.analysis_problems.append("analysis template 'h': argument 'group' is not declared")


INVALID = {
    "canary-is-stable": _same_service,
    "stable-service-missing": _stable_missing,
    "canary-service-gone": _canary_gone,
    "template-missing": _template_missing,
    "analysis-unbuildable": _analysis_unbuildable,
}


@pytest.mark.parametrize("breakage", list(INVALID), ids=list(INVALID))
@pytest.mark.parametrize("when", ["first-revision", "mid-rollout"])
def test_an_invalid_spec_touches_nothing_and_says_why(breakage: str, when: str) -> None:
    # When the spec cannot be followed, doing *anything* risks doing the wrong thing: hold every
    # group, selector and run where it is, and say so in a condition people can see.
    body = manifest(
        steps=[
            {"setWeight": 20},
            {"pause": {}},
            {"analysis": {"templates": [{"templateName": "h"}]}},
        ],
        **SERVICES,
    )
    if when == "first-revision":
        sim = Sim.of(body)
    else:
        sim = healthy(body)
        sim.set_image("app:v2")
        sim.run_until(at_step(1))
    INVALID[breakage](sim)
    groups, services = dict(sim.groups), dict(sim.services)
    mark = len(sim.history)
    first = sim.reconcile()
    again = sim.reconcile()
    assert first.desired.empty
    assert again.desired.empty
    assert sim.groups == groups
    assert sim.services == services
    assert sim.status.phase == "Degraded"
    assert any(c.type == "InvalidSpec" and c.status == "True" for c in sim.status.conditions)
    # Said once, not on every recheck.
    assert reasons(sim, mark) == ["InvalidSpec"]
    assert again.status.to_wire() == first.status.to_wire()
    assert again.requeue_after is not None  # services are not watched: look again later


def test_fixing_an_invalid_spec_resumes_where_it_stood() -> None:
    body = manifest(steps=[{"setWeight": 20}, {"pause": {}}], **SERVICES)
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(at_step(1))
    before = sizes(sim)
    del sim.services["checkout"]
    sim.reconcile()
    mark = len(sim.history)
    sim.services["checkout"] = ServiceState("checkout", True)
    sim.reconcile()
    assert reasons(sim, mark) == ["SpecValid"]
    assert sim.status.phase == "Paused"
    assert sim.status.current_step_index == 1
    assert sizes(sim) == before
    assert sim.services["checkout"].selector["herdsman.dev/server-group"] == "checkout-v001"


# --- scaling (HPA) --------------------------------------------------------------------------------


@pytest.mark.parametrize("routed", [False, True], ids=["replicas", "router"])
@pytest.mark.parametrize("new_total", [3, 1, 25])
def test_hpa_scaling_mid_rollout_keeps_the_weight_and_every_bound(
    routed: bool, new_total: int
) -> None:
    extra = {**SERVICES, "trafficRouting": ROUTER} if routed else {}
    sim = healthy(manifest(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}], **extra))
    checker = Checker(sim)
    sim.set_image("app:v2")
    rng = random.Random(7)
    for _ in range(100):
        checker.reconcile()
        if sim.status.phase == "Paused":
            break
        sim.settle(rng)
        sim.tick()
    sim.set_replicas(new_total)
    for _ in range(60):
        checker.reconcile()  # floor, ceiling, weights and steps checked on every pass
        sim.settle(rng)
        sim.tick()
    assert sim.status.current_step_index == 1
    assert sim.canary_size() == canary_replicas(new_total, 20)
    sim.promote(1)
    drive(checker, random.Random(0))


# --- quiet when nothing changes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", ["healthy", "indefinite-pause", "timed-pause", "aborted", "user-paused", "analysis"]
)
@pytest.mark.parametrize("routed", [False, True], ids=["replicas", "router"])
def test_a_reconcile_with_no_news_writes_nothing_and_announces_nothing(
    state: str, routed: bool
) -> None:
    # The operator watches its own Rollout: a pass that rewrites status (or announces again)
    # with nothing new would wake itself forever and spam Events.
    extra = {**SERVICES, "trafficRouting": ROUTER} if routed else {}
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "1h"}},
        {"analysis": {"templates": [{"templateName": "h"}]}},
        {"pause": {}},
    ]
    sim = healthy(manifest(steps=steps, **extra))
    if state != "healthy":
        sim.set_image("app:v2")
        if state == "timed-pause":
            sim.run_until(at_step(1))
        else:
            sim.run_until(at_step(1))
            sim.promote(1)
            sim.run_until(lambda s: s.status.current_step_index == 2 and s.runs)
            if state != "analysis":
                sim.set_runs("Successful")
                sim.run_until(at_step(3))
        if state == "aborted":
            sim.abort()
            sim.run_until(lambda s: s.canary_size() == 0)
        if state == "user-paused":
            sim.set_paused(True)
            sim.reconcile()
    sim.tick(5)
    sim.reconcile()
    status = sim.status.to_wire()
    for _ in range(3):
        d = sim.reconcile()
        assert d.transitions == [], [t.reason for t in d.transitions]
        assert no_writes(d), d.desired
        assert sim.status.to_wire() == status
        again = decide(sim.rollout, sim.world(), sim.now)
        assert again == d  # deterministic

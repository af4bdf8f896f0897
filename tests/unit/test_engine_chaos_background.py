"""The background analysis's chaos option in the engine (`analysis.chaos`): the fault goes into
the canary alone while the steps go on, from its startingStep, for its duration, once per
background run; it is undone on abort, pause, a new revision and by an operator back from a
crash, all from status; and the rollout never completes under it or without it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sim import Sim, manifest
from test_engine_scenarios import healthy, reasons

from herdsman.api.chaos import CHAOS_HEADER
from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.engine.validation import spec_problems
from herdsman.engine.world import RouterState

pytestmark = pytest.mark.unit

STEPS: list[dict[str, Any]] = [
    {"setWeight": 40},
    {"pause": {"duration": "20s"}},
    {"pause": {"duration": "20s"}},
    {"setWeight": 60},
    {"pause": {"duration": "10s"}},
]
KILL = {"action": "killPods", "percent": 50, "duration": "30s", "startingStep": 1}


def bg_manifest(
    chaos: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    analysis: dict[str, Any] = {"templates": [{"templateName": "h"}]}
    analysis["chaos"] = chaos if chaos is not None else dict(KILL)
    return manifest(
        replicas=10, steps=steps if steps is not None else STEPS, analysis=analysis, **extra
    )


def injected(s: Sim) -> bool:
    return s.status.chaos is not None and s.status.chaos.phase == "Injected"


def at_fault(body: dict[str, Any] | None = None, **kwargs: Any) -> Sim:
    sim = healthy(body or bg_manifest(), **kwargs)
    sim.set_image("app:v2")
    sim.run_until(injected)
    return sim


def step(sim: Sim, seconds: float = 2) -> None:
    sim.reconcile()
    sim.settle()
    sim.tick(seconds)


def test_the_fault_starts_at_its_step_and_stays_while_the_walk_goes_on() -> None:
    sim = at_fault()
    ch = sim.status.chaos
    assert (ch.source, ch.step_index, ch.attempt, ch.revision) == ("background", 1, 0, 2)
    assert (ch.canary_pods, ch.pods_killed, ch.server_group) == (4, 2, "checkout-v002")
    assert (ch.ends_at - ch.started_at).total_seconds() == 30
    walked_on = False
    while injected(sim):
        assert sim.groups["checkout-v002"].replicas == 2  # the canary alone loses pods
        assert sim.groups["checkout-v001"].replicas == 6  # the stable group is untouched
        walked_on |= sim.status.current_step_index == 2
        step(sim)
    # The pause steps went by under the fault: it is the background analysis's, not a step's.
    assert walked_on
    assert sim.status.chaos.removed_reason == "duration over"
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert sim.groups["checkout-v002"].replicas == 10
    assert reasons(sim).count("ChaosInjected") == 1
    assert reasons(sim).count("ChaosRemoved") == 1


def test_a_step_that_scales_the_canary_waits_for_the_pods_to_come_back() -> None:
    # startingStep 3 is setWeight 60: the canary is kept smaller on purpose meanwhile.
    sim = at_fault(bg_manifest({**KILL, "startingStep": 3}))
    assert sim.status.current_step_index == 3
    ch = sim.status.chaos
    assert (ch.step_index, ch.canary_pods, ch.pods_killed) == (3, 6, 3)
    while injected(sim):
        assert sim.status.current_step_index == 3
        assert sim.groups["checkout-v002"].replicas == 3
        step(sim)
    sim.run_until(lambda s: s.status.current_step_index == 4)
    assert sim.groups["checkout-v002"].replicas == 6


def test_the_rollout_does_not_complete_under_the_fault() -> None:
    steps = [{"setWeight": 40}, {"pause": {"duration": "5s"}}]
    sim = at_fault(bg_manifest({**KILL, "duration": "60s"}, steps=steps))
    started = sim.now
    while injected(sim):
        assert sim.status.phase != "Healthy"
        assert sim.status.stable_server_group == "checkout-v001"
        assert sim.groups["checkout-v001"].replicas == 6
        step(sim, 5)
    assert (sim.now - started).total_seconds() >= 60
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert sim.status.stable_server_group == "checkout-v002"


def test_the_rollout_does_not_complete_before_the_fault_was_injected() -> None:
    # Entering the last step finds it already done (same weight): the walk would complete in
    # that very pass, before any fault; it waits for the fault instead.
    steps = [{"setWeight": 40}, {"setWeight": 40}]
    sim = healthy(bg_manifest({**KILL, "duration": "10s"}, steps=steps))
    sim.set_image("app:v2")
    since = len(sim.history)
    sim.run_until(lambda s: s.status.phase == "Healthy" and s.status.stable_revision == 2)
    seen = reasons(sim, since)
    assert "ChaosInjected" in seen
    assert seen.index("ChaosInjected") < seen.index("ChaosRemoved") < seen.index("RolloutCompleted")


def test_an_abort_under_the_fault_removes_it_with_the_canary() -> None:
    sim = at_fault()
    sim.set_runs("Failed", kind="background", message="error rate up")
    sim.reconcile()
    assert sim.status.abort
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "rollout aborted"
    sim.run_until(lambda s: s.groups["checkout-v001"].replicas == 10)
    sim.run_until(lambda s: s.groups["checkout-v002"].replicas == 0)


def test_a_retry_starts_a_new_background_run_and_a_new_fault() -> None:
    sim = at_fault()
    sim.abort()
    sim.run_until(lambda s: s.status.chaos.phase == "Removed")
    sim.retry()
    sim.run_until(lambda s: injected(s) and s.status.chaos.attempt == 1)
    assert sim.status.chaos.pods_killed == 2
    assert reasons(sim).count("ChaosInjected") == 2


def test_a_user_pause_ends_the_fault_and_it_is_not_injected_again() -> None:
    sim = at_fault(bg_manifest({**KILL, "duration": "60s"}))
    sim.set_paused(True)
    sim.reconcile()
    assert sim.status.chaos.removed_reason == "rollout paused"
    sim.settle()
    sim.set_paused(False)
    sim.tick()
    sim.reconcile()
    assert sim.groups["checkout-v002"].replicas == 4  # back with the resume, not killed again
    sim.run_until(lambda s: s.status.phase == "Healthy")
    assert reasons(sim).count("ChaosInjected") == 1


def test_an_inconclusive_verdict_ends_the_fault() -> None:
    sim = at_fault()
    sim.set_runs("Inconclusive", kind="background")
    sim.reconcile()
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "rollout paused"
    assert sim.groups["checkout-v002"].replicas == 4


def test_a_new_revision_mid_fault_removes_it_and_gets_a_fault_of_its_own() -> None:
    sim = at_fault()
    sim.set_image("app:v3")
    sim.reconcile()
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "new revision"
    assert sim.groups["checkout-v002"].replicas != 2 or sim.status.chaos.revision == 2
    sim.run_until(lambda s: injected(s) and s.status.chaos.revision == 3)
    assert sim.status.chaos.server_group == "checkout-v003"


def test_an_operator_back_after_the_window_removes_the_fault_from_status_alone() -> None:
    # Killed mid-fault: nothing ran for two minutes; the first pass finds the window over.
    sim = at_fault()
    sim.tick(120)
    sim.reconcile()
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "duration over"
    assert sim.groups["checkout-v002"].replicas == 4
    assert reasons(sim).count("ChaosInjected") == 1


def test_an_operator_back_within_the_window_keeps_the_same_fault() -> None:
    sim = at_fault()
    before = sim.status.chaos
    sim.tick(10)
    since = len(sim.history)
    sim.reconcile()
    assert sim.status.chaos == before
    assert sim.groups["checkout-v002"].replicas == 2
    assert "ChaosInjected" not in reasons(sim, since)


def test_a_lost_status_write_injects_the_same_fault_once() -> None:
    sim = healthy(bg_manifest())
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.current_step_index == 1)
    sim.reconcile(status=False)
    sim.reconcile()
    assert sim.status.chaos.pods_killed == 2
    assert sim.groups["checkout-v002"].replicas == 2


def test_baseline_and_stable_groups_are_never_touched() -> None:
    sim = at_fault(bg_manifest(baseline=True))
    base = sim.status.baseline_server_group
    assert base is not None
    sizes = (sim.groups[base].replicas, sim.groups["checkout-v001"].replicas)
    while injected(sim):
        assert (sim.groups[base].replicas, sim.groups["checkout-v001"].replicas) == sizes
        assert sim.groups["checkout-v002"].replicas == 2
        step(sim)


# --- httpFault -----------------------------------------------------------------------------------

ISTIO = {"istio": {"virtualService": {"name": "checkout", "routes": ["primary"]}}}
FAULT = {
    "action": "httpFault",
    "duration": "60s",
    "startingStep": 1,
    "httpFault": {"abort": {"httpStatus": 503, "percentage": {"value": 10}}},
}


def routed(**extra: Any) -> dict[str, Any]:
    return bg_manifest(
        FAULT,
        stableService="checkout",
        canaryService="checkout-canary",
        trafficRouting=ISTIO,
        **extra,
    )


def test_an_http_fault_rides_the_weights_the_steps_write_and_goes_with_its_window() -> None:
    sim = Sim.of(routed(), router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(injected)
    ch = sim.status.chaos
    assert (ch.source, ch.action, ch.pods_killed) == ("background", "httpFault", 0)
    assert ch.http_fault.headers == {CHAOS_HEADER: "checkout"}
    weights = set()
    while True:
        d = sim.reconcile()
        if not injected(sim):
            break
        assert d.desired.traffic is None or d.desired.traffic.http_fault is not None
        assert sim.router is not None
        assert sim.router.http_fault
        assert sim.groups["checkout-v001"].replicas == 10  # stable keeps every pod (routed)
        weights.add(sim.router.canary_weight)
        sim.settle()
        sim.tick(2)
    assert weights >= {40, 60}  # the walk went on: setWeight 60 was written with the fault
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is None
    assert sim.router is not None
    assert not sim.router.http_fault
    assert sim.status.chaos.removed_reason == "duration over"


def test_an_abort_removes_the_fault_route_in_the_pass_that_aborts() -> None:
    sim = Sim.of(routed(), router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(injected)
    sim.set_runs("Failed", kind="background")
    d = sim.reconcile()
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is None
    assert d.desired.traffic.canary_weight == 0
    assert sim.router is not None
    assert not sim.router.http_fault


# --- bad input: refused by the API server's rules (as lint runs them) and as InvalidSpec ---------


def lint_paths(body: dict[str, Any]) -> list[str]:
    return [e.path for e in lint_object(body).errors]


@pytest.mark.parametrize("percent", [0, 101])
def test_a_percent_outside_1_to_100_is_refused(percent: int) -> None:
    body = bg_manifest({**KILL, "percent": percent})
    with pytest.raises(ValidationError, match="percent"):
        Rollout.model_validate(body)
    assert "spec.strategy.canary.analysis.chaos.percent" in lint_paths(body)


def test_kill_pods_without_percent_is_refused_naming_the_field() -> None:
    body = bg_manifest({k: v for k, v in KILL.items() if k != "percent"})
    assert "spec.strategy.canary.analysis.chaos.percent" in lint_paths(body)


def test_an_http_fault_without_istio_is_refused_naming_the_field() -> None:
    body = bg_manifest(FAULT)
    assert "spec.strategy.canary.analysis.chaos.httpFault" in lint_paths(body)
    problems = spec_problems(Rollout.model_validate(body))
    assert [p.path for p in problems] == ["spec.strategy.canary.analysis.chaos.httpFault"]


@pytest.mark.parametrize(
    ("chaos", "analysis_start", "field"),
    [
        ({**KILL, "startingStep": 5}, None, "startingStep"),  # past the last step
        ({**KILL, "startingStep": 0}, 1, "startingStep"),  # before the judge runs
        ({**KILL, "duration": "2h"}, None, "duration"),
        ({**KILL, "duration": 0}, None, "duration"),
    ],
)
def test_a_fault_that_would_never_come_or_never_end_is_refused(
    chaos: dict[str, Any], analysis_start: int | None, field: str
) -> None:
    body = bg_manifest(chaos)
    if analysis_start is not None:
        body["spec"]["strategy"]["canary"]["analysis"]["startingStep"] = analysis_start
    where = f"spec.strategy.canary.analysis.chaos.{field}"
    problems = spec_problems(Rollout.model_validate(body))
    assert [p.path for p in problems] == [where]
    assert where in lint_paths(body)


def test_chaos_steps_and_the_background_option_do_not_go_together() -> None:
    steps = [*STEPS, {"chaos": {"action": "killPods", "percent": 50, "duration": "30s"}}]
    body = bg_manifest(steps=steps)
    assert "spec.strategy.canary.analysis.chaos" in lint_paths(body)
    problems = spec_problems(Rollout.model_validate(body))
    assert "spec.strategy.canary.analysis.chaos" in [p.path for p in problems]


def test_a_good_background_fault_is_valid() -> None:
    assert lint_object(bg_manifest()).errors == []
    assert spec_problems(Rollout.model_validate(bg_manifest())) == []
    body = routed()
    assert lint_object(body).errors == []
    assert spec_problems(Rollout.model_validate(body)) == []


# --- the plugin ----------------------------------------------------------------------------------


def test_the_plan_and_the_status_view_say_where_the_fault_comes_from() -> None:
    from datetime import UTC, datetime

    from rich.console import Console

    from herdsman.cli.plan import timeline
    from herdsman.cli.render import status_view

    plan = timeline(Rollout.model_validate(bg_manifest()))
    assert any(
        "background chaos starts: 50% of the canary's pods kept down for 30s" in n
        for n in plan.rows[1].notes
    )
    assert not any("background chaos starts" in n for r in plan.rows[2:] for n in r.notes)
    assert "not before the background chaos is over" in plan.rows[-1].notes
    sim = at_fault()
    body = sim.body
    now = datetime.fromisoformat(body["status"]["chaos"]["startedAt"].replace("Z", "+00:00"))
    console = Console(width=200, record=True)
    console.print(status_view(body, now.astimezone(UTC)))
    text = " ".join(console.export_text().split())
    assert (
        "injected: killPods 2 of 4 pods of checkout-v002 (background analysis, from step 2),"
        " ends in 30s"
    ) in text

"""A chaos step's httpFault in the engine: the fault is on the router's target while the step
runs, taken from status, and off in every pass after — the step's end, an abort, a pause, an
operator back after a crash, a status lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError
from sim import Sim, manifest
from test_engine_scenarios import reasons

from herdsman.api.chaos import CHAOS_HEADER
from herdsman.api.rollout import Rollout
from herdsman.engine.validation import spec_problems
from herdsman.engine.world import Decision, RouterState

pytestmark = pytest.mark.unit

ISTIO = {"istio": {"virtualService": {"name": "checkout", "routes": ["primary"]}}}
FAULT = {"abort": {"httpStatus": 503, "percentage": {"value": 10}}}


def fault_manifest(
    fault: dict[str, Any] | None = None, duration: str = "30s", **extra: Any
) -> dict[str, Any]:
    canary: dict[str, Any] = {
        "stableService": "checkout",
        "canaryService": "checkout-canary",
        "trafficRouting": ISTIO,
        "analysis": {"templates": [{"templateName": "h"}]},
    }
    canary.update(extra)
    chaos = {"action": "httpFault", "duration": duration, "httpFault": fault or FAULT}
    return manifest(
        replicas=10,
        steps=[{"setWeight": 40}, {"chaos": chaos}, {"setWeight": 50}, {"pause": {}}],
        **canary,
    )


def at_fault(body: dict[str, Any] | None = None) -> Sim:
    sim = Sim.of(body or fault_manifest(), router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.chaos is not None and s.status.chaos.phase == "Injected")
    return sim


def holds_fault(sim: Sim) -> bool:
    assert sim.router is not None
    return sim.router.http_fault


def test_the_fault_is_on_the_canarys_target_while_the_step_runs_and_from_status() -> None:
    sim = at_fault()
    ch = sim.status.chaos
    assert ch.action == "httpFault"
    assert ch.pods_killed == 0
    assert ch.http_fault.headers == {CHAOS_HEADER: "checkout"}  # the default, resolved
    assert holds_fault(sim)
    d: Decision = sim.reconcile()
    target = d.desired.traffic
    assert target is not None
    assert target.http_fault is not None
    assert target.canary_group == "checkout-v002"
    assert target.canary_weight == 40
    assert target.http_fault.abort is not None
    assert target.http_fault.abort.http_status == 503
    # Taken from status, not the spec: a spec edited mid-step does not change the fault.
    sim.body["status"]["chaos"]["httpFault"]["abort"]["httpStatus"] = 502
    d = sim.reconcile()
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is not None
    assert d.desired.traffic.http_fault.abort is not None
    assert d.desired.traffic.http_fault.abort.http_status == 502
    # The pods are not touched: killing pods is the other action.
    assert sim.groups["checkout-v002"].replicas == 4
    assert "httpFault: abort 503 on 10%" in next(
        t.message for dd in sim.history for t in dd.transitions if t.reason == "ChaosInjected"
    )


def test_the_fault_goes_when_its_duration_is_over() -> None:
    sim = at_fault(fault_manifest(duration="10s"))
    started = sim.now
    sim.run_until(lambda s: s.status.chaos.phase == "Removed")
    assert (sim.now - started).total_seconds() >= 10
    assert sim.status.chaos.removed_reason == "duration over"
    assert not holds_fault(sim)
    sim.run_until(lambda s: s.status.current_step_index == 3)
    assert not holds_fault(sim)
    assert reasons(sim).count("ChaosInjected") == 1
    assert reasons(sim).count("ChaosRemoved") == 1


def test_an_abort_removes_the_fault_in_the_pass_that_aborts() -> None:
    sim = at_fault()
    sim.set_runs("Failed", kind="background", message="errors up")
    d = sim.reconcile()
    assert sim.status.abort
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is None
    assert d.desired.traffic.canary_weight == 0
    assert not holds_fault(sim)
    assert sim.status.chaos.removed_reason == "rollout aborted"


def test_a_pause_removes_the_fault_and_it_is_not_injected_again() -> None:
    sim = at_fault(fault_manifest(duration="60s"))
    sim.set_paused(True)
    d = sim.reconcile()
    # A paused pass writes no traffic of its own; the router still holding the route makes it
    # write the weights it holds, without the route.
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is None
    assert d.desired.traffic.canary_weight == 40
    assert not holds_fault(sim)
    assert sim.status.chaos.removed_reason == "rollout paused"
    d = sim.reconcile()
    assert d.desired.traffic is None  # gone: nothing more to write while paused
    sim.set_paused(False)
    sim.tick()
    sim.reconcile()
    assert not holds_fault(sim)
    assert reasons(sim).count("ChaosInjected") == 1


def test_an_operator_back_after_the_window_removes_the_fault() -> None:
    # Killed mid-fault: nothing ran for a minute; the router still holds the route. The first
    # pass finds the window over in status and writes the target without it.
    sim = at_fault(fault_manifest(duration="20s"))
    assert holds_fault(sim)
    sim.tick(60)
    d = sim.reconcile()
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is None
    assert not holds_fault(sim)
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "duration over"


def test_an_operator_back_within_the_window_keeps_the_same_fault() -> None:
    sim = at_fault(fault_manifest(duration="60s"))
    sim.tick(10)
    d = sim.reconcile()
    assert d.desired.traffic is not None
    assert d.desired.traffic.http_fault is not None
    assert reasons(sim).count("ChaosInjected") == 1


def test_a_fault_route_no_status_explains_is_removed() -> None:
    # The route in the VirtualService, status lost (or never written): the next pass, even a
    # paused one, removes it.
    sim = at_fault()
    sim.set_paused(True)
    sim.body["status"].pop("chaos")
    assert sim.router is not None
    sim.router = replace(sim.router, http_fault=True)
    sim.reconcile()
    assert not holds_fault(sim)


def test_a_lost_status_write_injects_the_same_fault_once() -> None:
    sim = Sim.of(fault_manifest(), router=RouterState())
    sim.run_until(lambda s: s.status.phase == "Healthy")
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.current_step_index == 1)
    sim.reconcile(status=False)
    assert holds_fault(sim)
    sim.reconcile()
    assert holds_fault(sim)
    assert sim.status.chaos.phase == "Injected"


def test_a_new_revision_mid_fault_removes_it() -> None:
    sim = at_fault()
    sim.set_image("app:v3")
    sim.reconcile()
    assert not holds_fault(sim)
    assert sim.status.chaos.removed_reason == "new revision"


# --- bad input: refused, naming the field ------------------------------------------------------------


def test_an_http_fault_without_istio_is_refused_naming_the_field() -> None:
    body = fault_manifest(trafficRouting={"gatewayAPI": {"httpRoute": "checkout"}})
    problems = spec_problems(Rollout.model_validate(body))
    assert "spec.strategy.canary.steps[1].chaos.httpFault" in [p.path for p in problems]
    body = fault_manifest()
    del body["spec"]["strategy"]["canary"]["trafficRouting"]
    problems = spec_problems(Rollout.model_validate(body))
    assert "spec.strategy.canary.steps[1].chaos.httpFault" in [p.path for p in problems]
    # The API server refuses it by CEL too (tests/e2e); the model carries the rule.
    assert "needs trafficRouting.istio" in str(Rollout.model_json_schema())


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"abort": {"httpStatus": 503, "percentage": {"value": 101}}}, "value"),
        ({"delay": {"fixedDelay": "1s", "percentage": {"value": 100.5}}}, "value"),
        ({"abort": {"httpStatus": 503, "percentage": {"value": -1}}}, "value"),
        ({"abort": {"httpStatus": 700, "percentage": {"value": 10}}}, "httpStatus"),
        ({"abort": {"httpStatus": 503}}, "percentage"),
    ],
)
def test_a_fault_out_of_bounds_is_refused_naming_the_field(
    fault: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        Rollout.model_validate(fault_manifest(fault))


def test_a_delay_as_long_as_the_step_is_refused() -> None:
    body = fault_manifest({"delay": {"fixedDelay": "30s", "percentage": {"value": 50}}})
    problems = spec_problems(Rollout.model_validate(body))
    assert [p.path for p in problems] == [
        "spec.strategy.canary.steps[1].chaos.httpFault.delay.fixedDelay"
    ]
    body = fault_manifest({"delay": {"fixedDelay": "500ms", "percentage": {"value": 50}}})
    assert spec_problems(Rollout.model_validate(body)) == []


def test_a_managed_route_named_like_the_fault_route_is_refused() -> None:
    routing = {**ISTIO, "managedRoutes": [{"name": "chaos-fault"}]}
    problems = spec_problems(Rollout.model_validate(fault_manifest(trafficRouting=routing)))
    assert "spec.strategy.canary.trafficRouting.managedRoutes" in [p.path for p in problems]


# --- the plugin's plan and status ---------------------------------------------------------------------


def test_the_plan_and_the_status_view_say_what_fault_goes_where() -> None:
    from datetime import UTC, datetime

    from rich.console import Console

    from herdsman.cli.plan import timeline
    from herdsman.cli.render import status_view

    row = timeline(Rollout.model_validate(fault_manifest())).rows[1]
    assert row.description == "chaos httpFault abort 503 on 10% for 30s"
    assert row.elapsed == 30
    assert any(
        "abort 503 on 10% on requests with x-herdsman-chaos: checkout" in n for n in row.notes
    )
    sim = at_fault()
    body = sim.body
    now = datetime.fromisoformat(body["status"]["chaos"]["startedAt"].replace("Z", "+00:00"))
    console = Console(width=200, record=True)
    console.print(status_view(body, now.astimezone(UTC)))
    text = " ".join(console.export_text().split())  # wrapped in the grid's column
    assert (
        "injected: httpFault abort 503 on 10% on requests with x-herdsman-chaos: checkout"
        " to canary checkout-v002 (step 2), ends in 30s"
    ) in text

"""The chaos step in the engine: the fault on the canary only, bounded, undone, crash-safe."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sim import Sim, manifest
from test_engine_scenarios import healthy, reasons

from herdsman.api.rollout import Rollout
from herdsman.engine.canary.chaos import pods_to_kill
from herdsman.engine.validation import spec_problems

pytestmark = pytest.mark.unit

BACKGROUND = {"templates": [{"templateName": "h"}]}


def chaos_manifest(percent: int = 50, duration: str = "30s", **extra: Any) -> dict[str, Any]:
    return manifest(
        replicas=10,
        steps=[
            {"setWeight": 40},
            {"chaos": {"action": "killPods", "percent": percent, "duration": duration}},
            {"setWeight": 50},
            {"pause": {}},
        ],
        analysis=BACKGROUND,
        **extra,
    )


def at_chaos(body: dict[str, Any]) -> Sim:
    sim = healthy(body)
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.chaos is not None and s.status.chaos.phase == "Injected")
    return sim


def test_chaos_keeps_a_share_of_the_canary_down_and_never_touches_stable() -> None:
    sim = at_chaos(chaos_manifest(percent=50))
    ch = sim.status.chaos
    assert (ch.canary_pods, ch.pods_killed, ch.server_group) == (4, 2, "checkout-v002")
    for _ in range(10):
        sim.reconcile()
        sim.settle()
        sim.tick(2)
        if sim.status.chaos.phase != "Injected":
            break
        assert sim.groups["checkout-v002"].replicas == 2
        assert sim.groups["checkout-v001"].replicas == 6  # the stable group is untouched
    assert "ChaosInjected" in reasons(sim)


def test_chaos_ends_with_its_duration_and_the_pods_come_back() -> None:
    sim = at_chaos(chaos_manifest(percent=50, duration="10s"))
    started = sim.now
    sim.run_until(lambda s: s.status.chaos.phase == "Removed")
    assert (sim.now - started).total_seconds() >= 10
    assert sim.status.chaos.removed_reason == "duration over"
    sim.run_until(lambda s: s.status.current_step_index == 3)
    assert sim.groups["checkout-v002"].replicas == 5
    assert reasons(sim).count("ChaosRemoved") == 1


def test_an_abort_under_chaos_removes_the_fault_with_the_canary() -> None:
    sim = at_chaos(chaos_manifest())
    sim.set_runs("Failed", kind="background", message="latency up")
    sim.reconcile()
    assert sim.status.abort
    assert sim.status.chaos.phase == "Removed"
    assert sim.status.chaos.removed_reason == "rollout aborted"
    sim.run_until(lambda s: s.groups["checkout-v001"].replicas == 10)


def test_a_pause_ends_the_fault_and_it_is_not_injected_again() -> None:
    sim = at_chaos(chaos_manifest(duration="60s"))
    sim.set_paused(True)
    sim.reconcile()
    assert sim.status.chaos.removed_reason == "rollout paused"
    sim.settle()
    sim.set_paused(False)
    sim.tick()
    sim.reconcile()
    assert sim.groups["checkout-v002"].replicas == 4
    assert reasons(sim).count("ChaosInjected") == 1


def test_an_operator_back_after_the_window_removes_the_fault() -> None:
    # Killed mid-chaos: nothing ran for a minute; the first pass finds the window over in status.
    sim = at_chaos(chaos_manifest(duration="20s"))
    sim.tick(60)
    sim.reconcile()
    assert sim.status.chaos.phase == "Removed"
    assert sim.groups["checkout-v002"].replicas >= 4


def test_a_status_lost_mid_chaos_is_found_again_the_same() -> None:
    # A pass whose status write failed: the next one injects the same fault, not a second.
    sim = healthy(chaos_manifest())
    sim.set_image("app:v2")
    sim.run_until(lambda s: s.status.current_step_index == 1)
    sim.reconcile(status=False)
    sim.reconcile()
    assert sim.status.chaos.pods_killed == 2
    assert sim.groups["checkout-v002"].replicas == 2


@given(st.integers(1, 100), st.integers(0, 200))
def test_pods_to_kill_is_bounded_and_rounds_up(percent: int, pods: int) -> None:
    killed = pods_to_kill(percent, pods)
    assert 0 <= killed <= pods
    assert (killed > 0) == (pods > 0)
    assert killed * 100 >= percent * pods


def test_a_chaos_step_needs_background_analysis() -> None:
    body = chaos_manifest()
    del body["spec"]["strategy"]["canary"]["analysis"]
    # The API server refuses it by CEL (see tests/e2e); the model carries the rule.
    rules = Rollout.model_json_schema()
    assert "a chaos step needs background analysis" in str(rules)
    body = chaos_manifest()
    body["spec"]["strategy"]["canary"]["analysis"]["startingStep"] = 2
    problems = spec_problems(Rollout.model_validate(body))
    assert [p.path for p in problems] == ["spec.strategy.canary.steps[1].chaos"]


@pytest.mark.parametrize("percent", [0, 101])
def test_a_percent_outside_1_to_100_is_refused(percent: int) -> None:
    with pytest.raises(ValidationError, match="percent"):
        Rollout.model_validate(chaos_manifest(percent=percent))

"""The background analysis's chaos option (analysis.chaos) on a real control plane: a share of
the canary's pods kept down while the steps go on and the background analysis judges it, with a
real Prometheus scraping a synthetic service whose traffic follows the pods. A resilient canary
passes; a fragile one (it errs while it has lost pods) is rolled back; an operator killed
mid-fault removes it once it is back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_chaos import FRAGILE, setup  # noqa: F401 (setup is a fixture used by name)

from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, Rollouts, rollout
from herdsman.simulate import Behaviour

pytestmark = pytest.mark.e2e


def background_chaos_rollout(duration: str, starting_step: int = 1) -> dict[str, Any]:
    # The fault starts on entering step `starting_step` + 1 and outlives it: the next step
    # starts under it.
    return rollout(
        steps=[
            {"setWeight": 40},
            {"pause": {"duration": "4s"}},
            {"pause": {"duration": "4s"}},
            {"setWeight": 50},
        ],
        analysis={
            "templates": [{"templateName": "errors"}],
            "chaos": {
                "action": "killPods",
                "percent": 50,
                "duration": duration,
                "startingStep": starting_step,
            },
        },
    )


def injected(rollouts: Rollouts) -> dict[str, Any]:
    return rollouts.wait(
        lambda s: (
            (s.get("chaos") or {}).get("phase") == "Injected"
            and rollouts.sizes().get("checkout-v002") == (2, 2)
        ),
        timeout=60,
        what="the background fault injected: 2 of the canary's 4 pods down",
    )


def test_a_resilient_canary_passes_with_a_background_fault(
    operator: OperatorProcess,
    rollouts: Rollouts,
    setup: Any,  # noqa: F811
) -> None:
    setup(Behaviour())
    rollouts.create(background_chaos_rollout("14s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    status = injected(rollouts)
    assert status["chaos"]["source"] == "background"
    assert status["chaos"]["stepIndex"] == 1
    assert status["chaos"]["podsKilled"] == 2
    assert rollouts.sizes()["checkout-v001"][0] == 6  # the stable group keeps its pods

    status = rollouts.wait_healthy("checkout-v002", timeout=90)
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "duration over"
    assert rollouts.sizes()["checkout-v002"] == (10, 10)
    lines = [
        t
        for t in operator.transitions("checkout")
        if t.revision == "2" and t.reason in ("ChaosInjected", "ChaosRemoved", "StepStarted")
    ]
    reasons = [t.reason for t in lines]
    assert reasons.count("ChaosInjected") == reasons.count("ChaosRemoved") == 1
    # Beside the steps: the walk went on under the fault (step 3 started while it was in).
    inside = reasons[reasons.index("ChaosInjected") : reasons.index("ChaosRemoved")]
    assert "StepStarted" in inside, reasons
    chaos_lines = [t for t in lines if t.reason.startswith("Chaos")]
    assert all("background analysis chaos" in t.message for t in chaos_lines)
    assert (chaos_lines[0].step, chaos_lines[0].weight) == ("2/4", 40)


def test_a_fragile_canary_is_rolled_back_by_the_judge_under_a_background_fault(
    operator: OperatorProcess,
    rollouts: Rollouts,
    setup: Any,  # noqa: F811
) -> None:
    s = setup(FRAGILE)
    # From step 3: the simulated service errs only once it has fewer pods available than it
    # had, so it must see the canary at full size first. From step 2, the fault came within
    # 0.1 s of the canary's creation, and once in a CI run the service never saw its 4 pods
    # up, so it never erred and the judge rightly passed it.
    rollouts.create(background_chaos_rollout("30s", starting_step=2))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts)
    started = time.monotonic()

    status = rollouts.wait_phase("Degraded", timeout=60)
    assert time.monotonic() - started < 30  # judged under the fault, not after it
    assert "error-rate" in status["message"]
    assert status["chaos"]["source"] == "background"
    assert status["chaos"]["phase"] == "Removed"
    assert status["chaos"]["removedReason"] == "rollout aborted"
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v001"] == (10, 10), what="stable full")
    assert s.traffic.sent.get("checkout-v002", 0) > 0
    assert "ChaosRemoved" in operator.logged("checkout", "ChaosRemoved")


def test_a_background_fault_is_removed_by_an_operator_back_after_a_crash(
    operator: OperatorProcess,
    rollouts: Rollouts,
    setup: Any,  # noqa: F811
) -> None:
    setup(Behaviour())
    rollouts.create(background_chaos_rollout("8s"))
    rollouts.wait_healthy("checkout-v001")
    rollouts.set_image(IMAGE_V2)
    injected(rollouts)
    operator.kill()
    # Nobody is there to end it: the fault outlives its window until an operator is back...
    time.sleep(9)
    assert rollouts.sizes()["checkout-v002"][0] == 2
    assert rollouts.status()["chaos"]["phase"] == "Injected"

    operator.start()
    # ...and the first one back finds the window over in status and brings the pods back.
    status = rollouts.wait(
        lambda s: (s.get("chaos") or {}).get("phase") == "Removed",
        timeout=30,
        what="the background fault removed",
    )
    assert status["chaos"]["removedReason"] == "duration over"
    rollouts.wait_healthy("checkout-v002", timeout=60)
    assert rollouts.sizes()["checkout-v002"] == (10, 10)
    assert operator.logged("checkout", "ChaosInjected").count("ChaosInjected") == 1

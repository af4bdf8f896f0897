"""pingPong (Argo's canary `pingPong: {pingService, pongService}`): two Services take turns.

The engine points the pair at groups by role — ping is stable until the first release completes
— and a completed release swaps the roles instead of repointing the Service that carried the
canary: that Service keeps selecting the same pods (with ALB, the same registered targets).
"""

from __future__ import annotations

from typing import Any

import pytest
from sim import Sim, manifest

from herdsman.engine.validation import spec_problems
from herdsman.engine.world import RouterState, ServiceState

pytestmark = pytest.mark.unit

GROUP = "herdsman.dev/server-group"


def body(**canary: Any) -> dict[str, Any]:
    return manifest(
        steps=[{"setWeight": 25}, {"pause": {"duration": "10s"}}],
        pingPong={"pingService": "ping", "pongService": "pong"},
        trafficRouting={
            "alb": {"ingress": "edge", "servicePort": 80, "rootService": "root"},
        },
        **canary,
    )


def selected(sim: Sim, svc: str) -> str | None:
    return sim.services[svc].selector.get(GROUP)


def healthy(b: dict[str, Any]) -> Sim:
    sim = Sim.of(b, router=RouterState())
    for svc in ("ping", "pong"):
        sim.services[svc] = ServiceState(svc, True)
    sim.run_until(lambda s: s.status.phase == "Healthy")
    return sim


def test_releases_alternate_the_stable_service_and_the_canary_keeps_its_pods() -> None:
    sim = healthy(body())
    first = sim.status.stable_server_group
    assert sim.status.stable_ping_pong in (None, "ping")
    assert selected(sim, "ping") == first  # ping is stable before any release

    for stable_after, image in (("pong", "app:v2"), ("ping", "app:v3")):
        sim.set_image(image)
        sim.run_until(
            lambda s: (
                s.status.canary_server_group is not None
                and s.router is not None
                and s.router.canary_weight == 25
            )
        )
        canary = sim.status.canary_server_group
        canary_svc = stable_after  # the canary's Service is the one that becomes stable
        stable_svc = "ping" if canary_svc == "pong" else "pong"
        assert selected(sim, canary_svc) == canary
        assert selected(sim, stable_svc) != canary
        start = len(sim.history)
        sim.run_until(
            lambda s, c=canary: s.status.phase == "Healthy" and s.status.stable_server_group == c,
            limit=400,
        )
        assert sim.status.stable_ping_pong == stable_after
        # The Service that carried the canary was never repointed on the way to stable.
        assert all(canary_svc not in d.desired.selectors for d in sim.history[start:])
        assert selected(sim, canary_svc) == canary
        assert selected(sim, stable_svc) == canary  # the new canary Service, at rest
        assert sim.router is not None
        assert sim.router.canary_weight == 0


def test_ping_pong_needs_a_router_that_supports_it_in_the_crd() -> None:
    # The CRD rule is checked by the lint tests against the schema; here: the model accepts
    # pingPong without stable/canary Services, and validation finds nothing to refuse.
    from herdsman.api.rollout import Rollout

    r = Rollout.model_validate(body())
    assert r.spec.strategy.canary is not None
    assert r.spec.strategy.canary.ping_pong is not None
    assert spec_problems(r) == []

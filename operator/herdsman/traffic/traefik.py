"""Traefik: weights on a TraefikService's weighted services (traefik.io/v1alpha1).

The user owns the TraefikService named `weightedTraefikServiceName`; its `spec.weighted.services`
must list the stable and the canary Service (by `name`), and the operator writes only their
`weight`s, 100 - w and w, as Argo does. Traefik v3 serves the kind as traefik.io, v2 as
traefik.containo.us (Argo's default): the first version that has the object is used.

No header or mirror routes and no baseline share.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from herdsman.api.rollout import Rollout
from herdsman.api.routing import TraefikRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

TRAEFIK_SERVICES = [
    Path(group, "v1alpha1", "traefikservices") for group in ("traefik.io", "traefik.containo.us")
]
FIELD = f"{base.FIELD}.traefik.weightedTraefikServiceName"


def config(rollout: Rollout) -> TraefikRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.traefik is None:
        raise RouterError("not a traefik rollout")
    return routing.traefik


def _index(services: list[dict[str, Any]], name: str) -> int | None:
    return next((i for i, s in enumerate(services) if s.get("name") == name), None)


def positions(body: dict[str, Any], rollout: Rollout) -> tuple[int, int]:
    """Where the stable and canary Services are in spec.weighted.services."""
    services = ((body.get("spec") or {}).get("weighted") or {}).get("services") or []
    name = config(rollout).weighted_traefik_service_name
    found = []
    for role, svc in zip(("stable", "canary"), base.services(rollout), strict=True):
        i = _index(services, svc)
        if i is None:
            raise RouterError(
                f"{FIELD}: TraefikService {name!r} has no weighted service for the {role}"
                f" Service {svc!r}" + (" (add one with weight 0)" if role == "canary" else "")
            )
        found.append(i)
    return found[0], found[1]


def state(body: dict[str, Any], rollout: Rollout) -> RouterState:
    """What the TraefikService holds (pure: unit tests feed it objects)."""
    try:
        s, c = positions(body, rollout)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    services = body["spec"]["weighted"]["services"]
    # Traefik's default weight is 1: an unset weight is not 0.
    row = (int(services[s].get("weight", 1)), int(services[c].get("weight", 1)), 0)
    return base.exact_state([row])


def desired_spec(body: dict[str, Any], rollout: Rollout, weight: int) -> dict[str, Any]:
    s, c = positions(body, rollout)
    shares = base.split(rollout, weight)
    spec: dict[str, Any] = copy.deepcopy(body["spec"])
    spec["weighted"]["services"][s]["weight"] = shares[0]
    spec["weighted"]["services"][c]["weight"] = shares[1]
    return spec


class Traefik:
    kind: ClassVar[str] = "traefik"
    header_routes: ClassVar[bool] = False
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = False

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns, name = base.namespace(rollout), config(rollout).weighted_traefik_service_name
        _, body = await base.get_first(kube, TRAEFIK_SERVICES, ns, name, deadline)
        if body is None:
            for path in TRAEFIK_SERVICES:
                if await base.served(kube, path, deadline):
                    return RouterState(
                        available=False,
                        message=f"{FIELD}: TraefikService {name!r} not found in namespace {ns!r}",
                    )
            return base.not_installed(TRAEFIK_SERVICES[0], "TraefikService", FIELD)
        return state(body, rollout)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        base.refuse_routes(self.kind, target)
        if target.baseline_weight > 0:
            raise RouterError("the traefik router cannot give a baseline group its own share")
        ns, name = base.namespace(rollout), config(rollout).weighted_traefik_service_name
        path, body = await base.get_first(kube, TRAEFIK_SERVICES, ns, name, deadline)
        if body is None:
            raise base.gone("TraefikService", name)
        spec = desired_spec(body, rollout, target.canary_weight)
        await base.patch_spec(kube, path.url(ns, name), body, spec, deadline)

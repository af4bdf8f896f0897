"""SMI: a TrafficSplit (split.smi-spec.io/v1alpha2) from the root Service to stable and canary.

The TrafficSplit is named `trafficSplitName` (default: the Rollout's name). When it does not
exist the operator creates it, owned by the Rollout, with two backends: the stable Service at
100 - w and the canary Service at w; the root Service is `rootService`, defaulting to the stable
Service; with `baseline: true` a third backend, the baseline Service, gets the canary's weight.
A TrafficSplit the user made is patched in place — the backends' weights, the canary (and
baseline) backend added if missing — and never deleted. On completion it stays at 100/0:
it is the routing itself, not a leftover (and goes with the Rollout if the operator made it).

No header or mirror routes: SMI's HTTPRouteGroup matches are not per-step state we can own.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from herdsman.api.rollout import Rollout
from herdsman.api.routing import SMIRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

TRAFFIC_SPLITS = Path("split.smi-spec.io", "v1alpha2", "trafficsplits")
FIELD = f"{base.FIELD}.smi"


def config(rollout: Rollout) -> SMIRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.smi is None:
        raise RouterError("not an smi rollout")
    return routing.smi


def split_name(rollout: Rollout) -> str:
    return config(rollout).traffic_split_name or rollout.metadata.name


def root_service(rollout: Rollout) -> str:
    return config(rollout).root_service or base.services(rollout)[0]


def _index(backends: list[dict[str, Any]], service: str) -> int | None:
    return next((i for i, b in enumerate(backends) if b.get("service") == service), None)


def state(split: dict[str, Any] | None, rollout: Rollout) -> RouterState:
    if split is None:
        return RouterState(canary_weight=None)  # created on the first write
    stable, canary = base.services(rollout)
    backends = (split.get("spec") or {}).get("backends") or []
    s, c = _index(backends, stable), _index(backends, canary)
    if s is None:
        return RouterState(
            available=False,
            message=f"{FIELD}: TrafficSplit {split_name(rollout)!r} has no backend for the"
            f" stable Service {stable!r}",
        )
    if c is None:
        return RouterState(canary_weight=None, baseline_weight=None)
    baseline = base.baseline_service(rollout)
    b = _index(backends, baseline) if baseline is not None else None
    if baseline is not None and b is None:
        return RouterState(canary_weight=None, baseline_weight=None)
    row = [int(backends[i].get("weight", 0)) if i is not None else 0 for i in (s, c, b)]
    return base.exact_state([(row[0], row[1], row[2])])


def desired(
    split: dict[str, Any] | None, rollout: Rollout, weight: int, baseline_weight: int = 0
) -> dict[str, Any]:
    """The TrafficSplit's spec holding `weight` (and the baseline's share, with a
    baselineService), pure: unit tests feed it objects."""
    stable, canary = base.services(rollout)
    baseline = base.baseline_service(rollout)
    shares = base.split(rollout, weight, baseline_weight)
    wanted = [(stable, shares[0]), (canary, shares[1])]
    if baseline is not None:
        wanted.append((baseline, shares[2]))
    if split is None or base.owned_by(split, rollout):
        return {
            "service": root_service(rollout),
            "backends": [{"service": svc, "weight": w} for svc, w in wanted],
        }
    spec = copy.deepcopy(split.get("spec") or {})
    backends: list[dict[str, Any]] = spec.setdefault("backends", [])
    if _index(backends, stable) is None:
        raise RouterError(f"TrafficSplit {split_name(rollout)!r} has no backend for {stable!r}")
    for svc, w in wanted:
        i = _index(backends, svc)
        if i is None:
            backends.append({"service": svc, "weight": w})
        else:
            backends[i]["weight"] = w
    return spec


class SMI:
    kind: ClassVar[str] = "smi"
    header_routes: ClassVar[bool] = False
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = True

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns = base.namespace(rollout)
        split = await kube.get(TRAFFIC_SPLITS.url(ns, split_name(rollout)), deadline=deadline)
        if split is None and not await base.served(kube, TRAFFIC_SPLITS, deadline):
            return base.not_installed(TRAFFIC_SPLITS, "TrafficSplit", FIELD)
        return state(split, rollout)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        base.refuse_routes(self.kind, target)
        ns = base.namespace(rollout)
        url = TRAFFIC_SPLITS.url(ns, split_name(rollout))
        split = await kube.get(url, deadline=deadline)
        spec = desired(split, rollout, target.canary_weight, target.baseline_weight)
        if split is not None:
            await base.patch_spec(kube, url, split, spec, deadline)
            return
        body = {
            "apiVersion": f"{TRAFFIC_SPLITS.group}/{TRAFFIC_SPLITS.version}",
            "kind": "TrafficSplit",
            "metadata": {
                "name": split_name(rollout),
                "namespace": ns,
                "labels": base.labels(rollout),
                "ownerReferences": [base.owner_reference(rollout)],
            },
            "spec": spec,
        }
        try:
            await kube.create(TRAFFIC_SPLITS.url(ns), body, deadline=deadline)
        except KubeError as err:
            if not err.conflict:
                raise
            # Made by someone (or an interrupted pass) since we looked: recompute on it.
            raise KubeError(
                409, "Conflict", f"TrafficSplit {split_name(rollout)!r} appeared"
            ) from err

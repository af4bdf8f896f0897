"""Ambassador / Emissary-ingress: a canary Mapping beside each Mapping the Rollout names.

Ambassador splits a prefix between the Mappings that share it: a Mapping with `weight: w`
gets w% and the one without a weight the rest. So, as in Argo, the user's Mapping (which must
not set a weight) is never written; while the canary has a share, the operator keeps a Mapping
of its own, `<mapping>-canary`: the user's spec with `service` pointed at the canary Service
(scheme and port kept) and `weight` set, labelled and owned by the Rollout. At weight 0 — an
abort, a completed release, a step at 0 — it is deleted: no canary Mapping *is* weight 0. A
Mapping of that name the Rollout does not own is never touched.

Emissary 2+ serves getambassador.io/v3alpha1, older Ambassador v2; the operator reads the
user's Mapping at the first version that has it and writes the canary at the same one.

No header or mirror routes and no baseline share: one weighted Mapping per prefix is what
Argo drives, and a third Mapping on the prefix would change how Ambassador splits the rest.
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from herdsman.api.rollout import Rollout
from herdsman.api.routing import AmbassadorRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

GROUP = "getambassador.io"
MAPPINGS = [Path(GROUP, v, "mappings") for v in ("v3alpha1", "v2")]
FIELD = f"{base.FIELD}.ambassador.mappings"
# `[scheme://]host[.namespace][:port]`: the host is replaced, the rest kept.
_SERVICE = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)?(?P<host>[^:/]*)(?P<port>:\d+)?$")


def config(rollout: Rollout) -> AmbassadorRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.ambassador is None:
        raise RouterError("not an ambassador rollout")
    return routing.ambassador


def canary_name(mapping: str) -> str:
    """`<mapping>-canary`, the name Argo gives it (cut to stay within 253 characters)."""
    return f"{mapping[:246]}-canary"


def canary_service(service: str, canary: str) -> str:
    """The user's Mapping `service` with its host replaced by the canary Service."""
    found = _SERVICE.match(service)
    if found is None:
        return canary
    return f"{found['scheme'] or ''}{canary}{found['port'] or ''}"


def check_base(mapping: dict[str, Any], name: str) -> None:
    """Argo's rule: the user's Mapping takes the rest, so it must not carry a weight itself."""
    if int((mapping.get("spec") or {}).get("weight") or 0) != 0:
        raise RouterError(
            f"{FIELD}: Mapping {name!r} sets a weight; remove it (the canary Mapping carries"
            " the canary's share, yours the rest)"
        )


def weight_of(mapping: str, canary: dict[str, Any] | None, rollout: Rollout) -> RouterState:
    """What one Mapping pair holds (pure: unit tests feed it objects)."""
    if canary is None:
        return RouterState(canary_weight=0)
    if not base.owned_by(canary, rollout):
        return RouterState(
            available=False,
            message=f"{FIELD}: Mapping {canary_name(mapping)!r} exists and is not this"
            " Rollout's; the operator will not take it over",
        )
    weight = (canary.get("spec") or {}).get("weight")
    return RouterState(canary_weight=int(weight) if isinstance(weight, int) else None)


def desired_canary(
    mapping: dict[str, Any], path: Path, rollout: Rollout, weight: int
) -> dict[str, Any]:
    """The canary Mapping for `weight` (pure: unit tests feed it objects)."""
    name = mapping["metadata"]["name"]
    check_base(mapping, name)
    _, canary = base.services(rollout)
    spec = copy.deepcopy(mapping.get("spec") or {})
    spec["service"] = canary_service(str(spec.get("service", "")), canary)
    spec["weight"] = max(0, min(100, weight))
    return {
        "apiVersion": f"{path.group}/{path.version}",
        "kind": "Mapping",
        "metadata": {
            "name": canary_name(name),
            "namespace": base.namespace(rollout),
            "labels": base.labels(rollout),
            "ownerReferences": [base.owner_reference(rollout)],
        },
        "spec": spec,
    }


class Ambassador:
    kind: ClassVar[str] = "ambassador"
    header_routes: ClassVar[bool] = False
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = False

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns = base.namespace(rollout)
        weights: set[int | None] = set()
        for name in config(rollout).mappings:
            path, mapping = await base.get_first(kube, MAPPINGS, ns, name, deadline)
            if mapping is None:
                return await self._missing(kube, ns, name, deadline)
            try:
                check_base(mapping, name)
            except RouterError as err:
                return RouterState(available=False, message=str(err))
            canary = await kube.get(path.url(ns, canary_name(name)), deadline=deadline)
            held = weight_of(name, canary, rollout)
            if not held.available:
                return held
            weights.add(held.canary_weight)
        return RouterState(canary_weight=weights.pop() if len(weights) == 1 else None)

    async def _missing(self, kube: Kube, ns: str, name: str, deadline: Deadline) -> RouterState:
        for path in MAPPINGS:
            if await base.served(kube, path, deadline):
                return RouterState(
                    available=False,
                    message=f"{FIELD}: Mapping {name!r} not found in namespace {ns!r}",
                )
        return base.not_installed(MAPPINGS[0], "Mapping", FIELD)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        base.refuse_routes(self.kind, target)
        if target.baseline_weight > 0:
            raise RouterError("the ambassador router cannot give a baseline group its own share")
        ns = base.namespace(rollout)
        for name in config(rollout).mappings:
            path, mapping = await base.get_first(kube, MAPPINGS, ns, name, deadline)
            at, current = await base.get_first(kube, MAPPINGS, ns, canary_name(name), deadline)
            url = at.url(ns, canary_name(name))
            if current is not None and not base.owned_by(current, rollout):
                raise RouterError(f"Mapping {canary_name(name)!r} is not this Rollout's")
            if target.canary_weight <= 0:
                if current is not None:
                    await kube.delete(url, deadline=deadline)
                continue
            if mapping is None:
                raise base.gone("Mapping", name)
            want = desired_canary(mapping, path, rollout, target.canary_weight)
            if current is None:
                try:
                    await kube.create(path.url(ns), want, deadline=deadline)
                except KubeError as err:
                    if not err.conflict:
                        raise
                    raise KubeError(
                        409, "Conflict", f"Mapping {canary_name(name)!r} appeared"
                    ) from err
                continue
            await base.patch_spec(kube, url, current, want["spec"], deadline)

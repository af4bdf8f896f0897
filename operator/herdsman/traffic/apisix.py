"""Apache APISIX: weights on an ApisixRoute's backends (apisix.apache.org/v2).

The user owns the ApisixRoute. Each managed rule — the `spec.http` entries named in
`route.rules`, or the one named like the route when that list is empty (Argo's default) — must
list a backend for the stable and for the canary Service (`serviceName`); the operator writes
only their `weight`s, 100 - w and w.

A header route (`setHeaderRoute`) is, as in Argo, an ApisixRoute of the operator's own named
after the managed route, owned by the Rollout: the managed rules copied with the canary backend
alone (weight 100), `priority` one above the rule it copies (APISIX tries the higher priority
first where matches overlap), and `match.exprs` testing the step's headers (exact: `Equal`;
regex and prefix: `RegexMatch`). Unlike Argo's copy it holds only the managed rules, so no other
rule of the user's route is served twice. It is deleted as soon as no step asks for it (the
route's match emptied, an abort, a completed release). An ApisixRoute of that name the Rollout
does not own is never touched.

No mirror routes (APISIX's proxy-mirror plugin copies all of a route's traffic, not a share),
and no baseline share.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from herdsman.api.canary_steps import SetHeaderRoute
from herdsman.api.rollout import Rollout
from herdsman.api.routing import ApisixRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

APISIX_ROUTES = Path("apisix.apache.org", "v2", "apisixroutes")
FIELD = f"{base.FIELD}.apisix.route"


def config(rollout: Rollout) -> ApisixRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.apisix is None:
        raise RouterError("not an apisix rollout")
    return routing.apisix


def rule_names(rollout: Rollout) -> list[str]:
    route = config(rollout).route
    return list(route.rules) or [route.name]


def _backend(rule: dict[str, Any], service: str) -> int | None:
    for i, b in enumerate(rule.get("backends") or []):
        if b.get("serviceName") == service:
            return i
    return None


def managed_rules(body: dict[str, Any], rollout: Rollout) -> list[int]:
    """Indices of the managed rules in spec.http; RouterError naming what is missing."""
    name = config(rollout).route.name
    rules = (body.get("spec") or {}).get("http") or []
    by_name = {r.get("name"): i for i, r in enumerate(rules)}
    where = f"{FIELD}: ApisixRoute {name!r}"
    absent = [n for n in rule_names(rollout) if n not in by_name]
    if absent:
        raise RouterError(f"{where} has no http rule named {', '.join(map(repr, absent))}")
    chosen = [by_name[n] for n in rule_names(rollout)]
    stable, canary = base.services(rollout)
    for i in chosen:
        for role, svc in (("stable", stable), ("canary", canary)):
            if _backend(rules[i], svc) is None:
                raise RouterError(
                    f"{where} rule {rules[i]['name']!r} has no backend for the {role} Service"
                    f" {svc!r}" + (" (add one with weight 0)" if role == "canary" else "")
                )
    return chosen


def state(body: dict[str, Any], rollout: Rollout, routes: frozenset[str]) -> RouterState:
    """What the ApisixRoute holds (pure: unit tests feed it objects); `routes` are the header
    routes whose ApisixRoute exists."""
    try:
        chosen = managed_rules(body, rollout)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    stable, canary = base.services(rollout)
    rules = body["spec"]["http"]
    rows = []
    for i in chosen:
        backends = rules[i]["backends"]
        s = backends[_backend(rules[i], stable) or 0]
        c = backends[_backend(rules[i], canary) or 0]
        # APISIX's default weight is 100 (the CRD's): an unset weight is not 0.
        rows.append((int(s.get("weight", 100)), int(c.get("weight", 100)), 0))
    return base.exact_state(rows, routes)


def desired_spec(body: dict[str, Any], rollout: Rollout, weight: int) -> dict[str, Any]:
    """The user's route's spec holding `weight` (pure)."""
    chosen = managed_rules(body, rollout)
    stable, canary = base.services(rollout)
    shares = base.split(rollout, weight)
    spec: dict[str, Any] = copy.deepcopy(body["spec"])
    for i in chosen:
        rule = spec["http"][i]
        rule["backends"][_backend(rule, stable) or 0]["weight"] = shares[0]
        rule["backends"][_backend(rule, canary) or 0]["weight"] = shares[1]
    return spec


def _exprs(route: SetHeaderRoute) -> list[dict[str, Any]]:
    out = []
    for m in route.match:
        subject = {"scope": "Header", "name": m.header_name}
        v = m.header_value
        if v.exact is not None:
            out.append({"subject": subject, "op": "Equal", "value": v.exact})
        elif v.prefix is not None:
            out.append(
                {"subject": subject, "op": "RegexMatch", "value": base.prefix_regex(v.prefix)}
            )
        else:
            out.append({"subject": subject, "op": "RegexMatch", "value": v.regex or ""})
    return out


def header_route(body: dict[str, Any], rollout: Rollout, route: SetHeaderRoute) -> dict[str, Any]:
    """The ApisixRoute carrying one header route (pure): the managed rules, canary only."""
    chosen = managed_rules(body, rollout)
    _, canary = base.services(rollout)
    spec = copy.deepcopy(body["spec"])
    rules = []
    for i in chosen:
        rule = spec["http"][i]
        backend = rule["backends"][_backend(rule, canary) or 0]
        rule["backends"] = [{**backend, "weight": 100}]
        rule["priority"] = int(rule.get("priority") or 0) + 1
        rule["match"] = {**(rule.get("match") or {}), "exprs": _exprs(route)}
        rules.append(rule)
    spec["http"] = rules
    return {
        "apiVersion": f"{APISIX_ROUTES.group}/{APISIX_ROUTES.version}",
        "kind": "ApisixRoute",
        "metadata": {
            "name": route.name,
            "namespace": base.namespace(rollout),
            "labels": base.labels(rollout),
            "ownerReferences": [base.owner_reference(rollout)],
        },
        "spec": spec,
    }


class Apisix:
    kind: ClassVar[str] = "apisix"
    header_routes: ClassVar[bool] = True
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = False

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns, name = base.namespace(rollout), config(rollout).route.name
        body = await kube.get(APISIX_ROUTES.url(ns, name), deadline=deadline)
        if body is None:
            return await base.missing(kube, APISIX_ROUTES, "ApisixRoute", ns, name, FIELD, deadline)
        routes = set()
        for route in base.route_order(rollout):
            found = await kube.get(APISIX_ROUTES.url(ns, route), deadline=deadline)
            if found is not None and base.owned_by(found, rollout):
                routes.add(route)
        return state(body, rollout, frozenset(routes))

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        if target.mirror_routes:
            raise RouterError("the apisix router cannot mirror traffic")
        if target.baseline_weight > 0:
            raise RouterError("the apisix router cannot give a baseline group its own share")
        ns, name = base.namespace(rollout), config(rollout).route.name
        url = APISIX_ROUTES.url(ns, name)
        body = await kube.get(url, deadline=deadline)
        if body is None:
            raise base.gone("ApisixRoute", name)
        await base.patch_spec(
            kube, url, body, desired_spec(body, rollout, target.canary_weight), deadline
        )
        wanted = {
            n: r
            for n, r in base.ordered_routes(rollout, target)
            if isinstance(r, SetHeaderRoute) and r.match
        }
        for route in base.route_order(rollout):
            await self._header_route(kube, rollout, body, route, wanted.get(route), deadline)

    async def _header_route(
        self,
        kube: Kube,
        rollout: Rollout,
        body: dict[str, Any],
        name: str,
        route: SetHeaderRoute | None,
        deadline: Deadline,
    ) -> None:
        """Make the ApisixRoute `name` carry `route`, or be absent when None."""
        ns = base.namespace(rollout)
        url = APISIX_ROUTES.url(ns, name)
        current = await kube.get(url, deadline=deadline)
        if current is not None and not base.owned_by(current, rollout):
            if route is None:
                return  # someone else's object of that name: not ours to remove
            raise RouterError(
                f"{FIELD}: ApisixRoute {name!r} (header route {name!r}) exists and is not this"
                " Rollout's; the operator will not take it over"
            )
        if route is None:
            if current is not None:
                await kube.delete(url, deadline=deadline)
            return
        want = header_route(body, rollout, route)
        if current is None:
            try:
                await kube.create(APISIX_ROUTES.url(ns), want, deadline=deadline)
            except KubeError as err:
                if not err.conflict:
                    raise
                raise KubeError(409, "Conflict", f"ApisixRoute {name!r} appeared") from err
            return
        await base.patch_spec(kube, url, current, want["spec"], deadline)

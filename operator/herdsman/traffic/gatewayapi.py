"""Gateway API: weights on an HTTPRoute's backendRefs (gateway.networking.k8s.io/v1).

The user owns the HTTPRoute. Each managed rule — the rules named in `ruleNames`, or every rule
with a backendRef to the stable Service — must list a backendRef for the stable and for the
canary Service (and for the baseline Service, with `baseline: true`); the operator writes only
their `weight`s (100 - w and w, or 100 - 2w, w and w with a baseline). Header and mirror
routes are rules of their own, named `herdsman-<rollout>-<route>` (GEP-995 rule names), put
first in the list in managedRoutes order and removed when no step asks for them any more:

  header route   the managed rules' matches, each with the step's header matches added, to the
                 canary backend only. Header matches are more specific than the rule they copy,
                 so Gateway API precedence sends matching requests there and nothing else.
  mirror route   the managed rules' matches narrowed by the step's (method, path, headers), to
                 the same backends at the same weights, plus a RequestMirror filter to the
                 canary Service (`percent` when below 100).

Filters of the first managed rule (rewrites, header modifiers) are copied onto generated rules,
so a request behaves the same whichever rule it lands on.

Argo's Gateway API plugin block (`plugins["argoproj-labs/gatewayAPI"]`) is carried out here too:
each HTTPRoute it names is weighted as above (header and mirror rules only on those with
`useHeaderRoutes`), and its GRPCRoutes and TCPRoutes get the same backendRef weights, without
header or mirror routes. Several routes hold a weight only when all of them hold it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from herdsman.api.canary_steps import RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch
from herdsman.api.rollout import Rollout
from herdsman.api.routing import GATEWAY_API_PLUGIN
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

HTTP_ROUTES = Path("gateway.networking.k8s.io", "v1", "httproutes")
# Routes Argo's plugin block may name besides HTTPRoutes: weights only, their rules carry
# backendRefs with weights the same way (GRPCRoute is GA, TCPRoute still v1alpha2).
GRPC_ROUTES = Path("gateway.networking.k8s.io", "v1", "grpcroutes")
TCP_ROUTES = Path("gateway.networking.k8s.io", "v1alpha2", "tcproutes")
FIELD = f"{base.FIELD}.gatewayAPI.httpRoute"
PLUGIN_FIELD = f"{base.FIELD}.plugins[{GATEWAY_API_PLUGIN}]"
DEFAULT_MATCH: dict[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}


@dataclass(frozen=True)
class RouteRef:
    """One HTTPRoute the router weights: from `gatewayAPI`, or one of the routes of Argo's
    Gateway API plugin block (which may name several)."""

    name: str
    namespace: str | None
    rule_names: tuple[str, ...] = ()
    # Whether header and mirror routes are added to it (the plugin's useHeaderRoutes).
    headers: bool = True
    field: str = FIELD
    kind: str = "HTTPRoute"  # or GRPCRoute, TCPRoute


def refs(rollout: Rollout) -> list[RouteRef]:
    """The HTTPRoutes this rollout weights; RouterError naming the field when the plugin's
    configuration does not parse or names what Herdsman does not carry."""
    routing = base.strategy(rollout).traffic_routing
    if routing is None:
        raise RouterError("not a gatewayAPI rollout")
    if routing.gateway_api is not None:
        cfg = routing.gateway_api
        return [RouteRef(cfg.http_route, cfg.namespace, tuple(cfg.rule_names))]
    try:
        plugin = routing.gateway_api_plugin
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RouterError(f"{PLUGIN_FIELD}.{where}: {first['msg']}") from err
    if plugin is None:
        raise RouterError("not a gatewayAPI rollout")
    found = [
        RouteRef(
            r.name,
            plugin.namespace,
            headers=r.use_header_routes,
            field=f"{PLUGIN_FIELD}.httpRoute" + ("" if i == 0 and plugin.http_route else "s"),
        )
        for i, r in enumerate(plugin.routes)
    ]
    for kind, field, names in (
        ("GRPCRoute", "grpcRoute", plugin.grpc_names),
        ("TCPRoute", "tcpRoute", plugin.tcp_names),
    ):
        found += [
            RouteRef(n, plugin.namespace, headers=False, field=f"{PLUGIN_FIELD}.{field}", kind=kind)
            for n in names
        ]
    if not found:
        raise RouterError(f"{PLUGIN_FIELD}: set httpRoute(s), grpcRoute(s) or tcpRoute(s)")
    return found


def route_namespace(rollout: Rollout, ref: RouteRef) -> str:
    return ref.namespace or base.namespace(rollout)


# --- reading the route ---------------------------------------------------------------------------


def _find_ref(rule: dict[str, Any], service: str, ns: str, route_ns: str) -> int | None:
    for i, ref in enumerate(rule.get("backendRefs") or []):
        if (
            ref.get("name") == service
            and ref.get("kind", "Service") == "Service"
            and ref.get("group", "") in ("", "core")
            and ref.get("namespace", route_ns) == ns
        ):
            return i
    return None


def managed_rules(body: dict[str, Any], rollout: Rollout, ref: RouteRef | None = None) -> list[int]:
    """Indices of the rules whose weights we manage; RouterError naming what is missing."""
    ref = ref or refs(rollout)[0]
    stable, canary = base.services(rollout)
    ns, route_ns = base.namespace(rollout), route_namespace(rollout, ref)
    prefix = base.generated_prefix(rollout)
    rules = (body.get("spec") or {}).get("rules") or []
    where = f"{ref.field}: {ref.kind} {route_ns}/{ref.name}"
    users = [(i, r) for i, r in enumerate(rules) if not str(r.get("name", "")).startswith(prefix)]
    if ref.rule_names:
        by_name = {r.get("name"): i for i, r in users if r.get("name")}
        absent = [n for n in ref.rule_names if n not in by_name]
        if absent:
            raise RouterError(f"{where} has no rule named {', '.join(map(repr, absent))}")
        chosen = [by_name[n] for n in ref.rule_names]
    else:
        chosen = [i for i, r in users if _find_ref(r, stable, ns, route_ns) is not None]
        if not chosen:
            raise RouterError(f"{where} has no rule with a backendRef to Service {stable!r}")
    baseline = base.baseline_service(rollout)
    for i in chosen:
        rule = rules[i]
        label = f"rule {rule['name']!r}" if rule.get("name") else f"rule {i}"
        for role, svc in (("stable", stable), ("canary", canary), ("baseline", baseline)):
            if svc is not None and _find_ref(rule, svc, ns, route_ns) is None:
                raise RouterError(
                    f"{where} {label} has no backendRef to the {role} Service {svc!r}"
                    + (" (add one with weight 0)" if role != "stable" else "")
                )
    return chosen


def _weight(rule: dict[str, Any], service: str | None, ns: str, route_ns: str) -> int:
    if service is None:
        return 0
    ref = rule["backendRefs"][_find_ref(rule, service, ns, route_ns) or 0]
    return int(ref.get("weight", 1))


def state(body: dict[str, Any], rollout: Rollout, ref: RouteRef | None = None) -> RouterState:
    """What an HTTPRoute holds for this rollout (pure: unit tests feed it objects)."""
    ref = ref or refs(rollout)[0]
    try:
        chosen = managed_rules(body, rollout, ref)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    stable, canary = base.services(rollout)
    baseline = base.baseline_service(rollout)
    ns, route_ns = base.namespace(rollout), route_namespace(rollout, ref)
    rules = body["spec"]["rules"]
    rows = [
        (
            _weight(rules[i], stable, ns, route_ns),
            _weight(rules[i], canary, ns, route_ns),
            _weight(rules[i], baseline, ns, route_ns),
        )
        for i in chosen
    ]
    prefix = base.generated_prefix(rollout)
    routes = frozenset(
        str(r["name"])[len(prefix) :] for r in rules if str(r.get("name", "")).startswith(prefix)
    )
    return base.exact_state(rows, routes)


# --- the desired route ---------------------------------------------------------------------------


def _string(match: StringMatch, kind: str) -> dict[str, str]:
    """A header (kind 'header') or path (kind 'path') match in Gateway API's terms."""
    if match.exact is not None:
        return {"type": "Exact", "value": match.exact}
    if match.prefix is not None:
        if kind == "path":
            return {"type": "PathPrefix", "value": match.prefix}
        return {"type": "RegularExpression", "value": base.prefix_regex(match.prefix)}
    return {"type": "RegularExpression", "value": match.regex or ""}


def _headers(pairs: list[tuple[str, StringMatch]]) -> list[dict[str, str]]:
    return [{"name": name, **_string(value, "header")} for name, value in pairs]


def _base_matches(rules: list[dict[str, Any]], chosen: list[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for i in chosen:
        for m in rules[i].get("matches") or [DEFAULT_MATCH]:
            if m not in found:
                found.append(m)
    return found


def _with_headers(match: dict[str, Any], headers: list[dict[str, str]]) -> dict[str, Any]:
    out = copy.deepcopy(match)
    names = {h["name"].lower() for h in headers}
    kept = [h for h in out.get("headers") or [] if h["name"].lower() not in names]
    out["headers"] = kept + headers
    return out


def _narrowed(match: dict[str, Any], by: RouteMatch) -> dict[str, Any]:
    out = (
        _with_headers(match, _headers(list(by.headers.items())))
        if by.headers
        else copy.deepcopy(match)
    )
    if by.path is not None:
        out["path"] = _string(by.path, "path")
    if by.method is not None:
        if by.method.exact is None:
            raise RouterError("gatewayAPI matches a method exactly: use method.exact")
        out["method"] = by.method.exact.upper()
    return out


def _header_rule(
    name: str,
    route: SetHeaderRoute,
    bases: list[dict[str, Any]],
    canary_ref: dict[str, Any],
    filters: Any,
) -> dict[str, Any]:
    headers = _headers([(m.header_name, m.header_value) for m in route.match])
    ref = {k: v for k, v in canary_ref.items() if k != "weight"}
    rule: dict[str, Any] = {
        "name": name,
        "matches": [_with_headers(m, headers) for m in bases],
        "backendRefs": [ref],
    }
    if filters:
        rule["filters"] = copy.deepcopy(filters)
    return rule


def _mirror_rule(
    name: str,
    route: SetMirrorRoute,
    bases: list[dict[str, Any]],
    template: dict[str, Any],
    canary_ref: dict[str, Any],
) -> dict[str, Any]:
    mirror: dict[str, Any] = {
        "backendRef": {k: v for k, v in canary_ref.items() if k not in ("weight", "filters")}
    }
    if route.percentage < 100:
        mirror["percent"] = route.percentage
    rule: dict[str, Any] = {
        "name": name,
        "matches": [_narrowed(b, m) for m in route.match for b in bases],
        "backendRefs": copy.deepcopy(template.get("backendRefs") or []),
        "filters": [
            *copy.deepcopy(template.get("filters") or []),
            {"type": "RequestMirror", "requestMirror": mirror},
        ],
    }
    return rule


def desired_spec(
    body: dict[str, Any], rollout: Rollout, target: TrafficTarget, ref: RouteRef | None = None
) -> dict[str, Any]:
    """The route's spec holding exactly `target` (pure: unit tests feed it objects); header
    and mirror rules only on a route that takes them (`ref.headers`)."""
    ref = ref or refs(rollout)[0]
    chosen = managed_rules(body, rollout, ref)
    stable, canary = base.services(rollout)
    ns, route_ns = base.namespace(rollout), route_namespace(rollout, ref)
    prefix = base.generated_prefix(rollout)
    spec: dict[str, Any] = copy.deepcopy(body["spec"])
    rules: list[dict[str, Any]] = spec["rules"]
    baseline = base.baseline_service(rollout)
    weights = base.split(rollout, target.canary_weight, target.baseline_weight)
    shares = list(zip((stable, canary, baseline), weights, strict=True))
    for i in chosen:
        backend_refs = rules[i]["backendRefs"]
        for service, share in shares:
            if service is not None:
                backend_refs[_find_ref(rules[i], service, ns, route_ns) or 0]["weight"] = share
    first = rules[chosen[0]]
    canary_ref = first["backendRefs"][_find_ref(first, canary, ns, route_ns) or 0]
    bases = _base_matches(rules, chosen)
    generated = []
    for name, route in base.ordered_routes(rollout, target) if ref.headers else []:
        if not route.match:
            continue  # an empty match removes the route
        rule_name = prefix + name
        if isinstance(route, SetHeaderRoute):
            generated.append(
                _header_rule(rule_name, route, bases, canary_ref, first.get("filters"))
            )
        else:
            generated.append(_mirror_rule(rule_name, route, bases, first, canary_ref))
    kept = [r for r in rules if not str(r.get("name", "")).startswith(prefix)]
    spec["rules"] = generated + kept
    return spec


# --- the router ------------------------------------------------------------------------------------


class GatewayAPI:
    kind: ClassVar[str] = "gatewayAPI"
    header_routes: ClassVar[bool] = True
    mirror_routes: ClassVar[bool] = True
    baseline_share: ClassVar[bool] = True

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        try:
            found = refs(rollout)
        except RouterError as err:
            return RouterState(available=False, message=str(err))
        states = []
        for ref in found:
            ns = route_namespace(rollout, ref)
            # Spelled out (not ref.path) so the RBAC test can tell which kinds are read.
            path = (
                HTTP_ROUTES
                if ref.kind == "HTTPRoute"
                else GRPC_ROUTES
                if ref.kind == "GRPCRoute"
                else TCP_ROUTES
            )
            body = await kube.get(path.url(ns, ref.name), deadline=deadline)
            if body is None:
                return await base.missing(kube, path, ref.kind, ns, ref.name, ref.field, deadline)
            held = state(body, rollout, ref)
            if not held.available:
                return held
            states.append((ref, held))
        return _combined(states)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        found = refs(rollout)
        if (target.header_routes or target.mirror_routes) and not any(r.headers for r in found):
            raise RouterError(
                f"{PLUGIN_FIELD}.httpRoutes: no HTTPRoute has useHeaderRoutes: true for the"
                " header and mirror routes of the steps"
            )
        for ref in found:
            ns = route_namespace(rollout, ref)
            path = (
                HTTP_ROUTES
                if ref.kind == "HTTPRoute"
                else GRPC_ROUTES
                if ref.kind == "GRPCRoute"
                else TCP_ROUTES
            )
            url = path.url(ns, ref.name)
            body = await kube.get(url, deadline=deadline)
            if body is None:
                raise base.gone(ref.kind, f"{ns}/{ref.name}")
            spec = desired_spec(body, rollout, target, ref)
            await base.patch_spec(kube, url, body, spec, deadline)


def _combined(states: list[tuple[RouteRef, RouterState]]) -> RouterState:
    """Several HTTPRoutes as one state: a weight when all hold the same; the header and mirror
    routes those that take them all carry."""
    if len(states) == 1:
        return states[0][1]
    canary = {s.canary_weight for _, s in states}
    baseline = {s.baseline_weight for _, s in states}
    with_routes = [s.routes for r, s in states if r.headers]
    return RouterState(
        canary_weight=canary.pop() if len(canary) == 1 else None,
        baseline_weight=baseline.pop() if len(baseline) == 1 else None,
        routes=frozenset.intersection(*with_routes) if with_routes else frozenset(),
    )

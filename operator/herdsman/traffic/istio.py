"""Istio: route weights in a VirtualService, optionally DestinationRule subsets.

The user owns both objects. Each managed HTTP route — those named in `virtualService.routes`, or
every route with a destination to the stable side — must have one destination for the stable
and one for the canary side (and, at host level with `baseline: true`, one whose host is the
baseline Service); the operator writes only their `weight`s.

  host level    (no destinationRule) the sides are the destinations whose host is the stable or
                the canary Service (short name, or `<svc>.<ns>...`).
  subset level  (destinationRule) the sides are the destinations with the stable or canary
                subset; the operator points each subset at its server group by setting the
                `herdsman.dev/server-group` label in the subset's labels.

Header and mirror routes are HTTP routes of their own named `herdsman-<rollout>-<route>`, put
first (Istio takes the first route that matches) in managedRoutes order:

  header route   the managed routes' matches with the step's headers added, to the canary only.
  mirror route   a copy of the first managed route narrowed by the step's matches, with
                 `mirror` (the canary destination) and `mirrorPercentage`.

  chaos route    while a chaos step's httpFault is in force (`target.http_fault`), put before
                 all others: a copy of the first managed route narrowed by the fault's headers,
                 to the canary only, with Istio's `fault`. Istio faults a whole route before its
                 weighted destinations are picked, so the fault cannot sit on a managed route
                 without hitting the stable's requests; a route of its own, scoped by request
                 headers as Netflix's ChAP scopes an experiment, faults the canary alone. It is
                 named `herdsman-<rollout>-chaos-fault` and goes, like every generated route, as
                 soon as the target no longer asks for it (see api/chaos.py).

`virtualServices` names several VirtualServices, each written the same weights; `tlsRoutes`
and `tcpRoutes` name TLS routes (by their match's port and sniHosts) and TCP routes (by port)
whose destinations get the weights too — no header or mirror routes there (L4). With a
destinationRule the stable and canary Services are not needed (Argo does not ask for them):
the subsets carry the groups.

Istio serves networking.istio.io at v1 (1.22 and later) and v1beta1; both are read.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from herdsman.api.base import duration_seconds
from herdsman.api.canary_steps import RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch
from herdsman.api.chaos import HttpFault, fault_headers
from herdsman.api.rollout import Rollout
from herdsman.api.routing import IstioRouting, IstioVirtualService
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, Path
from herdsman.engine.chaos_checks import CHAOS_ROUTE
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.naming import LABEL_GROUP, label_value
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

GROUP = "networking.istio.io"
VIRTUAL_SERVICES = [Path(GROUP, v, "virtualservices") for v in ("v1", "v1beta1")]
DESTINATION_RULES = [Path(GROUP, v, "destinationrules") for v in ("v1", "v1beta1")]
VS_FIELD = f"{base.FIELD}.istio.virtualService"
DR_FIELD = f"{base.FIELD}.istio.destinationRule"


def config(rollout: Rollout) -> IstioRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.istio is None:
        raise RouterError("not an istio rollout")
    return routing.istio


def _host_is(host: str, service: str, ns: str) -> bool:
    parts = host.split(".")
    return parts[0] == service and (len(parts) == 1 or parts[1] == ns)


def _side(dest: dict[str, Any], rollout: Rollout) -> str | None:
    """'stable', 'canary' or None for one route destination."""
    d = dest.get("destination") or {}
    dr = config(rollout).destination_rule
    if dr is not None:
        subset = d.get("subset")
        if subset == dr.stable_subset_name:
            return "stable"
        if subset == dr.canary_subset_name:
            return "canary"
        return None
    stable, canary = base.services(rollout)
    baseline = base.baseline_service(rollout)
    ns = base.namespace(rollout)
    host = str(d.get("host", ""))
    if _host_is(host, stable, ns):
        return "stable"
    if _host_is(host, canary, ns):
        return "canary"
    if baseline is not None and _host_is(host, baseline, ns):
        return "baseline"
    return None


def _roles(rollout: Rollout) -> tuple[str, ...]:
    """The sides every managed route needs: a baseline one at host level with a baseline."""
    if config(rollout).destination_rule is None and base.baseline_service(rollout) is not None:
        return ("stable", "canary", "baseline")
    return ("stable", "canary")


def _sides(route: dict[str, Any], rollout: Rollout) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, dest in enumerate(route.get("route") or []):
        side = _side(dest, rollout)
        if side is not None and side not in found:
            found[side] = i
    return found


def managed_routes(
    body: dict[str, Any], rollout: Rollout, vsc: IstioVirtualService | None = None
) -> list[int]:
    """Indices of the managed HTTP routes in one VirtualService (`vsc`: which entry of the
    spec; the first when omitted). None when only tlsRoutes/tcpRoutes are named."""
    vsc = vsc or config(rollout).all_virtual_services[0]
    prefix = base.generated_prefix(rollout)
    http = (body.get("spec") or {}).get("http") or []
    where = f"{VS_FIELD}: VirtualService {vsc.name!r}"
    users = [(i, r) for i, r in enumerate(http) if not str(r.get("name", "")).startswith(prefix)]
    if vsc.routes:
        by_name = {r.get("name"): i for i, r in users if r.get("name")}
        absent = [n for n in vsc.routes if n not in by_name]
        if absent:
            raise RouterError(f"{where} has no HTTP route named {', '.join(map(repr, absent))}")
        chosen = [by_name[n] for n in vsc.routes]
    elif vsc.tls_routes or vsc.tcp_routes:
        return []
    else:
        chosen = [i for i, r in users if "stable" in _sides(r, rollout)]
        if not chosen:
            raise RouterError(f"{where} has no HTTP route with a destination to the stable side")
    for i in chosen:
        _check_sides(
            http[i],
            rollout,
            where,
            f"route {http[i]['name']!r}" if http[i].get("name") else f"http[{i}]",
        )
    return chosen


def _check_sides(route: dict[str, Any], rollout: Rollout, where: str, label: str) -> None:
    sides = _sides(route, rollout)
    for role in _roles(rollout):
        if role not in sides:
            raise RouterError(f"{where} {label} has no destination to the {role} side")


def _l4_matches(route: dict[str, Any], port: int | None, sni: list[str]) -> bool:
    for m in route.get("match") or []:
        if port is not None and m.get("port") != port:
            continue
        if sni and sorted(m.get("sniHosts") or []) != sorted(sni):
            continue
        return True
    return False


def l4_routes(
    body: dict[str, Any], rollout: Rollout, vsc: IstioVirtualService
) -> list[tuple[str, int]]:
    """(section, index) of the managed TLS and TCP routes: `tls` routes whose match has the
    named port and sniHosts, `tcp` routes whose match has the port."""
    spec = body.get("spec") or {}
    where = f"{VS_FIELD}: VirtualService {vsc.name!r}"
    found: list[tuple[str, int]] = []
    wanted: list[tuple[str, int | None, list[str]]] = [
        ("tls", t.port, t.sni_hosts) for t in vsc.tls_routes
    ] + [("tcp", t.port, []) for t in vsc.tcp_routes]
    for section, port, sni in wanted:
        routes = spec.get(section) or []
        hit = next((i for i, r in enumerate(routes) if _l4_matches(r, port, sni)), None)
        if hit is None:
            raise RouterError(
                f"{where} has no {section} route matching port {port} {sni or ''}".rstrip()
            )
        _check_sides(routes[hit], rollout, where, f"{section}[{hit}]")
        found.append((section, hit))
    return found


def _rows(
    body: dict[str, Any], rollout: Rollout, vsc: IstioVirtualService
) -> list[tuple[int, int, int]]:
    spec = body["spec"]
    routes = [spec["http"][i] for i in managed_routes(body, rollout, vsc)]
    routes += [spec[sec][i] for sec, i in l4_routes(body, rollout, vsc)]
    rows = []
    for route in routes:
        sides = _sides(route, rollout)
        dests = route["route"]
        weights = [
            int(dests[sides[role]].get("weight", 0)) if role in sides else 0
            for role in ("stable", "canary", "baseline")
        ]
        rows.append((weights[0], weights[1], weights[2]))
    return rows


def state(
    vs: dict[str, Any] | list[tuple[IstioVirtualService, dict[str, Any]]],
    dr: dict[str, Any] | None,
    rollout: Rollout,
) -> RouterState:
    found = vs if isinstance(vs, list) else [(config(rollout).all_virtual_services[0], vs)]
    rows: list[tuple[int, int, int]] = []
    routes: set[str] | None = None
    fault = False
    prefix = base.generated_prefix(rollout)
    try:
        for vsc, body in found:
            rows += _rows(body, rollout, vsc)
            here = {
                str(r["name"])[len(prefix) :]
                for r in (body["spec"].get("http") or [])
                if str(r.get("name", "")).startswith(prefix)
            }
            # Any VirtualService still holding the fault route is one to clean.
            fault = fault or CHAOS_ROUTE in here
            here.discard(CHAOS_ROUTE)
            routes = here if routes is None else routes & here
        if config(rollout).destination_rule is not None:
            subsets(dr, rollout)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    held = base.exact_state(rows, frozenset(routes or ()))
    return dataclasses.replace(held, http_fault=fault)


def subsets(dr: dict[str, Any] | None, rollout: Rollout) -> tuple[int, int]:
    """Indices of the (stable, canary) subsets in the DestinationRule."""
    cfg = config(rollout).destination_rule
    assert cfg is not None
    if dr is None:
        raise RouterError(f"{DR_FIELD}: DestinationRule {cfg.name!r} not found")
    names = [s.get("name") for s in (dr.get("spec") or {}).get("subsets") or []]
    for subset in (cfg.stable_subset_name, cfg.canary_subset_name):
        if subset not in names:
            raise RouterError(f"{DR_FIELD}: DestinationRule {cfg.name!r} has no subset {subset!r}")
    return names.index(cfg.stable_subset_name), names.index(cfg.canary_subset_name)


# --- the desired objects -----------------------------------------------------------------------------


def _string(match: StringMatch) -> dict[str, str]:
    if match.exact is not None:
        return {"exact": match.exact}
    if match.prefix is not None:
        return {"prefix": match.prefix}
    return {"regex": match.regex or ""}


def _base_matches(http: list[dict[str, Any]], chosen: list[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for i in chosen:
        for m in http[i].get("match") or [{}]:
            if m not in found:
                found.append(m)
    return found


def _with_headers(match: dict[str, Any], headers: dict[str, dict[str, str]]) -> dict[str, Any]:
    out = copy.deepcopy(match)
    out["headers"] = {**(out.get("headers") or {}), **headers}
    return out


def _narrowed(match: dict[str, Any], by: RouteMatch) -> dict[str, Any]:
    out = copy.deepcopy(match)
    if by.headers:
        out = _with_headers(out, {k: _string(v) for k, v in by.headers.items()})
    if by.path is not None:
        out["uri"] = _string(by.path)
    if by.method is not None:
        out["method"] = _string(by.method)
    return out


def desired_vs(
    vs: dict[str, Any],
    rollout: Rollout,
    target: TrafficTarget,
    vsc: IstioVirtualService | None = None,
) -> dict[str, Any]:
    vsc = vsc or config(rollout).all_virtual_services[0]
    chosen = managed_routes(vs, rollout, vsc)
    l4 = l4_routes(vs, rollout, vsc)
    prefix = base.generated_prefix(rollout)
    spec: dict[str, Any] = copy.deepcopy(vs["spec"])
    http: list[dict[str, Any]] = spec.get("http") or []
    weights = base.split(rollout, target.canary_weight, target.baseline_weight)
    shares = dict(zip(("stable", "canary", "baseline"), weights, strict=True))
    if shares["baseline"] and "baseline" not in _roles(rollout):
        raise RouterError("istio carries a baseline share at host level only (no destinationRule)")
    for route in [http[i] for i in chosen] + [spec[sec][i] for sec, i in l4]:
        sides = _sides(route, rollout)
        for role in _roles(rollout):
            route["route"][sides[role]]["weight"] = shares[role]
    if not chosen:
        if base.ordered_routes(rollout, target) or target.http_fault is not None:
            raise RouterError(
                f"{VS_FIELD}: header and mirror routes need HTTP routes in {vsc.name!r}"
                " (so does a chaos step's httpFault)"
            )
        return spec
    first = http[chosen[0]]
    canary_dest = copy.deepcopy(first["route"][_sides(first, rollout)["canary"]]["destination"])
    bases = _base_matches(http, chosen)
    generated: list[dict[str, Any]] = []
    for name, route in base.ordered_routes(rollout, target):
        if not route.match:
            continue
        if isinstance(route, SetHeaderRoute):
            headers = {m.header_name: _string(m.header_value) for m in route.match}
            generated.append(
                {
                    "name": prefix + name,
                    "match": [_with_headers(b, headers) for b in bases],
                    "route": [{"destination": copy.deepcopy(canary_dest), "weight": 100}],
                }
            )
        else:
            assert isinstance(route, SetMirrorRoute)
            rule = {k: copy.deepcopy(v) for k, v in first.items() if k not in ("name", "match")}
            rule["name"] = prefix + name
            rule["match"] = [_narrowed(b, m) for m in route.match for b in bases]
            rule["mirror"] = copy.deepcopy(canary_dest)
            rule["mirrorPercentage"] = {"value": float(route.percentage)}
            generated.append(rule)
    if target.http_fault is not None:
        # Headers resolved again here: a route without them would send every request to the
        # canary with the fault.
        tagged = fault_headers(target.http_fault, rollout.metadata.name)
        generated.insert(
            0, _chaos_route(first, bases, canary_dest, prefix, tagged, target.http_fault)
        )
    kept = [r for r in http if not str(r.get("name", "")).startswith(prefix)]
    spec["http"] = generated + kept
    return spec


def _seconds(duration: int | str) -> str:
    """A duration as Istio's protobuf Duration reads it: seconds with an `s` (0.5s, 7s)."""
    seconds = duration_seconds(duration) or 0.0
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def istio_fault(fault: HttpFault) -> dict[str, Any]:
    """Istio's HTTPFaultInjection for a chaos step's httpFault."""
    out: dict[str, Any] = {}
    if fault.delay is not None:
        out["delay"] = {
            "fixedDelay": _seconds(fault.delay.fixed_delay),
            "percentage": {"value": fault.delay.percentage.value},
        }
    if fault.abort is not None:
        out["abort"] = {
            "httpStatus": fault.abort.http_status,
            "percentage": {"value": fault.abort.percentage.value},
        }
    return out


def _chaos_route(
    first: dict[str, Any],
    bases: list[dict[str, Any]],
    canary_dest: dict[str, Any],
    prefix: str,
    headers: dict[str, str],
    fault: HttpFault,
) -> dict[str, Any]:
    """The canary's own route for a chaos step: the first managed route's behaviour (timeouts,
    retries, rewrites) for the requests with the fault's headers, to the canary alone, with
    the fault. The managed routes, and so the stable's requests, are left as they are."""
    dropped = ("name", "match", "route", "mirror", "mirrorPercentage", "fault")
    rule = {k: copy.deepcopy(v) for k, v in first.items() if k not in dropped}
    exact = {k: {"exact": v} for k, v in headers.items()}
    rule["name"] = prefix + CHAOS_ROUTE
    rule["match"] = [_with_headers(b, exact) for b in bases]
    rule["route"] = [{"destination": copy.deepcopy(canary_dest), "weight": 100}]
    rule["fault"] = istio_fault(fault)
    return rule


def desired_dr(dr: dict[str, Any], rollout: Rollout, target: TrafficTarget) -> dict[str, Any]:
    stable_i, canary_i = subsets(dr, rollout)
    spec: dict[str, Any] = copy.deepcopy(dr["spec"])
    for i, group in (
        (stable_i, target.stable_group),
        (canary_i, target.canary_group or target.stable_group),
    ):
        subset = spec["subsets"][i]
        subset["labels"] = {**(subset.get("labels") or {}), LABEL_GROUP: label_value(group)}
    return spec


# --- the router ---------------------------------------------------------------------------------------


class Istio:
    kind: ClassVar[str] = "istio"
    header_routes: ClassVar[bool] = True
    mirror_routes: ClassVar[bool] = True
    baseline_share: ClassVar[bool] = True

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        cfg, ns = config(rollout), base.namespace(rollout)
        found = []
        for vsc in cfg.all_virtual_services:
            _, vs = await base.get_first(kube, VIRTUAL_SERVICES, ns, vsc.name, deadline)
            if vs is None:
                return await base.missing(
                    kube,
                    VIRTUAL_SERVICES[0],
                    "VirtualService",
                    ns,
                    vsc.name,
                    f"{VS_FIELD}.name",
                    deadline,
                )
            found.append((vsc, vs))
        dr = None
        if cfg.destination_rule is not None:
            _, dr = await base.get_first(
                kube, DESTINATION_RULES, ns, cfg.destination_rule.name, deadline
            )
        return state(found, dr, rollout)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        cfg, ns = config(rollout), base.namespace(rollout)
        # Weights first: an abort's 0 must not wait on a subset write. Then the subsets, whose
        # move on promotion is safe either way round (both sides serve the new group then).
        for vsc in cfg.all_virtual_services:
            vs_path, vs = await base.get_first(kube, VIRTUAL_SERVICES, ns, vsc.name, deadline)
            if vs is None:
                raise base.gone("VirtualService", vsc.name)
            url = vs_path.url(ns, vsc.name)
            await base.patch_spec(kube, url, vs, desired_vs(vs, rollout, target, vsc), deadline)
        if cfg.destination_rule is None:
            return
        dr_path, dr = await base.get_first(
            kube, DESTINATION_RULES, ns, cfg.destination_rule.name, deadline
        )
        if dr is None:
            raise base.gone("DestinationRule", cfg.destination_rule.name)
        url = dr_path.url(ns, cfg.destination_rule.name)
        await base.patch_spec(kube, url, dr, desired_dr(dr, rollout, target), deadline)

"""Traffic routers on the real test API server: their CRDs, the user's objects, and how the
synthetic service reads them.

The e2e tests install minimal (structural, validated) CRDs for HTTPRoute, VirtualService,
DestinationRule and TrafficSplit from tests/cluster/router-crds/; Ingress is built in. No mesh
or ingress controller runs, so this module plays the data plane: it reads the router's object
the way its controller would and turns it into traffic shares per server group (through the
Services' selectors), for `TrafficSimulator(weights=...)` or, with header routes,
`TrafficSimulator(routing=...)`. A weight the operator writes is the weight the simulated
service gets.

The readers here are written from the routers' documentation, not from the operator's code:
they must agree with the operator because both agree with the object, not because they share
a function.

`Recorder` watches objects while the operator acts and keeps every event with its
resourceVersion, so tests can say which write came first (etcd revisions are one sequence
across kinds).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cluster import Cluster
from herdsman.cluster.kube import SERVICES
from herdsman.cluster.kube import Path as KPath
from herdsman.naming import LABEL_GROUP
from herdsman.simulate import Fault, FaultRoute, Route
from herdsman.traffic.ambassador import MAPPINGS
from herdsman.traffic.apisix import APISIX_ROUTES
from herdsman.traffic.appmesh import MESH_SERVICES, VIRTUAL_NODES, VIRTUAL_ROUTERS
from herdsman.traffic.gatewayapi import HTTP_ROUTES
from herdsman.traffic.istio import DESTINATION_RULES, VIRTUAL_SERVICES
from herdsman.traffic.nginx import INGRESSES
from herdsman.traffic.smi import TRAFFIC_SPLITS
from herdsman.traffic.traefik import TRAEFIK_SERVICES

CRDS = Path(__file__).resolve().parents[1] / "cluster" / "router-crds"
VS = VIRTUAL_SERVICES[0]
DR = DESTINATION_RULES[0]
MAPPING = MAPPINGS[0]
NGINX = "nginx.ingress.kubernetes.io"
ALB = "alb.ingress.kubernetes.io"

_installed = threading.Lock()


def install_crds(cluster: Cluster) -> None:
    """Apply the router CRDs (idempotent) and wait until the API server serves them."""
    with _installed:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=herdsman-test-routers",
            "--timeout=60s",
        )


# --- the user's objects ------------------------------------------------------------------------------


def http_route(
    name: str = "checkout",
    stable: str = "checkout",
    canary: str = "checkout-canary",
    baseline: str | None = None,
) -> dict[str, Any]:
    """The user's HTTPRoute: a backendRef per Service the rollout names, all but stable at 0."""
    extra = [{"name": baseline, "port": 80, "weight": 0}] if baseline else []
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": "infra"}],
            "hostnames": ["shop.example"],
            "rules": [
                {
                    "name": "main",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": stable, "port": 80, "weight": 100},
                        {"name": canary, "port": 80, "weight": 0},
                        *extra,
                    ],
                }
            ],
        },
    }


def ingress(name: str = "checkout", stable: str = "checkout") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {
            "rules": [
                {
                    "host": "shop.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": stable, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }


def alb_ingress(name: str = "checkout-alb", root: str = "checkout-root") -> dict[str, Any]:
    """The user's ALB Ingress, laid out as the AWS Load Balancer Controller's docs ask: the
    rule's backend is the root Service with port `use-annotation` (the action is read from
    the `actions.<root>` annotation)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": {"kubernetes.io/ingress.class": "alb"}},
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/*",
                                "pathType": "ImplementationSpecific",
                                "backend": {
                                    "service": {"name": root, "port": {"name": "use-annotation"}}
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


def alb_forward(ing: dict[str, Any] | None, action: str = "checkout-root") -> dict[str, int]:
    """{Service: weight} of the forward action named `action`, as the controller reads it (keys
    in either case: the controller's JSON decoding ignores case). No action: the rule's
    backend is the root Service itself, which gets everything."""
    notes = ((ing or {}).get("metadata") or {}).get("annotations") or {}
    raw = notes.get(f"{ALB}/actions.{action}")
    if raw is None:
        return {action: 100} if ing is not None else {}
    body = {k.lower(): v for k, v in json.loads(raw).items()}
    forward = {k.lower(): v for k, v in (body.get("forwardconfig") or {}).items()}
    out: dict[str, int] = {}
    for tg in forward.get("targetgroups") or []:
        tg = {k.lower(): v for k, v in tg.items()}
        out[tg["servicename"]] = out.get(tg["servicename"], 0) + int(tg.get("weight", 0))
    return out


def virtual_service(
    name: str = "checkout", stable: str = "checkout", canary: str = "checkout-canary"
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["shop.example"],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": stable}, "weight": 100},
                        {"destination": {"host": canary}, "weight": 0},
                    ],
                }
            ],
        },
    }


def mapping(name: str = "checkout", service: str = "checkout:80") -> dict[str, Any]:
    """The user's Ambassador Mapping: a prefix to the stable Service, no weight."""
    return {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": name},
        "spec": {"hostname": "*", "prefix": "/", "rewrite": "/", "service": service},
    }


def ambassador_split(mappings: list[dict[str, Any]]) -> dict[str, int]:
    """{Service: weight} for requests to `/`, as Ambassador splits a prefix: Mappings with the
    same hostname and prefix share it, those with a weight get it, one without gets the rest."""
    shares: dict[str, int] = {}
    rest: list[str] = []
    for m in mappings:
        spec = m.get("spec") or {}
        if spec.get("prefix") != "/":
            continue
        svc = str(spec.get("service", "")).split("://")[-1].split(":")[0].split(".")[0]
        if spec.get("weight") is None:
            rest.append(svc)
        else:
            shares[svc] = shares.get(svc, 0) + int(spec["weight"])
    if rest:
        shares[rest[0]] = shares.get(rest[0], 0) + max(0, 100 - sum(shares.values()))
    return shares


def apisix_route(name: str = "checkout") -> dict[str, Any]:
    """The user's ApisixRoute: one rule, named `main`, stable at 100 and canary at 0."""
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "match": {"paths": ["/*"], "hosts": ["shop.example"]},
                    "backends": [
                        {"serviceName": "checkout", "servicePort": 80, "weight": 100},
                        {"serviceName": "checkout-canary", "servicePort": 80, "weight": 0},
                    ],
                }
            ]
        },
    }


def _apisix_expr_ok(expr: dict[str, Any], headers: dict[str, str]) -> bool:
    subject = expr.get("subject") or {}
    if subject.get("scope") != "Header":
        return False
    value = {k.lower(): v for k, v in headers.items()}.get(str(subject.get("name", "")).lower())
    if value is None:
        return False
    if expr.get("op") == "Equal":
        return bool(value == expr.get("value"))
    if expr.get("op") == "RegexMatch":
        return re.search(str(expr.get("value", "")), value) is not None
    return False


def apisix_rule(routes: list[dict[str, Any]], headers: dict[str, str]) -> dict[str, Any] | None:
    """The rule APISIX sends a request for `/` on shop.example to: among the rules whose
    paths, hosts and exprs all match, the highest priority (default 0); a tie goes to the
    first."""
    best: tuple[int, dict[str, Any]] | None = None
    for route in routes:
        for rule in (route.get("spec") or {}).get("http") or []:
            match = rule.get("match") or {}
            if not any(p in ("/*", "/") for p in match.get("paths") or ["/*"]):
                continue
            if "shop.example" not in (match.get("hosts") or ["shop.example"]):
                continue
            if not all(_apisix_expr_ok(e, headers) for e in match.get("exprs") or []):
                continue
            priority = int(rule.get("priority") or 0)
            if best is None or priority > best[0]:
                best = (priority, rule)
    return best[1] if best else None


def apisix_backends(rule: dict[str, Any] | None) -> dict[str, int]:
    """{Service: weight} of a rule; APISIX's default weight is 100."""
    out: dict[str, int] = {}
    for b in (rule or {}).get("backends") or []:
        out[b["serviceName"]] = out.get(b["serviceName"], 0) + int(b.get("weight", 100))
    return out


def apisix_routing(cluster: Cluster, ns: str) -> Callable[[], Route]:
    """For `TrafficSimulator(routing=...)`: each request routed by the ApisixRoutes."""

    def snapshot() -> Route:
        routes = cluster.rest.list(APISIX_ROUTES.url(ns))
        groups = service_groups(cluster, ns)

        def decide(headers: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
            weights = apisix_backends(apisix_rule(routes, headers))
            return to_groups({k: float(v) for k, v in weights.items()}, groups), {}

        return decide

    return snapshot


def mesh_objects() -> list[tuple[KPath, dict[str, Any]]]:
    """The user's App Mesh objects: a VirtualService provided by a VirtualRouter whose route
    sends 100 to the stable VirtualNode and 0 to the canary's; each node finds its pods
    through a Service's DNS name (the stable and canary Services)."""

    def node(name: str, service: str) -> dict[str, Any]:
        return {
            "apiVersion": "appmesh.k8s.aws/v1beta2",
            "kind": "VirtualNode",
            "metadata": {"name": name},
            "spec": {
                "podSelector": {"matchLabels": {"app": "checkout"}},
                "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": f"{service}.svc.cluster.local"}},
            },
        }

    meta = {"apiVersion": "appmesh.k8s.aws/v1beta2"}
    return [
        (
            MESH_SERVICES,
            {
                **meta,
                "kind": "VirtualService",
                "metadata": {"name": "checkout"},
                "spec": {"provider": {"virtualRouter": {"virtualRouterRef": {"name": "checkout"}}}},
            },
        ),
        (
            VIRTUAL_ROUTERS,
            {
                **meta,
                "kind": "VirtualRouter",
                "metadata": {"name": "checkout"},
                "spec": {
                    "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
                    "routes": [
                        {
                            "name": "primary",
                            "httpRoute": {
                                "match": {"prefix": "/"},
                                "action": {
                                    "weightedTargets": [
                                        {
                                            "virtualNodeRef": {"name": "checkout-stable"},
                                            "weight": 100,
                                        },
                                        {
                                            "virtualNodeRef": {"name": "checkout-canary"},
                                            "weight": 0,
                                        },
                                    ]
                                },
                            },
                        }
                    ],
                },
            },
        ),
        (VIRTUAL_NODES, node("checkout-stable", "checkout")),
        (VIRTUAL_NODES, node("checkout-canary", "checkout-canary")),
    ]


def mesh_weights(vrouter: dict[str, Any] | None) -> dict[str, int]:
    """{VirtualNode: weight} of the router's first route."""
    routes = ((vrouter or {}).get("spec") or {}).get("routes") or []
    if not routes:
        return {}
    rule = routes[0].get("httpRoute") or {}
    return {
        t["virtualNodeRef"]["name"]: int(t.get("weight", 0))
        for t in (rule.get("action") or {}).get("weightedTargets") or []
    }


TRAEFIK = TRAEFIK_SERVICES[0]


def traefik_service(name: str = "checkout") -> dict[str, Any]:
    """The user's TraefikService: the stable Service at 100, the canary's at 0."""
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": name},
        "spec": {
            "weighted": {
                "services": [
                    {"name": "checkout", "port": 80, "weight": 100},
                    {"name": "checkout-canary", "port": 80, "weight": 0},
                ]
            }
        },
    }


def traefik_weights(body: dict[str, Any] | None) -> dict[str, int]:
    """{Service: weight} as Traefik splits a weighted service (default weight 1)."""
    services = (((body or {}).get("spec") or {}).get("weighted") or {}).get("services") or []
    return {s["name"]: int(s.get("weight", 1)) for s in services}


# The router config and user objects each router's e2e test starts from.
ROUTING: dict[str, dict[str, Any]] = {
    "gatewayAPI": {"gatewayAPI": {"httpRoute": "checkout"}},
    "nginx": {"nginx": {"stableIngress": "checkout"}},
    "istio": {"istio": {"virtualService": {"name": "checkout", "routes": ["primary"]}}},
    "smi": {"smi": {}},
    "alb": {"alb": {"ingress": "checkout-alb", "servicePort": 80, "rootService": "checkout-root"}},
    "ambassador": {"ambassador": {"mappings": ["checkout"]}},
    "apisix": {"apisix": {"route": {"name": "checkout", "rules": ["main"]}}},
    "traefik": {"traefik": {"weightedTraefikServiceName": "checkout"}},
    "appMesh": {
        "appMesh": {
            "virtualService": {"name": "checkout"},
            "virtualNodeGroup": {
                "canaryVirtualNodeRef": {"name": "checkout-canary"},
                "stableVirtualNodeRef": {"name": "checkout-stable"},
            },
        }
    },
}


def create_user_objects(cluster: Cluster, ns: str, kind: str) -> None:
    """What a user applies next to the Rollout for each router (SMI: nothing, it is made)."""
    if kind == "gatewayAPI":
        cluster.rest.create(HTTP_ROUTES.url(ns), http_route())
    elif kind == "nginx":
        cluster.rest.create(INGRESSES.url(ns), ingress())
    elif kind == "istio":
        cluster.rest.create(VS.url(ns), virtual_service())
    elif kind == "alb":
        cluster.rest.create(INGRESSES.url(ns), alb_ingress())
    elif kind == "ambassador":
        cluster.rest.create(MAPPING.url(ns), mapping())
    elif kind == "apisix":
        cluster.rest.create(APISIX_ROUTES.url(ns), apisix_route())
    elif kind == "traefik":
        cluster.rest.create(TRAEFIK.url(ns), traefik_service())
    elif kind == "appMesh":
        for path, body in mesh_objects():
            cluster.rest.create(path.url(ns), body)


# --- reading weights the way the data plane would ---------------------------------------------------


def service_weights(cluster: Cluster, ns: str, kind: str) -> dict[str, int]:
    """{Service: weight} the router's object sends requests without headers to."""
    rest = cluster.rest
    if kind == "gatewayAPI":
        route = rest.get(HTTP_ROUTES.url(ns, "checkout"))
        return _backends(_gateway_rule(route, {}) if route else None)[0]
    if kind == "nginx":
        stable = rest.get(INGRESSES.url(ns, "checkout"))
        canaries = [
            i
            for i in rest.list(INGRESSES.url(ns))
            if (i["metadata"].get("annotations") or {}).get(f"{NGINX}/canary") == "true"
        ]
        out = {}
        share = 0
        for c in canaries:
            w = int(c["metadata"]["annotations"].get(f"{NGINX}/canary-weight", "0"))
            for svc in _ingress_services(c):
                out[svc] = out.get(svc, 0) + w
            share += w
        if stable is not None:
            for svc in _ingress_services(stable):
                out[svc] = out.get(svc, 0) + max(0, 100 - share)
        return out
    if kind == "istio":
        vs = rest.get(VS.url(ns, "checkout"))
        route = _istio_route(vs, {}) if vs else None
        return {
            d["destination"]["host"].split(".")[0]: int(d.get("weight", 100))
            for d in (route or {}).get("route") or []
        }
    if kind == "alb":
        return alb_forward(rest.get(INGRESSES.url(ns, "checkout-alb")))
    if kind == "ambassador":
        return ambassador_split(rest.list(MAPPING.url(ns)))
    if kind == "apisix":
        return apisix_backends(apisix_rule(rest.list(APISIX_ROUTES.url(ns)), {}))
    if kind == "traefik":
        return traefik_weights(rest.get(TRAEFIK.url(ns, "checkout")))
    if kind == "appMesh":
        # Each node reaches its pods through the Service its DNS name names.
        hosts = {
            n["metadata"]["name"]: n["spec"]["serviceDiscovery"]["dns"]["hostname"].split(".")[0]
            for n in rest.list(VIRTUAL_NODES.url(ns))
        }
        by_node = mesh_weights(rest.get(VIRTUAL_ROUTERS.url(ns, "checkout")))
        return {hosts.get(node, node): w for node, w in by_node.items()}
    split = rest.get(TRAFFIC_SPLITS.url(ns, "checkout"))
    return {
        b["service"]: int(b["weight"])
        for b in ((split or {}).get("spec") or {}).get("backends", [])
    }


def service_groups(cluster: Cluster, ns: str) -> dict[str, str]:
    """Service -> the server group its selector picks (the operator's label)."""
    return {
        s["metadata"]["name"]: s["spec"]["selector"][LABEL_GROUP]
        for s in cluster.rest.list(SERVICES.url(ns))
        if LABEL_GROUP in ((s.get("spec") or {}).get("selector") or {})
    }


def to_groups(by_service: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for svc, w in by_service.items():
        if svc in groups:
            out[groups[svc]] = out.get(groups[svc], 0.0) + w
    return out


def weights_reader(cluster: Cluster, ns: str, kind: str) -> Callable[[], dict[str, float]]:
    """For `TrafficSimulator(weights=...)`: {server group: share} as the router sends it."""

    def read() -> dict[str, float]:
        by_service = {k: float(v) for k, v in service_weights(cluster, ns, kind).items()}
        return to_groups(by_service, service_groups(cluster, ns))

    return read


def gateway_routing(cluster: Cluster, ns: str, name: str = "checkout") -> Callable[[], Route]:
    """For `TrafficSimulator(routing=...)`: each request routed by the HTTPRoute's rules."""

    def snapshot() -> Route:
        route = cluster.rest.get(HTTP_ROUTES.url(ns, name))
        groups = service_groups(cluster, ns)

        def decide(headers: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
            weights, mirrors = _backends(_gateway_rule(route, headers) if route else None)
            return (
                to_groups({k: float(v) for k, v in weights.items()}, groups),
                to_groups({k: float(v) for k, v in mirrors.items()}, groups),
            )

        return decide

    return snapshot


def _ingress_services(ing: dict[str, Any]) -> list[str]:
    spec = ing.get("spec") or {}
    found = []
    default = (spec.get("defaultBackend") or {}).get("service")
    if default:
        found.append(default["name"])
    for rule in spec.get("rules") or []:
        for p in (rule.get("http") or {}).get("paths") or []:
            svc = (p.get("backend") or {}).get("service")
            if svc and p.get("path", "/") == "/":
                found.append(svc["name"])
    return found


# --- Gateway API request matching (the spec's precedence rules) ---------------------------------------


def _header_ok(want: dict[str, Any], headers: dict[str, str]) -> bool:
    value = {k.lower(): v for k, v in headers.items()}.get(want["name"].lower())
    if value is None:
        return False
    if want.get("type", "Exact") == "Exact":
        return bool(value == want["value"])
    return re.fullmatch(want["value"], value) is not None


def _path_ok(want: dict[str, Any] | None, path: str) -> bool:
    if want is None:
        return True
    kind, value = want.get("type", "PathPrefix"), want.get("value", "/")
    if kind == "Exact":
        return bool(path == value)
    if kind == "PathPrefix":
        return path == value or path.startswith(value.rstrip("/") + "/") or value == "/"
    return re.fullmatch(value, path) is not None


def _gateway_rule(
    route: dict[str, Any], headers: dict[str, str], path: str = "/", method: str = "GET"
) -> dict[str, Any] | None:
    """The rule a request lands on: among matching (rule, match) pairs the most specific wins —
    exact path, then longest prefix, then a method match, then most header matches, then
    most query matches; a tie goes to the first rule in the list."""
    best: tuple[tuple[int, int, int, int, int], int, dict[str, Any]] | None = None
    for index, rule in enumerate(route["spec"].get("rules") or []):
        for m in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            if not _path_ok(m.get("path"), path):
                continue
            if m.get("method") and m["method"] != method:
                continue
            if not all(_header_ok(h, headers) for h in m.get("headers") or []):
                continue
            if m.get("queryParams"):
                continue  # the simulator sends none
            p = m.get("path") or {}
            key = (
                1 if p.get("type") == "Exact" else 0,
                len(p.get("value", "/")),
                1 if m.get("method") else 0,
                len(m.get("headers") or []),
                len(m.get("queryParams") or []),
            )
            if best is None or key > best[0] or (key == best[0] and index < best[1]):
                best = (key, index, rule)
    return best[2] if best else None


def _backends(rule: dict[str, Any] | None) -> tuple[dict[str, int], dict[str, int]]:
    """({Service: weight}, {Service: percent mirrored}) of a rule."""
    if rule is None:
        return {}, {}
    weights: dict[str, int] = {}
    for ref in rule.get("backendRefs") or []:
        weights[ref["name"]] = weights.get(ref["name"], 0) + int(ref.get("weight", 1))
    mirrors = {
        f["requestMirror"]["backendRef"]["name"]: int(f["requestMirror"].get("percent", 100))
        for f in rule.get("filters") or []
        if f.get("type") == "RequestMirror"
    }
    return weights, mirrors


# --- Istio: the first HTTP route whose match matches ----------------------------------------------------


def _string_ok(want: dict[str, str], value: str | None) -> bool:
    if value is None:
        return False
    if "exact" in want:
        return value == want["exact"]
    if "prefix" in want:
        return value.startswith(want["prefix"])
    return re.fullmatch(want.get("regex", ""), value) is not None


def _istio_route(
    vs: dict[str, Any], headers: dict[str, str], uri: str = "/"
) -> dict[str, Any] | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for route in vs["spec"].get("http") or []:
        matches = route.get("match") or [{}]
        for m in matches:
            if "uri" in m and not _string_ok(m["uri"], uri):
                continue
            if "method" in m and not _string_ok(m["method"], "GET"):
                continue
            if all(
                _string_ok(v, lowered.get(k.lower())) for k, v in (m.get("headers") or {}).items()
            ):
                return dict(route)
    return None


def istio_routing(cluster: Cluster, ns: str, name: str = "checkout") -> Callable[[], Route]:
    """For `TrafficSimulator(routing=...)`: each request routed by the VirtualService's first
    HTTP route that matches it."""

    def snapshot() -> Route:
        vs = cluster.rest.get(VS.url(ns, name))
        groups = service_groups(cluster, ns)

        def decide(headers: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
            route = _istio_route(vs, headers) if vs else None
            dests = (route or {}).get("route") or []
            weights = {
                d["destination"]["host"].split(".")[0]: float(d.get("weight", 100)) for d in dests
            }
            mirror = (route or {}).get("mirror")
            mirrors = (
                {mirror["host"].split(".")[0]: float(route["mirrorPercentage"]["value"])}
                if mirror and route and route.get("mirrorPercentage")
                else {}
            )
            return to_groups(weights, groups), to_groups(mirrors, groups)

        return decide

    return snapshot


def _seconds(text: str) -> float:
    """An Istio duration (protobuf style `0.5s`, or Go style `500ms`, `2s`, `1m`)."""
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def istio_faults(cluster: Cluster, ns: str, name: str = "checkout") -> Callable[[], FaultRoute]:
    """For `TrafficSimulator(faults=...)`: the `fault` of the route a request takes."""

    def snapshot() -> FaultRoute:
        vs = cluster.rest.get(VS.url(ns, name))

        def fault_of(headers: dict[str, str]) -> Fault | None:
            route = _istio_route(vs, headers) if vs else None
            fault = (route or {}).get("fault")
            if not fault:
                return None
            delay, abort = fault.get("delay") or {}, fault.get("abort") or {}
            return Fault(
                delay=_seconds(delay["fixedDelay"]) if delay else 0.0,
                delay_percent=float((delay.get("percentage") or {}).get("value", 100)),
                abort_status=int(abort.get("httpStatus", 503)),
                abort_percent=(
                    float((abort.get("percentage") or {}).get("value", 100)) if abort else 0.0
                ),
            )

        return fault_of

    return snapshot


# --- who wrote first ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    kind: str  # the path's plural
    name: str
    obj: dict[str, Any]


@dataclass
class Recorder:
    """Watches collections in one namespace from now on, keeping every event in order."""

    cluster: Cluster
    ns: str
    paths: list[KPath]
    events: list[Event] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _responses: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Recorder:
        ready = []
        for path in self.paths:
            listing = self.cluster.rest.call(
                "GET", path.url(self.ns), None, None, "application/json", 10
            )
            rv = listing["metadata"]["resourceVersion"]
            started = threading.Event()
            ready.append(started)
            thread = threading.Thread(
                target=self._watch,
                args=(path, rv, started),
                name=f"watch-{path.plural}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        for started in ready:
            started.wait(10)
        return self

    def _watch(self, path: KPath, rv: str, started: threading.Event) -> None:
        api = self.cluster.rest.api
        query = [
            ("watch", "true"),
            ("resourceVersion", rv),
            ("allowWatchBookmarks", "false"),
            ("timeoutSeconds", "300"),
        ]
        method, url, headers, body, post = api.param_serialize(
            "GET",
            path.url(self.ns),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, body, post, _request_timeout=(5, 310))
        raw = response.response
        with self._lock:
            self._responses.append(raw)
        started.set()
        buffer = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._record(path, json.loads(line))
                if self._stop.is_set():
                    return
        except Exception:  # closed by stop(): the watch is over
            return

    def _record(self, path: KPath, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if (
            event.get("type") not in ("ADDED", "MODIFIED", "DELETED")
            or "resourceVersion" not in meta
        ):
            return
        with self._lock:
            self.events.append(
                Event(
                    int(meta["resourceVersion"]),
                    event["type"],
                    path.plural,
                    meta.get("name", ""),
                    obj,
                )
            )

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
        for raw in responses:
            with contextlib.suppress(Exception):
                raw.shutdown()
            with contextlib.suppress(Exception):
                raw.release_conn()
        for thread in self._threads:
            thread.join(timeout=5)

    def ordered(self) -> list[Event]:
        with self._lock:
            return sorted(self.events, key=lambda e: e.rv)

    def first(self, predicate: Callable[[Event], bool]) -> Event | None:
        return next((e for e in self.ordered() if predicate(e)), None)


def router_paths(kind: str) -> list[KPath]:
    return {
        "gatewayAPI": [HTTP_ROUTES],
        "nginx": [INGRESSES],
        "istio": [VS],
        "smi": [TRAFFIC_SPLITS],
        "alb": [INGRESSES],
        "ambassador": [MAPPING],
        "apisix": [APISIX_ROUTES],
        "appMesh": [VIRTUAL_ROUTERS],
        "traefik": [TRAEFIK],
    }[kind]


def canary_weight_of(event: Event, kind: str) -> int | None:
    """The canary Service's weight in one recorded router object (None: not that object)."""
    obj = event.obj
    if kind == "alb":
        if event.name != "checkout-alb" or event.type == "DELETED":
            return None
        return alb_forward(obj).get("checkout-canary")
    if kind == "traefik":
        if event.kind != "traefikservices" or event.type == "DELETED":
            return None
        return traefik_weights(obj).get("checkout-canary")
    if kind == "appMesh":
        if event.kind != "virtualrouters" or event.type == "DELETED":
            return None
        return mesh_weights(obj).get("checkout-canary")
    if kind == "apisix":
        if event.name != "checkout" or event.type == "DELETED":
            return None
        return apisix_backends(apisix_rule([obj], {})).get("checkout-canary")
    if kind == "ambassador":
        if event.name != "checkout-canary":
            return None
        return 0 if event.type == "DELETED" else int(obj["spec"].get("weight", 0))
    if kind == "nginx":
        if not event.name.endswith("-canary"):
            return None
        if event.type == "DELETED":
            return 0
        return int((obj["metadata"].get("annotations") or {}).get(f"{NGINX}/canary-weight", "0"))
    if kind == "gatewayAPI":
        rule = _gateway_rule(obj, {})
        return _backends(rule)[0].get("checkout-canary")
    if kind == "istio":
        route = _istio_route(obj, {})
        return next(
            (
                int(d.get("weight", 0))
                for d in (route or {}).get("route") or []
                if d["destination"]["host"].split(".")[0] == "checkout-canary"
            ),
            None,
        )
    return next(
        (
            int(b["weight"])
            for b in (obj.get("spec") or {}).get("backends", [])
            if b["service"] == "checkout-canary"
        ),
        None,
    )

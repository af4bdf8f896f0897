"""Every router, held to the whole interface on an in-memory API server.

`FakeKube` stores objects by URL, serves discovery for the kinds a test installs, applies merge
and JSON patches with its own (independent) RFC 6902 code, and enforces a patch's
resourceVersion precondition with 409 — so "the weight landed", "nothing else changed" and
"a concurrent edit is not overwritten" are checked on the objects, not on the calls.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from sim import manifest

from herdsman.api.canary_steps import SetHeaderRoute, SetMirrorRoute
from herdsman.api.rollout import Rollout
from herdsman.api.routing import ROUTERS as API_ROUTERS
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import JSON_PATCH, KubeError, Path
from herdsman.engine import validation
from herdsman.engine.world import Decision, Desired, RouterState, TrafficTarget
from herdsman.naming import LABEL_GROUP
from herdsman.traffic import ROUTERS, kind_of, observe_router, router_for, write_traffic
from herdsman.traffic import base as traffic_base
from herdsman.traffic.ambassador import MAPPINGS
from herdsman.traffic.apisix import APISIX_ROUTES
from herdsman.traffic.appmesh import MESH_SERVICES, NO_CANARY, VIRTUAL_NODES, VIRTUAL_ROUTERS
from herdsman.traffic.base import RouterError, json_patch
from herdsman.traffic.gatewayapi import HTTP_ROUTES
from herdsman.traffic.istio import DESTINATION_RULES, VIRTUAL_SERVICES
from herdsman.traffic.nginx import INGRESSES
from herdsman.traffic.smi import TRAFFIC_SPLITS
from herdsman.traffic.traefik import TRAEFIK_SERVICES

pytestmark = pytest.mark.unit

NS = "shop"
UID = "0b7c6a52-rollout-uid"


# --- an API server in a dict ----------------------------------------------------------------------


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    """One RFC 6902 operation (add, remove, replace, test) on `doc`, returning the new doc."""
    tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
    if not tokens:
        if op["op"] in ("add", "replace"):
            return copy.deepcopy(op["value"])
        raise AssertionError(f"unsupported root op {op}")
    parent = doc
    for t in tokens[:-1]:
        parent = parent[int(t)] if isinstance(parent, list) else parent[t]
    last = tokens[-1]
    kind = op["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "remove":
            del parent[index]
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        elif kind == "test" and parent[index] != op["value"]:
            raise KubeError(422, "Invalid", f"test failed at {op['path']}")
        return doc
    if kind == "add":
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if last not in parent:
            raise KubeError(422, "Invalid", f"remove of missing {op['path']}")
        del parent[last]
    elif kind == "replace":
        if last not in parent:
            raise KubeError(422, "Invalid", f"replace of missing {op['path']}")
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "test" and parent.get(last) != op["value"]:
        raise KubeError(422, "Invalid", f"test failed at {op['path']}")
    return doc


def _merge(old: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class FakeKube:
    """Just enough of the API server for routers: get/list/create/patch/delete + discovery."""

    def __init__(self, *installed: Path) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.served = {(p.group, p.version, p.plural) for p in installed}
        self.served.add(("networking.k8s.io", "v1", "ingresses"))  # built in
        self.rv = itertools.count(100)
        self.writes: list[tuple[str, str, Any]] = []
        # Runs before a patch is applied: a test's concurrent writer.
        self.before_patch: Callable[[str], None] | None = None

    # helpers for tests
    def put(self, path: Path, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta["resourceVersion"] = str(next(self.rv))
        self.objects[path.url(meta["namespace"], meta["name"])] = body
        return body

    def obj(self, path: Path, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(path.url(NS, name)))

    def _served(self, url: str) -> bool:
        parts = url.split("/")
        if parts[1] == "api":
            return True
        group, version = parts[2], parts[3]
        plural = parts[6] if len(parts) > 6 else parts[4]
        return (group, version, plural) in self.served

    # the Kube surface
    async def get(
        self, url: str, *, deadline: Deadline, ours: bool = False
    ) -> dict[str, Any] | None:
        parts = url.split("/")
        if parts[1] == "apis" and len(parts) == 4:
            group, version = parts[2], parts[3]
            resources = [{"name": p} for g, v, p in self.served if (g, v) == (group, version)]
            return {"resources": resources} if resources else None
        if not self._served(url):
            return None
        found = self.objects.get(url)
        return copy.deepcopy(found) if found is not None else None

    async def list(self, url: str, *, deadline: Deadline, labels: str | None = None) -> list[Any]:
        return [copy.deepcopy(o) for u, o in self.objects.items() if u.startswith(url + "/")]

    async def create(self, url: str, body: dict[str, Any], *, deadline: Deadline) -> dict[str, Any]:
        if not self._served(url):
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        target = f"{url}/{body['metadata']['name']}"
        if target in self.objects:
            raise KubeError(409, "AlreadyExists", target)
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[target] = stored
        self.writes.append(("create", target, body))
        return copy.deepcopy(stored)

    async def patch(
        self, url: str, body: Any, *, deadline: Deadline, content_type: str = "merge"
    ) -> dict[str, Any]:
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook(url)
        current = self.objects.get(url)
        if current is None:
            raise KubeError(404, "NotFound", url)
        if content_type == JSON_PATCH:
            new = copy.deepcopy(current)
            for op in body:
                new = _apply_op(new, op)
        else:
            new = _merge(current, body)
        want_rv = new["metadata"].get("resourceVersion")
        if want_rv != current["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        new["metadata"]["resourceVersion"] = str(next(self.rv))
        self.objects[url] = new
        self.writes.append(("patch", url, body))
        return copy.deepcopy(new)

    async def delete(
        self, url: str, *, deadline: Deadline, propagation: str = "Background"
    ) -> None:
        if self.objects.pop(url, None) is not None:
            self.writes.append(("delete", url, None))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def deadline() -> Deadline:
    return Deadline(5)


# --- fixtures: a rollout per router, and the user's objects ----------------------------------------

ROUTING: dict[str, dict[str, Any]] = {
    "gatewayAPI": {"gatewayAPI": {"httpRoute": "checkout"}},
    "nginx": {
        "nginx": {
            "stableIngress": "checkout",
            "additionalIngressAnnotations": {"nginx.ingress.kubernetes.io/canary-by-header": "x"},
        }
    },
    "istio": {"istio": {"virtualService": {"name": "checkout", "routes": ["primary"]}}},
    "smi": {"smi": {}},
    "alb": {"alb": {"ingress": "checkout-alb", "servicePort": 80, "rootService": "checkout-root"}},
    "ambassador": {"ambassador": {"mappings": ["checkout", "checkout-api"]}},
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
MANAGED = [{"name": "beta-users"}, {"name": "shadow"}]


def rollout(kind: str, **routing: Any) -> Rollout:
    body = manifest(
        stableService="checkout",
        canaryService="checkout-canary",
        trafficRouting={**ROUTING[kind], **routing, "managedRoutes": MANAGED},
    )
    body["metadata"]["uid"] = UID
    return Rollout.model_validate(body)


def http_route(**extra_rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "checkout", "labels": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": ["shop.example"],
            "rules": [
                {
                    "name": "main",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "checkout", "port": 80, "weight": 100},
                        {"name": "checkout-canary", "port": 80, "weight": 0},
                    ],
                    **extra_rule,
                },
                {"name": "static", "backendRefs": [{"name": "static-files", "port": 80}]},
            ],
        },
    }


def ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "checkout",
            "annotations": {"kubernetes.io/ingress.class": "nginx", "team": "shop"},
        },
        "spec": {
            "rules": [
                {
                    "host": "shop.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "checkout", "port": {"number": 80}}
                                },
                            },
                            {
                                "path": "/static",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "static-files", "port": {"number": 80}}
                                },
                            },
                        ]
                    },
                }
            ]
        },
    }


def alb_ingress() -> dict[str, Any]:
    """An ALB Ingress as the AWS docs lay it out: the rule names the root Service with port
    `use-annotation`, so the controller reads the forward action from the annotation."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "checkout-alb",
            "annotations": {"kubernetes.io/ingress.class": "alb", "team": "shop"},
        },
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/*",
                                "pathType": "ImplementationSpecific",
                                "backend": {
                                    "service": {
                                        "name": "checkout-root",
                                        "port": {"name": "use-annotation"},
                                    }
                                },
                            },
                            {
                                "path": "/static",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "static-files", "port": {"number": 80}}
                                },
                            },
                        ]
                    },
                }
            ]
        },
    }


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout"},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "name": "primary",
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [
                        {"destination": {"host": "checkout"}, "weight": 100},
                        {
                            "destination": {"host": "checkout-canary.shop.svc.cluster.local"},
                            "weight": 0,
                        },
                    ],
                },
                {"name": "other", "route": [{"destination": {"host": "static-files"}}]},
            ],
        },
    }


def destination_rule() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "checkout"},
        "spec": {
            "host": "checkout",
            "subsets": [
                {"name": "stable", "labels": {"app": "checkout"}},
                {"name": "canary", "labels": {"app": "checkout"}},
            ],
        },
    }


def traffic_split() -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "checkout"},
        "spec": {
            "service": "apex",
            "backends": [
                {"service": "checkout", "weight": 100},
                {"service": "checkout-canary", "weight": 0},
            ],
        },
    }


def mapping(name: str = "checkout", prefix: str = "/", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": name, "labels": {"team": "shop"}},
        "spec": {
            "hostname": "shop.example",
            "prefix": prefix,
            "rewrite": "/",
            "service": "checkout:8080",
            **spec,
        },
    }


def apisix_route() -> dict[str, Any]:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": "checkout", "labels": {"team": "shop"}},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "match": {"paths": ["/*"], "hosts": ["shop.example"], "methods": ["GET"]},
                    "backends": [
                        {"serviceName": "checkout", "servicePort": 80, "weight": 100},
                        {"serviceName": "checkout-canary", "servicePort": 80, "weight": 0},
                    ],
                },
                {
                    "name": "static",
                    "match": {"paths": ["/static/*"]},
                    "backends": [{"serviceName": "static-files", "servicePort": 80}],
                },
            ]
        },
    }


def mesh_objects() -> list[tuple[Path, dict[str, Any]]]:
    """An App Mesh VirtualService provided by a VirtualRouter with an HTTP route to the stable
    node at 100 and the canary node at 0, a TCP route elsewhere, and the two nodes."""

    def node(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "appmesh.k8s.aws/v1beta2",
            "kind": "VirtualNode",
            "metadata": {"name": name},
            "spec": {
                "podSelector": {"matchLabels": {"app": "checkout"}},
                "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": f"{name}.shop.svc.cluster.local"}},
            },
        }

    return [
        (
            MESH_SERVICES,
            {
                "apiVersion": "appmesh.k8s.aws/v1beta2",
                "kind": "VirtualService",
                "metadata": {"name": "checkout"},
                "spec": {"provider": {"virtualRouter": {"virtualRouterRef": {"name": "checkout"}}}},
            },
        ),
        (
            VIRTUAL_ROUTERS,
            {
                "apiVersion": "appmesh.k8s.aws/v1beta2",
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
                        },
                    ],
                },
            },
        ),
        (VIRTUAL_NODES, node("checkout-stable")),
        (VIRTUAL_NODES, node("checkout-canary")),
    ]


def traefik_service() -> dict[str, Any]:
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": "checkout"},
        "spec": {
            "weighted": {
                "services": [
                    {"name": "checkout", "port": 80, "weight": 100},
                    {"name": "checkout-canary", "port": 80, "weight": 0},
                ],
                "sticky": {"cookie": {"name": "lb"}},
            }
        },
    }


def world(kind: str) -> FakeKube:
    """A cluster with the router's kinds installed and the user's objects in place."""
    if kind == "gatewayAPI":
        kube = FakeKube(HTTP_ROUTES)
        kube.put(HTTP_ROUTES, http_route())
    elif kind == "nginx":
        kube = FakeKube()
        kube.put(INGRESSES, ingress())
    elif kind == "istio":
        kube = FakeKube(*VIRTUAL_SERVICES, *DESTINATION_RULES)
        kube.put(VIRTUAL_SERVICES[0], virtual_service())
    elif kind == "alb":
        kube = FakeKube()
        kube.put(INGRESSES, alb_ingress())
    elif kind == "traefik":
        kube = FakeKube(TRAEFIK_SERVICES[0])
        kube.put(TRAEFIK_SERVICES[0], traefik_service())
    elif kind == "appMesh":
        kube = FakeKube(MESH_SERVICES, VIRTUAL_ROUTERS, VIRTUAL_NODES)
        for path, body in mesh_objects():
            kube.put(path, body)
    elif kind == "apisix":
        kube = FakeKube(APISIX_ROUTES)
        kube.put(APISIX_ROUTES, apisix_route())
    elif kind == "ambassador":
        kube = FakeKube(MAPPINGS[0])
        kube.put(MAPPINGS[0], mapping())
        kube.put(MAPPINGS[0], mapping("checkout-api", "/api/", service="http://checkout"))
    else:
        kube = FakeKube(TRAFFIC_SPLITS)
        kube.put(TRAFFIC_SPLITS, traffic_split())
    return kube


def target(weight: int, *routes: Any, canary: str | None = "checkout-v002") -> TrafficTarget:
    return TrafficTarget(
        canary_weight=weight,
        canary_group=canary,
        stable_group="checkout-v001",
        header_routes=tuple(r for r in routes if isinstance(r, SetHeaderRoute)),
        mirror_routes=tuple(r for r in routes if isinstance(r, SetMirrorRoute)),
    )


HEADER = SetHeaderRoute.model_validate(
    {"name": "beta-users", "match": [{"headerName": "x-beta", "headerValue": {"exact": "yes"}}]}
)
MIRROR = SetMirrorRoute.model_validate(
    {"name": "shadow", "percentage": 25, "match": [{"method": {"exact": "GET"}}]}
)


def user_view(kube: FakeKube, kind: str) -> dict[str, Any] | None:
    """The user's object with the fields the router owns blanked: what must never change."""
    path, name = {
        "gatewayAPI": (HTTP_ROUTES, "checkout"),
        "nginx": (INGRESSES, "checkout"),
        "istio": (VIRTUAL_SERVICES[0], "checkout"),
        "smi": (TRAFFIC_SPLITS, "checkout"),
        "alb": (INGRESSES, "checkout-alb"),
        "ambassador": (MAPPINGS[0], "checkout"),
        "apisix": (APISIX_ROUTES, "checkout"),
        "appMesh": (VIRTUAL_ROUTERS, "checkout"),
        "traefik": (TRAEFIK_SERVICES[0], "checkout"),
    }[kind]
    body = kube.obj(path, name)
    if body is None:
        return None
    body["metadata"].pop("resourceVersion", None)
    if kind == "alb":  # the action annotation and its bookkeeping are the weights
        notes = body["metadata"].get("annotations") or {}
        notes.pop("alb.ingress.kubernetes.io/actions.checkout-root", None)
        notes.pop("rollouts.argoproj.io/managed-alb-actions", None)
    for rule in (body.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            ref.pop("weight", None)
    for route in (body.get("spec") or {}).get("http") or []:
        for dest in route.get("route") or []:
            dest.pop("weight", None)
    for backend in (body.get("spec") or {}).get("backends") or []:
        backend.pop("weight", None)
    for rule in (body.get("spec") or {}).get("http") or []:
        for backend in rule.get("backends") or []:
            backend.pop("weight", None)
    for svc in ((body.get("spec") or {}).get("weighted") or {}).get("services") or []:
        svc.pop("weight", None)
    for route in (body.get("spec") or {}).get("routes") or []:
        for target in (route.get("httpRoute") or {}).get("action", {}).get("weightedTargets", []):
            target.pop("weight", None)
    return body


# --- the registry and the interface -----------------------------------------------------------------


def test_the_registry_has_one_router_per_trafficrouting_field() -> None:
    assert set(ROUTERS) == set(API_ROUTERS)
    for kind, router in ROUTERS.items():
        assert router.kind == kind
        assert inspect.iscoroutinefunction(router.observe)
        assert inspect.iscoroutinefunction(router.apply)
        assert isinstance(router.header_routes, bool)
        assert isinstance(router.mirror_routes, bool)
        assert kind_of(rollout(kind)) == kind
        assert router_for(rollout(kind)) is router


def test_validation_knows_exactly_the_routers_that_carry_header_and_mirror_routes() -> None:
    # Validation is pure (no imports from traffic/); this keeps its list honest.
    assert {k for k, r in ROUTERS.items() if r.header_routes} == validation.ROUTERS_WITH_ROUTES
    assert {k for k, r in ROUTERS.items() if r.mirror_routes} == validation.ROUTERS_WITH_MIRRORS


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_every_router_holds_exactly_each_weight_it_is_given(kind: str) -> None:
    # No silent no-ops: each write must show in the object, read back by observe().
    r, kube = rollout(kind), world(kind)
    router = ROUTERS[kind]
    before = run(router.observe(kube, r, deadline()))
    assert before.available, before.message
    for weight in (0, 5, 33, 100, 50, 0):
        run(router.apply(kube, r, target(weight), deadline()))
        held = run(router.observe(kube, r, deadline()))
        assert held.available, held.message
        assert held.canary_weight == weight, (kind, weight, held)


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_every_router_writes_nothing_when_it_already_holds_the_target(kind: str) -> None:
    r, kube = rollout(kind), world(kind)
    router = ROUTERS[kind]
    for weight in (0, 20, 20, 20, 0, 0):
        run(router.apply(kube, r, target(weight), deadline()))
    writes = list(kube.writes)
    run(router.apply(kube, r, target(0), deadline()))
    assert kube.writes == writes, "a repeated target wrote again"
    # 0 -> 20 -> 0 is at most three writes (two for nginx: create and delete; one for a
    # created SMI split and its two moves), never one per call; per Mapping for ambassador,
    # whose fixture names two.
    # appMesh: plus one selector write per VirtualNode, once.
    assert len(writes) <= {"ambassador": 6, "appMesh": 5}.get(kind, 3)


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_every_router_leaves_the_users_object_alone_but_for_the_weights(kind: str) -> None:
    r, kube = rollout(kind), world(kind)
    before = user_view(kube, kind)
    router = ROUTERS[kind]
    for weight in (10, 60, 0):
        run(router.apply(kube, r, target(weight), deadline()))
        assert user_view(kube, kind) == before


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_every_router_patches_with_a_guard_on_what_it_read(kind: str) -> None:
    # Patches to objects that exist are JSON patches carrying the resourceVersion they were
    # computed on, so a concurrent edit makes them fail instead of being overwritten.
    r, kube = rollout(kind), world(kind)
    router = ROUTERS[kind]
    run(router.apply(kube, r, target(10), deadline()))
    run(router.apply(kube, r, target(30), deadline()))
    patches = [w for w in kube.writes if w[0] == "patch"]
    assert patches, kube.writes
    for _, _, body in patches:
        assert isinstance(body, list)
        assert body[0]["path"] == "/metadata/resourceVersion"


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_a_concurrent_edit_is_kept_and_the_weight_recomputed_on_top(kind: str) -> None:
    r, kube = rollout(kind), world(kind)
    run(write_traffic(kube, r, decision(target(10)), deadline()))  # nginx/smi: now exists

    def someone_edits(url: str) -> None:
        obj = kube.objects[url]
        obj["metadata"].setdefault("labels", {})["edited-by"] = "someone"
        obj["metadata"]["resourceVersion"] = str(next(kube.rv))

    kube.before_patch = someone_edits
    run(write_traffic(kube, r, decision(target(40)), deadline()))
    assert run(ROUTERS[kind].observe(kube, r, deadline())).canary_weight == 40
    edited = [o for o in kube.objects.values() if o["metadata"].get("labels", {}).get("edited-by")]
    assert edited, "the concurrent edit was lost"


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_routes_are_carried_exactly_by_routers_that_say_so_and_refused_by_the_others(
    kind: str,
) -> None:
    r, kube = rollout(kind), world(kind)
    router = ROUTERS[kind]
    if not router.header_routes:
        for route in (HEADER, MIRROR):
            with pytest.raises(RouterError, match="cannot carry header or mirror routes"):
                run(router.apply(kube, r, target(10, route), deadline()))
        return
    if not router.mirror_routes:  # alb, apisix: header routes only
        with pytest.raises(RouterError, match="cannot mirror"):
            run(router.apply(kube, r, target(10, MIRROR), deadline()))
        run(router.apply(kube, r, target(10, HEADER), deadline()))
        held = run(router.observe(kube, r, deadline()))
        assert (held.routes, held.canary_weight) == ({"beta-users"}, 10)
        run(router.apply(kube, r, target(0, canary=None), deadline()))
        held = run(router.observe(kube, r, deadline()))
        assert (held.routes, held.canary_weight) == (frozenset(), 0)
        return
    run(router.apply(kube, r, target(10, HEADER, MIRROR), deadline()))
    held = run(router.observe(kube, r, deadline()))
    assert held.routes == {"beta-users", "shadow"}
    assert held.canary_weight == 10
    # A later step replaces one route; completion (no canary) clears every one.
    run(router.apply(kube, r, target(20, MIRROR), deadline()))
    assert run(router.observe(kube, r, deadline())).routes == {"shadow"}
    run(router.apply(kube, r, target(0, canary=None), deadline()))
    held = run(router.observe(kube, r, deadline()))
    assert held.routes == frozenset()
    assert held.canary_weight == 0


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_a_router_whose_kind_is_not_installed_says_so(kind: str) -> None:
    r = rollout(kind)
    kube = FakeKube()
    kube.served.discard(("networking.k8s.io", "v1", "ingresses"))
    state = run(observe_router(kube, r, deadline()))
    assert state is not None
    assert not state.available
    assert state.message.startswith("spec.strategy.canary.trafficRouting.")
    if kind in ("nginx", "alb"):  # Ingress is built in: the object is what is missing
        assert "Ingress 'checkout" in state.message
        assert "not found" in state.message
    else:
        assert "not installed in this cluster" in state.message


@pytest.mark.parametrize(
    "kind", ["gatewayAPI", "istio", "nginx", "ambassador", "apisix", "appMesh", "traefik"]
)
def test_a_router_whose_object_is_missing_says_which(kind: str) -> None:
    r = rollout(kind)
    kube = world(kind)
    kube.objects.clear()
    state = run(ROUTERS[kind].observe(kube, r, deadline()))
    assert not state.available
    assert "'checkout' not found in namespace 'shop'" in state.message
    with pytest.raises(KubeError) as err:
        run(ROUTERS[kind].apply(kube, r, target(10), deadline()))
    assert err.value.not_found


def decision(t: TrafficTarget) -> Decision:
    from herdsman.api.rollout import RolloutStatus

    return Decision(desired=Desired(traffic=t), status=RolloutStatus())


def test_replica_ratio_rollouts_have_no_router() -> None:
    body = manifest(stableService="checkout", canaryService="checkout-canary")
    r = Rollout.model_validate(body)
    assert router_for(r) is None
    assert run(observe_router(FakeKube(), r, deadline())) is None
    run(write_traffic(FakeKube(), r, decision(target(10)), deadline()))  # nothing to do


# --- Gateway API specifics -----------------------------------------------------------------------------


def test_gateway_rules_named_in_the_spec_must_exist() -> None:
    r = rollout("gatewayAPI", gatewayAPI={"httpRoute": "checkout", "ruleNames": ["main", "api"]})
    state = run(ROUTERS["gatewayAPI"].observe(world("gatewayAPI"), r, deadline()))
    assert not state.available
    assert state.message == (
        "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute: HTTPRoute shop/checkout"
        " has no rule named 'api'"
    )


def test_gateway_rules_must_name_the_canary_backend() -> None:
    kube = FakeKube(HTTP_ROUTES)
    body = http_route()
    body["spec"]["rules"][0]["backendRefs"].pop()
    kube.put(HTTP_ROUTES, body)
    state = run(ROUTERS["gatewayAPI"].observe(kube, rollout("gatewayAPI"), deadline()))
    assert not state.available
    assert "rule 'main' has no backendRef to the canary Service 'checkout-canary'" in state.message


def test_gateway_a_weight_is_one_replace_per_backend() -> None:
    kube = world("gatewayAPI")
    run(ROUTERS["gatewayAPI"].apply(kube, rollout("gatewayAPI"), target(7), deadline()))
    (_, _, ops) = kube.writes[-1]
    assert ops[1:] == [
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 93},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 7},
    ]


def test_gateway_header_route_is_a_more_specific_rule_to_the_canary_only() -> None:
    kube = world("gatewayAPI")
    r = rollout("gatewayAPI")
    prefix_header = SetHeaderRoute.model_validate(
        {
            "name": "beta-users",
            "match": [
                {"headerName": "x-beta", "headerValue": {"exact": "yes"}},
                {"headerName": "x-tier", "headerValue": {"prefix": "gold."}},
            ],
        }
    )
    run(ROUTERS["gatewayAPI"].apply(kube, r, target(10, prefix_header, MIRROR), deadline()))
    rules = kube.obj(HTTP_ROUTES, "checkout")["spec"]["rules"]  # type: ignore[index]
    assert [rule.get("name") for rule in rules] == [
        "herdsman-checkout-beta-users",
        "herdsman-checkout-shadow",
        "main",
        "static",
    ]
    header, mirror = rules[0], rules[1]
    assert header["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [
                {"name": "x-beta", "type": "Exact", "value": "yes"},
                {"name": "x-tier", "type": "RegularExpression", "value": r"^gold\..*"},
            ],
        }
    ]
    assert header["backendRefs"] == [{"name": "checkout-canary", "port": 80}]
    assert mirror["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"}]
    assert mirror["backendRefs"] == rules[2]["backendRefs"]  # same split as the rule it narrows
    assert mirror["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "checkout-canary", "port": 80}, "percent": 25},
        }
    ]


def test_gateway_leaves_another_rollouts_generated_rules_alone() -> None:
    kube = FakeKube(HTTP_ROUTES)
    body = http_route()
    theirs = {"name": "herdsman-payments-beta", "backendRefs": [{"name": "payments", "port": 80}]}
    body["spec"]["rules"].insert(0, theirs)
    kube.put(HTTP_ROUTES, body)
    r = rollout("gatewayAPI")
    run(ROUTERS["gatewayAPI"].apply(kube, r, target(10, HEADER), deadline()))
    run(ROUTERS["gatewayAPI"].apply(kube, r, target(0, canary=None), deadline()))
    rules = kube.obj(HTTP_ROUTES, "checkout")["spec"]["rules"]  # type: ignore[index]
    assert theirs in rules
    assert [rule["name"] for rule in rules] == ["herdsman-payments-beta", "main", "static"]


# --- NGINX specifics -------------------------------------------------------------------------------


def test_nginx_canary_ingress_is_generated_owned_and_removed_at_zero() -> None:
    kube, r = world("nginx"), rollout("nginx")
    run(ROUTERS["nginx"].apply(kube, r, target(15), deadline()))
    canary = kube.obj(INGRESSES, "checkout-checkout-canary")
    assert canary is not None
    meta = canary["metadata"]
    assert meta["ownerReferences"][0]["uid"] == UID
    assert meta["annotations"] == {
        "kubernetes.io/ingress.class": "nginx",
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "15",
        "nginx.ingress.kubernetes.io/canary-by-header": "x",
    }
    paths = canary["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == ["checkout-canary", "static-files"]
    run(ROUTERS["nginx"].apply(kube, r, target(0), deadline()))
    assert kube.obj(INGRESSES, "checkout-checkout-canary") is None
    assert kube.obj(INGRESSES, "checkout") is not None


def test_nginx_never_takes_over_an_ingress_it_does_not_own() -> None:
    kube, r = world("nginx"), rollout("nginx")
    squatter = ingress()
    squatter["metadata"] = {"name": "checkout-checkout-canary"}
    kube.put(INGRESSES, squatter)
    state = run(ROUTERS["nginx"].observe(kube, r, deadline()))
    assert not state.available
    assert "is not this Rollout's" in state.message
    with pytest.raises(RouterError):
        run(ROUTERS["nginx"].apply(kube, r, target(0), deadline()))
    assert kube.obj(INGRESSES, "checkout-checkout-canary") is not None


def test_nginx_stable_ingresses_each_get_a_canary_with_argos_annotations() -> None:
    kube = world("nginx")
    second = ingress()
    second["metadata"]["name"] = "checkout-internal"
    kube.put(INGRESSES, second)
    r = rollout(
        "nginx",
        nginx={
            "stableIngresses": ["checkout", "checkout-internal"],
            "additionalIngressAnnotations": {"canary-by-header": "X-Canary"},
            "canaryIngressAnnotations": {"team.example/owner": "shop"},
        },
    )
    run(ROUTERS["nginx"].apply(kube, r, target(35), deadline()))
    for name in ("checkout", "checkout-internal"):
        canary = kube.obj(INGRESSES, f"checkout-{name}-canary")
        assert canary is not None
        assert canary["metadata"]["annotations"] == {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "35",
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",  # under the prefix
            "team.example/owner": "shop",  # as it is
        }
    assert run(ROUTERS["nginx"].observe(kube, r, deadline())).canary_weight == 35
    # One canary Ingress deleted by hand: the two no longer agree, so no weight is held.
    del kube.objects[INGRESSES.url(NS, "checkout-checkout-internal-canary")]
    assert run(ROUTERS["nginx"].observe(kube, r, deadline())).canary_weight is None
    run(ROUTERS["nginx"].apply(kube, r, target(0), deadline()))
    assert [u for u in kube.objects if u.endswith("-canary")] == []


# --- Istio specifics -----------------------------------------------------------------------------------


def test_istio_subsets_follow_the_groups_and_weights_go_first() -> None:
    kube = world("istio")
    kube.put(DESTINATION_RULES[0], destination_rule())
    vs = virtual_service()
    vs["spec"]["http"][0]["route"] = [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 0},
    ]
    kube.put(VIRTUAL_SERVICES[0], vs)
    r = rollout(
        "istio",
        istio={
            "virtualService": {"name": "checkout"},
            "destinationRule": {
                "name": "checkout",
                "stableSubsetName": "stable",
                "canarySubsetName": "canary",
            },
        },
    )
    run(ROUTERS["istio"].apply(kube, r, target(25), deadline()))
    assert [w[1].split("/")[-2] for w in kube.writes] == ["virtualservices", "destinationrules"]
    subsets = kube.obj(DESTINATION_RULES[0], "checkout")["spec"]["subsets"]  # type: ignore[index]
    assert [s["labels"] for s in subsets] == [
        {"app": "checkout", LABEL_GROUP: "checkout-v001"},
        {"app": "checkout", LABEL_GROUP: "checkout-v002"},
    ]
    assert run(ROUTERS["istio"].observe(kube, r, deadline())).canary_weight == 25
    # Completed: both subsets select the new stable group.
    done = TrafficTarget(canary_weight=0, canary_group=None, stable_group="checkout-v002")
    run(ROUTERS["istio"].apply(kube, r, done, deadline()))
    subsets = kube.obj(DESTINATION_RULES[0], "checkout")["spec"]["subsets"]  # type: ignore[index]
    assert {s["labels"][LABEL_GROUP] for s in subsets} == {"checkout-v002"}


def test_istio_reads_the_v1beta1_api_when_v1_is_not_served() -> None:
    kube = FakeKube(VIRTUAL_SERVICES[1])
    kube.put(VIRTUAL_SERVICES[1], virtual_service())
    r = rollout("istio")
    run(ROUTERS["istio"].apply(kube, r, target(40), deadline()))
    assert run(ROUTERS["istio"].observe(kube, r, deadline())) == RouterState(canary_weight=40)


def test_istio_named_routes_must_exist() -> None:
    r = rollout("istio", istio={"virtualService": {"name": "checkout", "routes": ["nope"]}})
    state = run(ROUTERS["istio"].observe(world("istio"), r, deadline()))
    assert not state.available
    assert "has no HTTP route named 'nope'" in state.message


# --- SMI specifics ---------------------------------------------------------------------------------------


def test_smi_creates_an_owned_split_and_patches_a_users_in_place() -> None:
    kube, r = FakeKube(TRAFFIC_SPLITS), rollout("smi")
    run(ROUTERS["smi"].apply(kube, r, target(30), deadline()))
    split = kube.obj(TRAFFIC_SPLITS, "checkout")
    assert split is not None
    assert split["metadata"]["ownerReferences"][0]["uid"] == UID
    assert split["spec"] == {
        "service": "checkout",
        "backends": [
            {"service": "checkout", "weight": 70},
            {"service": "checkout-canary", "weight": 30},
        ],
    }
    users = FakeKube(TRAFFIC_SPLITS)
    users.put(
        TRAFFIC_SPLITS,
        {
            "metadata": {"name": "checkout"},
            "spec": {"service": "apex", "backends": [{"service": "checkout", "weight": 100}]},
        },
    )
    run(ROUTERS["smi"].apply(users, r, target(30), deadline()))
    split = users.obj(TRAFFIC_SPLITS, "checkout")
    assert split is not None
    assert split["spec"]["service"] == "apex"
    assert "ownerReferences" not in split["metadata"]
    assert split["spec"]["backends"] == [
        {"service": "checkout", "weight": 70},
        {"service": "checkout-canary", "weight": 30},
    ]


# --- Ambassador specifics ------------------------------------------------------------------------------


def test_ambassador_canary_mappings_copy_yours_owned_and_removed_at_zero() -> None:
    kube, r = world("ambassador"), rollout("ambassador")
    run(ROUTERS["ambassador"].apply(kube, r, target(15), deadline()))
    canary = kube.obj(MAPPINGS[0], "checkout-canary")
    assert canary is not None
    assert canary["metadata"]["ownerReferences"][0]["uid"] == UID
    assert canary["spec"] == {
        "hostname": "shop.example",
        "prefix": "/",
        "rewrite": "/",
        "service": "checkout-canary:8080",  # the port kept
        "weight": 15,
    }
    api = kube.obj(MAPPINGS[0], "checkout-api-canary")
    assert api is not None
    assert (api["spec"]["service"], api["spec"]["weight"]) == ("http://checkout-canary", 15)
    run(ROUTERS["ambassador"].apply(kube, r, target(0), deadline()))
    assert kube.obj(MAPPINGS[0], "checkout-canary") is None
    assert kube.obj(MAPPINGS[0], "checkout-api-canary") is None
    assert kube.obj(MAPPINGS[0], "checkout") == {
        **mapping(),
        "metadata": {**mapping()["metadata"], "namespace": NS, "resourceVersion": "100"},
    }


def test_ambassador_refuses_a_mapping_with_a_weight_and_one_it_does_not_own() -> None:
    kube, r = world("ambassador"), rollout("ambassador")
    kube.put(MAPPINGS[0], mapping(weight=10))
    state = run(ROUTERS["ambassador"].observe(kube, r, deadline()))
    assert not state.available
    assert state.message.startswith(
        "spec.strategy.canary.trafficRouting.ambassador.mappings: Mapping 'checkout' sets a weight"
    )
    with pytest.raises(RouterError, match="sets a weight"):
        run(ROUTERS["ambassador"].apply(kube, r, target(10), deadline()))
    kube = world("ambassador")
    kube.put(MAPPINGS[0], mapping("checkout-canary", weight=50))
    state = run(ROUTERS["ambassador"].observe(kube, r, deadline()))
    assert "is not this Rollout's" in state.message
    with pytest.raises(RouterError):
        run(ROUTERS["ambassador"].apply(kube, r, target(0), deadline()))
    assert kube.obj(MAPPINGS[0], "checkout-canary") is not None


def test_ambassador_reads_and_writes_v2_when_v3alpha1_is_not_served() -> None:
    kube, r = FakeKube(MAPPINGS[1]), rollout("ambassador")
    kube.put(MAPPINGS[1], mapping())
    kube.put(MAPPINGS[1], mapping("checkout-api", "/api/"))
    run(ROUTERS["ambassador"].apply(kube, r, target(40), deadline()))
    assert run(ROUTERS["ambassador"].observe(kube, r, deadline())) == RouterState(canary_weight=40)
    canary = kube.obj(MAPPINGS[1], "checkout-canary")
    assert canary is not None
    assert canary["apiVersion"] == "getambassador.io/v2"


def test_ambassador_mappings_that_disagree_hold_no_weight() -> None:
    kube, r = world("ambassador"), rollout("ambassador")
    run(ROUTERS["ambassador"].apply(kube, r, target(20), deadline()))
    kube.objects[MAPPINGS[0].url(NS, "checkout-api-canary")]["spec"]["weight"] = 30
    assert run(ROUTERS["ambassador"].observe(kube, r, deadline())).canary_weight is None
    run(ROUTERS["ambassador"].apply(kube, r, target(20), deadline()))
    assert run(ROUTERS["ambassador"].observe(kube, r, deadline())).canary_weight == 20


# --- APISIX specifics -----------------------------------------------------------------------------------


def test_apisix_weights_go_on_the_managed_rules_backends_only() -> None:
    kube, r = world("apisix"), rollout("apisix")
    run(ROUTERS["apisix"].apply(kube, r, target(7), deadline()))
    (_, _, ops) = kube.writes[-1]
    assert ops[1:] == [
        {"op": "replace", "path": "/spec/http/0/backends/0/weight", "value": 93},
        {"op": "replace", "path": "/spec/http/0/backends/1/weight", "value": 7},
    ]


def test_apisix_header_route_is_an_owned_route_to_the_canary_removed_with_the_step() -> None:
    kube, r = world("apisix"), rollout("apisix")
    prefix_header = SetHeaderRoute.model_validate(
        {
            "name": "beta-users",
            "match": [
                {"headerName": "x-beta", "headerValue": {"exact": "yes"}},
                {"headerName": "x-tier", "headerValue": {"prefix": "gold."}},
            ],
        }
    )
    run(ROUTERS["apisix"].apply(kube, r, target(10, prefix_header), deadline()))
    made = kube.obj(APISIX_ROUTES, "beta-users")
    assert made is not None
    assert made["metadata"]["ownerReferences"][0]["uid"] == UID
    assert made["spec"]["http"] == [
        {
            "name": "main",
            "priority": 1,
            "match": {
                "paths": ["/*"],
                "hosts": ["shop.example"],
                "methods": ["GET"],
                "exprs": [
                    {
                        "subject": {"scope": "Header", "name": "x-beta"},
                        "op": "Equal",
                        "value": "yes",
                    },
                    {
                        "subject": {"scope": "Header", "name": "x-tier"},
                        "op": "RegexMatch",
                        "value": r"^gold\..*",
                    },
                ],
            },
            "backends": [{"serviceName": "checkout-canary", "servicePort": 80, "weight": 100}],
        }
    ]
    assert run(ROUTERS["apisix"].observe(kube, r, deadline())).routes == {"beta-users"}
    empty = SetHeaderRoute.model_validate({"name": "beta-users"})
    run(ROUTERS["apisix"].apply(kube, r, target(10, empty), deadline()))
    assert kube.obj(APISIX_ROUTES, "beta-users") is None


def test_apisix_never_takes_over_a_route_it_does_not_own() -> None:
    kube, r = world("apisix"), rollout("apisix")
    squatter = apisix_route()
    squatter["metadata"] = {"name": "beta-users"}
    kube.put(APISIX_ROUTES, squatter)
    run(ROUTERS["apisix"].apply(kube, r, target(0), deadline()))  # not asked for: left alone
    assert kube.obj(APISIX_ROUTES, "beta-users") is not None
    with pytest.raises(RouterError, match="is not this Rollout's"):
        run(ROUTERS["apisix"].apply(kube, r, target(10, HEADER), deadline()))
    assert run(ROUTERS["apisix"].observe(kube, r, deadline())).routes == frozenset()


def test_apisix_rules_default_to_the_routes_name_and_must_exist() -> None:
    r = rollout("apisix", apisix={"route": {"name": "checkout"}})
    state = run(ROUTERS["apisix"].observe(world("apisix"), r, deadline()))
    assert not state.available
    assert state.message == (
        "spec.strategy.canary.trafficRouting.apisix.route: ApisixRoute 'checkout' has no http"
        " rule named 'checkout'"
    )
    kube = FakeKube(APISIX_ROUTES)
    body = apisix_route()
    body["spec"]["http"][0]["backends"].pop()
    kube.put(APISIX_ROUTES, body)
    state = run(ROUTERS["apisix"].observe(kube, rollout("apisix"), deadline()))
    assert "rule 'main' has no backend for the canary Service 'checkout-canary'" in state.message


# --- Traefik specifics -----------------------------------------------------------------------------------


def test_traefik_reads_the_older_api_group_and_names_a_missing_service() -> None:
    kube, r = FakeKube(TRAEFIK_SERVICES[1]), rollout("traefik")
    kube.put(TRAEFIK_SERVICES[1], traefik_service())
    run(ROUTERS["traefik"].apply(kube, r, target(45), deadline()))
    body = kube.obj(TRAEFIK_SERVICES[1], "checkout")
    assert body is not None
    assert [s["weight"] for s in body["spec"]["weighted"]["services"]] == [55, 45]
    body["spec"]["weighted"]["services"].pop()
    kube.put(TRAEFIK_SERVICES[1], body)
    state = run(ROUTERS["traefik"].observe(kube, r, deadline()))
    assert state.message == (
        "spec.strategy.canary.trafficRouting.traefik.weightedTraefikServiceName: TraefikService"
        " 'checkout' has no weighted service for the canary Service 'checkout-canary' (add one"
        " with weight 0)"
    )


# --- App Mesh specifics ---------------------------------------------------------------------------------


def test_app_mesh_weights_the_routes_targets_and_points_the_nodes_at_the_groups() -> None:
    kube, r = world("appMesh"), rollout("appMesh")
    run(ROUTERS["appMesh"].apply(kube, r, target(25), deadline()))
    vrouter = kube.obj(VIRTUAL_ROUTERS, "checkout")
    assert vrouter is not None
    targets = vrouter["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"]
    assert [t["weight"] for t in targets] == [75, 25]
    selectors = {
        n: kube.obj(VIRTUAL_NODES, n)["spec"]["podSelector"]["matchLabels"]  # type: ignore[index]
        for n in ("checkout-stable", "checkout-canary")
    }
    assert selectors == {
        "checkout-stable": {"app": "checkout", LABEL_GROUP: "checkout-v001"},
        "checkout-canary": {"app": "checkout", LABEL_GROUP: "checkout-v002"},
    }
    # Completed: the canary node selects no pod (App Mesh refuses two equal selectors).
    done = TrafficTarget(canary_weight=0, canary_group=None, stable_group="checkout-v002")
    run(ROUTERS["appMesh"].apply(kube, r, done, deadline()))
    canary = kube.obj(VIRTUAL_NODES, "checkout-canary")
    assert canary is not None
    assert canary["spec"]["podSelector"]["matchLabels"][LABEL_GROUP] == NO_CANARY
    assert run(ROUTERS["appMesh"].observe(kube, r, deadline())).canary_weight == 0


def test_app_mesh_names_what_is_missing() -> None:
    r = rollout(
        "appMesh",
        appMesh={
            "virtualService": {"name": "checkout", "routes": ["nope"]},
            "virtualNodeGroup": {
                "canaryVirtualNodeRef": {"name": "checkout-canary"},
                "stableVirtualNodeRef": {"name": "checkout-stable"},
            },
        },
    )
    state = run(ROUTERS["appMesh"].observe(world("appMesh"), r, deadline()))
    assert state.message == (
        "spec.strategy.canary.trafficRouting.appMesh.virtualService.routes: VirtualRouter"
        " 'checkout' has no route named 'nope'"
    )
    kube = world("appMesh")
    del kube.objects[VIRTUAL_NODES.url(NS, "checkout-canary")]
    state = run(ROUTERS["appMesh"].observe(kube, rollout("appMesh"), deadline()))
    assert state.message == (
        "spec.strategy.canary.trafficRouting.appMesh.virtualNodeGroup.canaryVirtualNodeRef.name:"
        " VirtualNode 'checkout-canary' not found in namespace 'shop'"
    )
    kube = world("appMesh")
    vsvc = kube.objects[MESH_SERVICES.url(NS, "checkout")]
    vsvc["spec"] = {"provider": {"virtualNode": {"virtualNodeRef": {"name": "checkout-stable"}}}}
    state = run(ROUTERS["appMesh"].observe(kube, rollout("appMesh"), deadline()))
    assert "is not provided by a virtualRouter" in state.message


# --- the diff --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": 1}, {"a": 1}),
        ({"a": 1}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}),
        ({"a": [1, 2]}, {"a": [1, 3]}),
        ({"a": [1, 2]}, {"a": [1]}),
        ({"a/b": {"~x": 1}}, {"a/b": {"~x": 2, "y": None}}),
        ({"a": 1}, {"a": "1"}),
        ({"a": True}, {"a": 1}),
    ],
)
def test_json_patch_turns_old_into_new(old: Any, new: Any) -> None:
    doc = copy.deepcopy(old)
    for op in json_patch(old, new):
        doc = _apply_op(doc, op)
    assert doc == new
    assert type(doc.get("a")) is type(new.get("a"))
    if old == new and all(type(old[k]) is type(new[k]) for k in old):
        assert json_patch(old, new) == []


def test_generated_route_names_are_rule_names_even_for_dotted_rollouts() -> None:
    body = manifest(
        stableService="checkout",
        canaryService="checkout-canary",
        trafficRouting={"gatewayAPI": {"httpRoute": "checkout"}},
    )
    body["metadata"]["name"] = "checkout.v2"
    assert traffic_base.generated_prefix(Rollout.model_validate(body)) == "herdsman-checkout-v2-"


# --- Argo's Gateway API plugin block ---------------------------------------------------------------------

PLUGIN = "argoproj-labs/gatewayAPI"


def plugin_rollout(config: dict[str, Any]) -> Rollout:
    body = manifest(
        stableService="checkout",
        canaryService="checkout-canary",
        trafficRouting={"plugins": {PLUGIN: config}, "managedRoutes": MANAGED},
    )
    body["metadata"]["uid"] = UID
    return Rollout.model_validate(body)


def test_the_gateway_api_plugin_block_is_carried_by_the_gateway_api_router() -> None:
    kube = world("gatewayAPI")
    other = http_route()
    other["metadata"]["name"] = "checkout-internal"
    kube.put(HTTP_ROUTES, other)
    r = plugin_rollout(
        {
            "httpRoutes": [
                {"name": "checkout", "useHeaderRoutes": True},
                {"name": "checkout-internal"},
            ],
            "namespace": NS,
        }
    )
    assert kind_of(r) == "gatewayAPI"
    router = ROUTERS["gatewayAPI"]
    run(router.apply(kube, r, target(30, HEADER), deadline()))
    held = run(router.observe(kube, r, deadline()))
    assert (held.canary_weight, held.routes) == (30, {"beta-users"})
    for name, rules in (
        ("checkout", ["herdsman-checkout-beta-users", "main", "static"]),
        ("checkout-internal", ["main", "static"]),  # no useHeaderRoutes: weights only
    ):
        route = kube.obj(HTTP_ROUTES, name)
        assert route is not None
        assert [rule["name"] for rule in route["spec"]["rules"]] == rules
        assert [b["weight"] for b in route["spec"]["rules"][-2]["backendRefs"]] == [70, 30]


def test_the_plugin_block_names_what_it_cannot_carry() -> None:
    from herdsman.cli.lint import lint_object

    def errors(routing: dict[str, Any]) -> list[str]:
        body = manifest(stableService="checkout", canaryService="checkout-canary")
        body["spec"]["strategy"]["canary"]["trafficRouting"] = routing
        return [str(e) for e in lint_object(body).errors]

    where = "spec.strategy.canary.trafficRouting.plugins"
    assert errors({"plugins": {"argoproj-labs/contour": {"httpProxy": "x"}}}) == [
        f"{where}: Invalid value: Herdsman runs no traffic router plugins; it carries out"
        f" {PLUGIN} itself (or use the gatewayAPI field), and no other"
    ]
    assert errors({"plugins": {PLUGIN: {"tlsRoute": "x"}}}) == [
        f"{where}[{PLUGIN}].tlsRoute: Forbidden: the gatewayAPI router carries HTTP, gRPC and"
        " TCP routes: use httpRoute(s), grpcRoute(s), tcpRoute(s) and namespace"
    ]
    both = {"gatewayAPI": {"httpRoute": "a"}, "plugins": {PLUGIN: {"httpRoute": "a"}}}
    assert [e.split(": ", 1)[0] for e in errors(both)] == [where]
    assert errors({"plugins": {PLUGIN: {"httpRoute": "checkout", "namespace": "shop"}}}) == []
    # The operator says the same, holding the rollout, rather than failing a pass.
    r = plugin_rollout({"tlsRoute": "x"})
    state = run(ROUTERS["gatewayAPI"].observe(world("gatewayAPI"), r, deadline()))
    assert not state.available
    assert state.message.startswith(f"{where}[{PLUGIN}].tlsRoute")


def test_the_plugin_block_weights_grpc_and_tcp_routes_too() -> None:
    from herdsman.traffic.gatewayapi import GRPC_ROUTES, TCP_ROUTES

    kube = FakeKube(HTTP_ROUTES, GRPC_ROUTES, TCP_ROUTES)
    for path, kind in ((GRPC_ROUTES, "GRPCRoute"), (TCP_ROUTES, "TCPRoute")):
        body = http_route()
        body["kind"] = kind
        for rule in body["spec"]["rules"]:
            rule.pop("matches", None)
        kube.put(path, body)
    r = plugin_rollout({"grpcRoute": "checkout", "tcpRoutes": [{"name": "checkout"}]})
    router = ROUTERS["gatewayAPI"]
    run(router.apply(kube, r, target(40), deadline()))
    assert run(router.observe(kube, r, deadline())).canary_weight == 40
    for path in (GRPC_ROUTES, TCP_ROUTES):
        route = kube.obj(path, "checkout")
        assert route is not None
        assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [60, 40]
    with pytest.raises(RouterError, match="useHeaderRoutes"):
        run(router.apply(kube, r, target(40, HEADER), deadline()))
    missing = run(router.observe(FakeKube(HTTP_ROUTES), r, deadline()))
    assert missing.message.startswith(f"spec.strategy.canary.trafficRouting.plugins[{PLUGIN}]")
    assert "GRPCRoute" in missing.message

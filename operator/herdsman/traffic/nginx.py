"""NGINX Ingress: a canary Ingress generated from the stable one, weighted by annotation.

The user owns the stable Ingress (or each of `stableIngresses`) and the operator never writes
it. While the canary has a weight above 0, the operator keeps an Ingress of its own per stable
one, `<rollout>-<stableIngress>-canary`: the stable Ingress's spec with every backend naming the
stable Service renamed to the canary Service, annotated `<prefix>/canary: "true"` and
`<prefix>/canary-weight: "<w>"` (plus `additionalIngressAnnotations` under the prefix and
`canaryIngressAnnotations` as they are, as in Argo; with `maxTrafficWeight`,
`<prefix>/canary-weight-total` too, so the weight is out of that total as Argo writes it),
owned by the Rollout. At weight 0 — an abort, a completed rollout, a step at 0 — it is
deleted: for ingress-nginx no canary Ingress *is* weight 0, and
nothing is left behind. An Ingress of that name the Rollout does not own is never touched.

Header and mirror routes are not offered: ingress-nginx has one canary-by-header per Ingress and
no mirroring of a share. `additionalIngressAnnotations` reaches its other canary features.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from herdsman.api.rollout import Rollout
from herdsman.api.routing import NginxRouting
from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import JSON_PATCH, Kube, KubeError, Path
from herdsman.engine.world import RouterState, TrafficTarget
from herdsman.traffic import base
from herdsman.traffic.base import RouterError

INGRESSES = Path("networking.k8s.io", "v1", "ingresses")
FIELD = f"{base.FIELD}.nginx.stableIngress"  # or stableIngresses
# Copied from the stable Ingress so the canary is served by the same controller.
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def config(rollout: Rollout) -> NginxRouting:
    routing = base.strategy(rollout).traffic_routing
    if routing is None or routing.nginx is None:
        raise RouterError("not an nginx rollout")
    return routing.nginx


def canary_name(rollout: Rollout, ingress: str) -> str:
    name = f"{rollout.metadata.name}-{ingress}-canary"
    if len(name) > 253:
        name = name[:246].rstrip("-.") + "-canary"
    return name


def _backends(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every backend.service object in an Ingress spec (default backend and rule paths)."""
    found = []
    default = (spec.get("defaultBackend") or {}).get("service")
    if default:
        found.append(default)
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service")
            if service:
                found.append(service)
    return found


def check_stable(stable: dict[str, Any], rollout: Rollout) -> None:
    svc, _ = base.services(rollout)
    if not any(b.get("name") == svc for b in _backends(stable.get("spec") or {})):
        raise RouterError(
            f"{FIELD}: Ingress {stable['metadata']['name']!r} has no backend for the stable"
            f" Service {svc!r}"
        )


def state(stable: dict[str, Any], canary: dict[str, Any] | None, rollout: Rollout) -> RouterState:
    try:
        check_stable(stable, rollout)
    except RouterError as err:
        return RouterState(available=False, message=str(err))
    if canary is None:
        return RouterState(canary_weight=0)
    if not base.owned_by(canary, rollout):
        return RouterState(
            available=False,
            message=f"{FIELD}: Ingress {canary['metadata']['name']!r} exists and is not this"
            " Rollout's; the operator will not take it over",
        )
    prefix = config(rollout).annotation_prefix
    notes = canary["metadata"].get("annotations") or {}
    if notes.get(f"{prefix}/canary") != "true":
        return RouterState(canary_weight=None)
    try:
        return RouterState(canary_weight=int(notes.get(f"{prefix}/canary-weight", "0")))
    except ValueError:
        return RouterState(canary_weight=None)


def canary_annotations(rollout: Rollout, weight: int) -> dict[str, str]:
    """The canary Ingress's own annotations: additionalIngressAnnotations under the prefix
    (unless already under it, as in Argo), canaryIngressAnnotations as they are, then the
    canary and its weight, which nothing overrides."""
    cfg = config(rollout)
    prefix = cfg.annotation_prefix
    notes = {
        (k if k.startswith(prefix) else f"{prefix}/{k}"): v
        for k, v in cfg.additional_ingress_annotations.items()
    }
    notes.update(cfg.canary_ingress_annotations)
    notes[f"{prefix}/canary"] = "true"
    canary = rollout.spec.strategy.canary
    total = canary.max_weight if canary is not None else 100
    notes[f"{prefix}/canary-weight"] = str(max(0, min(total, weight)))
    if total != 100:
        notes[f"{prefix}/canary-weight-total"] = str(total)
    return notes


def desired_canary(stable: dict[str, Any], rollout: Rollout, weight: int) -> dict[str, Any]:
    """The canary Ingress for `weight` (pure: unit tests feed it objects)."""
    check_stable(stable, rollout)
    stable_svc, canary_svc = base.services(rollout)
    spec = copy.deepcopy(stable.get("spec") or {})
    for backend in _backends(spec):
        if backend.get("name") == stable_svc:
            backend["name"] = canary_svc
    notes = canary_annotations(rollout, weight)
    source = stable["metadata"].get("annotations") or {}
    if CLASS_ANNOTATION in source:
        notes[CLASS_ANNOTATION] = source[CLASS_ANNOTATION]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_name(rollout, stable["metadata"]["name"]),
            "namespace": base.namespace(rollout),
            "labels": base.labels(rollout),
            "annotations": notes,
            "ownerReferences": [base.owner_reference(rollout)],
        },
        "spec": spec,
    }


class Nginx:
    kind: ClassVar[str] = "nginx"
    header_routes: ClassVar[bool] = False
    mirror_routes: ClassVar[bool] = False
    baseline_share: ClassVar[bool] = False

    async def observe(self, kube: Kube, rollout: Rollout, deadline: Deadline) -> RouterState:
        ns = base.namespace(rollout)
        weights: set[int | None] = set()
        for name in config(rollout).ingresses:
            stable = await kube.get(INGRESSES.url(ns, name), deadline=deadline)
            if stable is None:
                return RouterState(
                    available=False,
                    message=f"{FIELD}: Ingress {name!r} not found in namespace {ns!r}",
                )
            canary_url = INGRESSES.url(ns, canary_name(rollout, name))
            canary = await kube.get(canary_url, deadline=deadline, ours=True)
            held = state(stable, canary, rollout)
            if not held.available:
                return held
            weights.add(held.canary_weight)
        return RouterState(canary_weight=weights.pop() if len(weights) == 1 else None)

    async def apply(
        self, kube: Kube, rollout: Rollout, target: TrafficTarget, deadline: Deadline
    ) -> None:
        base.refuse_routes(self.kind, target)
        if target.baseline_weight > 0:
            raise RouterError("the nginx router cannot give a baseline group its own share")
        for name in config(rollout).ingresses:
            await self._apply_one(kube, rollout, name, target.canary_weight, deadline)

    async def _apply_one(
        self, kube: Kube, rollout: Rollout, name: str, weight: int, deadline: Deadline
    ) -> None:
        ns = base.namespace(rollout)
        canary = canary_name(rollout, name)
        url = INGRESSES.url(ns, canary)
        current = await kube.get(url, deadline=deadline, ours=True)
        if current is not None and not base.owned_by(current, rollout):
            raise RouterError(f"Ingress {canary!r} is not this Rollout's")
        if weight <= 0:
            if current is not None:
                await kube.delete(url, deadline=deadline)
            return
        stable = await kube.get(INGRESSES.url(ns, name), deadline=deadline)
        if stable is None:
            raise base.gone("Ingress", name)
        want = desired_canary(stable, rollout, weight)
        if current is None:
            try:
                await kube.create(INGRESSES.url(ns), want, deadline=deadline)
            except KubeError as err:
                if not err.conflict:
                    raise
                raise KubeError(409, "Conflict", f"Ingress {canary!r} appeared") from err
            return
        old = {
            "metadata": {
                "labels": current["metadata"].get("labels") or {},
                "annotations": current["metadata"].get("annotations") or {},
            },
            "spec": current.get("spec") or {},
        }
        new = {
            "metadata": {
                # Keep what others (the controller, kubectl) added; ours win on our keys.
                "labels": {**old["metadata"]["labels"], **want["metadata"]["labels"]},
                "annotations": {
                    **old["metadata"]["annotations"],
                    **want["metadata"]["annotations"],
                },
            },
            "spec": want["spec"],
        }
        ops = base.json_patch(old, new)
        if ops:
            guard = {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": current["metadata"]["resourceVersion"],
            }
            await kube.patch(url, [guard, *ops], deadline=deadline, content_type=JSON_PATCH)

"""`kubectl herdsman import NAME`: take a live Argo Rollout over in place.

Nothing is restarted and no pod is ever taken out of service; the takeover is a handful of
metadata writes:

1. the Herdsman Rollout is created with the Argo Rollout's spec (only the apiVersion changes),
   marked `herdsman.dev/import-in-progress` so the operator holds off;
2. its status is carried over: the stable ReplicaSet (Argo's `status.stableRS`) is the stable
   server group, at Argo's revision number;
3. each ReplicaSet the Argo Rollout owns becomes a server group *under its own name* (a new name
   would mean new pods): its running pods get the server-group labels (labels change, pods do
   not restart), then the ReplicaSet gets them on its pod template, the recorded template, and
   the Herdsman Rollout as its only owner — Argo's ownerReference is removed, so uninstalling
   Argo (which deletes its Rollouts) leaves the ReplicaSets and pods alone;
4. each Service the strategy names swaps Argo's `rollouts-pod-template-hash` selector for
   Herdsman's `herdsman.dev/server-group` in one write: the pods carry both, so the Service
   selects the same pods before and after;
5. the mark is removed and the operator carries on from a Healthy rollout.

Every step is idempotent: an import cut short is finished by running it again. A rollout in the
middle of an update (a canary, a preview not yet promoted) is refused: finish or abort it with
Argo first. The Argo Rollout object itself is left as it is (orphaned, owning nothing); stop the
Argo controller before importing, or it recreates ReplicaSets for the Rollout it still sees.
`--dry-run` prints the writes without making them.

`plan()` decides from what was read (pure, unit-tested); `execute()` makes the writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from herdsman.api.base import API_VERSION
from herdsman.api.pod_template import PodTemplate
from herdsman.api.rollout import Rollout
from herdsman.cli.lint import lint_object
from herdsman.cluster.kube import PODS, REPLICA_SETS, ROLLOUTS, SERVICES, KubeError, Path, Rest
from herdsman.naming import (
    ANNOTATION_IMPORTED_FROM,
    ANNOTATION_IMPORTING,
    LABEL_GROUP,
    LABEL_HASH,
    LABEL_KIND,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    MANAGED_BY,
    label_value,
    template_hash,
)

ARGO_ROLLOUTS = Path("argoproj.io", "v1alpha1", "rollouts")
ARGO_API_VERSION = "argoproj.io/v1alpha1"
ARGO_HASH = "rollouts-pod-template-hash"
ARGO_REVISION = "rollout.argoproj.io/revision"
ARGO_SERVICE_OWNER = "argo-rollouts.argoproj.io/managed-by-rollouts"
# The Rollout's pod template as recorded on each server group (herdsman.cluster.apply).
ANNOTATION_TEMPLATE = "herdsman.dev/template"
# Metadata not carried to the new object: the API server's and kubectl's own bookkeeping.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


class ImportRefused(Exception):
    """The Argo Rollout cannot be taken over as it is; the message says why and what to do."""


@dataclass
class AdoptedGroup:
    name: str
    revision: int
    pod_hash: str
    argo_hash: str
    replicas: int
    template: dict[str, Any]
    pods: list[str] = field(default_factory=list)
    stable: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_REVISION: str(self.revision),
            LABEL_HASH: self.pod_hash,
            LABEL_GROUP: label_value(self.name),
            LABEL_KIND: "release",
        }


@dataclass
class ImportPlan:
    namespace: str
    name: str
    manifest: dict[str, Any]
    groups: list[AdoptedGroup]
    services: list[str]
    stable: AdoptedGroup
    steps: int | None

    def status(self, stable_hash: str) -> dict[str, Any]:
        return {
            "stableServerGroup": self.stable.name,
            "stableRevision": self.stable.revision,
            "currentRevision": self.stable.revision,
            "currentPodHash": stable_hash,
            "currentStepIndex": self.steps,
            "message": f"imported from {ARGO_API_VERSION} Rollout {self.name}",
        }


def _owned_by(obj: dict[str, Any], *uids: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") in uids and r.get("controller") for r in refs)


def _manifest(argo: dict[str, Any]) -> dict[str, Any]:
    meta = argo["metadata"]
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in _DROPPED_ANNOTATIONS and not k.startswith("rollout.argoproj.io/")
    }
    annotations[ANNOTATION_IMPORTED_FROM] = f"{ARGO_API_VERSION} Rollout {meta['name']}"
    annotations[ANNOTATION_IMPORTING] = "true"
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
        },
        "spec": copy.deepcopy(argo["spec"]),
    }


def _refuse_mid_update(argo: dict[str, Any]) -> str:
    """The stable hash, if the Argo Rollout is at rest; refuses otherwise."""
    name = argo["metadata"]["name"]
    status = argo.get("status") or {}
    spec = argo.get("spec") or {}
    if spec.get("workloadRef"):
        raise ImportRefused(
            f"rollout {name}: spec.workloadRef is not supported by import yet; "
            "inline the Deployment's template as spec.template in Argo first"
        )
    stable = status.get("stableRS")
    current = status.get("currentPodHash")
    if not stable:
        raise ImportRefused(
            f"rollout {name}: status.stableRS is empty: the Argo Rollout has no stable "
            "ReplicaSet yet (never completed a release); let it finish first"
        )
    if current != stable:
        raise ImportRefused(
            f"rollout {name} is in the middle of an update (status.currentPodHash {current} is "
            f"not status.stableRS {stable}, step {status.get('currentStepIndex', '?')}): "
            "promote it to the end or abort it with Argo, then import"
        )
    bg = status.get("blueGreen") or {}
    if spec.get("strategy", {}).get("blueGreen") is not None and (
        bg.get("activeSelector") not in (None, stable)
        or bg.get("previewSelector") not in (None, stable)
    ):
        raise ImportRefused(
            f"rollout {name} is in the middle of a blue/green update (active "
            f"{bg.get('activeSelector')}, preview {bg.get('previewSelector')}, stable {stable}): "
            "promote or abort it with Argo, then import"
        )
    return str(stable)


def _template_of(rs: dict[str, Any]) -> dict[str, Any]:
    """An older ReplicaSet's pod template as the Rollout would have held it (no Argo hash)."""
    raw = copy.deepcopy(rs["spec"]["template"])
    meta = raw.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != ARGO_HASH}
    labels = {k: v for k, v in labels.items() if not k.startswith("herdsman.dev/")}
    body = {"metadata": {"labels": labels}, "spec": raw.get("spec") or {}}
    if meta.get("annotations"):
        body["metadata"]["annotations"] = meta["annotations"]
    try:
        return PodTemplate.model_validate(body).to_wire()
    except ValidationError:
        return body


def plan(
    argo: dict[str, Any],
    replica_sets: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    resumed_uid: str | None = None,
) -> ImportPlan:
    """What importing `argo` takes: refused (ImportRefused) unless it is at rest and valid.

    `resumed_uid`: the Herdsman Rollout an earlier, interrupted import created; the ReplicaSets
    it already adopted are taken over again (every write is idempotent)."""
    meta = argo["metadata"]
    name, uid = meta["name"], meta.get("uid", "")
    stable_hash = _refuse_mid_update(argo)
    manifest = _manifest(argo)
    checked = lint_object(manifest, source=f"Rollout {name}")
    if checked.errors:
        problems = "; ".join(str(e) for e in checked.errors)
        raise ImportRefused(f"rollout {name}: its spec is not one Herdsman accepts: {problems}")
    rollout = Rollout.model_validate(manifest)
    owners = (uid, resumed_uid) if resumed_uid else (uid,)
    owned = [rs for rs in replica_sets if _owned_by(rs, *owners)]
    groups: list[AdoptedGroup] = []
    for rs in owned:
        rs_meta = rs["metadata"]
        argo_hash = (rs_meta.get("labels") or {}).get(ARGO_HASH, "")
        is_stable = argo_hash == stable_hash
        template = rollout.spec.pod_template if is_stable else _template_of(rs)
        revision = int((rs_meta.get("annotations") or {}).get(ARGO_REVISION, "0") or 0)
        groups.append(
            AdoptedGroup(
                name=rs_meta["name"],
                revision=revision,
                pod_hash=template_hash(template),
                argo_hash=argo_hash,
                replicas=int(rs["spec"].get("replicas", 0) or 0),
                template=template,
                pods=sorted(
                    p["metadata"]["name"]
                    for p in pods
                    if _owned_by(p, rs_meta.get("uid", ""))
                    and not p["metadata"].get("deletionTimestamp")
                ),
                stable=is_stable,
            )
        )
    stable = next((g for g in groups if g.stable), None)
    if stable is None:
        raise ImportRefused(
            f"rollout {name}: no ReplicaSet it owns carries {ARGO_HASH}={stable_hash} "
            "(status.stableRS): nothing to take over"
        )
    # Revisions must be distinct and positive: they order the groups and name new ones.
    used: set[int] = set()
    for g in sorted(groups, key=lambda g: (g.revision <= 0, g.revision)):
        if g.revision <= 0 or g.revision in used:
            g.revision = max(used | {0}) + 1
        used.add(g.revision)
    strategy = argo["spec"].get("strategy") or {}
    canary, bg = strategy.get("canary") or {}, strategy.get("blueGreen") or {}
    services = [
        s
        for s in (
            canary.get("stableService"),
            canary.get("canaryService"),
            bg.get("activeService"),
            bg.get("previewService"),
        )
        if s
    ]
    steps = len(canary.get("steps") or []) if canary.get("steps") else None
    groups.sort(key=lambda g: g.revision, reverse=True)
    return ImportPlan(
        namespace=meta.get("namespace") or "default",
        name=name,
        manifest=manifest,
        groups=groups,
        services=sorted(set(services)),
        stable=stable,
        steps=steps,
    )


def describe(p: ImportPlan) -> list[str]:
    """The writes `execute` makes, one line each, for --dry-run and the log."""
    lines = [
        f"create rollouts.herdsman.dev/{p.name} with the Argo Rollout's spec"
        " (held by herdsman.dev/import-in-progress)",
        f"carry status over: stable server group {p.stable.name} (revision {p.stable.revision})",
    ]
    for g in p.groups:
        role = "stable" if g.stable else "old"
        lines.append(
            f"adopt ReplicaSet {g.name} as server group revision {g.revision} ({role},"
            f" {g.replicas} replicas): label its {len(g.pods)} running pods (no restart),"
            " then replace the Argo Rollout's ownerReference with the Herdsman Rollout's"
        )
    for svc in p.services:
        lines.append(
            f"Service {svc}: selector {ARGO_HASH}={p.stable.argo_hash} ->"
            f" {LABEL_GROUP}={label_value(p.stable.name)} (the same pods)"
        )
    lines.append(
        f"release the hold: the operator takes over; argoproj.io Rollout {p.name} is left"
        " in place, owning nothing"
    )
    return lines


def _owner(rollout: dict[str, Any]) -> dict[str, Any]:
    meta = rollout["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def read(rest: Rest, namespace: str, name: str) -> ImportPlan:
    argo = rest.get(ARGO_ROLLOUTS.url(namespace, name))
    if argo is None:
        raise ImportRefused(f"{ARGO_API_VERSION} Rollout {namespace}/{name} not found")
    replica_sets = rest.list(REPLICA_SETS.url(namespace))
    pods = rest.list(PODS.url(namespace))
    ours = rest.get(ROLLOUTS.url(namespace, name))
    resumed = None
    if ours is not None and ANNOTATION_IMPORTED_FROM in (ours["metadata"].get("annotations") or {}):
        resumed = str(ours["metadata"]["uid"])
    return plan(argo, replica_sets, pods, resumed_uid=resumed)


def execute(rest: Rest, p: ImportPlan, say: Callable[[str], None]) -> None:
    ns = p.namespace
    existing = rest.get(ROLLOUTS.url(ns, p.name))
    if existing is None:
        created = rest.create(ROLLOUTS.url(ns), p.manifest)
        say(f"created rollouts.herdsman.dev/{p.name} (held)")
    else:
        origin = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_IMPORTED_FROM)
        if origin is None:
            raise ImportRefused(
                f"a Herdsman Rollout {ns}/{p.name} already exists and was not imported: "
                "delete it or import under another namespace"
            )
        created = existing
        say(f"rollouts.herdsman.dev/{p.name} exists from an earlier import: resuming")
    # The hash the operator computes comes from the Rollout as stored: take it from there.
    stable_hash = template_hash(Rollout.from_body(created).spec.pod_template)
    p.stable.pod_hash = stable_hash
    p.stable.template = Rollout.from_body(created).spec.pod_template
    rest.patch(ROLLOUTS.url(ns, p.name, "status"), {"status": p.status(stable_hash)})
    say(f"status: stable server group {p.stable.name}, revision {p.stable.revision}")
    owner = _owner(created)
    for g in p.groups:
        ours = {LABEL_ROLLOUT: label_value(p.name), **g.labels}
        # Pods first: once the template changes, new pods are born with the labels anyway.
        for pod in g.pods:
            try:
                rest.patch(PODS.url(ns, pod), {"metadata": {"labels": ours}})
            except KubeError as err:
                if not err.not_found:
                    raise
        rest.patch(
            REPLICA_SETS.url(ns, g.name),
            {
                "metadata": {
                    "labels": {**ours, LABEL_MANAGED: MANAGED_BY},
                    "annotations": {
                        ANNOTATION_TEMPLATE: json.dumps(
                            g.template, sort_keys=True, separators=(",", ":")
                        )
                    },
                    # A merge patch replaces the list: Argo's reference goes, ours is the only one.
                    "ownerReferences": [owner],
                },
                "spec": {"template": {"metadata": {"labels": ours}}},
            },
        )
        say(f"adopted ReplicaSet {g.name} as revision {g.revision} ({len(g.pods)} pods labelled)")
    for svc in p.services:
        try:
            rest.patch(
                SERVICES.url(ns, svc),
                {
                    "metadata": {"annotations": {ARGO_SERVICE_OWNER: None}},
                    "spec": {
                        "selector": {ARGO_HASH: None, LABEL_GROUP: label_value(p.stable.name)}
                    },
                },
            )
        except KubeError as err:
            if not err.not_found:
                raise
            say(f"Service {svc} not found: the operator reports it (InvalidSpec)")
            continue
        say(f"Service {svc} now selects {LABEL_GROUP}={label_value(p.stable.name)}")
    rest.patch(
        ROLLOUTS.url(ns, p.name), {"metadata": {"annotations": {ANNOTATION_IMPORTING: None}}}
    )
    say(
        f"rollout {ns}/{p.name}: imported; the Herdsman operator takes over"
        f" ({ARGO_API_VERSION} Rollout {p.name} is left in place, owning nothing)"
    )

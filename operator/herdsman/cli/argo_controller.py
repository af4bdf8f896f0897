"""Is an Argo Rollouts controller running? `kubectl herdsman import` asks before taking over.

Both controllers would act on the same pods: Argo's, still seeing its Rollout, recreates the
ReplicaSets Herdsman just adopted and rewrites the Services' selectors. So an import refuses
while one runs (or, with --force, goes ahead under a loud warning).

The evidence, each read the way Argo's own manifests lay the controller out:
- a Deployment or running Pod labelled `app.kubernetes.io/name=argo-rollouts` (install.yaml and
  the Helm chart both), other than the dashboard (`app.kubernetes.io/component:
  rollouts-dashboard`), with pods asked for or up;
- Argo's leader-election Lease, `argo-rollouts-controller-lock`, renewed within the last two
  minutes, in the namespace of anything found above, `argo-rollouts`, or the Rollout's own.

`evidence()` decides from what was read (pure); `detect()` reads. A read the user may not make
(403) is reported as unchecked, never as "no controller".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from herdsman.cluster.kube import DEPLOYMENTS, PODS, KubeError, Path, Rest

LEASES = Path("coordination.k8s.io", "v1", "leases")
SELECTOR = "app.kubernetes.io/name=argo-rollouts"
COMPONENT = "app.kubernetes.io/component"
DASHBOARD = "rollouts-dashboard"
LEASE_NAME = "argo-rollouts-controller-lock"
# Argo's leader election renews every few seconds (lease 15s); two minutes of silence is a
# controller that is gone, not one between renewals.
LEASE_FRESH = timedelta(minutes=2)
DEFAULT_NAMESPACE = "argo-rollouts"


def _where(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _controller(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT) != DASHBOARD


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def evidence(
    deployments: Iterable[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    leases: Iterable[dict[str, Any]],
    now: datetime,
) -> list[str]:
    """What shows an Argo Rollouts controller running, one line each; empty: nothing does."""
    found: list[str] = []
    for d in deployments:
        if not _controller(d):
            continue
        wanted = (d.get("spec") or {}).get("replicas", 1)
        ready = (d.get("status") or {}).get("readyReplicas", 0) or 0
        if wanted or ready:
            found.append(f"Deployment {_where(d)} ({ready}/{wanted} ready)")
    if not found:
        # A controller run some other way (a bare Pod, a StatefulSet): its pods say so.
        for p in pods:
            if _controller(p) and (p.get("status") or {}).get("phase") == "Running":
                found.append(f"Pod {_where(p)} running")
    for lease in leases:
        spec = lease.get("spec") or {}
        renewed = _time(spec.get("renewTime")) or _time(spec.get("acquireTime"))
        if renewed is not None and now - renewed <= LEASE_FRESH:
            ago = int((now - renewed).total_seconds())
            holder = spec.get("holderIdentity") or "?"
            found.append(f"Lease {_where(lease)} renewed {ago}s ago by {holder}")
    return found


def detect(rest: Rest, namespace: str, now: datetime) -> tuple[list[str], list[str]]:
    """(evidence of a running controller, reads that were not allowed)."""
    unchecked: list[str] = []
    deployments: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    try:
        deployments = rest.list(DEPLOYMENTS.url(), labels=SELECTOR)
        pods = rest.list(PODS.url(), labels=SELECTOR)
    except KubeError as err:
        if err.status not in (401, 403):
            raise
        unchecked.append(f"Deployments and Pods labelled {SELECTOR} in all namespaces")
    spaces = {DEFAULT_NAMESPACE, namespace}
    spaces |= {(o.get("metadata") or {}).get("namespace", "") for o in (*deployments, *pods)}
    leases: list[dict[str, Any]] = []
    for ns in sorted(s for s in spaces if s):
        try:
            lease = rest.get(LEASES.url(ns, LEASE_NAME))
        except KubeError as err:
            if err.status not in (401, 403):
                raise
            unchecked.append(f"Lease {ns}/{LEASE_NAME}")
            continue
        if lease is not None:
            leases.append(lease)
    return evidence(deployments, pods, leases, now), unchecked

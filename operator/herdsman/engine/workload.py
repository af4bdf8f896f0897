"""`spec.workloadRef`: a Deployment as the template source, with Argo's semantics.

Pure functions, no I/O: the cluster layer reads the Deployment and hands its body in.

- `resolve` fills a Rollout's template (and selector, when the Rollout has none) from the
  Deployment, every pass: a change to the Deployment's template is a new revision, exactly as an
  edit of `spec.template` is. Anything in the way is a problem for `InvalidSpec`, naming the field.
- `deployment_replicas` is what the Deployment should be scaled to, per `scaleDown`:
  `never` (and absent, Argo's default) leaves it alone; `onsuccess` scales it to zero once the
  Rollout is Healthy; `progressively` shrinks it by the Rollout's available pods, and returns it
  to `spec.replicas` when the rollout aborts or degrades, so capacity never drops.

Removing the Rollout never touches the Deployment: it is not owned by the Rollout, so the garbage
collector leaves it. With `never` it kept its pods all along; otherwise the user scales it back
up (`kubectl scale deployment/NAME --replicas=N`) before deleting the Rollout, as Argo documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from herdsman.api.base import LabelSelector
from herdsman.api.pod_template import PodTemplate
from herdsman.api.rollout import Rollout, RolloutStatus


def _errors(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)
    )


def resolve(rollout: Rollout, deployment: dict[str, Any] | None) -> tuple[Rollout, list[str]]:
    """The Rollout as the engine sees it (template filled in), and what stops that."""
    ref = rollout.spec.workload_ref
    if ref is None:
        return rollout, []
    if deployment is None:
        return rollout, [f"spec.workloadRef.name: Deployment {ref.name!r} not found"]
    template = rollout.spec.template
    if template is not None and (template.metadata.labels or template.metadata.annotations):
        # Argo's rule too: two template sources would disagree on what a revision is.
        return rollout, [
            "spec.template: must be empty for a workloadRef rollout (the pod template is"
            f" Deployment {ref.name!r}'s)"
        ]
    dep_spec = deployment.get("spec") or {}
    raw = dep_spec.get("template") or {}
    meta = raw.get("metadata") or {}
    # Only what a revision is made of: the API server adds e.g. creationTimestamp: null.
    wanted = {
        "metadata": {k: meta[k] for k in ("labels", "annotations") if meta.get(k)},
        "spec": raw.get("spec"),
    }
    try:
        resolved = PodTemplate.model_validate(wanted)
    except ValidationError as err:
        return rollout, [
            f"spec.workloadRef.name: Deployment {ref.name!r}: template: {_errors(err)}"
        ]
    if resolved.spec is None:
        return rollout, [f"spec.workloadRef.name: Deployment {ref.name!r} has no pod spec"]
    selector = rollout.spec.selector
    if selector is None:
        try:
            selector = LabelSelector.model_validate(dep_spec.get("selector") or {})
        except ValidationError as err:
            return rollout, [
                f"spec.workloadRef.name: Deployment {ref.name!r}: selector: {_errors(err)}"
            ]
    labels = resolved.metadata.labels
    if selector.empty or not selector.matches(labels):
        # Argo's rule: the ReplicaSets made from this template would be refused otherwise.
        return rollout, [
            f"spec.selector: `selector` does not match template `labels` of Deployment"
            f" {ref.name!r} ({str(selector) or 'empty selector'})"
        ]
    spec = rollout.spec.model_copy(update={"template": resolved, "selector": selector})
    return rollout.model_copy(update={"spec": spec}), []


def deployment_replicas(rollout: Rollout, status: RolloutStatus, current: int | None) -> int | None:
    """What the referenced Deployment should be scaled to now; None: leave it as it is.

    `status` is the status the pass just decided; `current` the Deployment's spec.replicas.
    """
    ref = rollout.spec.workload_ref
    if ref is None or current is None or ref.scale_down in (None, "never"):
        return None
    failed = status.abort or status.aborted_at is not None or status.phase == "Degraded"
    if ref.scale_down == "onsuccess":
        # Argo: scaled down once the Rollout is healthy; an abort later does not bring it back.
        return 0 if status.phase == "Healthy" and current != 0 else None
    # progressively
    if failed:
        wanted = max(current, rollout.spec.replicas)
    else:
        wanted = max(0, rollout.spec.replicas - status.available_replicas)
        # Only ever down while progressing: a pod lost on the Rollout's side is not a reason to
        # start Deployment pods (the Rollout replaces its own).
        wanted = min(wanted, current)
    return wanted if wanted != current else None

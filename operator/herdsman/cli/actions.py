"""What `kubectl herdsman <verb>` writes: small patches that state an intent.

The operator stays the only state machine. A verb never moves a step or a weight itself; it
records what the user wants (`status.promote`, `status.abort`, `spec.paused`, a new
`spec.template`) and the next reconcile acts on it. Patches touch only the fields they mean to.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from herdsman.cluster.apply import ANNOTATION_TEMPLATE
from herdsman.cluster.kube import (
    ANALYSIS_RUNS,
    DEPLOYMENTS,
    JSON_PATCH,
    REPLICA_SETS,
    ROLLOUTS,
    KubeError,
    Rest,
)
from herdsman.naming import LABEL_KIND, LABEL_REVISION, LABEL_ROLLOUT, label_value


class ActionError(Exception):
    """The request cannot be made as asked; the message says why, for a person."""


def _status(rest: Rest, ns: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    return rest.patch(ROLLOUTS.url(ns, name, "status"), {"status": status})


def _spec(rest: Rest, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return rest.patch(ROLLOUTS.url(ns, name), {"spec": spec})


def get(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    body = rest.get(ROLLOUTS.url(ns, name))
    if body is None:
        raise ActionError(f"rollout {ns}/{name} not found")
    return body


def analysis_run(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    body = rest.get(ANALYSIS_RUNS.url(ns, name))
    if body is None:
        raise ActionError(f"analysisrun {ns}/{name} not found")
    return body


def analysis_runs(rest: Rest, ns: str, rollout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs a rollout's `status.analysisRuns` names, by name; runs already gone are left out."""
    found: dict[str, dict[str, Any]] = {}
    for ref in (rollout.get("status") or {}).get("analysisRuns") or []:
        name = ref.get("name") if isinstance(ref, dict) else None
        if isinstance(name, str) and name not in found:
            body = rest.get(ANALYSIS_RUNS.url(ns, name))
            if body is not None:
                found[name] = body
    return found


def latest_analysis_run(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    """The rollout's most recently created run among those its status lists.

    The list is rewritten in reconcile order, not creation order, so its last entry is not
    necessarily the newest run: the runs' own creation times decide, the later step on a tie.
    """
    body = get(rest, ns, name)
    refs = [r for r in (body.get("status") or {}).get("analysisRuns") or [] if isinstance(r, dict)]
    runs = analysis_runs(rest, ns, body)
    if not runs:
        what = "lists no analysis run" if not refs else "lists only analysis runs that are gone"
        raise ActionError(f"rollout {ns}/{name} {what}")
    steps = {r.get("name"): r.get("stepIndex") for r in refs}

    def created(item: tuple[int, str]) -> tuple[str, int, int]:
        position, run = item
        step = steps.get(run)
        stamp = (runs[run].get("metadata") or {}).get("creationTimestamp") or ""
        return (str(stamp), step if isinstance(step, int) else -1, position)

    _, newest = max(enumerate(runs), key=created)
    return runs[newest]


def promote(rest: Rest, ns: str, name: str, *, full: bool = False) -> dict[str, Any]:
    """Leave the current step (or every remaining one with `full`).

    The request names the step the user saw, so a double click cannot skip two steps: a request
    for a step the rollout already left is dropped by the operator.
    """
    body = get(rest, ns, name)
    step = (body.get("status") or {}).get("currentStepIndex")
    return _status(rest, ns, name, {"promote": {"fromStep": step, "full": full}})


def abort(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    return _status(rest, ns, name, {"abort": True})


def retry(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    body = get(rest, ns, name)
    if not (body.get("status") or {}).get("abort"):
        raise ActionError(f"rollout {ns}/{name} is not aborted: nothing to retry")
    return _status(rest, ns, name, {"abort": False})


def pause(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    return _spec(rest, ns, name, {"paused": True})


def resume(rest: Rest, ns: str, name: str) -> dict[str, Any]:
    return _spec(rest, ns, name, {"paused": False})


def restart(rest: Rest, ns: str, name: str, *, at: datetime | None = None) -> dict[str, Any]:
    when = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _spec(rest, ns, name, {"restartAt": when})


def template_home(rest: Rest, ns: str, name: str) -> tuple[str | None, dict[str, Any]]:
    """Where the rollout's pod template lives: (None, the Rollout) — or, with
    `spec.workloadRef`, (the Deployment's name, the Deployment) it follows: the Rollout's own
    template is empty then (a second template source is refused), and an edit of the
    Deployment's is a new revision the next reconcile rolls out, as Argo's workloadRef does."""
    body = get(rest, ns, name)
    ref = (body.get("spec") or {}).get("workloadRef")
    if not ref:
        return None, body
    deployment = rest.get(DEPLOYMENTS.url(ns, ref["name"]))
    if deployment is None:
        raise ActionError(
            f"rollout {ns}/{name}: spec.workloadRef.name: Deployment {ref['name']!r} not found;"
            " its pod template is the rollout's"
        )
    return str(ref["name"]), deployment


def set_image(rest: Rest, ns: str, name: str, container: str, image: str) -> dict[str, Any]:
    followed, body = template_home(rest, ns, name)
    url = DEPLOYMENTS.url(ns, followed) if followed else ROLLOUTS.url(ns, name)
    containers = body["spec"]["template"]["spec"]["containers"]
    i = next((i for i, c in enumerate(containers) if container in (c.get("name"), "*")), None)
    if i is None:
        names = ", ".join(c.get("name", "?") for c in containers)
        raise ActionError(f"no container {container!r} in {ns}/{name} (has: {names})")
    ops = [
        {
            "op": "test",
            "path": f"/spec/template/spec/containers/{i}/name",
            "value": containers[i]["name"],
        },
        {"op": "replace", "path": f"/spec/template/spec/containers/{i}/image", "value": image},
    ]
    return rest.patch(url, ops, content_type=JSON_PATCH)


def set_images(rest: Rest, ns: str, name: str, images: dict[str, str]) -> dict[str, str]:
    """Several containers' images in one patch, so the change is one revision, not several.

    `*` as the container name sets every container. Returns container -> image as changed.
    With `spec.workloadRef` the Deployment's template is the one changed (`template_home`).
    """
    followed, body = template_home(rest, ns, name)
    url = DEPLOYMENTS.url(ns, followed) if followed else ROLLOUTS.url(ns, name)
    containers = body["spec"]["template"]["spec"]["containers"]
    names = [c.get("name", "?") for c in containers]
    wanted: dict[int, str] = {}
    for container, image in images.items():
        hits = [i for i, n in enumerate(names) if container in (n, "*")]
        if not hits:
            raise ActionError(
                f"no container {container!r} in {ns}/{name} (has: {', '.join(names)})"
            )
        for i in hits:
            wanted[i] = image
    ops: list[dict[str, Any]] = []
    for i, image in sorted(wanted.items()):
        # The test guards against the list having changed between our read and this write.
        ops.append(
            {"op": "test", "path": f"/spec/template/spec/containers/{i}/name", "value": names[i]}
        )
        ops.append(
            {"op": "replace", "path": f"/spec/template/spec/containers/{i}/image", "value": image}
        )
    rest.patch(url, ops, content_type=JSON_PATCH)
    return {names[i]: image for i, image in sorted(wanted.items())}


def revisions(rest: Rest, ns: str, name: str) -> dict[int, dict[str, Any]]:
    """Revision number -> the pod template exactly as the user wrote it, for each kept group."""
    found: dict[int, dict[str, Any]] = {}
    for rs in rest.list(REPLICA_SETS.url(ns), labels=f"{LABEL_ROLLOUT}={label_value(name)}"):
        meta = rs["metadata"]
        if meta.get("labels", {}).get(LABEL_KIND, "release") != "release":
            continue
        text = (meta.get("annotations") or {}).get(ANNOTATION_TEMPLATE)
        if text:
            found[int(meta["labels"][LABEL_REVISION])] = json.loads(text)
    return found


def undo(rest: Rest, ns: str, name: str, *, to_revision: int | None = None) -> int:
    """Put an earlier revision's template back; its group is reused when it still exists.

    Without `to_revision`: the revision before the current one. Returns the revision chosen.
    """
    body = get(rest, ns, name)
    status = body.get("status") or {}
    current = status.get("currentRevision")
    kept = revisions(rest, ns, name)
    if to_revision is None:
        older = [r for r in kept if current is None or r < current]
        if not older:
            raise ActionError(f"rollout {ns}/{name} has no earlier revision to go back to")
        to_revision = max(older)
    if to_revision not in kept:
        have = ", ".join(str(r) for r in sorted(kept)) or "none"
        raise ActionError(f"revision {to_revision} of {ns}/{name} is not kept (kept: {have})")
    if to_revision == current:
        raise ActionError(f"revision {to_revision} is already the current one")
    # The guard is the generation, not the resourceVersion: the choice above is only stale if
    # the spec changed, and the operator's status writes (which bump resourceVersion, often
    # while a canary is paused) would otherwise fail the patch at random.
    # With workloadRef the template goes back into the Deployment the rollout follows.
    followed, home = template_home(rest, ns, name)
    url = DEPLOYMENTS.url(ns, followed) if followed else ROLLOUTS.url(ns, name)
    ops = [
        {"op": "test", "path": "/metadata/generation", "value": home["metadata"]["generation"]},
        {"op": "replace", "path": "/spec/template", "value": kept[to_revision]},
    ]
    try:
        rest.patch(url, ops, content_type=JSON_PATCH)
    except KubeError as err:
        if err.status != 422:
            raise
        raise ActionError(
            f"rollout {ns}/{name} was edited while undoing; nothing was changed: run undo again"
        ) from None
    return to_revision

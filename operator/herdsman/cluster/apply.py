"""Apply a Decision: the fewest writes that reach it, in an order that is safe to interrupt.

Order (each step idempotent, so a crash between any two is repaired by the next pass):
1. traffic back to stable first when the decision says so (abort, failed analysis);
2. create missing server groups, then grow the ones that grow;
3. move service selectors and router weights (towards pods that exist and are ready);
4. shrink, then delete old groups; delete pods for a restart;
5. create / terminate analysis runs and experiments;
6. the Rollout's status, guarded by resourceVersion — a conflict means someone (a user's
   promote, an HPA) changed the object, and the whole pass is redone on fresh data.
Events and log lines are emitted only after the status write succeeded, so each transition is
announced exactly once (the Events are queued, and sent apart from the pass: cluster/events.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from herdsman.api.base import API_VERSION
from herdsman.api.rollout import Rollout
from herdsman.cluster.budget import Deadline
from herdsman.cluster.events import EventSender
from herdsman.cluster.kube import (
    ANALYSIS_RUNS,
    PODS,
    REPLICA_SETS,
    ROLLOUTS,
    SERVICES,
    Kube,
    KubeError,
)
from herdsman.cluster.observe import Observed
from herdsman.engine.world import Decision, NewAnalysisRun, NewGroup, Transition
from herdsman.naming import (
    LABEL_GROUP,
    LABEL_HASH,
    LABEL_KIND,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    MANAGED_BY,
    PREFIX,
    label_value,
)

log = logging.getLogger("herdsman.apply")

ANNOTATION_TEMPLATE = f"{PREFIX}/template"

# Builds the AnalysisRun object for a request (the analysis package knows templates and args).
RunBuilder = Callable[[Rollout, NewAnalysisRun, Observed], Awaitable[dict[str, Any]]]
# Writes router weights; None in replica-ratio mode.
TrafficWriter = Callable[[Rollout, Decision, Deadline], Awaitable[None]]
# Creates and terminates experiment steps' Experiments (herdsman.cluster.experiment_step).
ExperimentWriter = Callable[[Rollout, Decision, Observed, Deadline], Awaitable[None]]


def owner_reference(rollout: Rollout) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replica_set(rollout: Rollout, group: NewGroup, template: dict[str, Any]) -> dict[str, Any]:
    """A server group: the user's template plus our labels, never to be changed again. Names
    go into labels as label_value()s: a long rollout's group keeps its whole name."""
    ours = {
        LABEL_ROLLOUT: label_value(rollout.metadata.name),
        LABEL_REVISION: str(group.revision),
        LABEL_HASH: group.pod_hash,
        LABEL_GROUP: label_value(group.name),
        LABEL_KIND: group.kind,
    }
    meta = template.get("metadata") or {}
    pod_labels = {**(meta.get("labels") or {}), **ours}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": group.name,
            "namespace": rollout.metadata.namespace,
            "labels": {**ours, LABEL_MANAGED: MANAGED_BY},
            "annotations": {
                ANNOTATION_TEMPLATE: json.dumps(template, sort_keys=True, separators=(",", ":"))
            },
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "replicas": group.replicas,
            "minReadySeconds": rollout.spec.min_ready_seconds,
            "selector": _group_selector(rollout, group.name),
            "template": {
                "metadata": {"labels": pod_labels, "annotations": meta.get("annotations") or {}},
                "spec": template["spec"],
            },
        },
    }


def _group_selector(rollout: Rollout, group: str) -> dict[str, Any]:
    """The rollout's selector (matchLabels and matchExpressions) narrowed to one group."""
    selector = rollout.spec.selector_wire
    narrowed = {**selector.get("matchLabels", {}), LABEL_GROUP: label_value(group)}
    return {**selector, "matchLabels": narrowed}


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 patch turning `old` into `new`: removed keys become null, lists are replaced."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


class Applier:
    def __init__(
        self,
        kube: Kube,
        *,
        build_run: RunBuilder | None = None,
        write_traffic: TrafficWriter | None = None,
        announce: Callable[[Rollout, Decision, Transition], None] | None = None,
        write_experiments: ExperimentWriter | None = None,
        events: EventSender,
        shard_labels: Callable[[Rollout], Mapping[str, str]] | None = None,
    ) -> None:
        self.kube = kube
        # Sharded: the owner's shard on every group and run created (sharding.py's
        # LABEL_OWNER_SHARD), so that only its shard's holder watches them.
        self.shard_labels = shard_labels
        self.events = events
        self.write_experiments = write_experiments
        self.build_run = build_run
        self.write_traffic = write_traffic
        self.announce = announce

    async def apply(
        self,
        rollout: Rollout,
        raw_status: dict[str, Any],
        decision: Decision,
        observed: Observed,
        deadline: Deadline,
    ) -> bool:
        """Returns False when the status write lost a race; the caller redoes the pass."""
        d = decision.desired
        ns = rollout.metadata.namespace or "default"
        current = {g.name: g.replicas for g in observed.world.groups}

        if d.traffic_first:
            await self._traffic(rollout, decision, deadline)
            await self._selectors(ns, d.selectors, deadline)
            for name, size in d.scale.items():
                if size < current.get(name, 0):
                    await self._scale(ns, name, size, deadline)
        # The measurements this pass took (and that this decision acted on) are recorded now.
        await self._run_statuses(ns, observed, deadline)

        for group in d.create_groups:
            await self._create_group(rollout, group, observed, deadline)
        for name, size in d.scale.items():
            if size > current.get(name, 0):
                await self._scale(ns, name, size, deadline)

        if not d.traffic_first:
            await self._selectors(ns, d.selectors, deadline)
            await self._traffic(rollout, decision, deadline)
            for name, size in d.scale.items():
                if size < current.get(name, 0):
                    await self._scale(ns, name, size, deadline)

        for name in d.delete_groups:
            await self.kube.delete(REPLICA_SETS.url(ns, name), deadline=deadline)
        for pod in d.delete_pods:
            await self.kube.delete(PODS.url(ns, pod), deadline=deadline)

        for run in d.create_runs:
            await self._create_run(rollout, run, observed, deadline)
        for name in d.terminate_runs:
            try:
                await self.kube.patch(
                    ANALYSIS_RUNS.url(ns, name), {"spec": {"terminate": True}}, deadline=deadline
                )
            except KubeError as err:
                if not err.not_found:
                    raise
        if self.write_experiments is not None and (d.create_experiments or d.terminate_experiments):
            await self.write_experiments(rollout, decision, observed, deadline)

        new_status = decision.status.to_wire()
        if new_status != raw_status:
            patch = {
                "metadata": {"resourceVersion": rollout.metadata.resource_version},
                "status": merge_patch(raw_status, new_status),
            }
            try:
                await self.kube.patch(
                    ROLLOUTS.url(ns, rollout.metadata.name, "status"), patch, deadline=deadline
                )
            except KubeError as err:
                if err.conflict or err.not_found:
                    return False
                raise
        for transition in decision.transitions:
            if self.announce is not None:
                self.announce(rollout, decision, transition)
            self._event(rollout, transition)
        return True

    # --- pieces ---------------------------------------------------------------------------------

    def _labelled(self, rollout: Rollout, body: dict[str, Any]) -> dict[str, Any]:
        if self.shard_labels is not None:
            meta = body.setdefault("metadata", {})
            meta["labels"] = {**(meta.get("labels") or {}), **self.shard_labels(rollout)}
        return body

    async def _create_group(
        self, rollout: Rollout, group: NewGroup, observed: Observed, deadline: Deadline
    ) -> None:
        template = group.template
        if group.kind == "baseline":
            # A baseline is a fresh copy of the stable version: its template, not the rollout's.
            source = next(
                (
                    rs
                    for rs in observed.replica_sets.values()
                    if rs["metadata"]["labels"].get(LABEL_HASH) == group.pod_hash
                    and rs["metadata"]["labels"].get(LABEL_KIND, "release") == "release"
                ),
                None,
            )
            if source is None or ANNOTATION_TEMPLATE not in source["metadata"].get(
                "annotations", {}
            ):
                log.warning("no template for baseline %s: stable group not found", group.name)
                return
            template = json.loads(source["metadata"]["annotations"][ANNOTATION_TEMPLATE])
        body = self._labelled(rollout, replica_set(rollout, group, template))
        try:
            await self.kube.create(
                REPLICA_SETS.url(rollout.metadata.namespace), body, deadline=deadline
            )
        except KubeError as err:
            if not err.conflict:
                raise
            # Created by an earlier, interrupted pass: it has the same name, hence the same content.

    async def _scale(self, ns: str, name: str, size: int, deadline: Deadline) -> None:
        await self.kube.patch(
            REPLICA_SETS.url(ns, name), {"spec": {"replicas": size}}, deadline=deadline
        )

    async def _selectors(self, ns: str, selectors: dict[str, str], deadline: Deadline) -> None:
        for svc, group in selectors.items():
            # A merge patch adds our one key and leaves the user's selector keys alone.
            await self.kube.patch(
                SERVICES.url(ns, svc),
                {"spec": {"selector": {LABEL_GROUP: label_value(group)}}},
                deadline=deadline,
            )

    async def _traffic(self, rollout: Rollout, decision: Decision, deadline: Deadline) -> None:
        if decision.desired.traffic is not None and self.write_traffic is not None:
            await self.write_traffic(rollout, decision, deadline)

    async def _run_statuses(self, ns: str, observed: Observed, deadline: Deadline) -> None:
        for name, status in observed.run_updates.items():
            old = (observed.runs.get(name) or {}).get("status") or {}
            new = status.to_wire()
            if new == old:
                continue
            try:
                await self.kube.patch(
                    ANALYSIS_RUNS.url(ns, name, "status"),
                    {"status": merge_patch(old, new)},
                    deadline=deadline,
                )
            except KubeError as err:
                if not err.not_found:
                    raise

    async def _create_run(
        self, rollout: Rollout, run: NewAnalysisRun, observed: Observed, deadline: Deadline
    ) -> None:
        if self.build_run is None:
            return
        body = self._labelled(rollout, await self.build_run(rollout, run, observed))
        # A run that could not be built comes with its Error status: the API server ignores
        # status on create, so it is written right after (a repeat finds the run and skips it).
        status = body.pop("status", None)
        try:
            await self.kube.create(
                ANALYSIS_RUNS.url(rollout.metadata.namespace), body, deadline=deadline
            )
        except KubeError as err:
            if not err.conflict:
                raise
            return
        if status:
            await self.kube.patch(
                ANALYSIS_RUNS.url(rollout.metadata.namespace, run.name, "status"),
                {"status": status},
                deadline=deadline,
            )

    def _event(self, rollout: Rollout, transition: Transition) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = rollout.metadata.namespace
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{rollout.metadata.name}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "Rollout",
                "name": rollout.metadata.name,
                "namespace": ns,
                "uid": rollout.metadata.uid,
                "resourceVersion": rollout.metadata.resource_version,
            },
            "reason": transition.reason,
            "message": transition.message[:1024],
            "type": "Warning" if transition.warning else "Normal",
            "source": {"component": "herdsman"},
            "reportingComponent": "herdsman.dev/operator",
            "reportingInstance": "herdsman",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.events.emit(ns or "default", rollout.metadata.name, body)

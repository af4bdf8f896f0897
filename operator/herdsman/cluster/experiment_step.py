"""A Rollout's experiment steps, the doing side: build the step's Experiment, terminate those
that no longer decide anything.

The step's templates name a pod spec by role (`specRef: stable | canary`): the canary's is the
Rollout's template, the stable one is read from the stable server group's recorded template —
the same source a baseline group is made from. `podTemplateHashValue` arguments become literal
values here (the hash of the stable or the new server group), so the Experiment on its own has
everything it needs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from herdsman.api.base import API_VERSION
from herdsman.api.experiment_step import ExperimentAnalysis, RolloutExperimentTemplate
from herdsman.api.rollout import Rollout
from herdsman.cluster.budget import Deadline
from herdsman.cluster.experiment_paths import (
    EXPERIMENTS,
    LABEL_ATTEMPT,
    LABEL_STEP,
)
from herdsman.cluster.kube import Kube, KubeError
from herdsman.cluster.observe import Observed
from herdsman.engine.world import Decision, NewExperiment
from herdsman.naming import (
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    MANAGED_BY,
    label_value,
)

log = logging.getLogger("herdsman.experiment")

# The Rollout's recorded pod template on each server group (herdsman.cluster.apply).
ANNOTATION_TEMPLATE = "herdsman.dev/template"

ExperimentWriter = Callable[[Rollout, Decision, Observed, Deadline], Awaitable[None]]


class StableTemplateMissing(Exception):
    pass


def _stable_template(observed: Observed, group: str) -> dict[str, Any]:
    rs = observed.replica_sets.get(group)
    recorded = (rs or {}).get("metadata", {}).get("annotations", {}).get(ANNOTATION_TEMPLATE)
    if recorded is None:
        raise StableTemplateMissing(f"no recorded template on stable group {group}")
    template: dict[str, Any] = json.loads(recorded)
    return template


def _template(
    rollout: Rollout, t: RolloutExperimentTemplate, source: dict[str, Any]
) -> dict[str, Any]:
    meta = source.get("metadata") or {}
    extra = t.metadata
    labels = {**(meta.get("labels") or {}), **(extra.labels if extra else {})}
    annotations = {**(meta.get("annotations") or {}), **(extra.annotations if extra else {})}
    selector = (
        t.selector.match_labels
        if t.selector is not None and t.selector.match_labels
        else rollout.spec.match_labels
    )
    out: dict[str, Any] = {
        "name": t.name,
        "replicas": 1 if t.replicas is None else t.replicas,
        "minReadySeconds": rollout.spec.min_ready_seconds,
        "selector": {"matchLabels": dict(selector)},
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": source["spec"],
        },
    }
    if t.service is not None:
        out["service"] = t.service.to_wire()
    if t.weight is not None:
        out["weight"] = t.weight
    return out


def _analysis(a: ExperimentAnalysis, request: NewExperiment) -> dict[str, Any]:
    wire = a.to_wire()
    hashes = {"Stable": request.stable_pod_hash, "Latest": request.canary_pod_hash}
    args = []
    for arg in a.args:
        source = arg.value_from
        if source is not None and source.pod_template_hash_value is not None:
            args.append({"name": arg.name, "value": hashes[source.pod_template_hash_value]})
        else:
            args.append(arg.to_wire())
    wire["args"] = args
    return wire


def experiment_body(rollout: Rollout, request: NewExperiment, observed: Observed) -> dict[str, Any]:
    step = request.step
    templates = []
    for t in step.templates:
        source = (
            _stable_template(observed, request.stable_group)
            if t.spec_ref == "stable"
            else rollout.spec.pod_template
        )
        templates.append(_template(rollout, t, source))
    spec: dict[str, Any] = {
        "templates": templates,
        "analyses": [_analysis(a, request) for a in step.analyses],
        "progressDeadlineSeconds": rollout.spec.progress_deadline_seconds,
    }
    if step.duration is not None:
        spec["duration"] = step.duration
    if step.dry_run:
        spec["dryRun"] = [d.to_wire() for d in step.dry_run]
    if step.analysis_run_metadata is not None:
        spec["analysisRunMetadata"] = step.analysis_run_metadata.to_wire()
    if step.scale_down_delay_seconds is not None:
        spec["scaleDownDelaySeconds"] = step.scale_down_delay_seconds
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {
            "name": request.name,
            "namespace": rollout.metadata.namespace,
            "labels": {
                LABEL_ROLLOUT: label_value(rollout.metadata.name),
                LABEL_REVISION: str(request.revision),
                LABEL_STEP: str(request.step_index),
                LABEL_ATTEMPT: str(request.attempt),
                LABEL_MANAGED: MANAGED_BY,
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Rollout",
                    "name": rollout.metadata.name,
                    "uid": rollout.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def writer(kube: Kube) -> ExperimentWriter:
    async def write(
        rollout: Rollout, decision: Decision, observed: Observed, deadline: Deadline
    ) -> None:
        ns = rollout.metadata.namespace or "default"
        for request in decision.desired.create_experiments:
            try:
                body = experiment_body(rollout, request, observed)
            except StableTemplateMissing as err:
                log.warning(
                    "%s/%s: experiment %s not started: %s",
                    ns,
                    rollout.metadata.name,
                    request.name,
                    err,
                )
                continue
            try:
                await kube.create(EXPERIMENTS.url(ns), body, deadline=deadline)
            except KubeError as err:
                if not err.conflict:
                    raise
        for name in decision.desired.terminate_experiments:
            try:
                await kube.patch(
                    EXPERIMENTS.url(ns, name), {"spec": {"terminate": True}}, deadline=deadline
                )
            except KubeError as err:
                if not err.not_found:
                    raise

    return write

"""The Experiment's hands: observe its ReplicaSets and AnalysisRuns, apply a decision.

Like a Rollout's pass, every pass reads fresh from the API server; the writes are idempotent
(creates that find their earlier self, absolute scales) and the status goes last, guarded by
resourceVersion. An Experiment's runs are measured by its own pass, as a Rollout's are by its.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from herdsman.analysis import run_build
from herdsman.api.analysis import AnalysisTemplate
from herdsman.api.analysis_ref import (
    AnalysisRunArgument,
    ArgumentValueFrom,
    DryRunMetric,
    FieldRef,
    SecretKeyRef,
)
from herdsman.api.analysis_run import AnalysisRunContext, AnalysisRunStatus
from herdsman.api.base import API_VERSION
from herdsman.api.experiment import Experiment, ExperimentTemplate
from herdsman.api.experiment_step import ExperimentAnalysis, ExperimentArgument
from herdsman.cluster.apply import merge_patch
from herdsman.cluster.budget import Deadline
from herdsman.cluster.experiment_paths import (
    EXPERIMENTS,
    LABEL_EXPERIMENT,
    LABEL_EXPERIMENT_ANALYSIS,
    LABEL_EXPERIMENT_TEMPLATE,
    label_value,
)
from herdsman.cluster.kube import (
    ANALYSIS_RUNS,
    ANALYSIS_TEMPLATES,
    CLUSTER_ANALYSIS_TEMPLATES,
    EVENTS,
    REPLICA_SETS,
    SERVICES,
    Kube,
    KubeError,
)
from herdsman.engine import experiment as engine
from herdsman.engine.experiment import (
    ExperimentDecision,
    ExperimentRunView,
    ExperimentWorld,
    NewExperimentRun,
    NewTemplateGroup,
    TemplateGroup,
)
from herdsman.naming import LABEL_HASH, LABEL_MANAGED, MANAGED_BY

log = logging.getLogger("herdsman.experiment")


def owner_reference(exp: Experiment) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "name": exp.metadata.name,
        "uid": exp.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("kind") == "Experiment" for ref in refs)


@dataclass
class ObservedExperiment:
    world: ExperimentWorld
    replica_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[tuple[str, bool], dict[str, Any]] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    run_updates: dict[str, AnalysisRunStatus] = field(default_factory=dict)


async def observe(
    kube: Kube, exp: Experiment, body: dict[str, Any], deadline: Deadline
) -> ObservedExperiment:
    ns = exp.metadata.namespace or "default"
    selector = f"{LABEL_EXPERIMENT}={label_value(exp.metadata.name)}"
    refs = sorted({(a.template_name, a.cluster_scope) for a in exp.spec.analyses})

    async def template(key: tuple[str, bool]) -> tuple[tuple[str, bool], dict[str, Any] | None]:
        name, cluster = key
        path = (
            CLUSTER_ANALYSIS_TEMPLATES.url(None, name)
            if cluster
            else ANALYSIS_TEMPLATES.url(ns, name)
        )
        return key, await kube.get(path, deadline=deadline)

    finished = exp.status.phase in ("Successful", "Failed", "Error", "Inconclusive")
    rs_items, run_items, found = await asyncio.gather(
        kube.list(REPLICA_SETS.url(ns), deadline=deadline, labels=selector),
        kube.list(ANALYSIS_RUNS.url(ns), deadline=deadline, labels=selector),
        # A finished experiment starts nothing: its templates need not be read again.
        asyncio.gather(*(template(k) for k in ([] if finished else refs))),
    )
    uid = exp.metadata.uid
    owned = [rs for rs in rs_items if _owned_by(rs, uid)]
    mine = [r for r in run_items if _owned_by(r, uid)]
    groups = tuple(_group(rs) for rs in owned)
    views = tuple(_run(r) for r in mine)
    templates = {k: b for k, b in found if b is not None}
    observed = ObservedExperiment(
        world=ExperimentWorld(
            groups=groups,
            runs=views,
            missing_templates=frozenset(k for k, b in found if b is None),
        ),
        replica_sets={rs["metadata"]["name"]: rs for rs in owned},
        runs={r["metadata"]["name"]: r for r in mine},
        templates=templates,
        body=body,
    )
    if not finished:
        observed.world = replace(observed.world, analysis_problems=tuple(_problems(exp, observed)))
    return observed


def _group(rs: dict[str, Any]) -> TemplateGroup:
    meta, spec, status = rs["metadata"], rs.get("spec", {}), rs.get("status", {})
    labels = meta.get("labels", {})
    return TemplateGroup(
        name=meta["name"],
        template=labels.get(LABEL_EXPERIMENT_TEMPLATE, ""),
        pod_hash=labels.get(LABEL_HASH, ""),
        replicas=int(spec.get("replicas", 0) or 0),
        ready=int(status.get("readyReplicas", 0) or 0),
        available=int(status.get("availableReplicas", 0) or 0),
        settled=int(status.get("observedGeneration", 0) or 0)
        >= int(meta.get("generation", 0) or 0),
    )


def _run(run: dict[str, Any]) -> ExperimentRunView:
    meta, spec, status = run["metadata"], run.get("spec", {}), run.get("status") or {}
    return ExperimentRunView(
        name=meta["name"],
        analysis=meta.get("labels", {}).get(LABEL_EXPERIMENT_ANALYSIS, ""),
        phase=status.get("phase") or "Pending",
        message=status.get("message", ""),
        terminated=bool(spec.get("terminate")),
    )


def with_updates(
    observed: ObservedExperiment, updates: dict[str, AnalysisRunStatus]
) -> ExperimentWorld:
    """The world once this pass's measurements are written: decide on fresh results."""
    world = observed.world
    views = []
    for view in world.runs:
        status = updates.get(view.name)
        if status is not None:
            view = replace(view, phase=status.phase or view.phase, message=status.message or "")
        views.append(view)
    return replace(world, runs=tuple(views))


# --- building what the decision asks for --------------------------------------------------------


def run_arguments(args: tuple[ExperimentArgument, ...]) -> list[AnalysisRunArgument]:
    out = []
    for arg in args:
        source = arg.value_from
        value_from = None
        if source is not None and source.secret_key_ref is not None:
            ref = source.secret_key_ref
            value_from = ArgumentValueFrom(secret_key_ref=SecretKeyRef(name=ref.name, key=ref.key))
        elif source is not None and source.field_ref is not None:
            value_from = ArgumentValueFrom(
                field_ref=FieldRef(field_path=source.field_ref.field_path)
            )
        out.append(AnalysisRunArgument(name=arg.name, value=arg.value, value_from=value_from))
    return out


def _analysis_templates(
    analysis: ExperimentAnalysis, observed: ObservedExperiment
) -> list[AnalysisTemplate]:
    body = observed.templates.get((analysis.template_name, analysis.cluster_scope))
    return [] if body is None else [AnalysisTemplate.model_validate(body)]


def _context(exp: Experiment) -> AnalysisRunContext:
    """The run's {{rollout.*}} placeholders: the owning Rollout (or the experiment), and the
    ReplicaSets of the templates named canary and baseline, Kayenta-style."""
    names = {t.name for t in exp.spec.templates}
    refs = (exp.metadata.model_extra or {}).get("ownerReferences") or []
    owner = next((r.get("name") for r in refs if r.get("kind") == "Rollout"), None)
    return AnalysisRunContext(
        rollout=owner or exp.metadata.name,
        namespace=exp.metadata.namespace or "default",
        revision=0,
        canary_group=engine.replica_set_name(exp.metadata.name, "canary")
        if "canary" in names
        else None,
        baseline_group=engine.replica_set_name(exp.metadata.name, "baseline")
        if "baseline" in names
        else None,
    )


def build_run(
    exp: Experiment, request: NewExperimentRun, observed: ObservedExperiment, *, name: str
) -> dict[str, Any]:
    meta = exp.spec.analysis_run_metadata
    labels = {
        **(meta.labels if meta else {}),
        LABEL_EXPERIMENT: label_value(exp.metadata.name),
        LABEL_EXPERIMENT_ANALYSIS: request.analysis.name,
        LABEL_MANAGED: MANAGED_BY,
    }
    run = run_build.build_run(
        _analysis_templates(request.analysis, observed),
        run_arguments(request.args),
        _context(exp),
        name=name,
        dry_run=[DryRunMetric(metric_name=d.metric_name) for d in exp.spec.dry_run],
        labels=labels,
        owner_references=[owner_reference(exp)],
        rollout=observed.body,
    )
    wire = run.to_wire()
    wire["kind"] = "AnalysisRun"
    if meta and meta.annotations:
        wire["metadata"].setdefault("annotations", {}).update(meta.annotations)
    return wire


def _problems(exp: Experiment, observed: ObservedExperiment) -> list[str]:
    """Trial-build every run not started yet: a bad argument is an InvalidSpec before any pod."""
    found = []
    started = {r.analysis for r in observed.world.runs}
    hashes = {t.name: engine.pod_hash(exp.metadata.name, t) for t in exp.spec.templates}
    for i, analysis in enumerate(exp.spec.analyses):
        if analysis.name in started or not _analysis_templates(analysis, observed):
            continue
        request = NewExperimentRun("trial", analysis, engine.resolve_args(analysis, hashes))
        try:
            build_run(exp, request, observed, name="trial")
        except (run_build.RunBuildError, ValidationError) as err:
            found.append(f"spec.analyses[{i}] ({analysis.template_name}): {err}")
    return found


def replica_set(exp: Experiment, group: NewTemplateGroup) -> dict[str, Any]:
    template = next(t for t in exp.spec.templates if t.name == group.template)
    ours = {
        LABEL_EXPERIMENT: label_value(exp.metadata.name),
        LABEL_EXPERIMENT_TEMPLATE: template.name,
        LABEL_HASH: group.pod_hash,
    }
    wire = template.template.to_wire()
    meta = wire.get("metadata") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": group.name,
            "namespace": exp.metadata.namespace,
            "labels": {**ours, LABEL_MANAGED: MANAGED_BY},
            "ownerReferences": [owner_reference(exp)],
        },
        "spec": {
            "replicas": group.replicas,
            "minReadySeconds": template.min_ready_seconds,
            "selector": {"matchLabels": {**template.selector.match_labels, **ours}},
            "template": {
                "metadata": {
                    "labels": {**(meta.get("labels") or {}), **ours},
                    "annotations": meta.get("annotations") or {},
                },
                "spec": wire["spec"],
            },
        },
    }


def service(exp: Experiment, template: ExperimentTemplate, pod_hash: str) -> dict[str, Any] | None:
    """A template's Service selects exactly its pods; headless when its containers name no port."""
    name = engine.service_name(exp.metadata.name, template)
    if name is None:
        return None
    ports = [
        {
            "name": p.get("name") or f"port-{p['containerPort']}",
            "port": p["containerPort"],
            "targetPort": p["containerPort"],
            "protocol": p.get("protocol", "TCP"),
        }
        for c in (template.template.spec.to_wire() if template.template.spec else {}).get(
            "containers", []
        )
        for p in c.get("ports") or []
        if "containerPort" in p
    ]
    spec: dict[str, Any] = {
        "selector": {
            **template.selector.match_labels,
            LABEL_EXPERIMENT: label_value(exp.metadata.name),
            LABEL_EXPERIMENT_TEMPLATE: template.name,
        }
    }
    if ports:
        spec["ports"] = ports
    else:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": exp.metadata.namespace,
            "labels": {LABEL_EXPERIMENT: label_value(exp.metadata.name), LABEL_HASH: pod_hash},
            "ownerReferences": [owner_reference(exp)],
        },
        "spec": spec,
    }


# --- applying -----------------------------------------------------------------------------------


async def _create(kube: Kube, path: str, body: dict[str, Any], deadline: Deadline) -> None:
    try:
        await kube.create(path, body, deadline=deadline)
    except KubeError as err:
        if not err.conflict:
            raise  # a conflict: created by an earlier, interrupted pass


async def apply(
    kube: Kube,
    exp: Experiment,
    raw_status: dict[str, Any],
    decision: ExperimentDecision,
    observed: ObservedExperiment,
    deadline: Deadline,
) -> bool:
    """Returns False when the status write lost a race; the caller redoes the pass."""
    ns = exp.metadata.namespace or "default"
    for name, status in observed.run_updates.items():
        old = (observed.runs.get(name) or {}).get("status") or {}
        new = status.to_wire()
        if new != old:
            await _patch(
                kube,
                ANALYSIS_RUNS.url(ns, name, "status"),
                {"status": merge_patch(old, new)},
                deadline,
            )
    for group in decision.create_groups:
        await _create(kube, REPLICA_SETS.url(ns), replica_set(exp, group), deadline)
        template = next(t for t in exp.spec.templates if t.name == group.template)
        svc = service(exp, template, group.pod_hash)
        if svc is not None:
            await _create(kube, SERVICES.url(ns), svc, deadline)
    for name, size in decision.scale.items():
        await _patch(kube, REPLICA_SETS.url(ns, name), {"spec": {"replicas": size}}, deadline)
    for request in decision.create_runs:
        body = build_run(exp, request, observed, name=request.name)
        await _create(kube, ANALYSIS_RUNS.url(ns), body, deadline)
    for name in decision.terminate_runs:
        await _patch(kube, ANALYSIS_RUNS.url(ns, name), {"spec": {"terminate": True}}, deadline)
    new_status = decision.status.to_wire()
    if new_status != raw_status:
        patch = {
            "metadata": {"resourceVersion": exp.metadata.resource_version},
            "status": merge_patch(raw_status, new_status),
        }
        try:
            await kube.patch(
                EXPERIMENTS.url(ns, exp.metadata.name, "status"), patch, deadline=deadline
            )
        except KubeError as err:
            if err.conflict or err.not_found:
                return False
            raise
    for transition in decision.transitions:
        log.log(
            logging.WARNING if transition.warning else logging.INFO,
            "%s/%s experiment=%s phase=%s %s: %s",
            ns,
            exp.metadata.name,
            exp.metadata.name,
            decision.status.phase,
            transition.reason,
            transition.message,
        )
        await _event(kube, exp, transition.reason, transition.message, transition.warning, deadline)
    return True


async def _patch(kube: Kube, path: str, body: dict[str, Any], deadline: Deadline) -> None:
    try:
        await kube.patch(path, body, deadline=deadline)
    except KubeError as err:
        if not err.not_found:
            raise


async def _event(
    kube: Kube, exp: Experiment, reason: str, message: str, warning: bool, deadline: Deadline
) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ns = exp.metadata.namespace
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{exp.metadata.name}.", "namespace": ns},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": "Experiment",
            "name": exp.metadata.name,
            "namespace": ns,
            "uid": exp.metadata.uid,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "herdsman"},
        "reportingComponent": "herdsman.dev/operator",
        "reportingInstance": "herdsman",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create(EVENTS.url(ns), body, deadline=deadline)
    except (KubeError, TimeoutError) as err:
        log.debug("event for experiment %s/%s not recorded: %s", ns, exp.metadata.name, err)

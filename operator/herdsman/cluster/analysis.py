"""The rollout's hands for analysis: build runs, take due measurements, resolve Secrets.

A rollout's reconcile drives its own AnalysisRuns (there is no separate run controller): each
pass measures what is due, records it, and decides on the result in the same pass — so a failing
measurement sends traffic back to stable in the very reconcile that records it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from herdsman.analysis import run_build, runs
from herdsman.analysis.checks import spec_findings
from herdsman.analysis.measure import measure
from herdsman.analysis.providers.base import SecretNotFound
from herdsman.analysis.providers.job import LABEL_RUN, JobCreationRefused
from herdsman.api.analysis import AnalysisTemplate
from herdsman.api.analysis_ref import AnalysisTemplateRef, RolloutAnalysis, SecretKeyRef
from herdsman.api.analysis_run import (
    AnalysisRun,
    AnalysisRunContext,
    AnalysisRunSpec,
    AnalysisRunStatus,
)
from herdsman.api.base import ObjectMeta
from herdsman.api.rollout import Rollout
from herdsman.cluster.apply import owner_reference
from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.kube import (
    ANALYSIS_TEMPLATES,
    CLUSTER_ANALYSIS_TEMPLATES,
    SECRETS,
    Kube,
    KubeError,
    Path,
)
from herdsman.cluster.observe import Observed, referenced_analyses
from herdsman.cluster.retry import NO_HOOKS, RetryHooks
from herdsman.engine.world import NewAnalysisRun, World
from herdsman.naming import (
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    MANAGED_BY,
    PREFIX,
    label_value,
    template_hash,
)

log = logging.getLogger("herdsman.analysis")

LABEL_STEP = f"{PREFIX}/step"
LABEL_ANALYSIS_KIND = f"{PREFIX}/analysis-kind"
LABEL_ATTEMPT = f"{PREFIX}/attempt"
TERMINAL = {"Successful", "Failed", "Error", "Inconclusive"}
JOBS = Path("batch", "v1", "jobs")


class KubeSecrets:
    """SecretResolver over the API server: reads one key, only when a metric needs it."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def get(self, namespace: str, ref: SecretKeyRef, *, deadline: Deadline) -> str:
        body = await self.kube.get(SECRETS.url(namespace, ref.name), deadline=deadline)
        if body is None:
            raise SecretNotFound(f"Secret {namespace}/{ref.name} not found")
        data = body.get("data") or {}
        if ref.key not in data:
            raise SecretNotFound(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()


class KubeJobs:
    """JobClient over the API server, for the Job provider."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def get_job(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None:
        return await self.kube.get(JOBS.url(namespace, name), deadline=deadline)

    async def create_job(
        self, namespace: str, body: dict[str, Any], *, deadline: Deadline
    ) -> dict[str, Any]:
        try:
            return await self.kube.create(JOBS.url(namespace), body, deadline=deadline)
        except KubeError as err:
            if err.conflict:  # created by an earlier pass that did not see its answer
                found = await self.get_job(namespace, body["metadata"]["name"], deadline=deadline)
                if found is not None:
                    return found
            if 400 <= err.status < 500:
                raise JobCreationRefused(f"{err.reason}: {err.message}") from None
            raise

    async def delete_run_jobs(self, namespace: str, run: str, *, deadline: Deadline) -> int:
        """Delete every Job of `run` (its pods go with them); the number deleted."""
        jobs = await self.kube.list(
            JOBS.url(namespace), deadline=deadline, labels=f"{LABEL_RUN}={label_value(run)}"
        )
        for job in jobs:
            await self.kube.delete(
                JOBS.url(namespace, job["metadata"]["name"]),
                deadline=deadline,
                propagation="Background",
            )
        return len(jobs)


def _uses_jobs(run: AnalysisRun) -> bool:
    return any(metric.provider.job is not None for metric in run.spec.metrics)


def _templates(analysis: RolloutAnalysis, observed: Observed) -> list[AnalysisTemplate]:
    found = []
    for ref in analysis.templates:
        body = observed.templates.get((ref.template_name, ref.cluster_scope))
        if body is not None:
            found.append(AnalysisTemplate.model_validate(body))
    return found


def _context(rollout: Rollout, revision: int, groups: dict[str, str | None]) -> AnalysisRunContext:
    return AnalysisRunContext(
        rollout=rollout.metadata.name,
        namespace=rollout.metadata.namespace or "default",
        revision=revision,
        canary_group=groups.get("canary"),
        baseline_group=groups.get("baseline"),
        stable_group=groups.get("stable"),
    )


def pod_hashes(
    rollout: Rollout, request: NewAnalysisRun, observed: Observed
) -> dict[str, str | None]:
    """Argo's podTemplateHashValue sources: `Stable` is the stable server group's pod-template
    hash, `Latest` the new one's (the canary, or blue/green's preview). Herdsman's server groups
    carry it as the label herdsman.dev/pod-template-hash (Argo's: rollouts-pod-template-hash),
    and their pods carry it too, so a query can select a group's pods by it."""

    def hash_of(role: str) -> str | None:
        name = request.groups.get(role)
        group = observed.world.group(name) if name else None
        return group.pod_hash if group is not None and group.pod_hash else None

    # The new group may be created in this very pass (not observed yet): its hash is the
    # rollout's pod template's, by construction (herdsman.naming.template_hash).
    latest = hash_of("canary") or template_hash(rollout.spec.pod_template)
    return {"Stable": hash_of("stable"), "Latest": latest}


def problems(rollout: Rollout, observed: Observed, body: dict[str, Any]) -> list[str]:
    """Trial-build every analysis the spec references: a bad argument is an InvalidSpec now,
    not a surprise at the step that needs it."""
    found: list[str] = []
    context = _context(rollout, 0, {"canary": "x", "baseline": "x", "stable": "x"})
    for analysis in referenced_analyses(rollout):
        templates = _templates(analysis, observed)
        for template in templates:
            for finding in spec_findings(
                template.spec.model_dump(by_alias=True, exclude_none=True)
            ):
                if finding.severity == "error":
                    found.append(
                        f"{template.kind} {template.metadata.name}: {finding.path}: {finding.message}"
                    )
        if len(templates) != len(analysis.templates):
            continue  # missing templates are reported by name elsewhere
        if any(t.spec.templates for t in templates):
            continue  # included templates are fetched when the run is built
        try:
            run_build.build_run(
                templates,
                analysis.args,
                context,
                name="trial",
                dry_run=analysis.dry_run,
                measurement_retention=analysis.measurement_retention,
                rollout=body,
                pod_hashes={"Stable": "x", "Latest": "x"},
            )
        except (run_build.RunBuildError, ValidationError) as err:
            names = ", ".join(t.template_name for t in analysis.templates)
            found.append(f"analysis ({names}): {err}")
    return sorted(set(found))


class Analysis:
    def __init__(self, kube: Kube, policy: AccessPolicy, hooks: RetryHooks = NO_HOOKS) -> None:
        self.kube = kube
        self.policy = policy
        self.hooks = hooks
        self.secrets = KubeSecrets(kube)
        self.jobs = KubeJobs(kube)

    async def build(
        self, rollout: Rollout, request: NewAnalysisRun, observed: Observed
    ) -> dict[str, Any]:
        """The AnalysisRun object for an engine request (a RunBuilder for the Applier).

        Labels as Argo sets them: the analysis's `analysisRunMetadata.labels`, then the
        rollout's selector labels; Herdsman's own labels last, since runs are found by them."""
        extra = request.analysis.analysis_run_metadata
        labels = {
            **(extra.labels if extra else {}),
            **rollout.spec.match_labels,
            LABEL_ROLLOUT: label_value(rollout.metadata.name),
            LABEL_REVISION: str(request.revision),
            LABEL_ANALYSIS_KIND: request.kind,
            LABEL_ATTEMPT: str(request.attempt),
            LABEL_MANAGED: MANAGED_BY,
        }
        if request.step_index is not None:
            labels[LABEL_STEP] = str(request.step_index)
        templates = await self._with_included(
            _templates(request.analysis, observed),
            observed,
            rollout.metadata.namespace or "default",
        )
        context = _context(rollout, request.revision, request.groups)
        try:
            run = run_build.build_run(
                templates,
                request.analysis.args,
                context,
                name=request.name,
                dry_run=request.analysis.dry_run,
                measurement_retention=request.analysis.measurement_retention,
                labels=labels,
                owner_references=[owner_reference(rollout)],
                rollout=observed.body,
                pod_hashes=pod_hashes(rollout, request, observed),
                annotations=extra.annotations if extra else None,
            )
        except run_build.RunBuildError as err:
            # Checked by problems() before any run starts; what changed since (the stable
            # group gone, a label removed) makes this run an Error that says why, which the
            # rollout acts on like any Error, rather than a reconcile that fails for ever.
            return self._errored(templates, context, request.name, labels, rollout, str(err))
        wire = run.to_wire()
        wire["kind"] = "AnalysisRun"
        wire.pop("status", None)  # the first measuring pass writes it
        return wire

    @staticmethod
    def _errored(
        templates: list[AnalysisTemplate],
        context: AnalysisRunContext,
        name: str,
        labels: dict[str, str],
        rollout: Rollout,
        message: str,
    ) -> dict[str, Any]:
        metrics = [m for t in templates for m in t.spec.metrics]
        if not metrics:
            raise run_build.RunBuildError(message)
        run = AnalysisRun(
            metadata=ObjectMeta.model_validate(
                {
                    "name": name,
                    "namespace": context.namespace,
                    "labels": labels,
                    "ownerReferences": [owner_reference(rollout)],
                }
            ),
            spec=AnalysisRunSpec(metrics=metrics, terminate=True, context=context),
            status=AnalysisRunStatus(phase="Error", message=message[:4096]),
        )
        wire = run.to_wire()
        wire["kind"] = "AnalysisRun"
        return wire

    async def _with_included(
        self, templates: list[AnalysisTemplate], observed: Observed, namespace: str
    ) -> list[AnalysisTemplate]:
        """`templates` and those they include (`spec.templates`), in Argo's order."""
        known: dict[tuple[str, bool], AnalysisTemplate] = {}
        for (name, cluster), body in observed.templates.items():
            known[(name, cluster)] = AnalysisTemplate.model_validate(body)
        pending = [ref for t in templates for ref in t.spec.templates]
        deadline = Deadline(self.policy.call_timeout * 4)
        while pending and len(known) < 64:
            ref = pending.pop()
            key = (ref.template_name, ref.cluster_scope)
            if key in known:
                continue
            path = (
                CLUSTER_ANALYSIS_TEMPLATES.url(None, ref.template_name)
                if ref.cluster_scope
                else ANALYSIS_TEMPLATES.url(namespace, ref.template_name)
            )
            fetched = await self.kube.get(path, deadline=deadline)
            if fetched is None:
                continue  # flatten_templates names it
            known[key] = AnalysisTemplate.model_validate(fetched)
            pending.extend(known[key].spec.templates)

        def lookup(ref: AnalysisTemplateRef) -> AnalysisTemplate | None:
            return known.get((ref.template_name, ref.cluster_scope))

        return run_build.flatten_templates(templates, lookup)

    async def measure_due(
        self, observed: Observed, now: datetime, deadline: Deadline
    ) -> tuple[dict[str, AnalysisRunStatus], datetime | None]:
        """Measure every run with something due; returns the new statuses and the next due time."""
        live: list[AnalysisRun] = []
        for body in observed.runs.values():
            try:
                run = AnalysisRun.model_validate(body)
            except ValidationError as err:
                log.warning("analysis run %s unreadable: %s", body["metadata"].get("name"), err)
                continue
            if run.status is not None and run.status.phase in TERMINAL:
                continue
            live.append(run)
        # Runs that ended (here, or by a terminate the engine wrote) lose their Jobs.
        ended: list[AnalysisRun] = []

        async def one(run: AnalysisRun) -> tuple[str, AnalysisRunStatus | None, datetime | None]:
            items = runs.due(run, now)
            fresh = run.status is None or run.status.started_at is None or run.spec.terminate
            if not items and not fresh:
                return run.metadata.name, None, runs.next_due_at(run, now)
            results = (
                await measure(
                    run,
                    items,
                    deadline=deadline,
                    secrets=self.secrets,
                    policy=self.policy,
                    hooks=self.hooks,
                    jobs=self.jobs,
                )
                if items
                else []
            )
            status = runs.record(run, results, now)
            if status.phase in TERMINAL and _uses_jobs(run):
                ended.append(run)
            after = run.model_copy(update={"status": status})
            return run.metadata.name, status, runs.next_due_at(after, now)

        done = await asyncio.gather(*(one(r) for r in live))
        for run in ended:
            try:
                count = await self.jobs.delete_run_jobs(
                    run.spec.context.namespace, run.metadata.name or "", deadline=deadline
                )
                log.info("analysis run %s ended: deleted %d job(s)", run.metadata.name, count)
            except Exception as err:  # the ownerReference collects them later all the same
                log.warning("analysis run %s: jobs not deleted: %s", run.metadata.name, err)
        updates = {name: status for name, status, _ in done if status is not None}
        due_times = [when for _, _, when in done if when is not None]
        return updates, min(due_times, default=None)


def with_updates(world: World, updates: dict[str, AnalysisRunStatus]) -> World:
    """The world as it will be once the new run statuses are written: decide on fresh results."""
    if not updates:
        return world
    views = []
    for view in world.analysis_runs:
        status = updates.get(view.name)
        if status is not None:
            view = replace(view, phase=status.phase or view.phase, message=status.message or "")
        views.append(view)
    return replace(world, analysis_runs=tuple(views))

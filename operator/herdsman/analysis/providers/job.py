"""The Job provider: each measurement is a Kubernetes Job, as in Argo Rollouts.

The first look at a measurement creates its Job (named for the run, the metric and the
measurement's number, owned by the AnalysisRun, labelled so the run's Jobs can be found and
deleted when it ends) and reports the measurement in progress; later looks read the Job until
it has finished:

- the Job succeeded (condition Complete or SuccessCriteriaMet) -> Successful;
- the Job failed (condition Failed: backoffLimit, activeDeadlineSeconds, ...) -> Failed;
- infrastructure trouble, as Argo v1.10 has it -> Inconclusive, naming the field or the reason:
  the API server refused to create the Job (`provider.job.spec` and its message), or the Job
  vanished while the measurement waited for it (deleted under us).

The metric's conditions are not consulted (Argo's Job metrics have none); `result` shown in the
status is the Job's name and phase.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from herdsman.analysis.conditions import Observation, Outcome
from herdsman.analysis.providers.base import MeasurementInProgress, Provider, ProviderContext
from herdsman.api.base import API_VERSION
from herdsman.api.job import JobMetric
from herdsman.cluster.budget import Deadline
from herdsman.naming import PREFIX, label_value

LABEL_RUN = f"{PREFIX}/analysis-run"
LABEL_METRIC = f"{PREFIX}/metric"
LABEL_MEASUREMENT = f"{PREFIX}/measurement"
MAX_JOB_NAME = 63
"""A Job's name becomes its pods' `job-name` label value: at most 63 characters."""


class JobCreationRefused(Exception):
    """The API server would not create the Job; the message names why."""


def job_name(run: str, metric: str, measurement: int) -> str:
    """`<run>-<metric>-<n>`, shortened with a hash when too long for a label value."""
    name = f"{run}-{metric}-{measurement}".lower()
    if len(name) <= MAX_JOB_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = f"-{digest}-{measurement}"
    return name[: MAX_JOB_NAME - len(tail)].rstrip("-.") + tail


def job_body(spec: JobMetric, context: ProviderContext, name: str) -> dict[str, Any]:
    """The Job for one measurement: Argo's metadata labels/annotations, ours, an owner."""
    meta = spec.metadata
    labels = {
        **(meta.labels if meta else {}),
        # A long rollout's run names exceed a label value's 63 characters.
        LABEL_RUN: label_value(context.run_name),
        LABEL_METRIC: label_value(context.metric),
        LABEL_MEASUREMENT: str(context.measurement),
    }
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": context.namespace,
        "labels": labels,
        "annotations": dict(meta.annotations) if meta else {},
    }
    if context.run_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "AnalysisRun",
                "name": context.run_name,
                "uid": context.run_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": spec.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


def job_phase(body: dict[str, Any]) -> str:
    """Succeeded, Failed or Running, from the Job's conditions (counts as a fallback)."""
    status = body.get("status") or {}
    for condition in status.get("conditions") or []:
        if str(condition.get("status")) != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    return "Running"


def _failure_reason(body: dict[str, Any]) -> str:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") in ("Failed", "FailureTarget")
            and condition.get("status") == "True"
        ):
            return f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".strip(
                ": "
            )
    return ""


class JobProvider(Provider[JobMetric]):
    key: ClassVar[str] = "job"

    async def observe(
        self, spec: JobMetric, context: ProviderContext, deadline: Deadline
    ) -> Observation:
        if context.jobs is None:
            raise RuntimeError("the Job provider needs the cluster: no Job client was given")
        name = job_name(context.run_name, context.metric, context.measurement)
        found = await context.jobs.get_job(context.namespace, name, deadline=deadline)
        if found is None:
            if context.in_progress == name:
                return Observation(
                    {
                        "job": name,
                        "phase": "Deleted",
                        "problem": f"Job {name} was deleted before it finished",
                    }
                )
            try:
                await context.jobs.create_job(
                    context.namespace, job_body(spec, context, name), deadline=deadline
                )
            except JobCreationRefused as refused:
                return Observation(
                    {
                        "job": name,
                        "phase": "NotCreated",
                        "problem": f"provider.job.spec: the API server refused Job {name}: "
                        f"{refused}",
                    }
                )
            raise MeasurementInProgress(name, f"Job {name} created")
        phase = job_phase(found)
        if phase == "Running":
            raise MeasurementInProgress(name, f"Job {name} is running")
        result: dict[str, Any] = {"job": name, "phase": phase}
        if phase == "Failed":
            result["reason"] = _failure_reason(found)
        return Observation(result)

    def outcome(self, spec: JobMetric, observation: Observation) -> Outcome | None:
        result = observation.result if isinstance(observation.result, dict) else {}
        phase = result.get("phase")
        if phase == "Succeeded":
            return Outcome("Successful", f"Job {result.get('job')} succeeded")
        if phase == "Failed":
            why = result.get("reason") or "failed"
            return Outcome("Failed", f"Job {result.get('job')} failed: {why}")
        return Outcome("Inconclusive", str(result.get("problem") or "the Job has no verdict"))

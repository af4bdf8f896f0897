"""The Experiment as a pure function: (experiment, observed world, now) -> ExperimentDecision.

The lifecycle is Argo Rollouts':

1. One ReplicaSet per template, named `<experiment>-<template>`, sized `replicas`.
2. `Pending` until every template's pods are available; a template that is not available within
   `progressDeadlineSeconds` of the experiment's creation fails it.
3. `Running`: one AnalysisRun per `spec.analyses` entry, named `<experiment>-<analysis>`.
4. A Failed, Error or Inconclusive run ends the experiment at once with that phase.
5. Otherwise it is Successful once `duration` has passed since the pods became available and
   every `requiredForCompletion` run has completed; with no duration, once the required runs
   have; with neither, it runs until `spec.terminate`.
6. Once complete, runs still measuring are terminated and, `scaleDownDelaySeconds` later, the
   ReplicaSets go to zero replicas (kept, like Argo, as the record of what ran).

A spec that cannot run — an analysis naming a template that does not exist, an argument naming
an unknown experiment template — is an `InvalidSpec` condition and phase `Error`, decided before
anything is created. Everything to resume after a crash is in the status; the names of what an
experiment creates are derived from its own name, so a repeated create finds its earlier self.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from herdsman.api.base import Condition, ConditionStatus, duration_seconds
from herdsman.api.experiment import (
    TERMINAL,
    Experiment,
    ExperimentAnalysisRunStatus,
    ExperimentStatus,
    ExperimentTemplate,
    TemplatePhase,
    TemplateStatus,
)
from herdsman.api.experiment_step import (
    TEMPLATE_HASH_PLACEHOLDER,
    ExperimentAnalysis,
    ExperimentArgument,
)
from herdsman.engine.world import Transition
from herdsman.naming import label_value, template_hash

_PLACEHOLDER = re.compile(TEMPLATE_HASH_PLACEHOLDER)


# --- what the engine sees -----------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateGroup:
    """One observed ReplicaSet of the experiment."""

    name: str
    template: str
    pod_hash: str
    replicas: int = 0
    ready: int = 0
    available: int = 0
    settled: bool = True


@dataclass(frozen=True)
class ExperimentRunView:
    name: str
    analysis: str
    phase: str = "Pending"
    message: str = ""
    terminated: bool = False

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL


@dataclass(frozen=True)
class ExperimentWorld:
    groups: tuple[TemplateGroup, ...] = ()
    runs: tuple[ExperimentRunView, ...] = ()
    # (templateName, clusterScope) of referenced analysis templates that do not exist.
    missing_templates: frozenset[tuple[str, bool]] = frozenset()
    # Runs that cannot be built (an undeclared argument...), one message each, field path first.
    analysis_problems: tuple[str, ...] = ()

    def group(self, name: str) -> TemplateGroup | None:
        return next((g for g in self.groups if g.name == name), None)

    def run(self, name: str) -> ExperimentRunView | None:
        return next((r for r in self.runs if r.name == name), None)


# --- what it asks for ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewTemplateGroup:
    name: str
    template: str
    pod_hash: str
    replicas: int


@dataclass(frozen=True)
class NewExperimentRun:
    name: str
    analysis: ExperimentAnalysis
    # The analysis's arguments with {{templates.<name>.podTemplateHash}} filled in.
    args: tuple[ExperimentArgument, ...]


@dataclass
class ExperimentDecision:
    status: ExperimentStatus
    create_groups: list[NewTemplateGroup] = field(default_factory=list)
    scale: dict[str, int] = field(default_factory=dict)
    create_runs: list[NewExperimentRun] = field(default_factory=list)
    terminate_runs: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    requeue_after: float | None = None


# --- names --------------------------------------------------------------------------------------


def replica_set_name(experiment: str, template: str) -> str:
    return f"{experiment}-{template}"


def service_name(experiment: str, template: ExperimentTemplate) -> str | None:
    """The Service a template with `service` gets: its own name, or the ReplicaSet's as a
    label_value() (a Service name has at most 63 characters; the hash keeps two templates of a
    long-named experiment apart)."""
    if template.service is None:
        return None
    return template.service.name or label_value(replica_set_name(experiment, template.name))


def run_name(experiment: str, analysis: str) -> str:
    return f"{experiment}-{analysis}"


def pod_hash(experiment: str, template: ExperimentTemplate) -> str:
    """Differs from the hash of the same pod spec in a Rollout (as in Argo): the experiment's
    pods can be told apart from the rollout's in metrics."""
    return template_hash({"experiment": experiment, "template": template.template.to_wire()})


# --- the decision -------------------------------------------------------------------------------


class _Pass:
    def __init__(self, exp: Experiment, world: ExperimentWorld, now: datetime) -> None:
        self.exp = exp
        self.spec = exp.spec
        self.name = exp.metadata.name
        self.world = world
        self.now = now
        self.status = exp.status.model_copy(deep=True)
        self.status.observed_generation = exp.metadata.generation
        self.decision = ExperimentDecision(status=self.status)
        self._due: datetime | None = None
        self.hashes = {t.name: pod_hash(self.name, t) for t in self.spec.templates}

    def transition(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.decision.transitions.append(Transition(reason, message, warning))

    def due_at(self, when: datetime) -> None:
        if self._due is None or when < self._due:
            self._due = when

    def condition(self, type_: str, value: bool, reason: str, message: str) -> None:
        status: ConditionStatus = "True" if value else "False"
        found = next((c for c in self.status.conditions if c.type == type_), None)
        if found is None:
            self.status.conditions.append(
                Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    last_transition_time=self.now,
                )
            )
            return
        if found.status != status:
            found.last_transition_time = self.now
        found.status, found.reason, found.message = status, reason, message

    def finish(self) -> ExperimentDecision:
        if self._due is not None:
            self.decision.requeue_after = max(0.0, (self._due - self.now).total_seconds())
        return self.decision


def decide(exp: Experiment, world: ExperimentWorld, now: datetime) -> ExperimentDecision:
    p = _Pass(exp, world, now)
    st = p.status
    if st.phase in TERMINAL:
        _wind_down(p)
        return p.finish()
    found = problems(exp, world)
    if found:
        message = "; ".join(found)
        p.condition("InvalidSpec", True, "InvalidSpec", message)
        p.transition("InvalidSpec", message, warning=True)
        _complete(p, "Error", f"InvalidSpec: {message}")
        return p.finish()
    if exp.spec.terminate:
        _complete(p, _verdict_so_far(p), "terminated")
        return p.finish()
    _run_templates(p)
    if st.available_at is None:
        if not _all_available(p):
            _pending(p)
            return p.finish()
        st.available_at = now
        p.transition("ExperimentRunning", f"experiment {p.name}: every template is available")
    st.phase = "Running"
    st.message = ""
    _set_template_phases(p, "Running")
    _analyses(p)
    if st.phase in TERMINAL:
        return p.finish()
    _maybe_complete(p)
    return p.finish()


def problems(exp: Experiment, world: ExperimentWorld) -> list[str]:
    """What keeps this spec from running, each naming the field (as `kubectl explain` would)."""
    found: list[str] = []
    names = {t.name for t in exp.spec.templates}
    for i, analysis in enumerate(exp.spec.analyses):
        if (analysis.template_name, analysis.cluster_scope) in world.missing_templates:
            kind = "ClusterAnalysisTemplate" if analysis.cluster_scope else "AnalysisTemplate"
            found.append(
                f"spec.analyses[{i}].templateName: {kind} {analysis.template_name!r} not found"
            )
        for j, arg in enumerate(analysis.args):
            for ref in _PLACEHOLDER.findall(arg.value or ""):
                if ref not in names:
                    found.append(
                        f"spec.analyses[{i}].args[{j}].value: unknown template {ref!r}"
                        f" (templates: {', '.join(sorted(names))})"
                    )
            if arg.value_from is not None and arg.value_from.pod_template_hash_value is not None:
                found.append(
                    f"spec.analyses[{i}].args[{j}].valueFrom.podTemplateHashValue: only a"
                    " Rollout's experiment step can resolve it"
                )
    found += world.analysis_problems
    return found


def resolve_args(
    analysis: ExperimentAnalysis, hashes: dict[str, str]
) -> tuple[ExperimentArgument, ...]:
    """The arguments with every {{templates.<name>.podTemplateHash}} replaced."""
    out = []
    for arg in analysis.args:
        if arg.value is not None:
            value = _PLACEHOLDER.sub(lambda m: hashes.get(m.group(1), m.group(0)), arg.value)
            arg = arg.model_copy(update={"value": value})
        out.append(arg)
    return tuple(out)


# --- pieces -------------------------------------------------------------------------------------


def _run_templates(p: _Pass) -> None:
    """Each template's ReplicaSet exists with its replicas."""
    for t in p.spec.templates:
        name = replica_set_name(p.name, t.name)
        g = p.world.group(name)
        if g is None:
            p.decision.create_groups.append(
                NewTemplateGroup(name, t.name, p.hashes[t.name], t.replicas)
            )
            p.transition(
                "TemplateCreated", f"experiment {p.name}: created {name} with {t.replicas} pods"
            )
        elif g.replicas != t.replicas:
            p.decision.scale[name] = t.replicas
    _template_rows(p)


def _template_rows(p: _Pass) -> None:
    old = {row.name: row for row in p.status.template_statuses}
    rows = []
    for t in p.spec.templates:
        name = replica_set_name(p.name, t.name)
        g = p.world.group(name)
        row = old.get(t.name) or TemplateStatus(name=t.name, last_transition_time=p.now)
        row.replica_set = name
        row.pod_template_hash = p.hashes[t.name]
        row.service_name = service_name(p.name, t)
        row.replicas = p.decision.scale.get(name, g.replicas if g else t.replicas)
        row.ready_replicas = g.ready if g else 0
        row.available_replicas = g.available if g else 0
        rows.append(row)
    p.status.template_statuses = rows


def _set_template_phases(p: _Pass, phase: TemplatePhase, message: str = "") -> None:
    for row in p.status.template_statuses:
        if row.status != phase:
            row.status = phase
            row.last_transition_time = p.now
        row.message = message


def _available(p: _Pass, t: ExperimentTemplate) -> bool:
    g = p.world.group(replica_set_name(p.name, t.name))
    return g is not None and g.settled and g.replicas == t.replicas and g.available >= t.replicas


def _all_available(p: _Pass) -> bool:
    return all(_available(p, t) for t in p.spec.templates)


def _pending(p: _Pass) -> None:
    st = p.status
    waiting = [t.name for t in p.spec.templates if not _available(p, t)]
    started = p.exp.metadata.creation_timestamp or p.now
    deadline = started + timedelta(seconds=p.spec.progress_deadline_seconds)
    if p.now >= deadline:
        message = (
            f"templates {', '.join(waiting)} not available within "
            f"progressDeadlineSeconds ({p.spec.progress_deadline_seconds}s)"
        )
        _complete(p, "Failed", message)
        return
    if st.phase != "Pending":
        p.transition("ExperimentPending", f"experiment {p.name}: waiting for {', '.join(waiting)}")
    st.phase = "Pending"
    st.message = f"waiting for {', '.join(waiting)} to be available"
    for row in st.template_statuses:
        row.status = "Progressing" if row.name in waiting else "Running"
    p.due_at(deadline)


def _analyses(p: _Pass) -> None:
    """Start every analysis; a run with a verdict against the experiment ends it."""
    st = p.status
    rows: list[ExperimentAnalysisRunStatus] = []
    for analysis in p.spec.analyses:
        name = run_name(p.name, analysis.name)
        run = p.world.run(name)
        if run is None:
            p.decision.create_runs.append(
                NewExperimentRun(name, analysis, resolve_args(analysis, p.hashes))
            )
            p.transition("AnalysisStarted", f"experiment {p.name}: analysis {name} started")
        rows.append(
            ExperimentAnalysisRunStatus(
                name=analysis.name,
                analysis_run=name,
                phase=run.phase if run else "Pending",
                message=run.message if run else "",
            )
        )
    st.analysis_runs = rows
    for phase in ("Failed", "Error", "Inconclusive"):
        bad = next((r for r in rows if r.phase == phase), None)
        if bad is not None:
            _complete(
                p,
                phase,
                f"analysis {bad.analysis_run} {phase.lower()}: {bad.message or 'no message'}",
            )
            return


def _maybe_complete(p: _Pass) -> None:
    st = p.status
    assert st.available_at is not None
    required = [a for a in p.spec.analyses if a.required_for_completion]
    runs = {r.name: r for r in st.analysis_runs}
    required_done = all(runs[a.name].phase == "Successful" for a in required)
    seconds = duration_seconds(p.spec.duration)
    if seconds is not None:
        ends = st.available_at + timedelta(seconds=seconds)
        if p.now < ends:
            p.due_at(ends)
            st.message = f"running until {ends.isoformat()}"
            return
        if required_done:
            _complete(p, "Successful", f"ran for {p.spec.duration}")
        else:
            st.message = "duration over; waiting for the required analyses"
        return
    if required and required_done:
        _complete(p, "Successful", "every required analysis passed")
    elif not required:
        st.message = "running until terminated (no duration, no required analysis)"


def _verdict_so_far(p: _Pass) -> str:
    phases = {r.phase for r in p.world.runs}
    for phase in ("Failed", "Error", "Inconclusive"):
        if phase in phases:
            return phase
    return "Successful"


def _complete(p: _Pass, phase: str, message: str) -> None:
    st = p.status
    assert phase in TERMINAL
    st.phase = phase  # type: ignore[assignment]
    st.message = message
    st.finished_at = p.now
    st.scale_down_at = p.now + timedelta(seconds=p.spec.scale_down_delay_seconds)
    _template_rows(p)
    template_phase: TemplatePhase = (
        "Successful" if phase == "Successful" else "Error" if phase == "Error" else "Failed"
    )
    _set_template_phases(p, template_phase, "" if phase == "Successful" else message)
    p.condition("Completed", True, f"Experiment{phase}", message)
    p.transition(
        f"Experiment{phase}",
        f"experiment {p.name} {phase.lower()}: {message}",
        warning=phase != "Successful",
    )
    _wind_down(p)


def _wind_down(p: _Pass) -> None:
    """A finished experiment: its runs stop, and after the delay its pods go."""
    st = p.status
    for run in p.world.runs:
        if not run.done and not run.terminated and run.name not in p.decision.terminate_runs:
            p.decision.terminate_runs.append(run.name)
    when = st.scale_down_at or p.now
    if p.now < when:
        p.due_at(when)
        return
    for g in p.world.groups:
        if g.replicas > 0:
            p.decision.scale[g.name] = 0
    for row in st.template_statuses:
        row.replicas = 0
        seen = p.world.group(row.replica_set or "")
        row.available_replicas = seen.available if seen else 0
        row.ready_replicas = seen.ready if seen else 0

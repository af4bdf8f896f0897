"""Bookkeeping of a release's analysis runs: the references kept in status, and stopping runs
that no longer decide anything."""

from __future__ import annotations

from herdsman.api.rollout import (
    AnalysisRunRef,
)
from herdsman.engine.canary.context import Canary
from herdsman.naming import analysis_run_name


def record_run(c: Canary, name: str, kind: str, step: int | None, phase: str) -> None:

    refs = [r for r in c.st.analysis_runs if r.name != name]
    refs.append(AnalysisRunRef(name=name, phase=phase, kind=kind, step_index=step))
    c.st.analysis_runs = refs


def stop_runs(c: Canary, kinds: tuple[str, ...] = ("step", "background")) -> None:
    for run in c.world.analysis_runs:
        if (
            run.kind in kinds
            and not run.done
            and not run.terminated
            and run.name not in c.plan.desired.terminate_runs
        ):
            c.plan.desired.terminate_runs.append(run.name)


def stop_step_run(c: Canary, idx: int) -> None:
    name = analysis_run_name(c.plan.name, c.revision, "step", idx, c.st.attempt)
    run = c.world.run(name)
    if run is not None and not run.done and not run.terminated:
        c.plan.desired.terminate_runs.append(name)

"""Analysis that decides a canary: `analysis` steps and background analysis.

A Failed run aborts in the very pass that sees it (traffic first); Inconclusive and Error pause
until a person promotes or aborts: no data is never a pass, and not being able to measure is not
a verdict either.
"""

from __future__ import annotations

from typing import Literal

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.api.rollout import CanaryStep
from herdsman.engine.canary import rollback
from herdsman.engine.canary.context import Canary
from herdsman.engine.world import NewAnalysisRun, ServerGroup
from herdsman.naming import baseline_name


def analysis_passed(c: Canary, step: CanaryStep, idx: int, stable: ServerGroup) -> bool:
    assert step.analysis is not None
    name = c.run_name("step", idx)
    where = f"step {idx + 1}/{len(c.steps)}"
    return follow_run(c, name, "step", idx, step.analysis, stable, where) == "passed"


def background(
    c: Canary, stable: ServerGroup, idx: int, *, accepted: bool
) -> Literal["ok", "undecided", "failed"]:
    """Background analysis, from its starting step until the release completes.

    Failed aborts in this pass. Inconclusive (or could not measure) holds the steps until a
    person decides: a promote (`accepted`) starts a fresh run and carries on; abort aborts.
    """
    analysis = c.strategy.analysis
    if analysis is None or c.st.abort:
        return "failed" if c.st.abort else "ok"
    st = c.st
    name = c.run_name("background")
    run = c.world.run(name)
    if run is not None and run.undecided and not run.terminated and accepted:
        c.plan.desired.terminate_runs.append(name)
        c.plan.unpause("Inconclusive")
        st.attempt += 1  # the next background run (and later step runs) start afresh
        name = c.run_name("background")
        run = None
    if run is None and (idx < (analysis.starting_step or 0) or idx >= len(c.steps)):
        return "ok"  # not started yet; never started for the final promotion alone
    if any(r.name == name for r in c.plan.desired.create_runs):
        return "ok"  # asked for earlier in this pass
    where = f"background from step {min(idx, len(c.steps) - 1) + 1}/{len(c.steps)}"
    verdict = follow_run(c, name, "background", None, analysis, stable, where)
    if verdict == "failed":
        return "failed"
    if run is not None and run.undecided and not run.terminated:
        return "undecided"
    return "ok"


def follow_run(
    c: Canary,
    name: str,
    kind: Literal["step", "background"],
    idx: int | None,
    analysis: RolloutAnalysis,
    stable: ServerGroup,
    where: str,
) -> Literal["passed", "waiting", "failed"]:
    """Start the run if needed and act on its verdict.

    Failed aborts in this very pass. Inconclusive and Error pause until a person promotes
    or aborts: no data is never a pass, and not being able to measure is not a verdict.
    """
    plan = c.plan
    run = c.world.run(name)
    c.plan.record_run(name, kind, run.phase if run else "Pending", idx)
    if run is None:
        groups: dict[str, str | None] = {
            "canary": c.current_name,
            "stable": stable.name,
            "baseline": baseline_name(plan.name, stable.revision) if c.strategy.baseline else None,
        }
        plan.desired.create_runs.append(
            NewAnalysisRun(
                name=name,
                kind=kind,
                revision=c.revision,
                step_index=idx,
                attempt=c.st.attempt,
                analysis=analysis,
                groups=groups,
            )
        )
        plan.transition("AnalysisStarted", f"analysis {name} started ({where})")
        plan.measuring = True
        return "waiting"
    if run.phase == "Successful":
        if kind == "step":
            plan.unpause("Inconclusive")
            plan.transition("AnalysisPassed", f"analysis {name} passed")
        return "passed"
    if run.failed:
        rollback.fail(c, f"analysis {name} failed: {run.message or 'no message'}", stable)
        return "failed"
    if not run.done:
        plan.measuring = True
    if run.undecided and not run.terminated:
        if not plan.paused_by("Inconclusive"):
            verdict = "inconclusive" if run.phase == "Inconclusive" else "could not measure"
            plan.transition(
                "AnalysisInconclusive",
                f"analysis {name} {verdict}: {run.message or 'no message'}; paused until promoted or aborted",
                warning=True,
            )
        plan.pause("Inconclusive")
    return "waiting"

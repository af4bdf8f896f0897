"""Pre- and post-promotion analysis runs: started when due, their verdicts read, stopped when
they no longer decide anything."""

from __future__ import annotations

from herdsman.api.analysis_ref import RolloutAnalysis
from herdsman.engine.bluegreen.context import SKIPPED, WORDS, BlueGreen, Kind, Verdict
from herdsman.engine.world import NewAnalysisRun
from herdsman.naming import analysis_run_name


def run_name(b: BlueGreen, kind: Kind) -> str:
    return analysis_run_name(b.plan.name, b.revision, kind, None, b.st.attempt)


def follow(b: BlueGreen, kind: Kind, analysis: RolloutAnalysis | None) -> Verdict:
    """Start the run if it is due, and read its verdict. No analysis configured: passed."""
    if analysis is None:
        return "passed"
    plan = b.plan
    name = run_name(b, kind)
    ref = next((r for r in b.st.analysis_runs if r.name == name), None)
    if ref is not None and ref.phase == SKIPPED:
        return "passed"
    run = b.world.run(name)
    b.plan.record_run(name, kind, run.phase if run else "Pending")
    words = f"{WORDS[kind]} analysis {name}"
    if run is None:
        plan.desired.create_runs.append(
            NewAnalysisRun(
                name=name,
                kind=kind,
                revision=b.revision,
                step_index=None,
                attempt=b.st.attempt,
                analysis=analysis,
                groups={"canary": b.current_name, "stable": b.st.stable_server_group},
            )
        )
        if ref is None:
            plan.transition("AnalysisStarted", f"{words} started for {b.current_name}")
        return "waiting"
    if run.phase == "Successful":
        if ref is None or ref.phase != "Successful":
            plan.transition("AnalysisPassed", f"{words} passed")
        return "passed"
    if run.failed:
        return "failed"
    if run.phase in ("Inconclusive", "Error"):
        # Error is a verdict only where world.py says `failed`; otherwise it is "could not
        # measure", which is never a pass: a person decides, as for Inconclusive.
        if not plan.paused_by("Inconclusive"):
            verdict = "inconclusive" if run.phase == "Inconclusive" else "could not measure"
            plan.transition(
                "AnalysisInconclusive",
                f"{words} {verdict}: {run.message or 'no message'};"
                " paused until promoted or aborted",
                warning=True,
            )
        plan.pause("Inconclusive")
        return "inconclusive"
    return "waiting"


def failed_run(b: BlueGreen) -> Kind | None:
    """The kind of this attempt's analysis run that has failed, if one has."""
    for kind in WORDS:
        run = b.world.run(run_name(b, kind))
        ref = next((r for r in b.st.analysis_runs if r.name == run_name(b, kind)), None)
        if run is not None and run.failed and (ref is None or ref.phase != SKIPPED):
            return kind
    return None

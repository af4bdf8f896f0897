"""The canary `experiment` step: an Experiment beside the canary decides whether the rollout goes on.

The step starts an Experiment owned by the Rollout, named from persisted facts only (rollout,
revision, step, attempt) so a create repeated after a crash finds its earlier self. The step is
done when the Experiment is Successful; Failed or Error aborts the rollout in the pass that
sees it (the abort path of a failed analysis: traffic back first); Inconclusive pauses until a
person promotes or aborts, as an inconclusive analysis does. The verdict lives in the
Experiment's status, the position in the Rollout's: nothing is remembered in between.

Experiments that no longer decide anything — a step left by a promotion, an abort, a new
revision, a completed rollout — are terminated by `tidy` on every pass.

Not done yet: the templates' `weight` through a traffic router (the experiment's pods get no
share of the router's traffic; the weight is accepted and recorded on the Experiment only).
"""

from __future__ import annotations

from herdsman.api.rollout import CanaryStep
from herdsman.engine.canary import rollback
from herdsman.engine.canary.context import Canary
from herdsman.engine.world import NewExperiment, ServerGroup
from herdsman.naming import experiment_name as _experiment_name


def experiment_name(c: Canary, idx: int) -> str:
    """e.g. checkout-v007-exp2-a0: the experiment of step 2 of revision 7, first attempt."""
    return _experiment_name(c.plan.name, c.revision, idx, c.st.attempt)


def experiment_passed(c: Canary, step: CanaryStep, idx: int, stable: ServerGroup) -> bool:
    assert step.experiment is not None
    plan = c.plan
    name = experiment_name(c, idx)
    where = f"step {idx + 1}/{len(c.steps)}"
    exp = c.world.experiment(name)
    if exp is None:
        if not any(e.name == name for e in plan.desired.create_experiments):
            plan.desired.create_experiments.append(
                NewExperiment(
                    name=name,
                    revision=c.revision,
                    step_index=idx,
                    attempt=c.st.attempt,
                    step=step.experiment,
                    stable_group=stable.name,
                    stable_pod_hash=stable.pod_hash,
                    canary_pod_hash=c.pod_hash,
                )
            )
            plan.transition("ExperimentStarted", f"experiment {name} started ({where})")
        plan.measuring = True
        return False
    if exp.phase == "Successful":
        plan.unpause("Inconclusive")
        plan.transition("ExperimentPassed", f"experiment {name} passed ({where})")
        return True
    if exp.phase in ("Failed", "Error"):
        rollback.fail(
            c,
            f"experiment {name} {exp.phase.lower()}: {exp.message or 'no message'}",
            stable,
        )
        return False
    if exp.phase == "Inconclusive":
        if not plan.paused_by("Inconclusive"):
            plan.transition(
                "ExperimentInconclusive",
                f"experiment {name} inconclusive: {exp.message or 'no message'}; paused until"
                " promoted or aborted",
                warning=True,
            )
        plan.pause("Inconclusive")
        return False
    plan.measuring = True
    return False


def tidy(c: Canary) -> None:
    """Terminate every experiment still running that no longer decides a step."""
    idx = c.st.current_step_index
    keep = None
    if (
        not c.st.abort
        and c.st.canary_server_group is not None
        and idx is not None
        and idx < len(c.steps)
        and c.steps[idx].experiment is not None
    ):
        keep = experiment_name(c, idx)
    for exp in c.world.experiments:
        if exp.name == keep or exp.done or exp.terminating:
            continue
        if exp.name not in c.plan.desired.terminate_experiments:
            c.plan.desired.terminate_experiments.append(exp.name)

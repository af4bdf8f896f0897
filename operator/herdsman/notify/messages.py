"""Which triggers a pass fired, and the message each one says: pure, from the rollout and the
decision whose status was just written (so each transition is told exactly once, like its Event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from herdsman.api.rollout import Rollout
from herdsman.engine.world import Decision

# Transition reasons (the Events' vocabulary) that fire a trigger by themselves.
BY_REASON = {
    "RolloutCompleted": "on-rollout-completed",
    "RolloutAborted": "on-rollout-aborted",
    "AnalysisInconclusive": "on-analysis-inconclusive",
    "StepStarted": "on-rollout-step-started",
}
# Pauses that wait for a person (a timed pause step does not).
HUMAN_PAUSES = ("Inconclusive", "UserPause", "PauseStep")

DEFAULT_TEMPLATES = {
    "on-rollout-completed": "{rollout} revision {revision} completed: {message}",
    "on-rollout-aborted": "{rollout} revision {revision} aborted: {message}",
    "on-rollout-paused": "{rollout} revision {revision} paused at step {step}, waiting for a"
    " person: {message}",
    "on-analysis-inconclusive": "{rollout} revision {revision}: {message}",
    "on-rollout-step-started": "{rollout} revision {revision} at {weight}%: {message}",
}


@dataclass(frozen=True)
class Fired:
    trigger: str
    fields: dict[str, str]

    def text(self, templates: Mapping[str, str]) -> str:
        template = templates.get(self.trigger) or DEFAULT_TEMPLATES[self.trigger]
        try:
            return template.format_map(_Lenient(self.fields))
        except (ValueError, IndexError):  # a malformed template: say it plainly, never fail
            return DEFAULT_TEMPLATES[self.trigger].format_map(_Lenient(self.fields))

    @property
    def title(self) -> str:
        return f"[herdsman] {self.fields['rollout']}: {self.trigger}"


class _Lenient(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fired(rollout: Rollout, decision: Decision) -> list[Fired]:
    st, old = decision.status, rollout.status
    base = {
        "rollout": f"{rollout.metadata.namespace or 'default'}/{rollout.metadata.name}",
        "namespace": rollout.metadata.namespace or "default",
        "name": rollout.metadata.name,
        "revision": str(st.current_revision or ""),
        "step": st.step or "",
        "weight": str(st.canary_weight),
        "phase": st.phase or "",
        "reason": st.abort_reason or "",
    }
    out = []
    for t in decision.transitions:
        trigger = BY_REASON.get(t.reason)
        if trigger is not None:
            out.append(Fired(trigger, {**base, "event": t.reason, "message": t.message}))
    before = {p.reason for p in old.pause_conditions}
    human = [
        p.reason
        for p in st.pause_conditions
        if p.reason in HUMAN_PAUSES
        and p.reason not in before
        and _waits(rollout, decision, p.reason)
    ]
    if human:
        why = {"Inconclusive": "analysis inconclusive", "UserPause": "paused by a user"}
        message = why.get(human[0], "a pause step waits to be promoted")
        out.append(Fired("on-rollout-paused", {**base, "event": human[0], "message": message}))
    return out


def _waits(rollout: Rollout, decision: Decision, reason: str) -> bool:
    """A PauseStep waits for a person only without a duration."""
    if reason != "PauseStep":
        return True
    canary = rollout.spec.strategy.canary
    idx = decision.status.current_step_index
    if canary is None or idx is None or idx >= len(canary.steps):
        return False
    pause = canary.steps[idx].pause
    return pause is not None and pause.duration is None

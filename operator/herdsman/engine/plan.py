"""The scratchpad one decision is built on: new status, desired writes, transitions, due times.

Strategies (canary.py, bluegreen.py) describe *what* should happen; the Plan records it in one
place so the rules that cut across strategies — conditions, phases, the one-line-per-transition
promise, the earliest due time — are written once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herdsman.api.base import Condition, ConditionStatus
from herdsman.api.rollout import Rollout, RolloutStatus
from herdsman.api.rollout_status import AnalysisRunRef, PauseCondition
from herdsman.engine.world import Decision, Desired, Transition, World


class Plan:
    def __init__(self, rollout: Rollout, world: World, now: datetime) -> None:
        self.rollout = rollout
        self.spec = rollout.spec
        self.old = rollout.status
        self.world = world
        self.now = now
        self.status: RolloutStatus = rollout.status.model_copy(deep=True)
        self.desired = Desired()
        self.transitions: list[Transition] = []
        self._due: datetime | None = None
        # Waiting on an analysis verdict: time passing is expected, not a stalled rollout.
        self.measuring = False
        self.status.observed_generation = rollout.metadata.generation
        # Written by the doing layer when the API server refused a write; each pass starts
        # afresh, and a refusal that persists is reported again.
        self.drop_condition("ReconcileError")

    @property
    def name(self) -> str:
        return self.rollout.metadata.name

    # --- announcements -----------------------------------------------------------------------

    def transition(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Record a state change: it becomes one Event and one log line once status is saved."""
        self.transitions.append(Transition(reason=reason, message=message, warning=warning))

    # --- timing ------------------------------------------------------------------------------

    def due_at(self, when: datetime | None) -> None:
        """Ask to be reconciled again no later than `when`."""
        if when is None:
            return
        if self._due is None or when < self._due:
            self._due = when

    def due_in(self, seconds: float) -> None:
        self.due_at(self.now + timedelta(seconds=max(0.0, seconds)))

    # --- conditions --------------------------------------------------------------------------

    def condition(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        """Set a condition; lastTransitionTime moves only when the status value changes."""
        value: ConditionStatus = "True" if status else "False"
        existing = next((c for c in self.status.conditions if c.type == type_), None)
        if existing is None:
            self.status.conditions.append(
                Condition(
                    type=type_,
                    status=value,
                    reason=reason,
                    message=message,
                    last_transition_time=self.now,
                    observed_generation=self.status.observed_generation,
                )
            )
            return
        if existing.status != value:
            existing.last_transition_time = self.now
        existing.status = value
        existing.reason = reason
        existing.message = message
        existing.observed_generation = self.status.observed_generation

    def drop_condition(self, type_: str) -> None:
        self.status.conditions = [c for c in self.status.conditions if c.type != type_]

    def has_condition(self, type_: str, status: str = "True") -> bool:
        return any(c.type == type_ and c.status == status for c in self.status.conditions)

    # --- pauses ------------------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not any(p.reason == reason for p in self.status.pause_conditions):
            self.status.pause_conditions.append(PauseCondition(reason=reason, start_time=self.now))

    def unpause(self, reason: str | None = None) -> None:
        self.status.pause_conditions = [
            p for p in self.status.pause_conditions if reason is not None and p.reason != reason
        ]

    def paused_by(self, reason: str) -> bool:
        return any(p.reason == reason for p in self.status.pause_conditions)

    # --- analysis runs -----------------------------------------------------------------------

    def record_run(self, name: str, kind: str, phase: str, step: int | None = None) -> None:
        """Keep a run's reference in status (one per name), with the phase last seen."""
        refs = [r for r in self.status.analysis_runs if r.name != name]
        refs.append(AnalysisRunRef(name=name, phase=phase, kind=kind, step_index=step))
        self.status.analysis_runs = refs

    def stop_runs(self, kinds: tuple[str, ...] | None = None) -> None:
        """Terminate every run still measuring (of these kinds): it no longer decides anything."""
        for run in self.world.analysis_runs:
            if kinds is None or run.kind in kinds:
                self.stop_run(run.name)

    def stop_run(self, name: str) -> None:
        run = self.world.run(name)
        if (
            run is not None
            and not run.done
            and not run.terminated
            and name not in self.desired.terminate_runs
        ):
            self.desired.terminate_runs.append(name)

    # --- result ------------------------------------------------------------------------------

    def decision(self) -> Decision:
        requeue = None
        if self._due is not None:
            requeue = max(0.0, (self._due - self.now).total_seconds())
        return Decision(
            desired=self.desired,
            status=self.status,
            transitions=self.transitions,
            requeue_after=requeue,
        )

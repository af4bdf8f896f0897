"""The canary strategy: a new server group beside the stable one, traffic moved step by step.

One call decides one reconcile. The position is `status.currentStepIndex`; a step is left when
the world shows it is done (weight reached, pause over, analysis passed, user promoted), and
several steps may be left in one pass when each is already satisfied. Everything that must
survive a crash is written to status; nothing here remembers anything between calls.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from herdsman.api.base import duration_seconds
from herdsman.api.rollout import (
    CanaryStep,
    CanaryStrategy,
    Role,
    RolloutAnalysis,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
)
from herdsman.engine import groups, weights
from herdsman.engine.groups import Targets
from herdsman.engine.plan import Plan
from herdsman.engine.world import GroupKind, NewAnalysisRun, ServerGroup, TrafficTarget
from herdsman.naming import LABEL_GROUP, analysis_run_name, baseline_name, template_hash

# With a router, a write is confirmed by reading the router back on the next pass; nothing
# watches the router's objects, so that pass is asked for this soon.
ROUTER_RECHECK_SECONDS = 1.0


def describe(step: CanaryStep) -> str:
    """A step as a person reads it in logs and the plugin: `setWeight 20`, `pause 30s`."""
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return (
            f"pause {step.pause.duration}"
            if step.pause.duration is not None
            else "pause (until promoted)"
        )
    if step.set_canary_scale is not None:
        s = step.set_canary_scale
        if s.replicas is not None:
            return f"setCanaryScale {s.replicas} pods"
        if s.weight is not None:
            return f"setCanaryScale {s.weight}%"
        return "setCanaryScale matchTrafficWeight"
    if step.analysis is not None:
        return "analysis " + ", ".join(t.template_name for t in step.analysis.templates)
    if step.set_header_route is not None:
        return f"setHeaderRoute {step.set_header_route.name}"
    if step.set_mirror_route is not None:
        return f"setMirrorRoute {step.set_mirror_route.name}"
    return "empty"


def weight_before(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at step `index`: the last setWeight before it, 0 if none."""
    weight = 0
    for step in steps[:index]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def decide(plan: Plan) -> None:
    strategy = plan.spec.strategy.canary
    assert strategy is not None
    _Canary(plan, strategy).run()


class _Canary:
    def __init__(self, plan: Plan, strategy: CanaryStrategy) -> None:
        self.plan = plan
        self.strategy = strategy
        self.steps = strategy.steps
        self.st = plan.status
        self.world = plan.world
        self.now = plan.now
        self.total = plan.spec.replicas
        self.routed = strategy.traffic_routing is not None
        self.pod_hash = template_hash(plan.spec.template.to_wire())
        self.revision = groups.revision_for(plan, self.pod_hash)
        self.current_name = groups.release_name(plan, self.revision)
        self.current = self.world.release(self.pod_hash)
        self.scale_down_at = groups.recorded_scale_down(plan)
        self.roles: dict[str, Role] = {}
        self.sizes: dict[str, int] = {}
        # A revision seen for the first time in this pass (its first step is announced).
        self.fresh = False

    # --- entry -------------------------------------------------------------------------------

    def run(self) -> None:
        if not self.plan.spec.paused:
            self.plan.unpause("UserPause")  # resumed: the pause the user asked for is over
        self._track_revision()
        stable = groups.protected_stable(self.plan, self.pod_hash)
        if stable is not None and stable.pod_hash != self.pod_hash:
            # Inferred after a lost status, or recorded before: either way it is what we protect.
            self.st.stable_server_group, self.st.stable_revision = stable.name, stable.revision
        if stable is None or stable.pod_hash == self.pod_hash:
            self._steady(stable)
        elif self.st.abort:
            # Checked before a fast rollback too: an abort then keeps the stable it protects.
            self._abort(stable)
        elif self.current is not None and self.current.revision < stable.revision:
            self.st.promote = None  # a rollback skips every step already: nothing to promote
            self._promote(stable, reason="FastRollback")
        else:
            if self.st.aborted_at is not None:
                self._retry()
            if self.plan.spec.paused:
                self._hold(stable)
            else:
                self._progress(stable)
        self._finish()

    # --- revision tracking -----------------------------------------------------------------------

    def _track_revision(self) -> None:
        st, plan = self.st, self.plan
        if st.current_pod_hash == self.pod_hash:
            return
        self.fresh = True
        if st.current_pod_hash is not None:
            abandoned = st.canary_server_group
            note = (
                f"; abandoning canary {abandoned}"
                if abandoned and abandoned != self.current_name
                else ""
            )
            plan.transition(
                "NewRevision",
                f"template changed: revision {self.revision} ({self.current_name}){note}",
            )
        groups.begin_revision(plan, self.revision, self.pod_hash)
        st.current_step_index = 0 if self.steps else None
        st.canary_weight = 0
        st.pause_conditions = []

    # --- steady state: no canary -----------------------------------------------------------------

    def _steady(self, stable: ServerGroup | None) -> None:
        plan, st = self.plan, self.st
        if stable is None:
            if st.stable_server_group != self.current_name:
                plan.transition(
                    "Initialized",
                    f"{self.current_name} is the first revision: made stable without steps",
                )
        elif st.canary_server_group and st.abort:
            plan.transition(
                "Rollback", f"template is back to stable {stable.name}; canary abandoned"
            )
        st.abort = False
        st.aborted_at = None
        st.abort_reason = None
        st.promote = None
        st.pause_conditions = [p for p in st.pause_conditions if p.reason == "UserPause"]
        st.stable_server_group = self.current_name
        st.stable_revision = self.revision
        st.canary_server_group = None
        st.baseline_server_group = None
        st.canary_weight = 0
        st.current_step_index = len(self.steps) if self.steps else None
        self._stop_runs()
        targets = Targets()
        targets.want(
            self.current_name, self.total, blueprint=(self.revision, self.pod_hash, "release")
        )
        self.roles[self.current_name] = "stable"
        self._scale(targets)
        self._services(stable_group=self.current_name, canary_group=self.current_name)
        # With a router: 0% to the canary and no header or mirror routes, every pass (one read,
        # no write when it already holds that) — a completion cut short is finished here.
        self._traffic(None, 0)

    # --- progress through the steps --------------------------------------------------------------

    def _progress(self, stable: ServerGroup) -> None:
        plan, st, steps = self.plan, self.st, self.steps
        idx = min(st.current_step_index or 0, len(steps))
        skip_current = False
        request, st.promote = st.promote, None
        if request is not None:
            if request.full:
                if idx < len(steps):
                    plan.transition(
                        "PromotedFull",
                        f"promoted past every remaining step from step {idx + 1}/{len(steps)}",
                    )
                idx = len(steps)
                plan.unpause()
            elif request.from_step is None or request.from_step == idx:
                skip_current = idx < len(steps)
            # A request for a step already left is stale: dropped without effect.

        if self.fresh and idx == 0 and steps:
            # The first step is a step like any other: announced, so the log tells it all.
            plan.transition("StepStarted", f"step 1/{len(steps)}: {describe(steps[0])}")
        weight = weight_before(steps, idx)
        background = self._background(stable, idx, accepted=request is not None)
        if background == "failed":
            return
        if background == "undecided":
            # Paused on an analysis that could not vouch for the canary: hold where we are.
            st.current_step_index = idx
            if idx >= len(steps):
                self._promote(stable, reason="Completed", switch=False)
            else:
                self._shift(stable, weight, steps[idx])
            return
        while idx < len(steps):
            step = steps[idx]
            if skip_current:
                skip_current = False
                plan.unpause()
                self._stop_step_run(idx)
                plan.transition(
                    "Promoted", f"step {idx + 1}/{len(steps)} ({describe(step)}) promoted by user"
                )
                idx = self._enter(idx + 1)
                continue
            if step.set_weight is not None:
                weight = step.set_weight
                st.canary_weight = weight
            if not self._step_done(step, idx, weight, stable):
                break
            # setHeaderRoute / setMirrorRoute are applied with the traffic write below: done.
            idx = self._enter(idx + 1)
        st.current_step_index = idx
        self._background(stable, idx, accepted=False)  # start it if the steps just reached it
        if st.abort:
            return
        if idx >= len(steps):
            self._promote(stable, reason="Completed")
            return
        self._shift(stable, weight, steps[idx])

    def _enter(self, idx: int) -> int:
        """Move to step `idx`, announcing it; returns idx."""
        st, plan = self.st, self.plan
        st.current_step_index = idx
        st.step_started_at = self.now
        st.last_progress_at = self.now
        plan.unpause("PauseStep")
        if idx < len(self.steps):
            plan.transition(
                "StepStarted", f"step {idx + 1}/{len(self.steps)}: {describe(self.steps[idx])}"
            )
        return idx

    def _step_done(self, step: CanaryStep, idx: int, weight: int, stable: ServerGroup) -> bool:
        if step.set_weight is not None or step.set_canary_scale is not None:
            return self._weight_reached(stable, weight, step)
        if step.pause is not None:
            return self._pause_over(step, idx)
        if step.analysis is not None:
            return self._analysis_passed(step, idx, stable)
        route: SetHeaderRoute | SetMirrorRoute | None = (
            step.set_header_route or step.set_mirror_route
        )
        if route is not None:
            return self._route_held(route.name)
        return True

    def _route_held(self, name: str) -> bool:
        """A header or mirror route step is done once the router is seen to hold it (or, for an
        empty match, no longer to hold it). It is written with this pass's traffic write."""
        router = self.world.router
        if not self.routed or router is None:
            return True
        headers, mirrors = self._routes()
        wanted = name in {r.name for r in headers} | {r.name for r in mirrors}
        if (name in router.routes) == wanted:
            return True
        self.plan.due_in(ROUTER_RECHECK_SECONDS)
        return False

    def _weight_reached(self, stable: ServerGroup, weight: int, step: CanaryStep) -> bool:
        if not groups.reached(self.plan, self._targets(stable, weight, step)):
            return False
        if not self.routed:
            return True
        # With a router the step is done when the router holds the weight, not when it is
        # merely written: the weight is sent in the pass that finds the pods ready and read
        # back on the next one.
        sent = self._sent(stable, weight)
        if sent != self._effective(weight):
            return False
        router = self.world.router
        if router is None or (
            router.canary_weight == sent and router.baseline_weight == self._baseline_share(sent)
        ):
            return True
        self.plan.due_in(ROUTER_RECHECK_SECONDS)
        return False

    def _pause_over(self, step: CanaryStep, idx: int) -> bool:
        assert step.pause is not None
        plan, st = self.plan, self.st
        started = st.step_started_at or self.now
        seconds = duration_seconds(step.pause.duration)
        if seconds is not None and self.now >= started + timedelta(seconds=seconds):
            return True
        plan.pause("PauseStep")
        if seconds is not None:
            plan.due_at(started + timedelta(seconds=seconds))
        return False

    def _analysis_passed(self, step: CanaryStep, idx: int, stable: ServerGroup) -> bool:
        assert step.analysis is not None
        name = analysis_run_name(self.plan.name, self.revision, "step", idx, self.st.attempt)
        where = f"step {idx + 1}/{len(self.steps)}"
        return self._follow_run(name, "step", idx, step.analysis, stable, where) == "passed"

    def _background(
        self, stable: ServerGroup, idx: int, *, accepted: bool
    ) -> Literal["ok", "undecided", "failed"]:
        """Background analysis, from its starting step until the release completes.

        Failed aborts in this pass. Inconclusive (or could not measure) holds the steps until a
        person decides: a promote (`accepted`) starts a fresh run and carries on; abort aborts.
        """
        analysis = self.strategy.analysis
        if analysis is None or self.st.abort:
            return "failed" if self.st.abort else "ok"
        st = self.st
        name = analysis_run_name(self.plan.name, self.revision, "background", None, st.attempt)
        run = self.world.run(name)
        if run is not None and run.undecided and not run.terminated and accepted:
            self.plan.desired.terminate_runs.append(name)
            self.plan.unpause("Inconclusive")
            st.attempt += 1  # the next background run (and later step runs) start afresh
            name = analysis_run_name(self.plan.name, self.revision, "background", None, st.attempt)
            run = None
        if run is None and (idx < (analysis.starting_step or 0) or idx >= len(self.steps)):
            return "ok"  # not started yet; never started for the final promotion alone
        if any(r.name == name for r in self.plan.desired.create_runs):
            return "ok"  # asked for earlier in this pass
        where = f"background from step {min(idx, len(self.steps) - 1) + 1}/{len(self.steps)}"
        verdict = self._follow_run(name, "background", None, analysis, stable, where)
        if verdict == "failed":
            return "failed"
        if run is not None and run.undecided and not run.terminated:
            return "undecided"
        return "ok"

    def _follow_run(
        self,
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
        plan = self.plan
        run = self.world.run(name)
        self._record_run(name, kind, idx, run.phase if run else "Pending")
        if run is None:
            groups: dict[str, str | None] = {
                "canary": self.current_name,
                "stable": stable.name,
                "baseline": baseline_name(plan.name, stable.revision)
                if self.strategy.baseline
                else None,
            }
            plan.desired.create_runs.append(
                NewAnalysisRun(
                    name=name,
                    kind=kind,
                    revision=self.revision,
                    step_index=idx,
                    attempt=self.st.attempt,
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
            self._fail(f"analysis {name} failed: {run.message or 'no message'}", stable)
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

    # --- traffic and replicas for a weight -----------------------------------------------------

    def _targets(self, stable: ServerGroup, weight: int, step: CanaryStep | None) -> Targets:
        t = Targets()
        blueprint: tuple[int, str, GroupKind] = (self.revision, self.pod_hash, "release")
        canary_name = self.current_name
        base = baseline_name(self.plan.name, stable.revision) if self.strategy.baseline else None
        if not self.routed:
            lim = weights.limits(self.total, self.strategy.max_surge, self.strategy.max_unavailable)
            split = weights.replica_split(
                self.total, weight, baseline=base is not None, ceiling=lim.ceiling
            )
            t.want(canary_name, split.canary, blueprint=blueprint)
            if base is not None:
                t.want(
                    base, split.baseline, blueprint=(stable.revision, stable.pod_hash, "baseline")
                )
            t.want(stable.name, split.stable)
            return t
        # With a router the weight lives in the router; replicas only need to carry it. While
        # the router still holds another weight than the step's, each side keeps the pods for
        # the larger of its two shares (make before break): the canary shrinks only once its
        # share has moved down, and (dynamicStableScale) the stable group only once it moved up.
        scale = self._canary_scale(weight)
        sent = self._sent(stable, weight)
        if sent > self._effective(weight) and self.current is not None:
            scale = max(scale, self.current.replicas)
        t.want(canary_name, scale, blueprint=blueprint)
        if base is not None:
            t.want(
                base,
                scale if 0 < weight < 100 else 0,
                blueprint=(stable.revision, stable.pod_hash, "baseline"),
            )
        stable_size = self.total
        if self.strategy.dynamic_stable_scale:
            stable_size = self._stable_size(min(self._effective(weight), sent))
            # A canary scaled below its weight's share (setCanaryScale) must not take the total
            # under the availability floor: the rolling update could never get there.
            floor = weights.limits(
                self.total, self.strategy.max_surge, self.strategy.max_unavailable
            ).floor
            stable_size = min(self.total, max(stable_size, floor - scale))
        t.want(stable.name, stable_size)
        return t

    def _effective(self, weight: int) -> int:
        """The step's weight as the router can carry it: 0 when the canary is scaled to 0."""
        return weight if self._canary_scale(weight) > 0 else 0

    def _stable_size(self, weight: int) -> int:
        """dynamicStableScale: the stable pods that carry the rest of `weight`."""
        left = self.total - weights.canary_replicas(self.total, weight)
        return min(self.total, max(left, 0 if weight >= 100 else 1))

    def _held(self) -> int:
        """The canary weight the router holds now, as far as it reaches this canary: 0 while the
        canary Service still selects another group (a new revision's first passes)."""
        svc = self.world.services.get(self.strategy.canary_service or "")
        if svc is None or svc.selector.get(LABEL_GROUP) != self.current_name:
            return 0
        router = self.world.router
        if router is not None and router.canary_weight is not None:
            return router.canary_weight
        return self.plan.old.weights.canary

    def _sent(self, stable: ServerGroup, weight: int) -> int:
        """The weight the router may be told in this pass for a step asking `weight`.

        Never more than the canary's ready pods carry: moving up waits until the canary group
        has every pod the step sizes it at, and nothing goes to a canary with no available pod.
        With dynamicStableScale, moving down waits until the stable group can take the share
        back. Until then the router keeps what it holds.
        """
        up = self.current.available if self.current is not None else 0
        if up == 0:
            return 0
        want = self._effective(weight)
        held = self._held()
        # With a baseline the two move up together: both judged on the same share.
        ready = up >= self._canary_scale(weight)
        if self.strategy.baseline_service:  # the CRD allows it only with baseline: true
            base = self.world.group(self.st.baseline_server_group)
            ready = ready and base is not None and base.available >= self._canary_scale(weight)
        # Up: wait for the canary's pods. Down (dynamicStableScale): wait for stable's.
        wait_up = want > held and not ready
        wait_down = (
            want < held
            and self.strategy.dynamic_stable_scale
            and stable.available < self._stable_size(want)
        )
        sent = held if wait_up or wait_down else want
        return sent if ready else self._carried(sent, up)

    def _carried(self, weight: int, up: int) -> int:
        """`weight`, lowered to what `up` available canary pods carry (pods were lost, or
        never came up). setCanaryScale sizes the canary apart from its weight: kept as is."""
        if self._scale_override() is not None:
            return weight
        return min(
            weight,
            max((w for w in range(101) if weights.canary_replicas(self.total, w) <= up), default=0),
        )

    def _scale_override(self) -> SetCanaryScale | None:
        """The setCanaryScale in force at the current step (a setWeight ends it)."""
        idx = min(self.st.current_step_index or 0, len(self.steps))
        override = None
        for step in self.steps[: idx + 1]:
            if step.set_weight is not None:
                override = None
            if step.set_canary_scale is not None:
                override = step.set_canary_scale
        return override

    def _canary_scale(self, weight: int) -> int:
        """Canary pods with a router: the latest setCanaryScale in force, else the weight's share."""
        override = self._scale_override()
        if override is not None and weight < 100:
            if override.replicas is not None:
                return override.replicas
            if override.weight is not None:
                return weights.canary_replicas(self.total, override.weight)
        return weights.canary_replicas(self.total, weight)

    def _shift(self, stable: ServerGroup, weight: int, step: CanaryStep) -> None:
        targets = self._targets(stable, weight, step)
        self._assign_roles(stable)
        self._scale(targets)
        canary_up = self.current is not None and self.current.available > 0
        base = self.world.group(self.st.baseline_server_group)
        self._services(
            stable_group=stable.name,
            canary_group=self.current_name if canary_up else stable.name,
            baseline_group=base.name if base is not None and base.available > 0 else stable.name,
        )
        if self.routed:
            self._traffic(stable, self._sent(stable, weight), baseline=True)

    def _assign_roles(self, stable: ServerGroup) -> None:
        st = self.st
        self.roles[stable.name] = "stable"
        self.roles[self.current_name] = "canary"
        st.canary_server_group = self.current_name
        if self.strategy.baseline:
            base = baseline_name(self.plan.name, stable.revision)
            self.roles[base] = "baseline"
            st.baseline_server_group = base

    # --- promotion, abort, retry, hold ---------------------------------------------------------

    def _promote(self, stable: ServerGroup, *, reason: str, switch: bool = True) -> None:
        """All steps done (or a fast rollback): the canary takes every pod, then becomes stable.

        `switch=False`: grow, but do not make it stable (a background analysis is undecided)."""
        plan, st = self.plan, self.st
        targets = Targets()
        targets.want(
            self.current_name, self.total, blueprint=(self.revision, self.pod_hash, "release")
        )
        # With a router the canary grows to full size while the router keeps the weight it
        # holds (never more than its ready pods carry); the switch comes once it is all up.
        hold = 0
        if not self.routed:
            targets.want(stable.name, 0)
        else:
            up = self.current.available if self.current is not None else 0
            hold = self._carried(self._held(), up) if up > 0 else 0
            keep = self._stable_size(hold) if self.strategy.dynamic_stable_scale else self.total
            targets.want(stable.name, keep)
        if reason == "FastRollback" and st.canary_server_group != self.current_name:
            plan.transition(
                "FastRollback", f"rolling back to existing {self.current_name}: no steps re-run"
            )
            st.current_step_index = len(self.steps) if self.steps else None
            st.canary_server_group = self.current_name
        self._assign_roles(stable)
        if self.strategy.baseline:
            base = baseline_name(plan.name, stable.revision)
            group = self.world.group(base)
            if self.routed and group is not None and self._held_baseline() > 0:
                # The router still sends the baseline its share: its pods stay until the
                # router holds 0 for it (written below), then it goes on the next pass.
                targets.want(base, group.replicas)
                switch = False
            else:
                targets.want(base, 0)
                self.roles.pop(base, None)
                st.baseline_server_group = None
        st.canary_weight = 100
        self._stop_runs(kinds=("step",))
        if groups.reached(plan, targets) and switch:
            # The new group carries everything: it becomes stable in this very pass.
            old = stable
            st.stable_server_group = self.current_name
            st.stable_revision = self.revision
            st.canary_server_group = None
            st.canary_weight = 0
            st.current_step_index = len(self.steps) if self.steps else None
            plan.unpause()
            self._stop_runs()
            self.roles = {self.current_name: "stable", old.name: "old"}
            if self.routed and old.replicas > 0:
                # A group with no pods has nothing to keep warm (and status keeps no
                # scaleDownAt for one: promising it would be a second write next pass).
                self.scale_down_at[old.name] = groups.later(
                    self.now, self.strategy.scale_down_delay_seconds
                )
            plan.transition(
                "RolloutCompleted" if reason == "Completed" else "RollbackCompleted",
                f"{self.current_name} is stable and serves 100%; {old.name} "
                + (
                    "scales down in " + f"{self.strategy.scale_down_delay_seconds}s"
                    if self.routed
                    else "is scaled down"
                ),
            )
            final = Targets()
            final.want(
                self.current_name, self.total, blueprint=(self.revision, self.pod_hash, "release")
            )
            self._scale(final)
            self._services(stable_group=self.current_name, canary_group=self.current_name)
            self._traffic(None, 0)
            return
        self._scale(targets)
        canary_up = self.current is not None and self.current.available > 0
        self._services(
            stable_group=stable.name, canary_group=self.current_name if canary_up else stable.name
        )
        # One pass later, with every canary pod up, the switch: both Services select the new
        # group and the canary weight goes to 0 (selectors are written before the router).
        self._traffic(stable, hold)

    def _fail(self, message: str, stable: ServerGroup) -> None:
        """Abort in this very pass: the failure is recorded and traffic goes back at once."""
        st = self.st
        st.abort = True
        st.abort_reason = message
        self._abort(stable)

    def _abort(self, stable: ServerGroup) -> None:
        plan, st = self.plan, self.st
        if st.aborted_at is None:
            st.aborted_at = self.now
            why = st.abort_reason or "aborted by user"
            st.message = why
            plan.transition("RolloutAborted", f"{why}; traffic back to {stable.name}", warning=True)
        st.promote = None
        plan.unpause()
        self._stop_runs()
        self._assign_roles(stable)
        st.canary_weight = 0
        targets = Targets()
        targets.want(stable.name, self.total)
        delay_until = st.aborted_at + timedelta(
            seconds=self.strategy.abort_scale_down_delay_seconds
        )
        leaving = [self.current_name] + (
            [st.baseline_server_group] if st.baseline_server_group else []
        )
        for name in leaving:
            if self.routed and self.now < delay_until:
                # Weight 0 in the router already stops traffic; keep the pods warm for a while.
                self.scale_down_at[name] = delay_until
                targets.keep_until[name] = delay_until
            else:
                targets.urgent.add(name)
        targets.order.insert(0, targets.order.pop())  # stable grows first
        self._scale(targets)
        plan.desired.traffic_first = True
        self._services(stable_group=stable.name, canary_group=stable.name)
        self._traffic(stable, 0)

    def _retry(self) -> None:
        plan, st = self.plan, self.st
        st.aborted_at = None
        st.abort_reason = None
        st.attempt += 1
        st.analysis_runs = []
        st.message = ""
        plan.transition(
            "RolloutRetried",
            f"retrying revision {self.revision} from step 1 (attempt {st.attempt})",
        )
        self._enter(0) if self.steps else None
        st.current_step_index = 0 if self.steps else None

    def _hold(self, stable: ServerGroup) -> None:
        """spec.paused: nothing moves; what runs keeps running — and a failed verdict still
        sends traffic back: a pause is no reason to keep serving a release known to be bad."""
        plan = self.plan
        idx = self.st.current_step_index
        names = [analysis_run_name(plan.name, self.revision, "background", None, self.st.attempt)]
        if idx is not None and idx < len(self.steps) and self.steps[idx].analysis is not None:
            names.append(analysis_run_name(plan.name, self.revision, "step", idx, self.st.attempt))
        for name in names:
            run = self.world.run(name)
            if run is not None and run.failed:
                self._fail(f"analysis {name} failed: {run.message or 'no message'}", stable)
                return
        plan.pause("UserPause")
        self._assign_roles(stable)
        self.sizes = {g.name: g.replicas for g in self.world.groups}

    # --- analysis-run bookkeeping ---------------------------------------------------------------

    def _record_run(self, name: str, kind: str, step: int | None, phase: str) -> None:
        from herdsman.api.rollout import AnalysisRunRef

        refs = [r for r in self.st.analysis_runs if r.name != name]
        refs.append(AnalysisRunRef(name=name, phase=phase, kind=kind, step_index=step))
        self.st.analysis_runs = refs

    def _stop_runs(self, kinds: tuple[str, ...] = ("step", "background")) -> None:
        for run in self.world.analysis_runs:
            if (
                run.kind in kinds
                and not run.done
                and not run.terminated
                and run.name not in self.plan.desired.terminate_runs
            ):
                self.plan.desired.terminate_runs.append(run.name)

    def _stop_step_run(self, idx: int) -> None:
        name = analysis_run_name(self.plan.name, self.revision, "step", idx, self.st.attempt)
        run = self.world.run(name)
        if run is not None and not run.done and not run.terminated:
            self.plan.desired.terminate_runs.append(name)

    # --- writes ------------------------------------------------------------------------------------

    def _scale(self, targets: Targets) -> None:
        for name, until in self.scale_down_at.items():
            if name not in targets.replicas:
                targets.keep_until.setdefault(name, until)
        self.sizes = groups.scale(self.plan, targets, ceiling=not self.routed)

    def _services(
        self, *, stable_group: str, canary_group: str, baseline_group: str | None = None
    ) -> None:
        """Point each Service at its group; the baseline Service selects the stable group
        whenever there is no baseline group with pods (like the canary Service without one)."""
        desired = self.plan.desired
        for svc, group in (
            (self.strategy.stable_service, stable_group),
            (self.strategy.canary_service, canary_group),
            (self.strategy.baseline_service, baseline_group or stable_group),
        ):
            if not svc:
                continue
            state = self.world.services.get(svc)
            if state is None or state.selector.get("herdsman.dev/server-group") != group:
                desired.selectors[svc] = group

    def _routes(self) -> tuple[tuple[SetHeaderRoute, ...], tuple[SetMirrorRoute, ...]]:
        """Header and mirror routes in force at the current step, in managedRoutes order: the
        last step naming a route wins, and one with an empty match removes it."""
        idx = min(self.st.current_step_index or 0, len(self.steps))
        last: dict[str, SetHeaderRoute | SetMirrorRoute] = {}
        for step in self.steps[: idx + 1]:
            route: SetHeaderRoute | SetMirrorRoute | None = (
                step.set_header_route or step.set_mirror_route
            )
            if route is not None:
                last[route.name] = route
        routing = self.strategy.traffic_routing
        order = [r.name for r in routing.managed_routes] if routing else []
        live = sorted(
            (r for r in last.values() if r.match),
            key=lambda r: (order.index(r.name) if r.name in order else len(order), r.name),
        )
        return (
            tuple(r for r in live if isinstance(r, SetHeaderRoute)),
            tuple(r for r in live if isinstance(r, SetMirrorRoute)),
        )

    def _baseline_share(self, sent: int) -> int:
        """The baseline Service's weight next to a canary weight `sent` in a step: the same,
        while the baseline group has pods to take it."""
        base = self.world.group(self.st.baseline_server_group)
        if not self.strategy.baseline_service or base is None or base.available == 0:
            return 0
        return sent if 0 < 2 * sent <= 100 else 0

    def _held_baseline(self) -> int:
        """The baseline weight the router holds now (the last status when it is unreadable)."""
        router = self.world.router
        if router is not None and router.baseline_weight is not None:
            return router.baseline_weight
        return self.plan.old.weights.baseline

    def _traffic(self, stable: ServerGroup | None, weight: int, *, baseline: bool = False) -> None:
        """The router's target; `baseline` only while stepping (promotion and abort give the
        baseline's share back to stable)."""
        if not self.routed:
            return
        headers, mirrors = self._routes()
        if stable is None or self.st.abort:
            # Completed (no canary) or aborted: every route to the canary goes with the weight.
            headers, mirrors = (), ()
        self.plan.desired.traffic = TrafficTarget(
            canary_weight=weight,
            canary_group=self.st.canary_server_group,
            stable_group=self.st.stable_server_group
            or (stable.name if stable else self.current_name),
            header_routes=headers,
            mirror_routes=mirrors,
            baseline_weight=self._baseline_share(weight) if baseline and stable else 0,
        )

    # --- status --------------------------------------------------------------------------------------

    def _finish(self) -> None:
        plan, st = self.plan, self.st
        in_use = set(self.roles) | {self.current_name}
        if not self.plan.spec.paused:
            for name in groups.garbage(plan, in_use):
                plan.desired.delete_groups.append(name)
        st.server_groups = groups.rows(plan, self.roles, self.sizes, self.scale_down_at)
        st.current_revision = self.revision
        n = len(self.steps)
        idx = st.current_step_index
        # 1-based for people: "2/5" is the second step; "5/5" with phase Healthy is done.
        st.step = f"{min(idx + 1, n)}/{n}" if idx is not None and n else None
        canary = self.world.group(st.canary_server_group)
        base = self.world.group(st.baseline_server_group)
        if self.routed:
            # What the router holds once this pass's write lands (or, when nothing is written,
            # what it was seen holding).
            traffic = plan.desired.traffic
            router = self.world.router
            if traffic is not None:
                w = traffic.canary_weight if traffic.canary_group else 0
                b = traffic.baseline_weight
            elif router is not None and router.canary_weight is not None:
                w, b = router.canary_weight, router.baseline_weight or 0
            else:
                w, b = plan.old.weights.canary, plan.old.weights.baseline
            w = max(0, min(100, w))
            b = max(0, min(100 - w, b))
            st.weights.canary, st.weights.baseline, st.weights.stable = w, b, 100 - w - b
        else:
            # In effect once this pass's writes land: a group scaled down serves no more pods
            # than it keeps (so an abort reports 0% at once); growth counts when it is available.
            def serving(g: ServerGroup | None) -> int:
                return 0 if g is None else min(g.available, self.sizes.get(g.name, g.replicas))

            shares = {
                "stable": sum(serving(g) for g in self.world.groups if g not in (canary, base)),
                "canary": serving(canary),
                "baseline": serving(base),
            }
            split = weights.traffic_weights(shares)
            st.weights.stable, st.weights.canary, st.weights.baseline = (
                split["stable"],
                split["canary"],
                split["baseline"],
            )

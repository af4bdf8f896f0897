"""The blue/green strategy: a full-size preview group beside the active one, one write to switch.

The new revision's group comes up behind the preview service while the active service keeps
every request on the stable group. Promotion is a gate, then a switch:

    preview   scale the new group to previewReplicaCount; once it is fully available (noted in
              `blueGreen.previewReadyAt`), the preview service selects it, pre-promotion analysis
              starts, and a manual (or timed, autoPromotionSeconds) `BlueGreenPause` begins.
    gate      analysis passed, pause lifted (by promote, by the timer, or never needed):
              `blueGreen.promotedAt` is written.
    switch    the new group is grown to spec.replicas; once fully available the active service
              selects it, in one selector write. The stable group stays at full size.
    post      post-promotion analysis measures the new group under real traffic; a failure
              switches the active service straight back to the stable group, still warm.
    complete  the new group is stable; the previous one waits `scaleDownDelaySeconds` (recorded
              as `serverGroups[].scaleDownAt`) so an undo within that window is one selector
              write and no new pod.

Where traffic is comes from the cluster (the active service's selector), everything else from
status, so a pass interrupted anywhere is finished by the next one. Transitions are announced
when status changes, so a no-op pass announces nothing.

Promote follows Argo Rollouts: a plain promote lifts the pause (and accepts an inconclusive
result); it does not cut short an analysis that is still measuring. A request made before the
preview is ready waits in `status.promote` until it is. `full` skips every remaining gate:
pause and both analyses (recorded as runs in phase `Skipped`); the switch still waits for the
new group to be fully available, which no request can skip.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from herdsman.api.rollout import (
    AnalysisRunRef,
    BlueGreenStatus,
    BlueGreenStrategy,
    Role,
    RolloutAnalysis,
)
from herdsman.engine import groups
from herdsman.engine.groups import Targets
from herdsman.engine.plan import Plan
from herdsman.engine.world import GroupKind, NewAnalysisRun, ServerGroup
from herdsman.naming import LABEL_GROUP, analysis_run_name, template_hash

Kind = Literal["prePromotion", "postPromotion"]
Verdict = Literal["passed", "failed", "inconclusive", "waiting"]
SKIPPED = "Skipped"
WORDS: dict[Kind, str] = {"prePromotion": "pre-promotion", "postPromotion": "post-promotion"}


def decide(plan: Plan) -> None:
    strategy = plan.spec.strategy.blue_green
    assert strategy is not None
    _BlueGreen(plan, strategy).run()


def in_flight(plan: Plan) -> bool:
    """A new revision is between preview and completion (for the progress deadline)."""
    bg = plan.status.blue_green
    return bg is not None and bg.preview_server_group is not None


def summary(plan: Plan) -> str:
    """The status message while a blue/green release is under way, for a person."""
    st = plan.status
    bg = st.blue_green
    if bg is None or bg.preview_server_group is None:
        return f"scaling {st.stable_server_group}"
    new = bg.preview_server_group
    if bg.active_server_group == new:
        run = _ref(plan, "postPromotion")
        check = f"; post-promotion analysis {run.phase.lower()}" if run else ""
        return f"{new} is active{check}; {st.stable_server_group} kept warm for rollback"
    if plan.paused_by("Inconclusive"):
        return "analysis inconclusive: promote or abort"
    if plan.paused_by("BlueGreenPause"):
        strategy = plan.spec.strategy.blue_green
        if strategy and strategy.auto_promotion_enabled and strategy.auto_promotion_seconds:
            pause = next(p for p in st.pause_conditions if p.reason == "BlueGreenPause")
            at = pause.start_time + timedelta(seconds=strategy.auto_promotion_seconds)
            return f"preview {new} ready: auto-promotion at {at.strftime('%H:%M:%SZ')}"
        return f"preview {new} ready: waiting for promotion"
    if bg.promoted_at is not None:
        return f"promoting {new}: active switches once {plan.spec.replicas} pods are available"
    if bg.preview_ready_at is not None:
        run = _ref(plan, "prePromotion")
        return f"preview {new} ready" + (
            f"; pre-promotion analysis {run.phase.lower()}" if run else ""
        )
    g = plan.world.group(new)
    return f"preview {new}: {g.available if g else 0} pods available"


def _ref(plan: Plan, kind: Kind) -> AnalysisRunRef | None:
    return next((r for r in plan.status.analysis_runs if r.kind == kind), None)


class _BlueGreen:
    def __init__(self, plan: Plan, strategy: BlueGreenStrategy) -> None:
        self.plan = plan
        self.strategy = strategy
        self.st = plan.status
        self.world = plan.world
        self.now = plan.now
        self.total = plan.spec.replicas
        self.pod_hash = template_hash(plan.spec.template.to_wire())
        self.revision = groups.revision_for(plan, self.pod_hash)
        self.current_name = groups.release_name(plan, self.revision)
        self.current = self.world.release(self.pod_hash)
        self.bg = (plan.old.blue_green or BlueGreenStatus()).model_copy(deep=True)
        self.scale_down_at = groups.recorded_scale_down(plan)
        self.sizes: dict[str, int] = {}
        self.active_now = self._selects(strategy.active_service)
        # Groups the active service leaves in this pass -> seconds they stay warm.
        self.leaving: dict[str, int] = {}

    # --- entry -------------------------------------------------------------------------------

    def run(self) -> None:
        plan, st = self.plan, self.st
        self._track_revision()
        if plan.spec.paused:
            plan.pause("UserPause")
        else:
            plan.unpause("UserPause")
        stable = groups.protected_stable(self.plan, self.pod_hash)
        if stable is not None and stable.pod_hash != self.pod_hash:
            # Recorded even when it was only inferred (status lost): it is what we protect.
            st.stable_server_group = stable.name
            st.stable_revision = stable.revision
        if stable is None or stable.pod_hash == self.pod_hash:
            self._steady(stable)
        elif self.current is not None and self.current.revision < stable.revision:
            self._fast_rollback(stable)
        elif st.abort:
            self._abort(stable)
        else:
            if st.aborted_at is not None:
                self._retry()
            failed = self._failed_run()
            if plan.spec.paused and failed is not None:
                # A pause holds progress, never a rollback: a failed verdict still sends
                # traffic back to the stable group.
                self._fail(self._failure(failed), stable)
            elif plan.spec.paused:
                self._hold()
            else:
                self._progress(stable)
        self._finish()

    # --- revision tracking -------------------------------------------------------------------

    def _track_revision(self) -> None:
        st, plan, bg = self.st, self.plan, self.bg
        if st.current_pod_hash == self.pod_hash:
            return
        if st.current_pod_hash is not None:
            note = ""
            abandoned = bg.preview_server_group
            if abandoned and abandoned != self.current_name:
                note = f"; abandoning {abandoned}"
                if self.active_now == abandoned and st.stable_server_group:
                    note += f" (active service back to {st.stable_server_group})"
            plan.transition(
                "NewRevision",
                f"template changed: revision {self.revision} ({self.current_name}){note}",
            )
        groups.begin_revision(plan, self.revision, self.pod_hash)
        st.pause_conditions = [p for p in st.pause_conditions if p.reason == "UserPause"]
        bg.preview_ready_at = None
        bg.promoted_at = None

    # --- nothing in flight -------------------------------------------------------------------

    def _steady(self, stable: ServerGroup | None) -> None:
        plan, st, bg = self.plan, self.st, self.bg
        name = self.current_name
        if stable is None and st.stable_server_group != name:
            plan.transition("Initialized", f"{name} is the first revision: made active")
        elif self.active_now is not None and self.active_now != name:
            plan.transition(
                "Rollback",
                f"template is back to stable {name}: active service back to it from"
                f" {self.active_now}",
            )
        elif bg.preview_server_group and st.abort:
            plan.transition("Rollback", f"template is back to stable {name}; preview abandoned")
        st.abort = False
        st.aborted_at = None
        st.promote = None
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        st.stable_server_group = name
        st.stable_revision = self.revision
        bg.preview_server_group = None
        bg.preview_ready_at = None
        self._stop_runs()
        # A service on another group is moved back at once (that group is being left); one
        # that selects none of ours yet waits until this group is fully available.
        self._point_active(name, force=self.active_now is not None)
        self._point(self.strategy.preview_service, name)
        targets = Targets()
        self._want_current(targets, self.total)
        self._scale(targets, active=name)

    # --- a release in flight -----------------------------------------------------------------

    def _progress(self, stable: ServerGroup) -> None:
        self.bg.preview_server_group = self.current_name
        if self.active_now == self.current_name:
            self._post(stable)
        elif self.st.promote is not None and self.st.promote.full:
            self._promote_full()
            self._promoting(stable)
        elif self.bg.promoted_at is not None:
            self._promoting(stable)
        else:
            self._preview(stable)

    def _preview_size(self) -> int:
        wanted = self.strategy.preview_replica_count
        return self.total if wanted is None else min(wanted, self.total)

    def _preview(self, stable: ServerGroup) -> None:
        plan, st, bg, strategy = self.plan, self.st, self.bg, self.strategy
        new = self.current_name
        size = self._preview_size()
        if bg.preview_ready_at is None and self._ready(new, size):
            bg.preview_ready_at = self.now
            manual = not strategy.auto_promotion_enabled
            timed = strategy.auto_promotion_enabled and strategy.auto_promotion_seconds is not None
            if manual or timed:
                plan.pause("BlueGreenPause")
            then = (
                "; waiting for promotion"
                if manual
                else f"; auto-promotion in {strategy.auto_promotion_seconds}s"
                if timed
                else ""
            )
            plan.transition("PreviewReady", f"preview {new} is ready with {size} pods{then}")
        self._keep_pause_honest()

        verdict: Verdict = "passed"
        if bg.preview_ready_at is not None:
            verdict = self._analysis("prePromotion", strategy.pre_promotion_analysis)
        if verdict == "failed":
            self._fail(self._failure("prePromotion"), stable)
            return
        if st.promote is not None and bg.preview_ready_at is not None:
            st.promote = None
            lifted = plan.paused_by("BlueGreenPause") or verdict == "inconclusive"
            plan.unpause("BlueGreenPause")
            plan.unpause("Inconclusive")
            if verdict == "inconclusive":
                verdict = "passed"
            if lifted:
                plan.transition("Promoted", f"preview {new} promoted by user")
        # A request made before the preview is ready waits for it in status.promote.

        if (
            bg.preview_ready_at is not None
            and verdict == "passed"
            and not plan.paused_by("BlueGreenPause")
            and not plan.paused_by("Inconclusive")
        ):
            bg.promoted_at = self.now
            self._promoting(stable)
            return
        self._point_active(stable.name, force=True)
        self._point(
            strategy.preview_service, new if bg.preview_ready_at is not None else stable.name
        )
        targets = Targets()
        targets.want(stable.name, self.total)
        self._want_current(targets, size)
        self._scale(targets, active=stable.name)

    def _keep_pause_honest(self) -> None:
        """The BlueGreenPause ends by promote, by its timer, or when the spec no longer asks."""
        plan, strategy = self.plan, self.strategy
        pause = next((p for p in self.st.pause_conditions if p.reason == "BlueGreenPause"), None)
        if pause is None or not strategy.auto_promotion_enabled:
            return
        if strategy.auto_promotion_seconds is None:
            plan.unpause("BlueGreenPause")
            return
        until = pause.start_time + timedelta(seconds=strategy.auto_promotion_seconds)
        if self.now >= until:
            plan.unpause("BlueGreenPause")
            plan.transition(
                "AutoPromoted",
                f"preview {self.current_name} promoted after {strategy.auto_promotion_seconds}s",
            )
        else:
            plan.due_at(until)

    def _promote_full(self) -> None:
        """Skip every remaining gate; the switch still waits for a fully available group."""
        plan, st, bg = self.plan, self.st, self.bg
        st.promote = None
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        skipped = []
        kinds: tuple[tuple[Kind, RolloutAnalysis | None], ...] = (
            ("prePromotion", self.strategy.pre_promotion_analysis),
            ("postPromotion", self.strategy.post_promotion_analysis),
        )
        for kind, analysis in kinds:
            if analysis is None:
                continue
            name = self._run_name(kind)
            run = self.world.run(name)
            if run is not None and run.phase == "Successful":
                continue
            if run is not None and not run.done and not run.terminated:
                plan.desired.terminate_runs.append(name)
            self._record_run(name, kind, SKIPPED)
            skipped.append(WORDS[kind])
        if bg.promoted_at is None:
            bg.promoted_at = self.now
        what = f"; skipping {' and '.join(skipped)} analysis" if skipped else ""
        plan.transition("PromotedFull", f"{self.current_name} promoted fully by user{what}")

    def _promoting(self, stable: ServerGroup) -> None:
        """The gate is passed: grow the new group to full size, then switch in one write."""
        new = self.current_name
        if self._ready(new, self.total):
            self._point_active(new, force=False)
            self.active_now = new
            self._post(stable)
            return
        previewed = self.bg.preview_ready_at is not None
        self._point_active(stable.name, force=True)
        self._point(self.strategy.preview_service, new if previewed else stable.name)
        targets = Targets()
        targets.want(stable.name, self.total)
        self._want_current(targets, self.total)
        self._scale(targets, active=stable.name)

    def _post(self, stable: ServerGroup) -> None:
        """The new group serves; the stable one stays at full size until the verdict."""
        plan, st, bg = self.plan, self.st, self.bg
        new = self.current_name
        old = plan.old.blue_green
        if old is None or old.active_server_group != new:
            follows = self.strategy.post_promotion_analysis is not None
            plan.transition(
                "ActiveSwitched",
                f"active service {self.strategy.active_service} selects {new};"
                f" {stable.name} kept warm" + ("; post-promotion analysis next" if follows else ""),
            )
        if bg.promoted_at is None:
            bg.promoted_at = self.now  # switched by a pass whose status was never written
        verdict = self._analysis("postPromotion", self.strategy.post_promotion_analysis)
        if verdict == "failed":
            self._fail(self._failure("postPromotion"), stable)
            return
        request, st.promote = st.promote, None
        if request is not None and request.full and verdict != "passed":
            self._promote_full()
            verdict = "passed"
        elif request is not None and verdict == "inconclusive":
            plan.unpause("Inconclusive")
            plan.transition("Promoted", f"inconclusive post-promotion analysis of {new} accepted")
            verdict = "passed"
        # A plain promote while post-promotion analysis measures has nothing to lift: dropped.
        if verdict == "passed":
            self._complete(stable, reason="RolloutCompleted")
            return
        self._point_active(new, force=False)
        self._point(self.strategy.preview_service, new)
        targets = Targets()
        self._want_current(targets, self.total)
        targets.want(stable.name, self.total)
        self._scale(targets, active=new)

    def _complete(self, old: ServerGroup, *, reason: str) -> None:
        plan, st, bg = self.plan, self.st, self.bg
        new = self.current_name
        st.stable_server_group = new
        st.stable_revision = self.revision
        # An abort asked for during an undo is moot once the undo is done (the template says
        # where to go; an undo is not aborted half-way, as in the canary strategy).
        st.abort = False
        st.aborted_at = None
        bg.preview_server_group = None
        bg.preview_ready_at = None
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        self._stop_runs()
        delay = self.strategy.scale_down_delay_seconds
        self.scale_down_at[old.name] = groups.later(self.now, delay)
        plan.transition(reason, f"{new} is stable and active; {old.name} scales down in {delay}s")
        self._point_active(new, force=False)
        self._point(self.strategy.preview_service, new)
        targets = Targets()
        self._want_current(targets, self.total)
        self._scale(targets, active=new)

    # --- undo, abort, retry, hold ------------------------------------------------------------

    def _fast_rollback(self, stable: ServerGroup) -> None:
        """Back to an older group that still exists: no pause, no analysis, one switch."""
        plan, st, bg = self.plan, self.st, self.bg
        name = self.current_name
        if bg.preview_server_group != name:
            plan.transition(
                "FastRollback", f"rolling back to existing {name}: no pause or analysis"
            )
        bg.preview_server_group = name
        st.promote = None
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        self._stop_runs()
        if self._ready(name, self.total):
            self._point_active(name, force=False)
            self.active_now = name
            bg.promoted_at = self.now
            self._complete(stable, reason="RollbackCompleted")
            return
        self._point_active(stable.name, force=True)
        self._point(self.strategy.preview_service, stable.name)
        targets = Targets()
        targets.want(stable.name, self.total)
        self._want_current(targets, self.total)
        self._scale(targets, active=stable.name)

    def _failure(self, kind: Kind) -> str:
        name = self._run_name(kind)
        run = self.world.run(name)
        phase = run.phase.lower() if run else "failed"
        detail = run.message if run and run.message else "no message"
        return f"analysis {name} ({WORDS[kind]}) {phase}: {detail}"

    def _fail(self, message: str, stable: ServerGroup) -> None:
        """Abort in this very pass: recorded, and traffic back to the stable group at once."""
        self.st.abort = True
        self._abort(stable, why=message)

    def _abort(self, stable: ServerGroup, *, why: str | None = None) -> None:
        plan, st, bg = self.plan, self.st, self.bg
        new = self.current_name
        bg.preview_server_group = new
        if st.aborted_at is None:
            st.aborted_at = self.now
            if why is None:
                # decide() aborts on an exceeded progress deadline and says so in the message.
                deadline = st.message.startswith("progress deadline exceeded")
                why = st.message if deadline else "aborted by user"
            st.message = why
            where = "back to" if self.active_now == new else "stays on"
            plan.transition(
                "RolloutAborted", f"{why}; active service {where} {stable.name}", warning=True
            )
        st.promote = None
        plan.unpause("BlueGreenPause")
        plan.unpause("Inconclusive")
        bg.promoted_at = None
        bg.preview_ready_at = None
        self._stop_runs()
        if self.active_now != stable.name:
            plan.desired.traffic_first = True
        self._point_active(stable.name, force=True)
        self._point(self.strategy.preview_service, stable.name)
        until = st.aborted_at + timedelta(seconds=self.strategy.abort_scale_down_delay_seconds)
        self.leaving.pop(new, None)
        if self.now < until and self.current is not None and self.current.replicas > 0:
            self.scale_down_at[new] = until
        else:
            self.scale_down_at.pop(new, None)
        targets = Targets()
        targets.want(stable.name, self.total)
        self._scale(targets, active=stable.name)

    def _retry(self) -> None:
        plan, st, bg = self.plan, self.st, self.bg
        st.aborted_at = None
        st.attempt += 1
        st.analysis_runs = []
        st.message = ""
        bg.preview_ready_at = None
        bg.promoted_at = None
        self.scale_down_at.pop(self.current_name, None)
        plan.transition(
            "RolloutRetried", f"retrying revision {self.revision} (attempt {st.attempt})"
        )

    def _hold(self) -> None:
        """spec.paused: nothing moves; what runs keeps running."""
        self.bg.preview_server_group = self.current_name
        self.sizes = {g.name: g.replicas for g in self.world.groups}

    # --- analysis ----------------------------------------------------------------------------

    def _run_name(self, kind: Kind) -> str:
        return analysis_run_name(self.plan.name, self.revision, kind, None, self.st.attempt)

    def _analysis(self, kind: Kind, analysis: RolloutAnalysis | None) -> Verdict:
        """Start the run if it is due, and read its verdict. No analysis configured: passed."""
        if analysis is None:
            return "passed"
        plan = self.plan
        name = self._run_name(kind)
        ref = next((r for r in self.st.analysis_runs if r.name == name), None)
        if ref is not None and ref.phase == SKIPPED:
            return "passed"
        run = self.world.run(name)
        self._record_run(name, kind, run.phase if run else "Pending")
        words = f"{WORDS[kind]} analysis {name}"
        if run is None:
            plan.desired.create_runs.append(
                NewAnalysisRun(
                    name=name,
                    kind=kind,
                    revision=self.revision,
                    step_index=None,
                    attempt=self.st.attempt,
                    analysis=analysis,
                    groups={"canary": self.current_name, "stable": self.st.stable_server_group},
                )
            )
            if ref is None:
                plan.transition("AnalysisStarted", f"{words} started for {self.current_name}")
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

    def _failed_run(self) -> Kind | None:
        """The kind of this attempt's analysis run that has failed, if one has."""
        for kind in WORDS:
            run = self.world.run(self._run_name(kind))
            ref = next((r for r in self.st.analysis_runs if r.name == self._run_name(kind)), None)
            if run is not None and run.failed and (ref is None or ref.phase != SKIPPED):
                return kind
        return None

    def _record_run(self, name: str, kind: Kind, phase: str) -> None:
        refs = [r for r in self.st.analysis_runs if r.name != name]
        refs.append(AnalysisRunRef(name=name, phase=phase, kind=kind))
        self.st.analysis_runs = refs

    def _stop_runs(self) -> None:
        for run in self.world.analysis_runs:
            if (
                not run.done
                and not run.terminated
                and run.name not in self.plan.desired.terminate_runs
            ):
                self.plan.desired.terminate_runs.append(run.name)

    # --- services and replicas -----------------------------------------------------------------

    def _selects(self, service: str | None) -> str | None:
        state = self.world.services.get(service or "")
        return state.selector.get(LABEL_GROUP) if state is not None else None

    def _ready(self, name: str, size: int) -> bool:
        """The group has `size` pods available (any beyond are on their way out), and its
        controller has caught up with what we asked."""
        g = self.world.group(name)
        if g is None:
            return size == 0  # nothing to wait for (previewReplicaCount 0, or spec.replicas 0)
        return g.replicas >= size and g.available >= size and g.settled

    def _point(self, service: str | None, group: str) -> None:
        if service and self._selects(service) != group:
            self.plan.desired.selectors[service] = group

    def _point_active(self, group: str, *, force: bool) -> None:
        """The one write users feel. Forward only to a fully available group; `force` is for
        going back to the stable group, kept at full size for exactly this moment."""
        before = self.active_now
        if before == group or not (force or self._ready(group, self.total)):
            return
        self._point(self.strategy.active_service, group)
        if before is not None:
            self.leaving[before] = (
                self.strategy.abort_scale_down_delay_seconds
                if self.st.abort
                else self.strategy.scale_down_delay_seconds
            )

    def _want_current(self, targets: Targets, size: int) -> None:
        """The current revision's group at `size`, created if missing (even at 0 pods)."""
        blueprint: tuple[int, str, GroupKind] = (self.revision, self.pod_hash, "release")
        targets.want(self.current_name, size, blueprint=blueprint)

    def _scale(self, targets: Targets, *, active: str) -> None:
        """Record scale writes. Only the active group is held to the availability floor: the
        others carry no user traffic, so they shrink at once unless a delay keeps them warm."""
        for name, seconds in self.leaving.items():
            if name not in targets.replicas and name not in self.scale_down_at:
                self.scale_down_at[name] = groups.later(self.now, seconds)
        self._limit_warm(targets)
        for name, until in list(self.scale_down_at.items()):
            if name in targets.replicas or until <= self.now:
                del self.scale_down_at[name]
            else:
                targets.keep_until[name] = until
        for g in self.world.groups:
            if g.name != active:
                targets.urgent.add(g.name)
        self.sizes = groups.scale(self.plan, targets, ceiling=False)
        for g in self.world.groups:
            if g.replicas > 0 and self.sizes.get(g.name) == 0 and g.name not in targets.replicas:
                self.plan.transition("ScaledDown", f"{g.name} scaled down to 0 pods")

    def _limit_warm(self, targets: Targets) -> None:
        """scaleDownDelayRevisionLimit: only the newest N previous groups may wait scaled up."""
        limit = self.strategy.scale_down_delay_revision_limit
        if limit is None:
            return
        warm = sorted(
            (
                g
                for g in self.world.groups
                if g.name in self.scale_down_at
                and g.name not in targets.replicas
                and g.name != self.current_name
            ),
            key=lambda g: g.revision,
            reverse=True,
        )
        for g in warm[limit:]:
            del self.scale_down_at[g.name]

    # --- status --------------------------------------------------------------------------------

    def _finish(self) -> None:
        plan, st, bg = self.plan, self.st, self.bg
        active = plan.desired.selectors.get(self.strategy.active_service, self.active_now)
        bg.active_server_group = active
        st.blue_green = bg
        roles: dict[str, Role] = {}
        for name in self.scale_down_at:
            roles[name] = "old"
        if bg.preview_server_group and bg.preview_server_group != active:
            roles[bg.preview_server_group] = "preview"
        if st.stable_server_group and st.stable_server_group != active:
            roles[st.stable_server_group] = "stable"
        if active:
            roles[active] = "active"
        in_use = set(roles) | {self.current_name}
        if not plan.spec.paused:
            for name in groups.garbage(plan, in_use):
                plan.desired.delete_groups.append(name)
        if not self.sizes:
            self.sizes = {g.name: g.replicas for g in self.world.groups}
        st.server_groups = groups.rows(plan, roles, self.sizes, self.scale_down_at)
        st.current_revision = self.revision
        # Canary bookkeeping has no meaning here (and may be left over from a strategy change).
        st.canary_server_group = None
        st.baseline_server_group = None
        st.current_step_index = None
        st.step = None
        # Users' traffic, all of it behind the active service: on the stable group, or on the
        # new revision's group between the switch and the post-promotion verdict.
        new_serves = active is not None and active != st.stable_server_group
        st.canary_weight = 100 if new_serves else 0
        st.weights.stable, st.weights.canary, st.weights.baseline = (
            (0, 100, 0) if new_serves else (100, 0, 0)
        )

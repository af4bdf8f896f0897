"""The engine's promises, checked on every pass of random walks through a rollout's life.

A walk starts from a random (CRD-valid) spec and throws a random sequence of what happens to a
real rollout at the engine: pods coming up partly, time passing, new images, undo, HPA scaling,
promote (fresh, stale, full), abort, retry, pause/resume, analysis verdicts, and the operator
dying part-way through applying a decision. After *every* pass, `Checker` holds the decision to
the promises below; at the end the rollout must still converge.

Partial application is modelled the way the doing layer fails: `Applier.apply` writes in a fixed
order and any error ends the pass, so what lands is always a prefix of that order (plus, or
minus, the status write, which is last). test_engine_crash.py drops arbitrary subsets instead.
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sim import Sim, rollouts

from herdsman.api.base import duration_seconds
from herdsman.api.rollout import Rollout
from herdsman.engine import weights
from herdsman.engine.decide import decide
from herdsman.engine.world import Decision, World
from herdsman.naming import analysis_run_name, template_hash

pytestmark = pytest.mark.unit

STEP_RE = re.compile(r"^step (\d+)/(\d+)")
# A soak run: HERDSMAN_WALKS=5000 pytest tests/unit/test_engine_invariants.py
WALKS = int(os.environ.get("HERDSMAN_WALKS", "100"))

# Engine bugs with their own strict-xfail reproduction in test_engine_known_bugs.py. The walk
# cannot be xfail as a whole (it guards everything else), so it steps around exactly these
# paths while the flag is True. When a fix lands, set the flag to False: the walk then holds
# the fixed path to every promise too.
KNOWN_BUGS = {
    "B1/B2 crash: _promote names a group at 0 without a blueprint": False,
    "B4 dynamicStableScale + smaller setCanaryScale: targets below the floor": False,
    "B5 router told a different split than status.weights reports": False,
    "B8 an abandoned (terminated) analysis run counts as passed": False,
    "B10 router weight moves before the canary has the pods": False,
    "B12 a stale status.baselineServerGroup makes routed weights negative": False,
    "B13 availability above spec.replicas is spent as floor budget": False,
    "B14 routed completion promises scaleDownAt to a group with no pods, then takes it back": False,
    "B7 an inconclusive background analysis does not hold the rollout": False,
    "B15 a background analysis failing after the last step does not stop the promotion": False,
    "B16 abort/promote during a fast rollback are neither acted on nor consumed": False,
}
B_CRASH, B4, B5, B8, B10, B12, B13, B14, B7, B15, B16 = KNOWN_BUGS.values()


def decide_or_skip_known_crash(rollout: Rollout, world: World, now: datetime) -> Decision:
    """decide(); while B1/B2 stand, a walk that runs into that crash is discarded rather than
    failed, so the walk keeps checking everything else."""
    try:
        return decide(rollout, world, now)
    except KeyError as err:
        if not B_CRASH:
            raise
        assume(False)
        raise AssertionError("unreachable") from err


# --- the per-pass checker -----------------------------------------------------------------------


def ordered_writes(d: Decision, world: World) -> list[tuple[str, str]]:
    """Writes in the order `Applier.apply` makes them (see herdsman/cluster/apply.py)."""
    current = {g.name: g.replicas for g in world.groups}
    w = d.desired
    grows = [("scale", n) for n, s in w.scale.items() if s > current.get(n, 0)]
    shrinks = [("scale", n) for n, s in w.scale.items() if s < current.get(n, 0)]
    selectors = [("selector", s) for s in w.selectors]
    creates = [("create", g.name) for g in w.create_groups]
    out: list[tuple[str, str]] = []
    if w.traffic_first:
        out += selectors + shrinks + creates + grows
    else:
        out += creates + grows + selectors + shrinks
    out += [("delete", n) for n in w.delete_groups]
    out += [("run", r.name) for r in w.create_runs]
    out += [("terminate", n) for n in w.terminate_runs]
    return out


def all_writes(checker: Checker) -> list[tuple[str, str]]:
    """Every write the next pass would make (deciding is pure, so this is that pass's list)."""
    sim = checker.sim
    world = sim.world()
    return ordered_writes(decide_or_skip_known_crash(sim.rollout, world, sim.now), world)


def wire(d: Decision) -> dict[str, Any]:
    out = d.status.to_wire()
    if B14:
        for row in out.get("serverGroups", []):
            if not row.get("replicas"):
                row.pop("scaleDownAt", None)
    return out


def needed(rollout: Rollout, desired: int) -> int:
    """Available canary pods that carry `desired` (replicaProgressThreshold's share, else all)."""
    canary = rollout.spec.strategy.canary
    t = canary.replica_progress_threshold if canary is not None else None
    return weights.progress_threshold(desired, t.type if t else None, t.value if t else None)


def out_of(rollout: Rollout) -> int:
    """The total weights are out of (maxTrafficWeight, 100 unless set)."""
    canary = rollout.spec.strategy.canary
    return canary.max_weight if canary is not None else 100


class Checker:
    """Reconciles a Sim and asserts every per-pass promise; remembers what it needs across passes."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        # (pod hash, attempt, step index) -> when the stored status first showed that step.
        self.entered: dict[tuple[str | None, int, int], datetime] = {}
        # Transitions announced (their pass's status was written), and how many times each
        # one-off state change was announced: `run` counts releases (NewRevision/Initialized).
        self.announced: list[str] = []
        self.once: dict[tuple[Any, ...], int] = {}
        self.run = 0

    def reconcile(
        self,
        crash_at: int | None = None,
        *,
        drop: set[tuple[str, str]] | None = None,
        status: bool = True,
    ) -> Decision:
        """One pass. `crash_at` keeps only that many writes in apply order and then the status
        write only if every write landed (the operator killed, or a write failing, which ends
        the pass); `drop` skips any subset of writes and still writes status (harsher than
        anything the Applier does); `status=False` loses the status write (a conflict)."""
        sim = self.sim
        rollout, world, now = sim.rollout, sim.world(), sim.now
        d = decide_or_skip_known_crash(rollout, world, now)
        # Determinism: the operator may be restarted and decide again on the same inputs; a
        # different answer would mean hidden state (clocks, ordering of sets, dict iteration).
        assert d == decide(rollout, world, now), "decide() is not deterministic"

        dropped: set[tuple[str, str]] = set(drop or ())
        if crash_at is not None:
            lost = ordered_writes(d, world)[crash_at:]
            dropped |= set(lost)
            status = status and not lost
        sim.apply(d, drop=dropped.__contains__, status=status)
        sim.history.append(d)
        after = sim.world()

        self.check_weights(rollout, d)
        self.check_services(rollout, d, world)
        if not dropped:
            self.check_stable_service_serves(rollout, after)
        self.check_floor(rollout, world, after, d)
        if not (dropped and d.desired.traffic_first):
            # An abort frees the canary's pods and grows stable into them; the Applier shrinks
            # first (traffic_first), but an arbitrary subset may keep the growth alone.
            self.check_ceiling(rollout, world, after)
        self.check_steps(rollout, world, d, now)
        self.check_chaos(rollout, d, now)
        if not B5:
            self.check_router_agrees(d)
        if not B10:
            self.check_router_capacity(rollout, world, d)
        if status:
            self.remember_steps(d, now)
        if status and not dropped:
            # Only a pass whose writes all landed announces its transitions for good; one whose
            # writes were dropped under a written status is redone, announcements included.
            self.check_announced_once(d)
            self.check_fixed_point(world, after, d, now)
        return d

    # Weights are what the stable/canary/baseline split *is*; a router fed numbers that do not
    # sum to 100 rejects them (Gateway API) or silently renormalises (Istio).
    # With maxTrafficWeight the split is out of that total instead (Argo's meaning).
    @staticmethod
    def check_weights(rollout: Rollout, d: Decision) -> None:
        top = out_of(rollout)
        w = d.status.weights
        for part in (w.stable, w.canary, w.baseline):
            assert 0 <= part <= top, w
        assert w.stable + w.canary + w.baseline == top, w

    # status.weights is "the traffic split actually in effect"; with a router, that is what the
    # router was told. A status that disagrees misleads people, dashboards, and the analysis.
    @staticmethod
    def check_router_agrees(d: Decision) -> None:
        t = d.desired.traffic
        if t is None:
            return
        w = d.status.weights
        routed_baseline = getattr(t, "baseline_weight", 0)
        assert (w.canary, w.baseline) == (t.canary_weight, routed_baseline), (w, t)

    # With a router, replicas no longer carry the weight by themselves: the share sent to the
    # canary must wait for the canary pods that carry it (unless setCanaryScale says otherwise).
    @staticmethod
    def check_router_capacity(rollout: Rollout, world: World, d: Decision) -> None:
        t = d.desired.traffic
        canary = rollout.spec.strategy.canary
        assert canary is not None
        if t is None or t.canary_group is None or t.canary_weight == 0:
            return
        if any(s.set_canary_scale is not None for s in canary.steps):
            return
        if injected_into(d) == t.canary_group:
            return  # a killPods fault: the canary keeps its weight with fewer pods, on purpose
        group = world.group(t.canary_group)
        have = group.available if group else 0
        need = needed(
            rollout,
            weights.canary_replicas(rollout.spec.replicas, t.canary_weight, out_of(rollout)),
        )
        assert have >= need, f"router told {t.canary_weight}% with {have} canary pods available"

    # One state change, one announcement: an Event repeated on every pass is noise that hides
    # the real ones, and a state announced twice is a state the engine entered twice.
    def check_announced_once(self, d: Decision) -> None:
        st_ = d.status
        for t in d.transitions:
            self.announced.append(t.reason)
            if t.reason in ("NewRevision", "Initialized"):
                self.run += 1
            key: tuple[Any, ...] | None = None
            if t.reason == "StepStarted":
                m = STEP_RE.match(t.message)
                key = (t.reason, self.run, st_.attempt, m.group(1) if m else t.message)
            elif t.reason in ("RolloutAborted", "RolloutRetried"):
                key = (t.reason, self.run, st_.attempt)
            elif t.reason in ("RolloutCompleted", "RollbackCompleted", "FastRollback"):
                key = (t.reason, self.run)
            elif t.reason in ("AnalysisStarted", "AnalysisPassed"):
                key = (t.reason, self.run, t.message)
            if key is not None:
                self.once[key] = self.once.get(key, 0) + 1
                assert self.once[key] == 1, f"announced twice: {t.reason}: {t.message}"
        assert self.announced.count("Initialized") <= 1, "a second first revision?"

    # Users reach the stable group through stableService at every moment — or, by replica ratio
    # in the pass that takes the stable group's last pods, the new group that serves instead;
    # the canaryService only ever points at the canary, or at stable while the canary has
    # nothing to serve.
    @staticmethod
    def check_services(rollout: Rollout, d: Decision, world: World | None = None) -> None:
        canary = rollout.spec.strategy.canary
        assert canary is not None
        sel, st_ = d.desired.selectors, d.status
        stable_up = True
        if world is not None:
            was = world.group(st_.stable_server_group)
            stable_up = was is not None and was.available > 0
        if canary.stable_service in sel:
            last_pods = canary.traffic_routing is None and (
                not stable_up
                or d.desired.scale.get(st_.stable_server_group or "", 1) == 0
                or not any(
                    r.name == st_.stable_server_group and r.replicas for r in st_.server_groups
                )
            )
            allowed = {st_.stable_server_group}
            if last_pods:
                # The new group, or an interrupted release's group that still has pods.
                allowed.add(st_.canary_server_group)
                allowed |= {n for n, size in d.desired.scale.items() if size > 0}
                allowed |= {r.name for r in st_.server_groups if r.replicas}
            assert sel[canary.stable_service] in allowed, (sel, st_.stable_server_group)
        if canary.canary_service in sel:
            assert sel[canary.canary_service] in (
                st_.canary_server_group,
                st_.stable_server_group,
            ), sel

    # Whoever calls the stable Service is served: it never selects a group without available
    # pods while another group has some (the chaos suite caught a promotion's final roll doing
    # exactly that for a moment). Replica-ratio mode only: behind a router the Service's
    # selector must stay on the stable group, because the router's weights (checked above)
    # decide who gets traffic, and re-pointing the Service would bypass them.
    @staticmethod
    def check_stable_service_serves(rollout: Rollout, after: World) -> None:
        canary = rollout.spec.strategy.canary
        assert canary is not None
        if canary.traffic_routing is not None:
            return
        svc = after.services.get(canary.stable_service or "")
        if svc is None:
            return
        chosen = after.group(svc.selector.get("herdsman.dev/server-group"))
        if chosen is None or chosen.available > 0:
            return
        up = [g.name for g in after.groups if g.available > 0]
        assert not up, (
            f"{canary.stable_service} selects {chosen.name} (no pod available) while {up} serve"
        )

    # The floor is the availability users were promised while shifting. It can only be lost by
    # scaling down available pods, which the engine does within `available - floor`. An abort in
    # replica-ratio mode is the one exception by design: the canary's (and baseline's) pods *are*
    # its traffic there, so they go at once even below the floor — traffic correctness first.
    # Only what those groups lose is excused; every other group still honours the floor.
    @staticmethod
    def check_floor(rollout: Rollout, before: World, after: World, d: Decision) -> None:
        canary = rollout.spec.strategy.canary
        assert canary is not None
        floor = weights.limits(
            rollout.spec.replicas, canary.max_surge, canary.max_unavailable
        ).floor
        exempt: set[str] = set()
        if d.status.abort:
            exempt = {d.status.canary_server_group or "", d.status.baseline_server_group or ""}
        if injected_into(d) is not None:
            exempt.add(injected_into(d) or "")  # the canary's pods a fault keeps down, on purpose
        had = {g.name: g.available for g in before.groups}
        has = {g.name: g.available for g in after.groups}
        excused = sum(max(0, had[n] - has.get(n, 0)) for n in exempt if n in had)
        was, now = sum(had.values()), sum(has.values())
        assert now + excused >= min(was, floor), (
            f"available {was} -> {now} below floor {floor} ({excused} excused: {sorted(exempt)})"
        )

    # The ceiling bounds what a rollout costs (and what the quota must allow). In replica-ratio
    # mode nothing may grow past replicas + maxSurge; after an HPA shrinks spec.replicas the
    # world may start above it, and then nothing may grow at all until it is back under.
    @staticmethod
    def check_ceiling(rollout: Rollout, before: World, after: World) -> None:
        canary = rollout.spec.strategy.canary
        assert canary is not None
        if canary.traffic_routing is not None:
            return  # with a router, replicas do not carry the weight; the ceiling is lifted
        ceiling = weights.limits(
            rollout.spec.replicas, canary.max_surge, canary.max_unavailable
        ).ceiling
        was = {g.name: g.replicas for g in before.groups}
        asked = sum(g.replicas for g in after.groups)
        grew = any(g.replicas > was.get(g.name, 0) for g in after.groups)
        assert asked <= max(ceiling, sum(was.values())), f"asked {asked} > ceiling {ceiling}"
        if grew:
            assert asked <= ceiling, f"grew to {asked} pods, ceiling {ceiling}"

    def check_steps(self, rollout: Rollout, world: World, d: Decision, now: datetime) -> None:
        """Steps are followed in order; a step is left only when done or promoted."""
        old, new = rollout.status, d.status
        canary = rollout.spec.strategy.canary
        assert canary is not None
        steps, n = canary.steps, len(canary.steps)
        reasons = [t.reason for t in d.transitions]
        started = [
            int(m.group(1)) - 1
            for t in d.transitions
            if t.reason == "StepStarted"
            if (m := STEP_RE.match(t.message))
        ]
        promoted = {
            int(m.group(1)) - 1
            for t in d.transitions
            if t.reason == "Promoted"
            if (m := STEP_RE.match(t.message))
        }
        assert reasons.count("NewRevision") <= 1
        if "RolloutCompleted" in reasons:
            # Background analysis vouches for the release until it completes: never complete
            # on a verdict against it, nor on one that could not decide.
            for run in world.analysis_runs:
                if (
                    run.kind == "background"
                    and run.revision == new.current_revision
                    and run.attempt == old.attempt
                    and not run.terminated
                ):
                    assert B15 or not run.failed, f"completed on a failed analysis: {run}"
                    # ...unless a person promoted it: that accepts the undecided verdict, and
                    # the run is stopped in this very pass (found by the walk: a promote with
                    # the steps already done completes at once, as documented).
                    accepted = old.promote is not None and run.name in d.desired.terminate_runs
                    assert B7 or accepted or not run.undecided, (
                        f"completed on an undecided analysis: {run}"
                    )
        # Announced steps are consecutive: the log reads like the spec.
        assert started == list(range(started[0], started[0] + len(started))) if started else True, (
            started
        )
        if any(r in reasons for r in ("NewRevision", "RolloutRetried", "FastRollback")):
            return
        if old.current_pod_hash != new.current_pod_hash or old.attempt != new.attempt:
            return
        if new.current_step_index is None or old.current_step_index is None:
            return
        i, j = old.current_step_index, new.current_step_index
        assert j >= i, f"step index went back {i} -> {j} without a new revision or retry"
        if rollout.spec.paused and not new.abort and new.canary_server_group is not None:
            # kubectl herdsman pause: nothing moves until resume (an abort still works).
            assert j == i, f"moved from step {i} to {j} while paused"
            w = d.desired
            assert not w.create_groups, f"created while paused: {w.create_groups}"
            assert not w.scale, f"scaled while paused: {w.scale}"
            # One exception: the stable Service leaves a group with no pod up for one that
            # serves (check_stable_service_serves), which moves no user between live pods.
            moved = dict(w.selectors)
            was = world.group(new.stable_server_group)
            to = world.group(moved.get(rollout.spec.strategy.canary.stable_service or "", ""))
            if (was is None or was.available == 0) and to is not None and to.available > 0:
                moved.pop(rollout.spec.strategy.canary.stable_service or "", None)
            assert not moved, f"moved selectors while paused: {w.selectors}"
        if "PromotedFull" in reasons:
            assert started == [], "a full promotion announces no steps"
            return
        # Every step entered is announced, none twice, none out of order.
        assert started == list(range(i + 1, min(j, n - 1) + 1)), (i, j, started)
        attempt = old.attempt
        name = rollout.metadata.name
        revision = new.current_revision or 0
        for k in range(i, min(j, n)):
            if k in promoted:
                continue
            step = steps[k]
            if step.pause is not None:
                seconds = duration_seconds(step.pause.duration)
                assert seconds is not None, f"left indefinite pause {k} without promote"
                since = self.entered.get((old.current_pod_hash, attempt, k), now) if k == i else now
                assert now >= since + timedelta(seconds=seconds), (
                    f"left pause step {k} ({seconds}s) entered at {since} early at {now}"
                )
            elif step.set_weight is not None and not any(
                s.set_canary_scale is not None for s in steps[: k + 1]
            ):
                # Left because the weight was reached: the canary holds the closest split of
                # the pods, all available — and a real weight (1..99) at least one pod.
                w = step.set_weight
                total = rollout.spec.replicas
                group = world.release(new.current_pod_hash or "")
                top = out_of(rollout)
                want = weights.canary_replicas(total, w, top)
                assert want >= 1 or not (total >= 1 and 1 <= w < top)
                have = (group.replicas, group.available) if group else (0, 0)
                assert have[0] == want, f"left setWeight {w} with {have[0]} canary pods, not {want}"
                enough = needed(rollout, want)
                assert have[1] >= enough, f"left setWeight {w} with {have[1]}/{want} available"
            elif step.analysis is not None:
                run = world.run(analysis_run_name(name, revision, "step", k, attempt))
                assert run is not None, f"left analysis step {k} without a run"
                assert run.phase == "Successful", f"left analysis step {k}: {run}"
                # A run the operator terminated (a rollout abandoned) is no evidence.
                assert B8 or not run.terminated, f"left analysis step {k} on a stopped run"

    # A chaos fault (here the background analysis's, analysis.chaos) goes into the canary alone,
    # only while the rollout runs, and never past its window or its size.
    @staticmethod
    def check_chaos(rollout: Rollout, d: Decision, now: datetime) -> None:
        ch = d.status.chaos
        if ch is None or ch.phase != "Injected":
            return
        st_ = d.status
        assert ch.server_group == st_.canary_server_group, (ch, st_.canary_server_group)
        assert ch.server_group not in (st_.stable_server_group, st_.baseline_server_group)
        assert not st_.abort, "a fault outlived an abort"
        assert not rollout.spec.paused, "a fault outlived a user's pause"
        assert all(p.reason == "PauseStep" for p in st_.pause_conditions), st_.pause_conditions
        assert ch.revision == st_.current_revision, ch
        assert ch.attempt == st_.attempt, ch
        assert ch.started_at <= now < ch.ends_at, f"injected at {now} outside its window {ch}"
        canary = rollout.spec.strategy.canary
        assert canary is not None
        assert canary.analysis is not None
        assert canary.analysis.chaos is not None
        seconds = duration_seconds(canary.analysis.chaos.duration) or 0.0
        assert ch.ends_at - ch.started_at == timedelta(seconds=seconds), ch
        assert 1 <= ch.pods_killed <= ch.canary_pods or ch.canary_pods == 0, ch
        size = d.desired.scale.get(ch.server_group)
        assert size is None or size == ch.canary_pods - ch.pods_killed, (size, ch)

    def remember_steps(self, d: Decision, now: datetime) -> None:
        st = d.status
        if st.current_step_index is not None:
            self.entered.setdefault((st.current_pod_hash, st.attempt, st.current_step_index), now)

    # A no-op reconcile must write nothing and announce nothing: the operator watches its own
    # status, so a pass that changes status without cause wakes itself forever, and a repeated
    # transition is a duplicate Event and log line. So: after a pass whose writes changed nothing
    # in the cluster, deciding again announces nothing, and either has real work left (a write,
    # e.g. deleting a group the previous pass still listed as `old`) or reproduces the status
    # exactly.
    def check_fixed_point(self, before: World, after: World, d: Decision, now: datetime) -> None:
        if before != after:
            return
        if B16 and d.status.canary_server_group is None and (d.status.abort or d.status.promote):
            return  # an intent left over from a fast rollback is consumed one pass late
        again = decide(self.sim.rollout, after, now)
        assert again.transitions == [], [t.reason for t in again.transitions]
        w = again.desired
        if not (
            w.create_groups
            or w.scale
            or w.delete_groups
            or w.selectors
            or w.create_runs
            or w.terminate_runs
        ):
            assert wire(again) == wire(d), "status changed on a pass with no news"


# --- driving to the end -------------------------------------------------------------------------


def injected_into(d: Decision) -> str | None:
    """The group a chaos fault in force keeps pods of, per this pass's status."""
    ch = d.status.chaos
    return ch.server_group if ch is not None and ch.phase == "Injected" else None


def converged(sim: Sim) -> bool:
    """Healthy on the current template, and nothing else holds a pod."""
    st = sim.status
    spec = sim.rollout.spec
    current = template_hash(spec.template.to_wire())
    stable = sim.groups.get(st.stable_server_group or "")
    return (
        st.phase == "Healthy"
        and stable is not None
        and stable.pod_hash == current
        and stable.kind == "release"
        and stable.replicas == spec.replicas
        and stable.available >= spec.replicas
        and st.canary_server_group is None
        and all(g.replicas == 0 for g in sim.groups.values() if g is not stable)
    )


def drive(checker: Checker, rng: random.Random, *, limit: int = 400) -> int:
    """What a patient user does: let pods come up, let analyses pass, resume, retry after an
    abort, and promote only where the spec asks for it (an indefinite pause) or an inconclusive
    analysis does. Returns the passes it took; fails if the rollout never converges."""
    sim = checker.sim
    for n in range(limit):
        checker.reconcile()
        if converged(sim):
            # And once there, it stays there: no writes, no transitions.
            d = checker.reconcile()
            assert converged(sim)
            assert d.transitions == [], d.transitions
            return n
        patient_user(sim, rng)
        sim.tick(rng.choice([1, 1, 5, 15]))
    raise AssertionError(f"did not converge in {limit} passes: {sim.body.get('status')}")


def patient_user(sim: Sim, rng: random.Random) -> None:
    """Between passes: retry an abort, resume, promote an indefinite pause or an inconclusive
    analysis, pass the analyses, and let some pods come up."""
    st = sim.status
    spec = sim.rollout.spec
    if st.abort:
        sim.retry()
    if spec.paused:
        sim.set_paused(False)
    steps = spec.strategy.canary.steps if spec.strategy.canary else []
    idx = st.current_step_index
    reasons = {p.reason for p in st.pause_conditions}
    at_indefinite = (
        idx is not None
        and idx < len(steps)
        and steps[idx].pause is not None
        and steps[idx].pause.duration is None
    )
    if "Inconclusive" in reasons or ("PauseStep" in reasons and at_indefinite):
        sim.promote(idx)
    sim.set_runs("Successful")
    sim.settle(rng)


# --- the walk -----------------------------------------------------------------------------------

ACTIONS = st.one_of(
    # Time passing with pods coming up partly, a reconcile after each change: the bulk of a
    # rollout's life, so that walks get deep into their steps in few actions.
    st.tuples(st.just("advance"), st.integers(1, 8), st.integers(0, 2**16)),
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("settle"), st.integers(0, 2**16)),
    st.tuples(st.just("settle_all")),
    st.tuples(st.just("tick"), st.sampled_from([1, 5, 10, 30, 61])),
    st.tuples(st.just("promote"), st.sampled_from(["current", "stale", "future", "none", "full"])),
    st.tuples(st.just("abort")),
    st.tuples(st.just("retry")),
    st.tuples(st.just("image_new")),
    st.tuples(st.just("image_undo")),
    st.tuples(st.just("image_back"), st.integers(0, 10)),
    st.tuples(st.just("replicas"), st.integers(0, 30)),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(
        st.just("runs"),
        st.sampled_from(["Successful", "Failed", "Error", "Inconclusive"]),
        st.sampled_from(["step", "background"]),
    ),
    st.tuples(st.just("crash"), st.integers(0, 6)),
    st.tuples(st.just("partial"), st.integers(0, 2**16)),
    st.tuples(st.just("lost_status")),
)


def act(checker: Checker, action: tuple[Any, ...], images: list[str]) -> None:
    sim = checker.sim
    kind = action[0]
    st_ = sim.status
    idx = st_.current_step_index or 0
    if kind == "advance":
        rng = random.Random(action[2])
        for _ in range(action[1] - 1):
            sim.settle(rng)
            sim.tick(rng.choice([1, 2, 5, 10]))
            checker.reconcile()
        sim.settle(rng)
        sim.tick(rng.choice([1, 2, 5, 10]))
    elif kind == "settle":
        sim.settle(random.Random(action[1]))
    elif kind == "settle_all":
        sim.settle()
    elif kind == "tick":
        sim.tick(action[1])
    elif kind == "promote":
        rel = action[1]
        if rel == "full":
            sim.promote(full=True)
        elif rel == "none":
            sim.promote()
        else:
            sim.promote({"current": idx, "stale": idx - 1, "future": idx + 1}[rel])
    elif kind == "abort":
        sim.abort()
    elif kind == "retry":
        sim.retry()
    elif kind == "image_new":
        images.append(f"app:v{len(images) + 1}")
        sim.set_image(images[-1])
    elif kind == "image_undo":
        stable = sim.groups.get(st_.stable_server_group or "")
        by_hash = {template_hash(_template(sim, i)): i for i in images}
        if stable is not None and stable.pod_hash in by_hash:
            sim.set_image(by_hash[stable.pod_hash])
    elif kind == "image_back":
        sim.set_image(images[action[1] % len(images)])
    elif kind == "replicas":
        sim.set_replicas(action[1])
    elif kind == "paused":
        sim.set_paused(action[1])
    elif kind == "runs":
        sim.set_runs(action[1], kind=action[2], message="verdict")
    if kind == "crash":
        checker.reconcile(crash_at=action[1])
    elif kind == "partial":
        rng = random.Random(action[1])
        checker.reconcile(drop={w for w in all_writes(checker) if rng.random() < 0.5})
    elif kind == "lost_status":
        checker.reconcile(status=False)
    else:
        checker.reconcile()


def _template(sim: Sim, image: str) -> dict[str, Any]:
    body = sim.body["spec"]["template"]
    tpl = {**body, "spec": {**body["spec"], "containers": [{"name": "app", "image": image}]}}
    return Rollout.model_validate(
        {**sim.body, "spec": {**sim.body["spec"], "template": tpl}}
    ).spec.template.to_wire()


def start_release(body: dict[str, Any], seed: int, lag: bool) -> tuple[Checker, list[str]]:
    """A sim whose first revision is Healthy, with a second revision just applied."""
    sim = Sim.of(body, lag=lag)
    checker = Checker(sim)
    # The first revision, up and Healthy: the state every later release starts from.
    drive(checker, random.Random(seed))
    sim.set_image("app:v2")
    return checker, ["app:v1", "app:v2"]


WALK_SETTINGS = settings(
    max_examples=WALKS,
    deadline=None,  # a walk is hundreds of passes; the budget is max_examples instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@given(
    body=rollouts(max_replicas=20, scale_with_dynamic=not B4, background_chaos=True),
    actions=st.lists(ACTIONS, min_size=5, max_size=40),
    seed=st.integers(0, 2**16),
    lag=st.booleans(),
)
@WALK_SETTINGS
def test_every_pass_keeps_every_promise_and_the_rollout_converges(
    body: dict[str, Any], actions: list[tuple[Any, ...]], seed: int, lag: bool
) -> None:
    # From any reachable state (whatever happened before), with pods eventually available, a
    # rollout reaches Healthy on the current template with every other group at 0 — promote
    # only where an indefinite pause or an inconclusive analysis asks for a person.
    checker, images = start_release(body, seed, lag)
    for action in actions:
        act(checker, action, images)
    drive(checker, random.Random(seed))


def all_on_stable(sim: Sim) -> bool:
    """Every user on the stable group: weights, pods and the stable Service agree."""
    st_ = sim.status
    spec = sim.rollout.spec
    assert spec.strategy.canary is not None
    stable = st_.stable_server_group
    service = spec.strategy.canary.stable_service
    selects = sim.services[service].selector.get("herdsman.dev/server-group") if service else stable
    return (
        st_.weights.stable == out_of(sim.rollout)
        and stable in sim.groups
        and sim.groups[stable].available >= spec.replicas
        and selects == stable
        and all(g.replicas == 0 for name, g in sim.groups.items() if name != stable)
    )


@given(
    body=rollouts(max_replicas=20, scale_with_dynamic=not B4, background_chaos=True),
    actions=st.lists(ACTIONS, max_size=25),
    seed=st.integers(0, 2**16),
)
@WALK_SETTINGS
def test_an_abort_from_anywhere_ends_with_all_traffic_on_stable(
    body: dict[str, Any], actions: list[tuple[Any, ...]], seed: int
) -> None:
    # Abort is the big red button: whatever state the rollout is in, it must end with 100% on
    # stable, the canary (and baseline) at 0 pods, and the stable Service on the stable group —
    # and stay there until someone retries. (With a router the canary may stay warm for
    # abortScaleDownDelaySeconds at weight 0; it still ends at 0.)
    checker, images = start_release(body, seed, lag=False)
    checker.reconcile()  # the engine has seen the release (an abort before that is moot)
    for action in actions:
        act(checker, action, images)
    sim = checker.sim
    if sim.rollout.spec.paused:
        sim.set_paused(False)  # a user pause is not what this test is about
    sim.abort()
    rng = random.Random(seed)
    for _ in range(120):
        checker.reconcile()
        if sim.status.abort or sim.status.canary_server_group is None:
            sim.set_runs("Successful")
        if all_on_stable(sim):
            break
        sim.settle(rng)
        sim.tick(5)
    assert all_on_stable(sim), sim.body.get("status")
    for _ in range(3):  # and it stays there: no flapping back to the canary
        sim.settle()
        sim.tick(30)
        checker.reconcile()
        assert all_on_stable(sim)

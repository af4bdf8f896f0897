"""Skipping the pass our own status write would wake (engine.decide.settled) never strands a
rollout.

The operator runs a pass only when something wakes it: a change in the world (its own writes
included), a user's change to the Rollout, a due time, or the watch bringing back its own
status write. The last is skipped when the writing pass was `settled`. These walks run a
release the way the operator does, woken only by those, and stop at every idle moment to ask
what a pass would do then: if it would write, announce or change the status, a wake-up was
lost. Both disciplines are walked, so a stall the skipping introduces cannot hide behind one
the model itself has.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim import Sim, manifest, rollouts
from test_engine_invariants import WALK_SETTINGS, converged, drive, patient_user
from test_engine_invariants import Checker as InvariantChecker

from herdsman import metrics
from herdsman.cluster.cache import Cache
from herdsman.engine.decide import decide, settled
from herdsman.engine.world import Decision, RouterState, World
from herdsman.reconcile import Runtime

pytestmark = pytest.mark.unit


def watched(world: World) -> World:
    """What of the world wakes the operator when it changes: what its watches see. Services
    and router objects are read on each pass but not watched, so a write to them (the weights
    sent to a router) is read back only by the pass something else wakes: its status echo,
    or a due time."""
    return replace(world, services={}, router=None)


class Operator:
    """Runs a Sim's passes as the runtime does: only when woken."""

    def __init__(self, sim: Sim, *, skip: bool) -> None:
        self.sim = sim
        self.skip = skip
        self.woken = True
        self.due: datetime | None = None
        self.passes = 0
        self.skipped = 0

    def run(self) -> Decision:
        sim = self.sim
        before = sim.world()
        rollout = sim.rollout
        written = sim.body.get("status") or {}
        d = decide(rollout, before, sim.now)
        quiet = settled(rollout, d, before, sim.now)
        sim.apply(d)
        self.passes += 1
        self.due = None if d.requeue_after is None else sim.now + timedelta(seconds=d.requeue_after)
        echo = d.status.to_wire() != written
        if echo and quiet and self.skip:
            self.skipped += 1
            echo = False
        self.woken = echo or watched(sim.world()) != watched(before)
        return d

    def idle_check(self) -> None:
        """Nothing wakes the operator now: a pass now must find nothing to do."""
        sim = self.sim
        d = decide(sim.rollout, sim.world(), sim.now)
        # A routed rollout's decision always names the weights: a write only if the router
        # does not hold them already.
        trial = copy.deepcopy(sim)
        trial.apply(d, status=False)
        assert trial.world() == sim.world(), f"a wake-up was lost: {d.desired}"
        assert not d.transitions, [t.reason for t in d.transitions]
        assert d.status.to_wire() == (sim.body.get("status") or {}), "status left stale"

    def release(self, rng: random.Random, *, limit: int = 600) -> None:
        """What a patient user does (test_engine_invariants.drive), with passes on wake-ups."""
        sim = self.sim
        for _ in range(limit):
            if self.woken or (self.due is not None and sim.now >= self.due):
                self.run()
                continue
            self.idle_check()
            if converged(sim):
                return
            world = sim.world()
            status = dict(sim.body.get("status") or {})
            spec = sim.rollout.spec
            patient_user(sim, rng)
            self.woken = (
                sim.world() != world
                or (sim.body.get("status") or {}) != status
                or sim.rollout.spec != spec
            )
            sim.tick(rng.choice([1, 1, 5, 15]))
        raise AssertionError(f"did not converge in {limit} moves: {sim.body.get('status')}")


def released(body: dict[str, Any], seed: int, *, skip: bool) -> Operator:
    """The first revision Healthy, then a second released and walked to the end. A routed
    rollout gets a router that holds what it was last told, read back as a real one is."""
    routed = "trafficRouting" in body["spec"]["strategy"].get("canary", {})
    sim = Sim.of(body, router=RouterState() if routed else None)
    drive(InvariantChecker(sim), random.Random(seed))
    sim.set_image("app:v2")
    operator = Operator(sim, skip=skip)
    operator.release(random.Random(seed))
    return operator


@given(
    body=rollouts(max_replicas=12, background_chaos=True),
    seed=st.integers(0, 2**16),
)
@WALK_SETTINGS
def test_releases_woken_only_by_events_never_stall_with_or_without_skipping(
    body: dict[str, Any], seed: int
) -> None:
    always = released(body, seed, skip=False)
    skipping = released(body, seed, skip=True)
    assert always.skipped == 0
    # The same end either way.
    assert skipping.sim.status.stable_server_group == always.sim.status.stable_server_group


def test_a_counters_only_write_is_settled_and_its_echo_skipped() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": 10}}]
    operator = released(manifest(replicas=4, steps=steps), 7, skip=True)
    assert converged(operator.sim)
    # Pods coming up one by one change only the counters in status: those writes are settled.
    assert operator.skipped > 0
    assert operator.skipped < operator.passes


ROUTED = {
    "stableService": "checkout",
    "canaryService": "checkout-canary",
    "trafficRouting": {"nginx": {"stableIngress": "checkout"}},
}


def test_a_routed_canarys_counters_only_write_is_settled_once_the_router_holds_the_weights() -> (
    None
):
    steps = [{"setWeight": 50}, {"pause": {"duration": 10}}]
    operator = released(manifest(replicas=4, steps=steps, **ROUTED), 7, skip=True)
    assert converged(operator.sim)
    # Every routed decision names the weights; once the router holds them, the pods coming
    # up change only the counters, as without a router.
    assert operator.skipped > 0
    assert operator.skipped < operator.passes


def test_a_routed_pass_is_not_settled_while_the_router_holds_other_weights() -> None:
    sim = Sim.of(manifest(replicas=4, steps=[{"setWeight": 50}, {"pause": {}}], **ROUTED))
    sim.router = RouterState()
    drive(InvariantChecker(sim), random.Random(3))
    rollout, world = sim.rollout, sim.world()
    d = decide(rollout, world, sim.now)
    assert d.desired.traffic is not None
    assert d.desired.writes_nothing(world.router)
    assert settled(rollout, d, world, sim.now)
    held = world.router
    assert held is not None
    assert held.canary_weight == 0
    # One field at a time differs from what the decision sends (a user's edit, say): the
    # write puts it back, so the pass is not settled.
    for other in (
        replace(held, canary_weight=50),
        replace(held, baseline_weight=10),
        replace(held, routes=frozenset({"mirror"})),
        replace(held, http_fault=True),
    ):
        moved = replace(world, router=other)
        assert not settled(rollout, decide(rollout, moved, sim.now), moved, sim.now), other
    # Weights for a router not seen (none, or one that went away) are a write.
    assert not d.desired.writes_nothing(None)
    assert not d.desired.writes_nothing(RouterState(available=False, message="gone"))


def test_a_pass_that_writes_the_world_is_never_settled() -> None:
    sim = Sim.of(manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    rollout, world = sim.rollout, sim.world()
    d = decide(rollout, world, sim.now)
    assert d.desired.create_groups  # the first server group
    assert not settled(rollout, d, world, sim.now)


def test_a_pass_that_leaves_work_to_the_next_is_not_settled() -> None:
    # A new revision's first pass announces it and creates its group: not settled. Nor is a
    # decision with nothing to write whose successor would announce again (forced below): a
    # settled pass's successor must be a perfect no-op at the same instant.
    sim = Sim.of(manifest(replicas=2, steps=[{"setWeight": 50}, {"pause": {"duration": 5}}]))
    drive(InvariantChecker(sim), random.Random(1))
    sim.set_image("app:v2")
    rollout, world = sim.rollout, sim.world()
    d = decide(rollout, world, sim.now)
    assert d.transitions  # a new revision: announced, and a group to create
    assert not settled(rollout, d, world, sim.now)
    # Forced: a decision whose next one announces again is not settled either.
    quiet = decide(rollout, world, sim.now)
    quiet.desired.create_groups.clear()
    quiet.status.current_pod_hash = None  # the next pass would see a new revision again
    assert not settled(rollout, quiet, world, sim.now)


@given(seed=st.integers(0, 2**16), replicas=st.integers(1, 8))
@settings(max_examples=30, deadline=None)
def test_skipping_saves_passes_on_a_plain_canary(seed: int, replicas: int) -> None:
    body = manifest(replicas=replicas, steps=[{"setWeight": 50}, {"pause": {"duration": 5}}])
    always = released(body, seed, skip=False)
    skipping = released(body, seed, skip=True)
    assert skipping.passes <= always.passes


def test_the_runtime_queues_no_pass_for_a_settled_write_coming_back() -> None:
    cache = Cache()
    runtime = Runtime(kube=None, applier=None, cache=cache)  # type: ignore[arg-type]
    queued: list[tuple[str, str]] = []
    runtime.queue.add = lambda key, urgent=False: queued.append(key)  # type: ignore[method-assign]

    def body(rv: int) -> dict[str, Any]:
        meta = {"namespace": "shop", "name": "checkout", "resourceVersion": str(rv)}
        return {"kind": "Rollout", "metadata": meta, "status": {"phase": "Progressing"}}

    def skipped() -> float:
        return metrics.REGISTRY.get_sample_value("herdsman_echoes_skipped_total") or 0.0

    before = skipped()
    runtime.observed("shop", "checkout", body(5))
    assert len(queued) == 1
    cache.note(body(6))
    cache.settle("shop", "checkout")
    runtime.observed("shop", "checkout", body(6))
    assert len(queued) == 1  # the pass that wrote it found nothing left
    assert (cache.rollout("shop", "checkout") or {})["metadata"]["resourceVersion"] == "6"
    assert skipped() == before + 1
    cache.note(body(7))  # a write from a pass that left work for the next
    runtime.observed("shop", "checkout", body(7))
    assert len(queued) == 2
    runtime.observed("shop", "checkout", None)  # deleted: a last pass, which finds it gone
    assert len(queued) == 3

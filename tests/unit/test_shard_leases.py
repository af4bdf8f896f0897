"""Sharding: the shard of a Rollout, the rebalancing plan, the Lease loop and the pass gate.

The Lease loop (`Shards`) runs here against an in-memory Lease store with the API server's
compare-and-swap (a write carrying a stale resourceVersion is refused, 409) and a shared fake
clock, so whole schedules of ticks, crashes, partitions and joins can be explored.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.fakes import FakeTime
from herdsman.cluster.budget import Deadline
from herdsman.reconcile import _UNTIL, Runtime, capped
from herdsman.sharding import (
    LABEL_SHARD,
    Conflict,
    Plan,
    Seen,
    Shards,
    plan,
    shard_of,
    share,
)

pytestmark = pytest.mark.unit

LEASE = 10.0
RENEW = 2.0


class MemoryLeases:
    """Leases as the API server keeps them: every write bumps resourceVersion; a PUT must carry
    the current one."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.writes: list[tuple[str, str]] = []

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        return stored

    async def list(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(v) for v in self.items.values()]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.items:
            raise Conflict(name)
        self.items[name] = self._stamp(body)
        self.writes.append(("create", name))
        return copy.deepcopy(self.items[name])

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self.items.get(name)
        if (
            current is None
            or body["metadata"].get("resourceVersion") != (current["metadata"]["resourceVersion"])
        ):
            raise Conflict(name)
        self.items[name] = self._stamp(body)
        self.writes.append(("replace", name))
        return copy.deepcopy(self.items[name])

    async def delete(self, name: str) -> None:
        self.items.pop(name, None)

    def holders(self) -> dict[int, str | None]:
        found = {}
        for item in self.items.values():
            labels = item["metadata"].get("labels") or {}
            if LABEL_SHARD in labels:
                found[int(labels[LABEL_SHARD])] = item["spec"].get("holderIdentity")
        return found


def replica(store: MemoryLeases, clock: FakeTime, name: str, shards: int) -> Shards:
    return Shards(
        store=store,
        identity=name,
        shards=shards,
        lease_seconds=LEASE,
        renew_seconds=RENEW,
        clock=clock,
    )


def owners(replicas: list[Shards], shards: int) -> dict[int, list[str]]:
    return {s: [r.identity for r in replicas if r.owns(s)] for s in range(shards)}


# --- the shard of a Rollout ---------------------------------------------------------------------


def test_the_shard_of_a_name_is_fixed_across_processes_and_versions() -> None:
    # sha256 of "namespace/name": Python's own hash() would differ per process (and replica).
    # Pinned: changing the hash would move every Rollout to another shard on upgrade.
    assert [shard_of("shop", f"r{i}", 6) for i in range(8)] == [2, 2, 2, 3, 4, 0, 4, 0]
    assert (shard_of("shop", "checkout", 6), shard_of("shop", "checkout", 7)) == (2, 2)
    assert shard_of("shop", "checkout", 1) == shard_of("shop", "checkout", 0) == 0


@given(st.integers(min_value=2, max_value=64), st.text(min_size=1, max_size=20))
def test_a_shard_is_always_one_of_the_shards(shards: int, name: str) -> None:
    assert 0 <= shard_of("ns", name, shards) < shards


@given(st.integers(min_value=2, max_value=16), st.text(min_size=1, max_size=8))
@settings(max_examples=30)
def test_rollouts_spread_evenly_over_the_shards(shards: int, prefix: str) -> None:
    counts = Counter(shard_of("team", f"{prefix}-{i}", shards) for i in range(200 * shards))
    assert set(counts) == set(range(shards))
    # 200 per shard on average: a uniform hash stays well within a third of that.
    assert max(counts.values()) < 200 * 4 / 3
    assert min(counts.values()) > 200 * 2 / 3


# --- the plan -----------------------------------------------------------------------------------


def test_a_lone_replica_takes_every_shard_and_a_second_one_leaves_it_half() -> None:
    step = plan(6, "a", ["a"], {})
    assert sorted(step.acquire) == list(range(6))
    assert step.release == ()
    held = {s: Seen("a") for s in range(6)}
    assert plan(6, "b", ["a", "b"], held) == Plan()  # nothing free: b waits
    a = plan(6, "a", ["a", "b"], held)
    assert len(a.release) == 3
    assert a.acquire == ()


def test_expired_shards_of_another_replica_are_taken_but_not_while_it_renews() -> None:
    leases = {0: Seen("dead", expired=True), 1: Seen("alive"), 2: Seen(None)}
    step = plan(3, "me", ["me", "alive"], leases)
    assert set(step.acquire) == {0, 2}
    assert 1 not in step.acquire


@given(
    st.integers(min_value=1, max_value=40),
    st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=7, unique=True),
    st.data(),
)
def test_a_plan_never_takes_a_live_shard_and_keeps_each_replica_within_its_share(
    shards: int, members: list[str], data: st.DataObject
) -> None:
    leases = {
        s: Seen(data.draw(st.sampled_from([None, *members])), data.draw(st.booleans()))
        for s in range(shards)
        if data.draw(st.booleans())
    }
    me = members[0]
    step = plan(shards, me, members, leases)
    for s in step.acquire:
        seen = leases.get(s)
        assert seen is None or seen.holder is None or (seen.expired and seen.holder != me)
    mine = {s for s, v in leases.items() if v.holder == me}
    assert set(step.release) <= mine
    assert not set(step.release) & set(step.acquire)
    kept = len(mine) - len(step.release) + len(step.acquire)
    assert kept <= share(shards, len(members))


# --- the Lease loop, replicas together ----------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle(replicas: list[Shards], clock: FakeTime, rounds: int = 12) -> None:
    for _ in range(rounds):
        for r in replicas:
            await r.tick()
        clock.advance(RENEW)


def test_three_replicas_split_six_shards_two_each() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        replicas = [replica(store, clock, n, 6) for n in "abc"]
        await settle(replicas, clock)
        held = owners(replicas, 6)
        assert all(len(v) == 1 for v in held.values()), held
        assert Counter(v[0] for v in held.values()) == {"a": 2, "b": 2, "c": 2}

    run(scenario())


class SlowLeases(MemoryLeases):
    """Every write waits on the API server: counts how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most = 0

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().replace(name, body)
        finally:
            self.in_flight -= 1


def test_a_tick_renews_every_held_shard_in_one_round_trip() -> None:
    # One write after another, a slow API server stretched a tick past the lease time and a
    # dead replica's shards were taken late (19 s against a 4 s lease, under CI load).
    async def scenario() -> None:
        store, clock = SlowLeases(), FakeTime()
        lone = replica(store, clock, "a", 6)
        await settle([lone], clock)
        assert all(lone.owns(s) for s in range(6))
        store.most = 0
        await lone.tick()
        assert store.most >= 6, f"renewals in flight at once: {store.most}"
        assert all(lone.owns(s) for s in range(6))

    run(scenario())


def test_a_crashed_replicas_shards_move_only_after_it_stopped_trusting_its_leases() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        a, b, c = (replica(store, clock, n, 6) for n in "abc")
        await settle([a, b, c], clock)
        theirs = {s for s in range(6) if a.owns(s)}
        assert len(theirs) == 2
        crashed_at = clock()
        # a stops renewing (crash or partition); b and c carry on.
        while not all(b.owns(s) or c.owns(s) for s in theirs):
            for r in (b, c):
                await r.tick()
                for s in theirs:
                    assert not (a.owns(s) and r.owns(s)), f"shard {s} owned twice"
            clock.advance(0.5)
            assert clock() - crashed_at < LEASE + 3 * RENEW, "the shards never moved"
        assert clock() - crashed_at > LEASE * 0.8  # not before a's own trust ran out
        held = owners([b, c], 6)
        assert all(len(v) == 1 for v in held.values())
        assert max(Counter(v[0] for v in held.values()).values()) == 3

    run(scenario())


def test_a_new_replica_gets_its_share_as_the_others_release_theirs() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        a, b = replica(store, clock, "a", 6), replica(store, clock, "b", 6)
        await settle([a, b], clock)
        assert Counter(v[0] for v in owners([a, b], 6).values()) == {"a": 3, "b": 3}
        c = replica(store, clock, "c", 6)
        await settle([a, b, c], clock)
        assert Counter(v[0] for v in owners([a, b, c], 6).values()) == {"a": 2, "b": 2, "c": 2}

    run(scenario())


def test_a_clean_stop_hands_the_shards_over_at_once() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        a, b = replica(store, clock, "a", 4), replica(store, clock, "b", 4)
        await settle([a, b], clock)
        await a.stop()
        assert not any(a.owns(s) for s in range(4))
        await b.tick()  # no waiting for the lease time: the Leases were freed
        assert all(b.owns(s) for s in range(4))

    run(scenario())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=9),
    st.lists(
        st.tuples(
            st.sampled_from(["tick", "advance", "crash", "revive", "join"]),
            st.integers(min_value=0, max_value=4),
            st.floats(min_value=0.1, max_value=8.0),
        ),
        max_size=60,
    ),
)
def test_no_schedule_of_ticks_crashes_and_joins_ever_has_two_owners_and_all_converge(
    shards: int, schedule: list[tuple[str, int, float]]
) -> None:
    """Any interleaving: at no instant do two replicas both own a shard (a crashed or cut-off
    replica still counts: it may act until its own trust ends). Once every live replica ticks
    again, all shards are owned, each replica within ceil(S / R)."""

    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        replicas = [replica(store, clock, "r0", shards)]
        down: set[int] = set()
        for action, index, seconds in schedule:
            i = index % len(replicas)
            if action == "tick" and i not in down:
                await replicas[i].tick()
            elif action == "advance":
                clock.advance(seconds)
            elif action == "crash":
                down.add(i)
            elif action == "revive":
                down.discard(i)  # a partition heals: the same process carries on
            elif action == "join" and len(replicas) < 5:
                replicas.append(replica(store, clock, f"r{len(replicas)}", shards))
            for s, who in owners(replicas, shards).items():
                assert len(who) <= 1, f"shard {s} owned by {who}"
        live = [r for i, r in enumerate(replicas) if i not in down]
        if not live:  # all down: a new replica arrives
            live = [replica(store, clock, "late", shards)]
            replicas.append(live[0])
        await settle(live, clock, rounds=int(LEASE / RENEW) * 3 + 6)
        held = owners(live, shards)
        assert all(len(v) == 1 for v in held.values()), held
        counts = Counter(v[0] for v in held.values())
        assert max(counts.values()) <= math.ceil(shards / len(live))

    run(scenario())


def test_a_release_waits_for_the_pass_in_flight_on_that_shard() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        a = replica(store, clock, "a", 2)
        await settle([a], clock, rounds=2)
        assert a.owns(0)
        assert a.owns(1)
        b = replica(store, clock, "b", 2)
        await b.tick()  # b's member Lease: a's share drops to 1
        order: list[str] = []
        gate = asyncio.Event()

        async def long_pass(shard: int) -> None:
            with a.acting(shard) as until:
                assert until is not None
                order.append(f"pass {shard} starts")
                await gate.wait()
                order.append(f"pass {shard} ends")

        passes = [asyncio.create_task(long_pass(s)) for s in (0, 1)]
        await asyncio.sleep(0)
        tick = asyncio.create_task(a.tick())
        await asyncio.sleep(0.05)
        released = [s for s in (0, 1) if a.held.get(s) and a.held[s].releasing]
        assert len(released) == 1
        assert not a.owns(released[0])  # the gate closed at once: no new pass starts
        with a.acting(released[0]) as until:
            assert until is None
        assert store.holders()[released[0]] == "a"  # but the Lease is not let go yet
        gate.set()
        await asyncio.gather(*passes, tick)
        assert store.holders()[released[0]] is None
        assert order[-1].endswith("ends")

    run(scenario())


# --- the gate in a Rollout's loop ---------------------------------------------------------------


class RecordingKube:
    """Every call recorded; the Rollout is gone (404) so an owner's pass ends the loop."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def get(self, path: str, *, deadline: Deadline) -> None:
        self.calls.append(("get", path))

    async def patch(self, path: str, body: Any, **_: Any) -> dict[str, Any]:
        self.calls.append(("patch", path))
        return {}


def test_a_replica_without_the_shard_makes_no_call_and_starts_when_it_acquires_it() -> None:
    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        other = replica(store, clock, "other", 1 + 1)
        me = replica(store, clock, "me", 2)
        await other.tick()  # other alone: it takes both shards
        kube = RecordingKube()
        runtime = Runtime(kube=kube, applier=None, shards=me)  # type: ignore[arg-type]
        me.listeners.append(runtime.wake_shard)
        workers = asyncio.create_task(runtime.queue.run())
        runtime.observed("shop", "checkout", None)  # the watch shows it (no cache: GETs)
        for _ in range(5):
            runtime.wake("shop", "checkout")  # watch events keep coming
            await asyncio.sleep(0.01)
        assert kube.calls == [], "a replica acted on a shard it does not hold"
        await other.stop()  # hands the shards over
        await me.tick()  # acquires them: the Rollout is queued again
        for _ in range(100):
            if kube.calls:
                break
            await asyncio.sleep(0.01)
        assert kube.calls[:1] == [
            ("get", "/apis/herdsman.dev/v1alpha1/namespaces/shop/rollouts/checkout")
        ]
        assert runtime.queue.timers() == 0, "the pass found it gone: no timer left for it"
        workers.cancel()

    run(scenario())


def test_no_call_of_a_pass_outlives_the_ownership_of_its_shard() -> None:
    deadline = Deadline(20.0)
    token = _UNTIL.set(deadline.when - 15.0)
    try:
        assert capped(deadline).remaining() <= 5.0 + 1e-6
    finally:
        _UNTIL.reset(token)
    assert capped(deadline).when == deadline.when  # not sharded: the pass's own budget


def test_a_replica_watches_exactly_the_shards_it_holds_through_joins_takeovers_and_stops() -> None:
    """The listeners start a shard's watch (shard_watch.py) and `released` stops it: a replica
    must watch every shard it may act on, and let go of every shard it gave up or lost."""

    async def scenario() -> None:
        store, clock = MemoryLeases(), FakeTime()
        watched: dict[str, set[int]] = {}

        def join(name: str) -> Shards:
            r = replica(store, clock, name, 6)
            watched[name] = set()
            r.listeners.append(watched[name].add)
            r.released.append(watched[name].discard)
            return r

        def check(live: list[Shards]) -> None:
            for r in live:
                assert {s for s in range(6) if r.owns(s)} <= watched[r.identity], r.identity
                assert watched[r.identity] == set(r.held), r.identity

        a, b = join("a"), join("b")
        for _ in range(12):
            for r in (a, b):
                await r.tick()
                check([a, b])
            clock.advance(RENEW)
        c = join("c")
        for _ in range(12):
            for r in (a, b, c):
                await r.tick()
                check([a, b, c])
            clock.advance(RENEW)
        assert {len(watched[n]) for n in "abc"} == {2}
        # a is partitioned away long enough for b and c to take its shards, then comes back.
        theirs = set(watched["a"])
        for _ in range(int(3 * LEASE / RENEW)):
            for r in (b, c):
                await r.tick()
            clock.advance(RENEW)
        assert all(b.owns(s) or c.owns(s) for s in theirs)
        await a.tick()  # finds its Leases held by others: lost, and no longer watched
        assert not watched["a"] & theirs
        check([a, b, c])
        await b.stop()
        assert watched["b"] == set()

    run(scenario())

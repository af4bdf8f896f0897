"""Sharding: several replicas, each acting on its own shards of the Rollouts, held with Leases.

A Rollout's shard is a stable hash of `namespace/name` modulo the shard count S (`--shards`). A
replica acts on a Rollout only while it holds that shard's Lease (`<prefix>-shard-<i>`,
coordination.k8s.io/v1, in the operator's namespace). Every replica also renews a member Lease
(`<prefix>-member-<identity>`), so each knows how many replicas are alive and aims at holding
ceil(S / live replicas) shards: it takes free or expired shards up to that share and releases
the ones over it (after the passes in flight on them have ended).

The pure part (which shard a Rollout is in, which shards a replica should take or give up) is
separate from the doing part (`Shards`, one small async loop) and is what the unit tests
exercise; the doing part talks to a `LeaseStore`, the API server in production
(`herdsman.cluster.leases`).

Why expiry is judged by *observation*, not by comparing `renewTime` with our clock: replicas'
clocks may disagree. As in client-go's leader election, a Lease counts as expired when we have
seen it unchanged for its whole duration (measured on our own monotonic clock). The holder, for
its part, counts its ownership as valid only until `lease seconds` after it *sent* its last
successful renewal — earlier than any other replica can see the Lease expire — and no pass's
API calls outlive that point (the pass deadline is capped by it). So a replica that stops
renewing (crashed, partitioned, stuck) stops acting before another one may take its shards.

Why a hash of the name rather than of the uid: an Experiment follows its owning Rollout's shard
by the owner's name (an owner reference carries both, but the name is what `kubectl` users and
the `herdsman.dev/shard` label relate to), and the shard is known before the object exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from herdsman.cluster.kube import KubeError

log = logging.getLogger("herdsman.shards")

# On each Rollout: the record of its shard (the hash is the truth), for `kubectl get -l`.
LABEL_SHARD = "herdsman.dev/shard"
# On the server groups and AnalysisRuns of a Rollout, set when they are created: its shard *and*
# the shard count, so that after a change of the count no stale value selects a wrong shard's
# view (shard_watch.py). Never changed afterwards: a server group is not edited.
LABEL_OWNER_SHARD = "herdsman.dev/owner-shard"
# On our Leases: which install they belong to (one LIST per tick finds them all).
LABEL_LEASE_GROUP = "herdsman.dev/lease-group"
LABEL_LEASE_ROLE = "herdsman.dev/lease-role"

# A dead replica's member Lease is deleted once it has been seen unchanged this many durations.
FORGET_MEMBER_AFTER = 4.0
# The share of the lease time a holder trusts its last renewal for: the rest absorbs a request
# still in flight at that point, and clocks that run at slightly different rates.
TRUST = 0.8


# --- the pure part ------------------------------------------------------------------------------


def _hash(text: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, and every replica must agree.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the Rollout `namespace/name` among `shards` (0 when not sharded)."""
    if shards <= 1:
        return 0
    return _hash(f"{namespace}/{name}") % shards


def owner_shard(shard: int, shards: int) -> str:
    """LABEL_OWNER_SHARD's value: `2-of-6`."""
    return f"{shard}-of-{shards}"


def share(shards: int, members: int) -> int:
    """How many shards one replica aims at: ceil(S / R), so that together they hold them all."""
    return math.ceil(shards / max(1, members))


def preference(identity: str, shard: int) -> int:
    """A replica's own order of shards (rendezvous hashing): replicas racing for free shards
    mostly want different ones, and a replica keeps the same ones across rebalancing."""
    return _hash(f"{identity}#{shard}")


@dataclass(frozen=True)
class Seen:
    """A shard's Lease as last listed: its holder (None: free) and whether it expired."""

    holder: str | None
    expired: bool = False


@dataclass(frozen=True)
class Plan:
    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def plan(shards: int, me: str, members: Collection[str], leases: Mapping[int, Seen]) -> Plan:
    """Which shards `me` should take and which it should give up, given the Leases as listed
    and the live members (`me` counts whether listed or not).

    Takes free or expired shards up to its share; releases the least preferred of its own
    beyond the share. Never takes a shard another live holder renews.
    """
    target = share(shards, len(set(members) | {me}))
    mine = [s for s in range(shards) if (seen := leases.get(s)) is not None and seen.holder == me]
    mine.sort(key=lambda s: preference(me, s))
    takeable = [
        s
        for s in range(shards)
        if (seen := leases.get(s)) is None
        or seen.holder is None
        or (seen.expired and seen.holder != me)
    ]
    takeable.sort(key=lambda s: preference(me, s))
    room = max(0, target - len(mine))
    return Plan(acquire=tuple(takeable[:room]), release=tuple(mine[target:]))


def lease_name(prefix: str, role: str, suffix: str) -> str:
    """A DNS-subdomain name for one of our Leases (an identity may hold other characters)."""
    clean = re.sub(r"[^a-z0-9.-]+", "-", suffix.lower()).strip("-.") or "x"
    return f"{prefix}-{role}-{clean}"[:253].rstrip("-.")


# --- where Leases live --------------------------------------------------------------------------


class Conflict(Exception):
    """Someone else wrote the Lease first (409): they won; we re-read on the next tick."""


class LeaseStore(Protocol):
    async def list(self) -> list[dict[str, Any]]: ...

    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(self, name: str) -> None: ...


# --- the doing part -----------------------------------------------------------------------------


@dataclass
class Held:
    version: str  # the Lease's resourceVersion after our last write
    until: float  # monotonic: our ownership is valid before this
    releasing: bool = False


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Shards:
    """One replica's shard ownership: the gate every pass goes through, and the loop that
    acquires, renews and releases the Leases behind it."""

    store: LeaseStore
    identity: str
    shards: int
    prefix: str = "herdsman"
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Told the shard each time this replica acquires one (the runtimes wake its Rollouts).
    listeners: list[Callable[[int], None]] = field(default_factory=list)
    # Told the shard each time this replica gives one up or loses it (its watch stops).
    released: list[Callable[[int], None]] = field(default_factory=list)
    held: dict[int, Held] = field(default_factory=dict)
    _seen: dict[str, tuple[tuple[Any, ...], float]] = field(default_factory=dict)
    _in_flight: dict[int, int] = field(default_factory=dict)
    _idle: dict[int, asyncio.Event] = field(default_factory=dict)
    _stopping: bool = False

    # --- the gate ---

    def shard_of(self, namespace: str, name: str) -> int:
        return shard_of(namespace, name, self.shards)

    def owns(self, shard: int) -> bool:
        held = self.held.get(shard)
        return held is not None and not held.releasing and self.clock() < held.until

    @contextlib.contextmanager
    def acting(self, shard: int) -> Iterator[float | None]:
        """Enter a pass on `shard`: yields the monotonic time its API calls must end by, or
        None when this replica does not own the shard (then the pass must not run).

        Checked and counted with no await in between, so a release that closes the gate and
        then waits for the count to drop never misses a pass that was just starting."""
        if not self.owns(shard):
            yield None
            return
        self._in_flight[shard] = self._in_flight.get(shard, 0) + 1
        try:
            yield self.held[shard].until
        finally:
            self._in_flight[shard] -= 1
            if self._in_flight[shard] == 0:
                self._idle.setdefault(shard, asyncio.Event()).set()

    async def _drain(self, shard: int, until: float) -> None:
        while self._in_flight.get(shard, 0) > 0:
            idle = self._idle.setdefault(shard, asyncio.Event())
            idle.clear()
            remaining = until - self.clock()
            if remaining <= 0:
                return  # the pass's own deadline has ended its API calls by now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), remaining)

    # --- the loop ---

    async def run(self) -> None:
        """Tick every renew interval until cancelled; a failed tick is retried on the next."""
        log.info(
            "sharding: %s joins with %d shards (lease %.0fs, renewed every %.0fs)",
            self.identity,
            self.shards,
            self.lease_seconds,
            self.renew_seconds,
        )
        while not self._stopping:
            started = self.clock()
            try:
                await self.tick()
            except (KubeError, TimeoutError, ConnectionError) as err:
                log.warning("sharding: tick failed (%s); held shards run out unless renewed", err)
            except Exception:
                log.exception("sharding: unexpected error in a tick")
            took = self.clock() - started
            if took > self.renew_seconds:
                # Said, because it is the first sign of a takeover coming late or of a shard
                # about to lapse: the API server (or this process's loop) is slower than a tick.
                log.warning(
                    "sharding: a tick took %.1fs, longer than the renew interval (%.0fs)",
                    took,
                    self.renew_seconds,
                )
            await asyncio.sleep(max(0.0, self.renew_seconds - took))

    async def tick(self) -> None:
        items = await self.store.list()
        now = self.clock()
        members: set[str] = {self.identity}
        leases: dict[int, Seen] = {}
        bodies: dict[int, dict[str, Any]] = {}
        member_body: dict[str, Any] | None = None
        for item in items:
            meta = item.get("metadata") or {}
            spec = item.get("spec") or {}
            name = str(meta.get("name", ""))
            holder = spec.get("holderIdentity") or None
            key = (holder, spec.get("renewTime"), meta.get("resourceVersion"))
            previous = self._seen.get(name)
            if previous is None or previous[0] != key:
                self._seen[name] = (key, now)
            unchanged = now - self._seen[name][1]
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            expired = unchanged > duration
            role = (meta.get("labels") or {}).get(LABEL_LEASE_ROLE)
            if role == "member":
                if holder == self.identity:
                    member_body = item
                elif holder is not None and not expired:
                    members.add(holder)
                elif unchanged > FORGET_MEMBER_AFTER * duration:
                    await self._forget(name)
            elif role == "shard":
                shard = _shard_number(meta)
                if shard is not None and shard < self.shards:
                    leases[shard] = Seen(holder, expired)
                    bodies[shard] = item
        await self._renew_member(member_body)
        await self._renew(leases, bodies)
        step = plan(self.shards, self.identity, members, leases)
        for shard in step.release:
            await self._release(shard, bodies[shard], "for rebalancing", len(members))
        await _all(self._acquire(s, bodies.get(s), leases.get(s)) for s in step.acquire)

    async def stop(self) -> None:
        """A clean stop: close every gate, let passes in flight end, then free the Leases at
        once, so the other replicas take the shards now rather than after the lease time."""
        self._stopping = True
        for shard in sorted(self.held):
            self.held[shard].releasing = True
        for shard in sorted(self.held):
            held = self.held[shard]
            await self._drain(shard, held.until)
            body = {
                "metadata": {
                    "name": lease_name(self.prefix, "shard", str(shard)),
                    "labels": self._labels("shard", shard),
                },
                "spec": {"leaseDurationSeconds": max(1, math.ceil(self.lease_seconds))},
            }
            await self._release(shard, body, "(stopping)", 0, drained=True)
        with contextlib.suppress(KubeError, TimeoutError, ConnectionError):
            await self.store.delete(lease_name(self.prefix, "member", self.identity))

    # --- one Lease at a time ---

    def _labels(self, role: str, shard: int | None = None) -> dict[str, str]:
        labels = {LABEL_LEASE_GROUP: self.prefix, LABEL_LEASE_ROLE: role}
        if shard is not None:
            labels[LABEL_SHARD] = str(shard)
        return labels

    def _spec(self, previous: Mapping[str, Any] | None, *, acquire: bool) -> dict[str, Any]:
        now = _micro(self.wall())
        spec = dict(previous or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=max(1, math.ceil(self.lease_seconds)),
            renewTime=now,
        )
        if acquire:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if previous and previous.get("holderIdentity") else 0
            )
        return spec

    async def _renew_member(self, body: dict[str, Any] | None) -> None:
        name = lease_name(self.prefix, "member", self.identity)
        if body is None:
            with contextlib.suppress(Conflict):
                await self.store.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": name, "labels": self._labels("member")},
                        "spec": self._spec(None, acquire=True),
                    }
                )
            return
        with contextlib.suppress(Conflict):
            await self.store.replace(
                name, _lease(body, self._spec(body.get("spec"), acquire=False))
            )

    async def _renew(
        self, leases: Mapping[int, Seen], bodies: Mapping[int, dict[str, Any]]
    ) -> None:
        # All at once: a tick costs one round trip, not one per shard held, when the API
        # server is slow (each renewal is its own compare-and-swap on its own Lease).
        await _all(
            self._renew_shard(shard, leases.get(shard), bodies.get(shard))
            for shard in sorted(
                set(self.held) | {s for s, v in leases.items() if v.holder == self.identity}
            )
        )

    async def _renew_shard(
        self, shard: int, seen: Seen | None, body: dict[str, Any] | None
    ) -> None:
        if seen is None or seen.holder != self.identity or body is None:
            self._lose(shard, f"now held by {seen.holder if seen else 'nobody'}")
            return
        sent = self.clock()
        try:
            written = await self.store.replace(
                str(body["metadata"]["name"]),
                _lease(body, self._spec(body.get("spec"), acquire=False)),
            )
        except Conflict:
            self._lose(shard, "its Lease changed under us")
            return
        if shard not in self.held:
            # Our own name on a Lease we did not know: this replica restarted with the same
            # identity (a container restart keeps the pod's name); the old process is gone.
            log.info(
                "shard %d acquired by %s (was %s, restarted)",
                shard,
                self.identity,
                self.identity,
            )
            self.held[shard] = Held(_version(written), sent + TRUST * self.lease_seconds)
            self._notify(shard)
        else:
            held = self.held[shard]
            held.version = _version(written)
            held.until = sent + TRUST * self.lease_seconds

    async def _acquire(self, shard: int, body: dict[str, Any] | None, seen: Seen | None) -> None:
        name = lease_name(self.prefix, "shard", str(shard))
        sent = self.clock()
        try:
            if body is None:
                written = await self.store.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": name, "labels": self._labels("shard", shard)},
                        "spec": self._spec(None, acquire=True),
                    }
                )
            else:
                written = await self.store.replace(
                    name, _lease(body, self._spec(body.get("spec"), acquire=True))
                )
        except Conflict:
            return  # another replica took it first
        if seen is None:
            was = "new"
        elif seen.holder is None:
            was = "free"
        else:
            was = f"{seen.holder}, expired"
        log.info("shard %d acquired by %s (was %s)", shard, self.identity, was)
        self.held[shard] = Held(_version(written), sent + TRUST * self.lease_seconds)
        self._notify(shard)

    async def _release(
        self, shard: int, body: dict[str, Any], why: str, members: int, *, drained: bool = False
    ) -> None:
        held = self.held.get(shard)
        if held is None:
            return
        held.releasing = True  # the gate closes first: no pass starts on it from here
        if not drained:
            await self._drain(shard, held.until)
        detail = (
            f" (share {share(self.shards, members)} of {self.shards} over {members} replicas)"
            if members
            else ""
        )
        # Logged before the write: whoever takes the shard next logs its acquisition after it.
        log.info("shard %d released %s by %s%s", shard, why, self.identity, detail)
        del self.held[shard]
        self._notify_released(shard)
        spec = {k: v for k, v in (body.get("spec") or {}).items() if k != "holderIdentity"}
        meta = {**(body.get("metadata") or {}), "resourceVersion": held.version}
        with contextlib.suppress(Conflict, KubeError, TimeoutError, ConnectionError):
            # Failing here only delays the next holder by the lease time: the gate is closed.
            await self.store.replace(str(meta["name"]), _lease({**body, "metadata": meta}, spec))

    def _lose(self, shard: int, why: str) -> None:
        if self.held.pop(shard, None) is not None:
            log.warning("shard %d lost by %s: %s", shard, self.identity, why)
            self._notify_released(shard)

    async def _forget(self, name: str) -> None:
        with contextlib.suppress(KubeError, TimeoutError, ConnectionError):
            await self.store.delete(name)
        self._seen.pop(name, None)

    def _notify(self, shard: int) -> None:
        for listener in self.listeners:
            listener(shard)

    def _notify_released(self, shard: int) -> None:
        for listener in self.released:
            listener(shard)


async def _all(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the calls at once and let every one finish before the first failure is raised (a
    tick never leaves a Lease write running behind it)."""
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def _lease(body: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A whole Lease for a PUT (items of a LIST come without kind and apiVersion)."""
    return {
        **body,
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "spec": spec,
    }


def _version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def _shard_number(meta: Mapping[str, Any]) -> int | None:
    value = (meta.get("labels") or {}).get(LABEL_SHARD)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None

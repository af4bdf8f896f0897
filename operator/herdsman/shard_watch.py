"""What a sharded replica sees of the Rollouts: only its own shards, by server-side selectors.

Two views feed the runtime, and a Rollout may be in either:
- **its shard's view**: one informer (cluster/informer.py) per shard this replica holds,
  selecting `herdsman.dev/shard=<i>`, started when the shard's Lease is won (its list shows
  every Rollout of the shard, however long unchanged) and cancelled when the shard is given up
  (its Rollouts are forgotten here: the new holder's own list shows them there);
- **the unlabelled view**: Kopf's watch of the Rollouts, with the fixed selector
  `herdsman.dev/shard notin (0,…,S-1)` — Rollouts not labelled yet (just created, or from
  before sharding), and those labelled for a shard count no longer in use. Every replica
  sees these; the owner of the hash labels them with their shard at its first pass, and the
  label moves them into that shard's view.

The hash of namespace/name still decides who acts (sharding.py's gate); the label only decides
who sees. So a wrong label can delay a Rollout but never let two replicas act on it: a Rollout
labelled for shard i that hashes elsewhere (the shard count changed) is relabelled by the
holder of i, which sees it.

A label change is a DELETED in the view it leaves and an ADDED in the one it joins, in no
fixed order across the two streams: the runtime is told a Rollout is gone only when no view
holds it any more.

The server groups and AnalysisRuns (the *owned* kinds) are split the same way, by the label
`herdsman.dev/owner-shard=<i>-of-<S>` set when they are created, with two differences:
- the label carries the shard count, and is never changed (a server group is not edited):
  after a change of the count, the old value falls into the unlabelled view, which every
  replica watches, rather than into a wrong shard's. A replica never misses a group of a
  Rollout it owns, which would look missing and be created again;
- the unlabelled view is one of ours (Kopf's watch of these kinds selects only Experiments'
  objects when sharded), so that the cache knows when it is complete: it reads these kinds
  from here only once the unlabelled view and the Rollout's shard's view have listed
  (`ready`), and a shard's Rollouts are watched only once its owned kinds have been listed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herdsman import metrics
from herdsman.api.base import GROUP, VERSION
from herdsman.cluster.informer import Informer, StreamTransport, key_of
from herdsman.cluster.kube import ROLLOUTS, Path
from herdsman.cluster.owned_index import OwnedIndex
from herdsman.cluster.sightings import Sightings
from herdsman.naming import LABEL_MANAGED, LABEL_ROLLOUT, MANAGED_BY
from herdsman.sharding import LABEL_OWNER_SHARD, LABEL_SHARD, owner_shard, shard_of

log = logging.getLogger("herdsman.shards")

UNLABELLED = "unlabelled"

Key = tuple[str, str]


def unlabelled_selector(shards: int) -> str:
    """Kopf's fixed selector in sharded mode: every Rollout no shard's view selects."""
    return f"{LABEL_SHARD} notin ({','.join(str(i) for i in range(shards))})"


def shard_selector(shard: int) -> str:
    return f"{LABEL_SHARD}={shard}"


_OURS = f"{LABEL_MANAGED}={MANAGED_BY},{LABEL_ROLLOUT}"


def owned_unlabelled_selector(shards: int) -> str:
    """A Rollout's groups or runs that no shard's view selects (see the module docstring)."""
    values = ",".join(owner_shard(i, shards) for i in range(shards))
    return f"{_OURS},{LABEL_OWNER_SHARD} notin ({values})"


def owned_shard_selector(shard: int, shards: int) -> str:
    return f"{_OURS},{LABEL_OWNER_SHARD}={owner_shard(shard, shards)}"


@dataclass(frozen=True)
class OwnedKind:
    """One owned kind: where it lives, the index the cache reads it from, and whom to tell of
    each change (Runtime.owned_changed: the cache's overlays, and a pass for its Rollout)."""

    kind: str
    path: Path
    index: OwnedIndex
    changed: Callable[[str, str, Mapping[str, Any]], None]  # (kind, event type, body)


def _ends(resource: str) -> Callable[[str], None]:
    return lambda reason: metrics.watch_ends.labels(resource, reason).inc()


def _plain(namespaces: Sequence[str]) -> bool:
    return all(not any(c in n for c in "*?[!") for n in namespaces)


# The key under which the unlabelled views of the owned kinds run (shards count from 0).
_UNLABELLED = -1


@dataclass
class RolloutViews:
    transport: StreamTransport
    # told (namespace, name, body) as a view shows a Rollout, (namespace, name, None) when no
    # view holds it any more (deleted, or labelled away): Runtime.observed
    observed: Callable[[str, str, Mapping[str, Any] | None], None]
    # told (namespace, name) when this replica stops seeing it for giving up its shard
    forget: Callable[[str, str], None]
    # --namespace: [] is every namespace; globs are watched cluster-wide and filtered here
    namespaces: Sequence[str] = ()
    shards: int = 0  # the shard count, which the owned kinds' labels carry
    owned: Sequence[OwnedKind] = ()
    _tasks: dict[int, list[asyncio.Task[None]]] = field(default_factory=dict)
    _informers: dict[int, list[Informer]] = field(default_factory=dict)
    # shard (or _UNLABELLED) -> kind -> its informers
    _owned: dict[int, dict[str, list[Informer]]] = field(default_factory=dict)
    _views: Sightings = field(default_factory=Sightings)  # the Rollouts, by the views showing them

    def _paths(self, path: Path) -> list[str]:
        if self.namespaces and _plain(self.namespaces):
            return [path.url(ns) for ns in self.namespaces]
        return [path.url()]

    def _owned_informers(self, source: str, selector: str) -> dict[str, list[Informer]]:
        return {
            k.kind: [
                Informer(
                    self.transport,
                    path,
                    selector,
                    functools.partial(self._owned_event, k, source),
                    api_version=k.path.api_version,
                    kind=k.kind,
                    ended=_ends(k.path.plural),
                )
                for path in self._paths(k.path)
            ]
            for k in self.owned
        }

    def _run(self, shard: int, informers: Sequence[Informer], what: str) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.setdefault(shard, []).extend(
            loop.create_task(i.run(), name=f"watch {what}") for i in informers
        )

    # --- the unlabelled views of the owned kinds, for the replica's life ------------------------

    def start_owned(self) -> None:
        if not self.owned or _UNLABELLED in self._owned:
            return
        selector = owned_unlabelled_selector(self.shards)
        self._owned[_UNLABELLED] = informers = self._owned_informers(UNLABELLED, selector)
        for kind, some in informers.items():
            self._run(_UNLABELLED, some, f"{kind}s ({UNLABELLED})")

    def ready(self, kind: str, namespace: str, name: str) -> bool:
        """Whether this replica's view of `kind` is complete for the Rollout: the unlabelled
        view and its shard's view have listed (Cache.ready asks, per pass)."""
        shared = self._owned.get(_UNLABELLED, {}).get(kind)
        if not shared or not all(i.listed.is_set() for i in shared):
            return False
        mine = self._owned.get(shard_of(namespace, name, self.shards), {}).get(kind, ())
        return all(i.listed.is_set() for i in mine)

    # --- the shard's views, started and stopped with its Lease --------------------------------

    def start(self, shard: int) -> None:
        if shard in self._tasks:
            return
        source = f"shard-{shard}"
        owned = self._owned_informers(source, owned_shard_selector(shard, self.shards))
        self._owned[shard] = owned
        for kind, some in owned.items():
            self._run(shard, some, f"{kind}s of {source}")
        informers = [
            Informer(
                self.transport,
                path,
                shard_selector(shard),
                functools.partial(self._event, source),
                api_version=f"{GROUP}/{VERSION}",
                kind="Rollout",
                ended=_ends(ROLLOUTS.plural),
            )
            for path in self._paths(ROLLOUTS)
        ]
        self._informers[shard] = informers
        # The Rollouts only once their groups and runs are listed: a pass that saw a Rollout
        # before its groups would find them missing.
        listed = [i.listed for some in owned.values() for i in some]
        loop = asyncio.get_running_loop()
        self._tasks.setdefault(shard, []).extend(
            loop.create_task(self._after(listed, i), name=f"watch rollouts of {source}")
            for i in informers
        )
        log.info("shard %d: watching its Rollouts (%s)", shard, shard_selector(shard))

    @staticmethod
    async def _after(listed: Sequence[asyncio.Event], informer: Informer) -> None:
        for event in listed:
            await event.wait()
        await informer.run()

    def stop(self, shard: int) -> None:
        tasks = self._tasks.pop(shard, [])
        for task in tasks:
            task.cancel()
        source = UNLABELLED if shard == _UNLABELLED else f"shard-{shard}"
        left = 0
        for informer in self._informers.pop(shard, []):
            for key in self._views.unseen_all(informer.known, source):
                self.forget(*key)
                left += 1
        owned = self._owned.pop(shard, {})
        for k in self.owned:
            for informer in owned.get(k.kind, ()):
                k.index.drop(source, informer.known)
        if tasks and shard != _UNLABELLED:
            log.info("shard %d: no longer watched here (%d Rollouts let go)", shard, left)

    async def close(self) -> None:
        tasks = [t for ts in self._tasks.values() for t in ts]
        for shard in list(self._tasks):
            self.stop(shard)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.transport.close()  # the watches' own connections

    # --- Kopf's view of the unlabelled ---------------------------------------------------------

    def unlabelled(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        kind = "DELETED" if body is None else "MODIFIED"
        self._event(UNLABELLED, kind, body or {"metadata": {"namespace": namespace, "name": name}})

    # --- both -----------------------------------------------------------------------------------

    def holds(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._views

    def _watched(self, namespace: str) -> bool:
        return (
            not self.namespaces
            or _plain(self.namespaces)
            or any(fnmatch.fnmatch(namespace, pattern) for pattern in self.namespaces)
        )

    def _owned_event(self, owned: OwnedKind, source: str, kind: str, body: dict[str, Any]) -> None:
        key = key_of(body)
        if not self._watched(key[0]):
            return
        group = owned.index.group_of(key)
        if not owned.index.event(source, kind, body):
            return
        meta = body.get("metadata") or {}
        if kind == "DELETED" and not meta.get("labels") and group is not None:
            # A re-list's DELETED names only the object: its Rollout is the one it was held for.
            body = {**body, "metadata": {**meta, "labels": {LABEL_ROLLOUT: group[1]}}}
        owned.changed(owned.kind, kind, body)

    def _event(self, source: str, kind: str, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        if not self._watched(key[0]):
            return
        if kind == "DELETED":
            if self._views.unseen(key, source):
                self.observed(key[0], key[1], None)
            return
        self._views.seen(key, source)
        self.observed(key[0], key[1], body)

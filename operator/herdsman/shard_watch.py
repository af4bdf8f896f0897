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
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herdsman.api.base import GROUP, VERSION
from herdsman.cluster.informer import Informer, StreamTransport, key_of
from herdsman.cluster.kube import ROLLOUTS
from herdsman.sharding import LABEL_SHARD

log = logging.getLogger("herdsman.shards")

UNLABELLED = "unlabelled"

Key = tuple[str, str]


def unlabelled_selector(shards: int) -> str:
    """Kopf's fixed selector in sharded mode: every Rollout no shard's view selects."""
    return f"{LABEL_SHARD} notin ({','.join(str(i) for i in range(shards))})"


def shard_selector(shard: int) -> str:
    return f"{LABEL_SHARD}={shard}"


def _plain(namespaces: Sequence[str]) -> bool:
    return all(not any(c in n for c in "*?[!") for n in namespaces)


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
    _tasks: dict[int, list[asyncio.Task[None]]] = field(default_factory=dict)
    _informers: dict[int, list[Informer]] = field(default_factory=dict)
    _views: dict[Key, set[str]] = field(default_factory=dict)

    # --- the shard's views, started and stopped with its Lease --------------------------------

    def start(self, shard: int) -> None:
        if shard in self._tasks:
            return
        source = f"shard-{shard}"
        paths = (
            [ROLLOUTS.url(ns) for ns in self.namespaces]
            if self.namespaces and _plain(self.namespaces)
            else [ROLLOUTS.url()]
        )
        informers = [
            Informer(
                self.transport,
                path,
                shard_selector(shard),
                functools.partial(self._event, source),
                api_version=f"{GROUP}/{VERSION}",
                kind="Rollout",
            )
            for path in paths
        ]
        self._informers[shard] = informers
        self._tasks[shard] = [
            asyncio.get_running_loop().create_task(i.run(), name=f"watch rollouts of {source}")
            for i in informers
        ]
        log.info("shard %d: watching its Rollouts (%s)", shard, shard_selector(shard))

    def stop(self, shard: int) -> None:
        tasks = self._tasks.pop(shard, [])
        for task in tasks:
            task.cancel()
        source = f"shard-{shard}"
        left = 0
        for informer in self._informers.pop(shard, []):
            for key in list(informer.known):
                views = self._views.get(key)
                if views is not None:
                    views.discard(source)
                    if not views:
                        del self._views[key]
                        self.forget(*key)
                        left += 1
        if tasks:
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

    def _event(self, source: str, kind: str, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        if (
            self.namespaces
            and not _plain(self.namespaces)
            and not any(fnmatch.fnmatch(key[0], pattern) for pattern in self.namespaces)
        ):
            return
        if kind == "DELETED":
            views = self._views.get(key)
            if views is None:
                return
            views.discard(source)
            if not views:
                del self._views[key]
                self.observed(key[0], key[1], None)
            return
        self._views.setdefault(key, set()).add(source)
        self.observed(key[0], key[1], body)

"""Reads by name of what a pass looks up but does not own the watch of — Services, the traffic
routers' objects and analysis templates — answered from watch-fed stores.

Why: every pass used to GET them from the API server. A routed canary's pass sent six to eight
such GETs (N=50 on NGINX: 2,120 of the release's 2,947 calls), and under the client rate limit
they made passes wait. Controllers that scale (client-go listers) read these from informers.

How `Kube.get` keeps its promise — the server's state, or a newer one this operator wrote:
- A collection is watched only after a GET of one of its objects has succeeded: the kind is
  served and we may read it. Until the watch's first list is in, GETs go to the server.
- A hit is decoded from text, so the caller may change its copy.
- A miss goes to the server and its answer is kept: an object created a moment ago may not
  have reached the watch yet, and a router would call it missing (InvalidSpec) for a recheck
  period. Misses are rare once a release runs: the objects exist. The exception is an object
  only the operator creates and deletes (`ours`: the NGINX canary Ingress, absent between
  releases): its own writes reach the store at once, so what the watch shows is trusted.
- A write's answer (POST, PATCH, PUT) is kept, so a pass never reads a state older than its own
  write; a watch event older than what is kept is ignored until the watch catches up.
- Only what the watch shows now is served, and a GET's or a write's answer for
  OVERLAY_SECONDS (the Rollout cache's overlay time): an object the watch never showed
  (created and deleted while it was cut) leaves no ghost behind.
- A write refused for a conflict (409), and a DELETE, mark the object: its next GET goes to the
  server (or a write's answer replaces it). A retry then computes from the truth, not from the
  copy that lost the race. A watch's DELETED older than what is kept (the object made again
  since) is ignored.
- A collection the operator may not list or watch (RBAC), or whose list fails, is left to GETs,
  with one log line saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from herdsman.cluster.cache import OVERLAY_SECONDS, pack, resource_version
from herdsman.cluster.informer import Informer, StreamTransport

log = logging.getLogger("herdsman.reads")

Kind = tuple[str, str]  # (API base, plural): ("/api/v1", "services")


@dataclass(frozen=True)
class Ref:
    base: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespace: str  # "" for a cluster-scoped kind
    name: str  # "" for the collection itself (a POST)
    sub: str  # a subresource (status, scale), else ""


def parse(path: str) -> Ref | None:
    """The object (or collection) an API path names; None for anything else (discovery)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 2:
        base, rest = f"/api/{parts[1]}", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        base, rest = f"/apis/{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return Ref(
        base, rest[0], namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    )


Key = tuple[str, str]  # (namespace, name)


@dataclass
class Store:
    """One collection: its objects by key, as (resourceVersion, text, when a GET or a write
    of ours put it there: None when the watch did). Kept as the Rollout cache keeps its
    objects: slim, as compact text (cluster/cache.py's `pack` says why)."""

    objects: dict[Key, tuple[int, str, float | None]] = field(default_factory=dict)
    # Objects whose next GET must go to the server (a conflict, our own delete).
    stale: set[Key] = field(default_factory=set)
    # Per scope (a namespace, or "" for all): its watch, and whether it lists and watches.
    informers: dict[str, Informer] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)

    def drop(self, key: Key, body: Mapping[str, Any]) -> None:
        """The watch saw `key` deleted: forgotten, unless what is kept is newer (we made the
        object again before the watch told of the old one's end)."""
        held = self.objects.get(key)
        version = resource_version(body)
        if held is not None and (version == 0 or version >= held[0]):
            del self.objects[key]

    def put(self, key: Key, body: Mapping[str, Any], since: float | None = None) -> None:
        version = resource_version(body)
        held = self.objects.get(key)
        if held is None or version == 0 or version >= held[0]:
            self.objects[key] = (version, pack(body), since)


@dataclass
class Reads:
    """The stores of the collections in `cached` ((base, plural) pairs), filled by watches
    over `transport`, per namespace in `namespaces` (all when empty)."""

    transport: StreamTransport
    cached: Collection[Kind]
    namespaces: Collection[str] = ()
    on_hit: Callable[[str], None] = lambda resource: None
    clock: Callable[[], float] = time.monotonic
    _stores: dict[Kind, Store] = field(default_factory=dict)

    def _store(self, ref: Ref | None) -> Store | None:
        if ref is None or (ref.base, ref.plural) not in self.cached:
            return None
        return self._stores.setdefault((ref.base, ref.plural), Store())

    def _scope(self, ref: Ref) -> str:
        return ref.namespace if ref.namespace and self.namespaces else ""

    def count(self) -> int:
        """Objects held, over every store (a metric: what the stores cost)."""
        return sum(len(s.objects) for s in self._stores.values())

    def lookup(self, path: str, *, ours: bool = False) -> tuple[bool, dict[str, Any] | None]:
        """(True, a copy of the object, or None for an absent one of `ours`) when the store can
        answer a GET of `path`, else (False, None): the caller asks the server and calls
        `learned`."""
        ref = parse(path)
        store = self._store(ref)
        if store is None or ref is None or not ref.name or ref.sub:
            return False, None
        informer = store.informers.get(self._scope(ref))
        key = (ref.namespace, ref.name)
        if informer is None or not informer.listed.is_set() or key in store.stale:
            return False, None
        held = store.objects.get(key)
        if held is None or (
            key not in informer.known
            and (held[2] is None or self.clock() - held[2] > OVERLAY_SECONDS)
        ):
            if not ours:
                return False, None
            self.on_hit(ref.plural)
            return True, None
        self.on_hit(ref.plural)
        text = held[1]
        body: dict[str, Any] = json.loads(text)
        return True, body

    def learned(self, path: str, body: Mapping[str, Any] | None) -> None:
        """The server's answer to a GET of `path` (None: not found)."""
        ref = parse(path)
        store = self._store(ref)
        if store is None or ref is None or not ref.name or ref.sub:
            return
        key = (ref.namespace, ref.name)
        store.stale.discard(key)
        if body is None:
            store.objects.pop(key, None)
            return
        if self._scope(ref) in store.refused:
            return  # never served: keeping it would only cost memory
        store.put(key, body, self.clock())
        self._watch(store, ref)

    def wrote(self, method: str, path: str, body: Any) -> None:
        """A write's answer: kept (POST, PATCH, PUT), or the object marked (DELETE)."""
        ref = parse(path)
        store = self._store(ref)
        if store is None or ref is None:
            return
        if method == "DELETE":
            store.stale.add((ref.namespace, ref.name))
            return
        if self._scope(ref) in store.refused:
            return
        if isinstance(body, Mapping) and body.get("metadata"):
            meta = body["metadata"]
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            store.stale.discard(key)  # the answer is the server's truth
            store.put(key, body, self.clock())

    def conflicted(self, path: str, body: Any = None) -> None:
        """A write to `path` refused with 409; a POST's object is named in its `body`."""
        ref = parse(path)
        store = self._store(ref)
        if store is None or ref is None:
            return
        name = ref.name or (isinstance(body, Mapping) and (body.get("metadata") or {}).get("name"))
        if name:
            store.stale.add((ref.namespace, str(name)))

    def _watch(self, store: Store, ref: Ref) -> None:
        scope = self._scope(ref)
        if scope in store.informers or scope in store.refused:
            return
        where = f"/namespaces/{scope}" if scope else ""

        def on_event(kind: str, body: dict[str, Any]) -> None:
            meta = body.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if kind == "DELETED":
                store.drop(key, body)
            else:
                store.put(key, body)

        informer = Informer(self.transport, f"{ref.base}{where}/{ref.plural}", "", on_event)
        store.informers[scope] = informer
        store.tasks[scope] = asyncio.get_running_loop().create_task(
            self._run(store, scope, informer, f"{ref.plural}{f' in {scope}' if scope else ''}")
        )

    async def _run(self, store: Store, scope: str, informer: Informer, what: str) -> None:
        # Probe with one small list first: a collection we may not list (the Helm chart grants
        # it; a hand-made Role may not) stays with GETs instead of failing in a loop.
        try:
            status, reason, _, _ = await self.transport.call(
                "GET", informer.path, {"limit": "1"}, None, "application/json", informer.timeout
            )
        except (TimeoutError, OSError) as err:  # the next GET of the kind tries again
            del store.informers[scope], store.tasks[scope]
            log.info("listing %s failed (%s); passes read them from the API server", what, err)
            return
        if status >= 400:
            store.refused.add(scope)
            del store.informers[scope]
            for key in [k for k in store.objects if not self.namespaces or k[0] == scope]:
                del store.objects[key]
            log.warning(
                "cannot list %s (%s %s): each pass reads them from the API server",
                what,
                status,
                reason,
            )
            return
        log.info("watching %s: passes read them from the watch", what)
        await informer.run()

    async def close(self) -> None:
        tasks = [t for s in self._stores.values() for t in s.tasks.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()

"""Watch-fed reads: the Rollouts, and the server groups (ReplicaSets) and AnalysisRuns they own.

Why: listing them from the API server on every pass was most of the operator's API load (at
1,000 rollouts, a LIST per pass per kind, plus every resync). Kopf's indexes hold them instead:
Kopf fills every index by a full list before it starts any daemon, and keeps it current from the
watch — so a (re)started operator still begins from the cluster's truth, crash safety unchanged.

Sharded, a replica's own views serve the groups and runs instead, only its shards' and the
unlabelled (shard_watch.py): `gate` says when they are complete for a Rollout, and until then
a pass lists from the API server.

Writes still go to the API server. A write's response is kept here as an overlay until the watch
delivers that version (or a newer one), so a pass never acts on a state older than its own
write; a Rollout's status write that loses a race (409) makes its next read a fresh GET. The
Rollouts themselves are kept here as their watch events deliver them (handlers.py). Bodies are
kept without managedFields and the last-applied annotation, each as one compact JSON string
rather than a tree of dicts and strings (memory: see `pack`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from herdsman.naming import LABEL_ROLLOUT

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KINDS = ("ReplicaSet", "AnalysisRun")
# An overlay entry outlives a watch that lags (or a deletion the watch reported first) by this.
OVERLAY_SECONDS = 30.0

# What Kopf hands an index lookup: key -> the values indexed under it.
IndexLike = Mapping[Any, Collection[Any]]


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an object without what the operator never reads (and costs the most memory)."""
    out = {k: v for k, v in body.items() if k != "metadata"}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out["metadata"] = meta
    return out


def slim_group(body: Mapping[str, Any]) -> dict[str, Any]:
    """A server group (ReplicaSet) as the operator reads it: slim, and its pod template without
    the pod spec. Nothing reads a group's pod spec back (a baseline copies the stable's from the
    template annotation; pods are labelled from the template's metadata), and in real
    workloads it is most of the object: containers, env, volumes, probes."""
    out = slim(body)
    spec = out.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        metadata = spec["template"].get("metadata")
        out["spec"] = {**spec, "template": {"metadata": metadata} if metadata else {}}
    return out


def resource_version(body: Mapping[str, Any]) -> int:
    """An object's resourceVersion as a number, for ordering a watch's events and our writes."""
    try:
        return int(body.get("metadata", {}).get("resourceVersion", "0") or 0)
    except ValueError:  # opaque to clients in principle; etcd's are integers in practice
        return 0


def pack(body: Mapping[str, Any]) -> str:
    """An AnalysisRun (or a Rollout) as the cache keeps it: its slim body as compact JSON.

    Why text: decoded, a server group is a tree of some sixty dicts, lists and strings (JSON's
    decoder shares no key strings between objects): 6.3 KB against 1.4 KB as text, and a
    Rollout 9.1 KB against 1.4 KB (the bench's objects; real pod templates widen the gap). Each
    read decodes a fresh copy (in C), which a pass may change without touching the cache.
    """
    return json.dumps(slim(body), separators=(",", ":"))


def pack_group(body: Mapping[str, Any]) -> str:
    """A server group as the cache keeps it (see `pack`)."""
    return json.dumps(slim_group(body), separators=(",", ":"))


def unpack(text: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    return body


@dataclass
class Cache:
    """Reads for the doing layer; `bind` attaches Kopf's indexes once the operator runs (or,
    sharded, the replica's own: cluster/owned_index.py)."""

    clock: Callable[[], float] = time.monotonic
    _indexes: dict[str, IndexLike] = field(default_factory=dict)
    # Sharded: whether the replica's own views of a kind are complete for the Rollout
    # (kind, namespace, name); RolloutViews.ready. Until then its passes list from the API.
    gate: Callable[[str, str, str], bool] | None = None
    # (kind, namespace, rollout) -> name -> (when written, its resourceVersion, the response)
    _written: dict[tuple[str, str, str], dict[str, tuple[float, int, str]]] = field(
        default_factory=dict
    )

    # (namespace, name) -> (resourceVersion, the Rollout as the watch last delivered it)
    _live: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    # (namespace, name) -> (resourceVersion, our last status write's response, whether its
    # watch event needs no pass: `settle`)
    _own: dict[tuple[str, str], tuple[int, str, bool]] = field(default_factory=dict)
    _fresh: set[tuple[str, str]] = field(default_factory=set)

    def bind(self, kind: str, index: IndexLike) -> None:
        self._indexes[kind] = index

    def count(self, kind: str) -> int:
        """How many `kind` objects the bound index holds (0 until bound): a gauge's figure.

        Read from the metrics server's thread while the event loop changes the index: a walk
        that meets a change starts again (the figure is a sample either way)."""
        index = self._indexes.get(kind)
        for _ in range(5):
            try:
                return 0 if index is None else sum(len(index[key]) for key in list(index))
            except (RuntimeError, KeyError):  # changed size during the walk; a key went
                continue
        return -1

    def bound(self, kind: str) -> bool:
        return kind in self._indexes

    def ready(self, kind: str, namespace: str, name: str) -> bool:
        """Whether `owned(kind, …)` may answer for the Rollout namespace/name."""
        if kind not in self._indexes:
            return False
        return self.gate is None or self.gate(kind, namespace, name)

    def note(self, response: Any) -> None:
        """A write's response: remember it until the watch catches up (see module docstring)."""
        if not isinstance(response, dict):
            return
        meta = response.get("metadata") or {}
        if response.get("kind") == "Rollout":
            at = (meta.get("namespace", ""), meta.get("name", ""))
            live = self._live.get(at)
            version = resource_version(response)
            if live is not None and version > live[0]:  # else the watch is there already
                self._own[at] = (version, pack(response), False)
            return
        if response.get("kind") not in KINDS:
            return
        rollout = (meta.get("labels") or {}).get(LABEL_ROLLOUT)
        if not rollout:
            return
        key = (response["kind"], meta.get("namespace", ""), rollout)
        kept = pack_group(response) if response["kind"] == "ReplicaSet" else pack(response)
        entry = (self.clock(), resource_version(response), kept)
        self._written.setdefault(key, {})[meta.get("name", "")] = entry

    def seen(self, kind: str, namespace: str, rollout: str, body: Mapping[str, Any]) -> None:
        """The watch delivered `body`: an overlay it has caught up with is dropped now rather
        than at the next read, which for a settled rollout is minutes away (memory)."""
        meta = body.get("metadata") or {}
        written = self._written.get((kind, namespace, rollout))
        entry = written.get(meta.get("name", "")) if written else None
        if written and entry is not None and resource_version(body) >= entry[1]:
            del written[meta.get("name", "")]
            if not written:
                del self._written[(kind, namespace, rollout)]

    def overlays(self) -> int:
        """How many written bodies are held over the watch's view (each one a copy in memory)."""
        return len(self._own) + sum(len(w) for w in self._written.values())

    def forget(self, kind: str, namespace: str, rollout: str | None, name: str) -> None:
        """The object is gone (deleted by us, or the watch said so): no overlay may revive it."""
        if rollout:
            self._written.get((kind, namespace, rollout), {}).pop(name, None)

    # --- the Rollouts themselves ---------------------------------------------------------------

    def put_rollout(self, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
        """The Rollout as the watch just delivered it, kept slim (the watch's own copy is let
        go once its handlers return: this is the only one held). Returns whether it is our
        own settled write coming back (`settle`): nothing in it for a pass."""
        key = (namespace, name)
        version = resource_version(body)
        self._live[key] = (version, pack(body))
        own = self._own.get(key)
        if own is None or version < own[0]:
            return False
        del self._own[key]
        return own[2] and version == own[0]

    def echo_pending(self, namespace: str, name: str) -> bool:
        """Whether the watch has yet to bring back our last write of the Rollout."""
        return (namespace, name) in self._own

    def settle(self, namespace: str, name: str) -> None:
        """The pass that made our last status write found nothing left for the next one
        (engine.decide.settled): when the watch brings that write back, no pass is needed. A
        write the watch has already brought back (it can come before the response) is not
        held, so its event has queued a pass as any other; nor is one a newer write replaced."""
        own = self._own.get((namespace, name))
        if own is not None:
            self._own[(namespace, name)] = (own[0], own[1], True)

    def rollouts(self) -> int:
        return len(self._live)

    def has_rollout(self, namespace: str, name: str) -> bool:
        """Whether a watch shows this replica the Rollout (sharded: one of its shards does)."""
        return (namespace, name) in self._live

    def labels(self, namespace: str, name: str) -> Mapping[str, str]:
        """The Rollout's labels as the watch last showed them ({} when it shows none)."""
        live = self._live.get((namespace, name))
        if live is None:
            return {}
        return dict((unpack(live[1]).get("metadata") or {}).get("labels") or {})

    def drop_rollout(self, namespace: str, name: str) -> None:
        self._live.pop((namespace, name), None)
        self._own.pop((namespace, name), None)
        self._fresh.discard((namespace, name))

    def refresh(self, namespace: str, name: str) -> None:
        """The next read must come from the API server (a write just lost a race)."""
        self._fresh.add((namespace, name))

    def rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Rollout as the watch (or our own last status write, if newer) has it; None when
        only the API server can say (not bound, or a refresh was asked for)."""
        key = (namespace, name)
        live = self._live.get(key)
        if live is None or key in self._fresh:
            self._fresh.discard(key)
            return None
        live_version, text = live
        own = self._own.get(key)
        if own is not None:
            # Only the newer of the two is decoded.
            version, written, _ = own
            if version > live_version:
                return unpack(written)
            del self._own[key]
        return unpack(text)

    # --- owned objects --------------------------------------------------------------------------

    def owned(self, kind: str, namespace: str, rollout: str) -> list[dict[str, Any]]:
        """Every `kind` object labelled for this rollout: the watch's view, newest writes over
        it; each a fresh copy."""
        found: dict[str, dict[str, Any]] = {}
        for text in self._indexes[kind].get((namespace, rollout), ()):
            body = unpack(text)
            found[body["metadata"]["name"]] = body
        key = (kind, namespace, rollout)
        written = self._written.get(key)
        if written:
            now = self.clock()
            for name, (at, version, text) in list(written.items()):
                seen = found.get(name)
                if now - at > OVERLAY_SECONDS or (
                    seen is not None and resource_version(seen) >= version
                ):
                    del written[name]  # the watch has it (or the write is long past)
                else:
                    found[name] = unpack(text)
            if not written:
                del self._written[key]
        return list(found.values())

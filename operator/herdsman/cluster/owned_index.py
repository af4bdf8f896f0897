"""A sharded replica's index of the server groups or AnalysisRuns it watches itself.

Unsharded, Kopf's index of them serves the cache (handlers.py). Sharded, each replica watches
only its own shards' (shard_watch.py), through several informers that start and stop with the
shards, and this holds what they show, in the shape the cache reads: (namespace, rollout
label) -> the packed bodies. An object stays while any view shows it (a view that stops lets
go only of what no other shows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from herdsman.cluster.informer import Key, key_of
from herdsman.cluster.sightings import Sightings
from herdsman.naming import LABEL_ROLLOUT

Group = tuple[str, str]  # (namespace, the herdsman.dev/rollout label)


@dataclass
class OwnedIndex(Mapping[Group, list[str]]):
    pack: Callable[[Mapping[str, Any]], str]
    _bodies: dict[Group, dict[str, str]] = field(default_factory=dict)
    _group: dict[Key, Group] = field(default_factory=dict)  # (namespace, name) -> its group
    _seen: Sightings = field(default_factory=Sightings)

    def __getitem__(self, group: Group) -> list[str]:
        return list(self._bodies[group].values())

    def __iter__(self) -> Iterator[Group]:
        return iter(self._bodies)

    def __len__(self) -> int:
        return len(self._bodies)

    def group_of(self, key: Key) -> Group | None:
        return self._group.get(key)

    def event(self, source: str, kind: str, body: Mapping[str, Any]) -> bool:
        """A view's event; False when it changes nothing here (a DELETED of what another view
        still shows, or of something never held)."""
        key = key_of(body)
        if kind == "DELETED":
            if not self._seen.unseen(key, source):
                return False
            self._remove(key)
            return True
        labels = (body.get("metadata") or {}).get("labels") or {}
        group = (key[0], str(labels.get(LABEL_ROLLOUT) or ""))
        if self._group.get(key, group) != group:
            self._remove(key)  # relabelled: it moves to its new Rollout's group
        self._seen.seen(key, source)
        self._group[key] = group
        self._bodies.setdefault(group, {})[key[1]] = self.pack(body)
        return True

    def drop(self, source: str, keys: Iterable[Key]) -> int:
        """The view `source` stopped: let go of what it alone showed; how many went."""
        gone = self._seen.unseen_all(keys, source)
        for key in gone:
            self._remove(key)
        return len(gone)

    def _remove(self, key: Key) -> None:
        group = self._group.pop(key, None)
        if group is None:
            return
        bodies = self._bodies.get(group, {})
        bodies.pop(key[1], None)
        if not bodies:
            self._bodies.pop(group, None)

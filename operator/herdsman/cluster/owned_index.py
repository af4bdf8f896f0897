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
from herdsman.naming import LABEL_ROLLOUT

Group = tuple[str, str]  # (namespace, the herdsman.dev/rollout label)


@dataclass
class OwnedIndex(Mapping[Group, list[str]]):
    pack: Callable[[Mapping[str, Any]], str]
    _bodies: dict[Group, dict[str, str]] = field(default_factory=dict)
    # (namespace, name) -> (its group, the views that show it)
    _where: dict[Key, tuple[Group, set[str]]] = field(default_factory=dict)

    def __getitem__(self, group: Group) -> list[str]:
        return list(self._bodies[group].values())

    def __iter__(self) -> Iterator[Group]:
        return iter(self._bodies)

    def __len__(self) -> int:
        return len(self._bodies)

    def objects(self) -> int:
        return len(self._where)

    def group_of(self, key: Key) -> Group | None:
        held = self._where.get(key)
        return held[0] if held is not None else None

    def event(self, source: str, kind: str, body: Mapping[str, Any]) -> bool:
        """A view's event; False when it changes nothing here (a DELETED of what another view
        still shows, or of something never held)."""
        key = key_of(body)
        held = self._where.get(key)
        if kind == "DELETED":
            if held is None:
                return False
            held[1].discard(source)
            if held[1]:
                return False
            self._remove(key, held[0])
            return True
        labels = (body.get("metadata") or {}).get("labels") or {}
        group = (key[0], str(labels.get(LABEL_ROLLOUT) or ""))
        sources = {source}
        if held is not None:
            sources |= held[1]
            if held[0] != group:
                self._remove(key, held[0])
        self._where[key] = (group, sources)
        self._bodies.setdefault(group, {})[key[1]] = self.pack(body)
        return True

    def drop(self, source: str, keys: Iterable[Key]) -> int:
        """The view `source` stopped: let go of what it alone showed; how many went."""
        gone = 0
        for key in keys:
            held = self._where.get(key)
            if held is None:
                continue
            held[1].discard(source)
            if not held[1]:
                self._remove(key, held[0])
                gone += 1
        return gone

    def _remove(self, key: Key, group: Group) -> None:
        self._where.pop(key, None)
        bodies = self._bodies.get(group)
        if bodies is not None:
            bodies.pop(key[1], None)
            if not bodies:
                del self._bodies[group]

"""Which views show each object: held while any one does.

A sharded replica sees an object through several watches at once (its shard's view and the
unlabelled one), and a label change moves it between them in no fixed order across the two
streams. So an object is let go only when the last view that showed it stops showing it —
the Rollouts in shard_watch.py and the server groups and runs in owned_index.py alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from herdsman.cluster.informer import Key


class Sightings:
    def __init__(self) -> None:
        self._by: dict[Key, set[str]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._by

    def seen(self, key: Key, view: str) -> None:
        self._by.setdefault(key, set()).add(view)

    def unseen(self, key: Key, view: str) -> bool:
        """`view` no longer shows `key`; True when no view does any more (let it go)."""
        views = self._by.get(key)
        if views is None:
            return False
        views.discard(view)
        if views:
            return False
        del self._by[key]
        return True

    def unseen_all(self, keys: Iterable[Key], view: str) -> list[Key]:
        """`view` stopped: the keys it alone showed, now let go."""
        return [key for key in list(keys) if self.unseen(key, view)]

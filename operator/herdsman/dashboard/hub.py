"""The dashboard's state: what the watches delivered, and the browsers listening for changes.

Everything here runs on the dashboard's event loop. Objects are kept trimmed (no managedFields,
no pod-template annotations) so a thousand rollouts cost little memory. A change is published
to every browser as one small server-sent event; a browser that cannot keep up is told to
reload its list instead of being buffered without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from herdsman.dashboard import views
from herdsman.dashboard.watch import Event, Sink

Ref = tuple[str, str]
QUEUE_LIMIT = 500


@dataclass(frozen=True)
class Sinks:
    rollouts: Sink
    runs: Sink
    events: Sink


def _trim(body: dict[str, Any]) -> dict[str, Any]:
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    meta.pop("annotations", None)
    return {**body, "metadata": meta}


class Hub:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.rollouts: dict[Ref, dict[str, Any]] = {}
        self.runs: dict[Ref, dict[str, Any]] = {}
        self.events: dict[Ref, deque[dict[str, Any]]] = {}
        self.history = views.History()
        self.problems: dict[str, str] = {}
        self._subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()

    # --- browsers -------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(("reset", {}))

    def problem(self, source: str) -> Callable[[str], None]:
        def report(text: str) -> None:
            before = self.problems.get(source, "")
            if text:
                self.problems[source] = text
            else:
                self.problems.pop(source, None)
            if text != before:
                self.publish("problems", {"problems": sorted(self.problems.values())})

        return report

    # --- watches --------------------------------------------------------------------------------

    @staticmethod
    def _replace(
        store: dict[Ref, dict[str, Any]], namespace: str | None, items: list[dict[str, Any]]
    ) -> None:
        for ref in [r for r in store if namespace is None or r[0] == namespace]:
            del store[ref]
        for item in items:
            store[views.key(item)] = _trim(item)

    def sinks(self, namespace: str | None) -> Sinks:
        """Where one namespace's watches deliver (None: every namespace)."""

        async def rollouts(kind: str, payload: list[dict[str, Any]] | Event) -> None:
            if isinstance(payload, Event):
                self._rollout(payload.type, payload.object)
                return
            self._replace(self.rollouts, namespace, payload)
            for body in payload:
                self.history.observe(body, self.clock())
            self.publish("reset", {})

        async def runs(kind: str, payload: list[dict[str, Any]] | Event) -> None:
            if isinstance(payload, Event):
                ref = views.key(payload.object)
                if payload.type == "DELETED":
                    self.runs.pop(ref, None)
                else:
                    self.runs[ref] = _trim(payload.object)
                self.publish("run", views.run_row(payload.object))
                return
            self._replace(self.runs, namespace, payload)
            self.publish("reset", {})

        async def events(kind: str, payload: list[dict[str, Any]] | Event) -> None:
            if isinstance(payload, Event):
                if payload.type != "DELETED":
                    ref = self._event(payload.object)
                    self.publish("timeline", {"namespace": ref[0], "name": ref[1]})
                return
            for ref in [r for r in self.events if namespace is None or r[0] == namespace]:
                del self.events[ref]
            stamp = lambda e: str(views.event_row(e)["time"] or "")  # noqa: E731
            for item in sorted(payload, key=stamp):
                self._event(item)

        return Sinks(rollouts, runs, events)

    def _rollout(self, kind: str, body: dict[str, Any]) -> None:
        ref = views.key(body)
        if kind == "DELETED":
            self.rollouts.pop(ref, None)
            self.history.forget(ref)
            self.publish("deleted", {"namespace": ref[0], "name": ref[1]})
            return
        self.rollouts[ref] = _trim(body)
        self.history.observe(body, self.clock())
        self.publish("rollout", views.summary(body))

    def _event(self, event: dict[str, Any]) -> Ref:
        involved = event.get("involvedObject") or {}
        ref = (str(involved.get("namespace", "")), str(involved.get("name", "")))
        rows = self.events.setdefault(ref, deque(maxlen=views.EVENTS_KEPT))
        row = views.event_row(event)
        if row["uid"] not in {r["uid"] for r in rows}:
            rows.append(row)
        return ref

    # --- what the pages ask for -------------------------------------------------------------------

    def rollout_list(self) -> list[dict[str, Any]]:
        return [views.summary(self.rollouts[ref]) for ref in sorted(self.rollouts)]

    def runs_of(self, ref: Ref) -> list[dict[str, Any]]:
        rows = [
            views.run_row(run)
            for (ns, _), run in self.runs.items()
            if ns == ref[0] and views.rollout_of(run.get("metadata") or {}) == ref[1]
        ]
        return sorted(rows, key=lambda r: str(r.get("created") or ""), reverse=True)

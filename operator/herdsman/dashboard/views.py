"""What the dashboard shows of a rollout, as plain JSON-ready dicts: no I/O, no clock of its own.

`summary` is one row of the rollout list (sent to every browser on each change), `detail` the
rollout's page: its step timeline, server groups, weights over time, cost, analysis runs and
the Events the operator wrote. `History` remembers the weights the dashboard has seen a rollout
go through, since it started watching: the Rollout's status holds only the current split.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from herdsman.api.rollout import CanaryStep
from herdsman.engine.canary import describe
from herdsman.naming import LABEL_ROLLOUT

Obj = Mapping[str, Any]
HISTORY_POINTS = 720
"""Weight changes kept per rollout (a change per step: hundreds of releases)."""
EVENTS_KEPT = 100
STEP_IN_MESSAGE = re.compile(r"\bstep (\d+)/\d+")


def _map(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def key(body: Obj) -> tuple[str, str]:
    meta = _map(body.get("metadata"))
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def strategy(body: Obj) -> str:
    return "blueGreen" if "blueGreen" in _map(_map(body.get("spec")).get("strategy")) else "canary"


def weights(status: Obj) -> dict[str, int]:
    w = _map(status.get("weights"))
    return {role: int(w.get(role, 100 if role == "stable" else 0) or 0) for role in ROLES}


ROLES = ("stable", "canary", "baseline")


def summary(body: Obj) -> dict[str, Any]:
    """One row of the list: what a person checks first."""
    ns, name = key(body)
    spec, status = _map(body.get("spec")), _map(body.get("status"))
    cost = _map(status.get("cost"))
    return {
        "namespace": ns,
        "name": name,
        "strategy": strategy(body),
        "phase": status.get("phase") or "Pending",
        "message": status.get("message") or "",
        "step": status.get("step") or "",
        "revision": status.get("currentRevision"),
        "stableRevision": status.get("stableRevision"),
        "replicas": spec.get("replicas"),
        "readyReplicas": status.get("readyReplicas", 0),
        "weights": weights(status),
        "stableGroup": status.get("stableServerGroup"),
        "canaryGroup": status.get("canaryServerGroup"),
        "baselineGroup": status.get("baselineServerGroup"),
        "aborted": bool(status.get("abort")),
        "paused": bool(status.get("pauseConditions")) or bool(spec.get("paused")),
        "cost": {
            role: round(float(cost.get(f"{role}ReplicaSeconds", 0.0) or 0.0), 1)
            for role in ("canary", "baseline", "preview", "old")
        },
        "resourceVersion": _map(body.get("metadata")).get("resourceVersion"),
    }


@dataclass(frozen=True)
class Point:
    at: str  # ISO time the dashboard saw the change
    revision: Any
    step: str
    phase: str
    weights: dict[str, int]


class History:
    """Per rollout, the weights seen over time: one point per change of split, step or phase."""

    def __init__(self, limit: int = HISTORY_POINTS) -> None:
        self.limit = limit
        self._points: dict[tuple[str, str], deque[Point]] = {}

    def observe(self, body: Obj, now: datetime) -> bool:
        """Record the rollout's current split; True when it differs from the last point."""
        row = summary(body)
        point = Point(
            now.isoformat(), row["revision"], row["step"], row["phase"], dict(row["weights"])
        )
        points = self._points.setdefault(key(body), deque(maxlen=self.limit))
        last = points[-1] if points else None
        if last is not None and (last.revision, last.step, last.phase, last.weights) == (
            point.revision,
            point.step,
            point.phase,
            point.weights,
        ):
            return False
        points.append(point)
        return True

    def forget(self, ref: tuple[str, str]) -> None:
        self._points.pop(ref, None)

    def points(self, ref: tuple[str, str]) -> list[Point]:
        return list(self._points.get(ref, ()))


def _step_text(step: Any) -> str:
    try:
        return describe(CanaryStep.model_validate(step))
    except ValidationError:
        return "?"


def steps(body: Obj, events: Iterable[Obj] = ()) -> list[dict[str, Any]]:
    """The step timeline: each step with its state and, when an Event says so, when it began.

    `events` are `event_row`s, oldest first."""
    spec, status = _map(body.get("spec")), _map(body.get("status"))
    canary = _map(_map(spec.get("strategy")).get("canary"))
    raw = canary.get("steps")
    listed: list[Any] = raw if isinstance(raw, list) else []
    index = status.get("currentStepIndex")
    current = index if isinstance(index, int) else (len(listed) if status.get("phase") else 0)
    started: dict[int, str] = {}
    for event in events:  # oldest first; a new revision starts the steps again
        if event.get("reason") == "NewRevision":
            started.clear()
        if event.get("reason") != "StepStarted":
            continue
        match = STEP_IN_MESSAGE.search(str(event.get("message", "")))
        if match:
            started[int(match.group(1)) - 1] = str(event.get("time", ""))
    aborted = bool(status.get("abort"))
    paused = bool(status.get("pauseConditions"))
    out = []
    for i, step in enumerate(listed):
        if i < current:
            state = "done"
        elif i == current:
            state = "aborted" if aborted else ("paused" if paused else "current")
        else:
            state = "pending"
        out.append({"index": i + 1, "text": _step_text(step), "state": state, "at": started.get(i)})
    return out


def event_row(event: Obj) -> dict[str, Any]:
    """An Event the operator wrote about a rollout, as the timeline shows it."""
    meta = _map(event.get("metadata"))
    return {
        "time": event.get("lastTimestamp")
        or event.get("eventTime")
        or meta.get("creationTimestamp"),
        "type": event.get("type", "Normal"),
        "reason": event.get("reason", ""),
        "message": event.get("message", ""),
        "uid": meta.get("uid"),
    }


def rollout_of(meta: Obj) -> str | None:
    """The Rollout an object belongs to: its owner (the label holds only a label_value() of a
    long name), or the label for an object with no owner reference."""
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == "Rollout":
            return str(ref.get("name"))
    label = _map(meta.get("labels")).get(LABEL_ROLLOUT)
    return str(label) if label is not None else None


def run_row(run: Obj) -> dict[str, Any]:
    meta, status = _map(run.get("metadata")), _map(run.get("status"))
    score = _map(status.get("score"))
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "rollout": rollout_of(meta),
        "created": meta.get("creationTimestamp"),
        "phase": status.get("phase") or "Pending",
        "message": status.get("message", ""),
        "summary": status.get("summary", ""),
        "score": score.get("score"),
        "classification": score.get("classification"),
    }


def groups(body: Obj) -> list[dict[str, Any]]:
    rows = _map(body.get("status")).get("serverGroups")
    return [
        {
            "name": r.get("name"),
            "revision": r.get("revision"),
            "role": r.get("role"),
            "replicas": r.get("replicas", 0),
            "ready": r.get("readyReplicas", 0),
            "available": r.get("availableReplicas", 0),
        }
        for r in (rows if isinstance(rows, list) else [])
        if isinstance(r, Mapping)
    ]


def conditions(body: Obj) -> list[dict[str, Any]]:
    rows = _map(body.get("status")).get("conditions")
    return [
        {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
        for c in (rows if isinstance(rows, list) else [])
        if isinstance(c, Mapping)
    ]

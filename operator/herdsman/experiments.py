"""One Experiment's reconcile pass — observe, measure, decide, apply — and its loop.

The same shape as a Rollout's (herdsman.reconcile): a Kopf daemon per Experiment runs the loop,
watch events wake it, and nothing survives between passes but a wake-up flag; every pass starts
from a fresh read, so a restarted operator carries on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from herdsman.api.experiment import Experiment
from herdsman.cluster import experiment as cluster
from herdsman.cluster.analysis import Analysis
from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.experiment_paths import EXPERIMENTS
from herdsman.cluster.kube import Kube, KubeError
from herdsman.cluster.observe import Observed
from herdsman.engine.experiment import decide
from herdsman.engine.world import World
from herdsman.reconcile import _UNTIL, GONE, MAX_BACKOFF, RESYNC_SECONDS, Gone, capped
from herdsman.sharding import Shards

log = logging.getLogger("herdsman.experiment")


@dataclass
class ExperimentRuntime:
    kube: Kube
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    analysis: Analysis | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Sharded mode: an Experiment is acted on by the holder of its owning Rollout's shard (of
    # its own name's when it has no owner), so a Rollout and its experiments move together.
    shards: Shards | None = None
    _wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    _shard_keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            event = self._wakers.get((namespace, name))
            if event is not None:
                event.set()

    def wake_shard(self, shard: int) -> None:
        if self.shards is None:
            return
        for (namespace, name), key in list(self._shard_keys.items()):
            if self.shards.shard_of(namespace, key) == shard:
                self.wake(namespace, name)

    async def reconcile(self, namespace: str, name: str) -> float | Gone | None:
        deadline = capped(self.policy.reconcile_deadline())
        body = await self.kube.get(EXPERIMENTS.url(namespace, name), deadline=deadline)
        if body is None:
            return GONE
        try:
            exp = Experiment.from_body(body)
        except ValidationError as err:
            await self._unparseable(namespace, name, body, err)
            return RESYNC_SECONDS
        observed = await cluster.observe(self.kube, exp, body, deadline)
        now = self.clock()
        next_measurement = None
        if self.analysis is not None and observed.runs:
            # Analysis.measure_due reads only the raw runs of what it is given.
            updates, next_measurement = await self.analysis.measure_due(
                Observed(world=World(), runs=observed.runs), now, deadline
            )
            observed.run_updates = updates
            observed.world = cluster.with_updates(observed, updates)
        decision = decide(exp, observed.world, now)
        raw_status = body.get("status") or {}
        if not await cluster.apply(self.kube, exp, raw_status, decision, observed, deadline):
            return 0.0
        due = decision.requeue_after
        if next_measurement is not None:
            until = max(0.0, (next_measurement - self.clock()).total_seconds())
            due = until if due is None else min(due, until)
        return due

    async def run(self, namespace: str, name: str, stopped: Any, owner: str | None = None) -> None:
        """The per-Experiment loop (a Kopf daemon): reconcile, then sleep until due or woken.

        `owner`: the Rollout that started it, whose shard it goes with (sharded mode)."""
        key = (namespace, name)
        waker = self._wakers.setdefault(key, asyncio.Event())
        self._shard_keys[key] = owner or name
        failures = 0
        try:
            while not stopped:
                waker.clear()
                until: float | None = None
                if self.shards is not None:
                    shard = self.shards.shard_of(namespace, owner or name)
                    with self.shards.acting(shard) as until:
                        if until is not None:
                            token = _UNTIL.set(until)
                            try:
                                due, failures = await self._attempt(namespace, name, failures)
                            finally:
                                _UNTIL.reset(token)
                    if until is None:
                        await _sleep(waker, stopped, RESYNC_SECONDS)  # not ours: no API call
                        continue
                else:
                    due, failures = await self._attempt(namespace, name, failures)
                if isinstance(due, Gone):
                    return
                wait = RESYNC_SECONDS if due is None else min(due, RESYNC_SECONDS)
                if wait > 0:
                    await _sleep(waker, stopped, wait)
        finally:
            if self._wakers.get(key) is waker:
                del self._wakers[key]
                self._shard_keys.pop(key, None)

    async def _attempt(
        self, namespace: str, name: str, failures: int
    ) -> tuple[float | Gone | None, int]:
        """One pass, its failures turned into a back-off: (seconds until the next, failures)."""
        try:
            return await self.reconcile(namespace, name), 0
        except Exception as err:
            failures += 1
            due = min(MAX_BACKOFF, 0.5 * 2**failures)
            if isinstance(err, KubeError | TimeoutError | ConnectionError):
                log.warning(
                    "experiment %s/%s: pass failed (%s); retrying in %.1fs",
                    namespace,
                    name,
                    err,
                    due,
                )
            else:
                log.exception(
                    "experiment %s/%s: unexpected error; retrying in %.1fs", namespace, name, due
                )
            return due, failures

    async def _unparseable(
        self, namespace: str, name: str, body: dict[str, Any], err: ValidationError
    ) -> None:
        """A stored object our models reject: phase Error with InvalidSpec, nothing created."""
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors(include_url=False)
        )
        status = body.get("status") or {}
        message = f"InvalidSpec: {problems}"
        if status.get("message") == message:
            return
        log.warning("experiment %s/%s: %s", namespace, name, message)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": "InvalidSpec",
            "status": "True",
            "reason": "InvalidSpec",
            "message": problems,
            "lastTransitionTime": now,
        }
        patch = {"status": {"phase": "Error", "message": message, "conditions": [condition]}}
        await self.kube.patch(
            EXPERIMENTS.url(namespace, name, "status"),
            patch,
            deadline=capped(self.policy.reconcile_deadline()),
        )


async def _sleep(waker: asyncio.Event, stopped: Any, seconds: float) -> None:
    """Sleep until woken, stopped, or `seconds` pass — whichever comes first."""
    wake = asyncio.ensure_future(waker.wait())
    stop = asyncio.ensure_future(stopped.wait()) if hasattr(stopped, "wait") else None
    pending = {wake} | ({stop} if stop is not None else set())
    try:
        await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()

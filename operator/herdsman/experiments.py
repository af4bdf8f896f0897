"""One Experiment's reconcile pass — observe, measure, decide, apply — and the queue that runs it.

The same shape as a Rollout's (herdsman.reconcile): watch events queue a pass on a workqueue
(workqueue.py) of its own, a pass says when the next is due, and nothing survives between
passes but the queue's keys; every pass starts from a fresh read, so a restarted operator
carries on where the last one stopped. A queue rather than a Kopf daemon per Experiment: a
daemon brings a finalizer Kopf's public API cannot turn off (handlers.py), and the same gate
(peering, shards) serves both queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from herdsman import metrics
from herdsman.api.experiment import Experiment
from herdsman.cluster import experiment as cluster
from herdsman.cluster.analysis import Analysis
from herdsman.cluster.budget import AccessPolicy
from herdsman.cluster.experiment_paths import EXPERIMENTS
from herdsman.cluster.kube import Kube, KubeError
from herdsman.cluster.observe import Observed
from herdsman.engine.experiment import decide
from herdsman.engine.world import World
from herdsman.reconcile import GONE, MAX_BACKOFF, RESYNC_SECONDS, Gone, capped, turn
from herdsman.sharding import Shards
from herdsman.workqueue import DONE, Due, WorkQueue

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
    # Experiments are few and short-lived; their passes mostly wait on the API server.
    workers: int = 8
    queue: WorkQueue[tuple[str, str]] = field(init=False)
    # Every Experiment the watch has shown -> the name its shard is hashed from (its owning
    # Rollout's, else its own).
    _known: dict[tuple[str, str], str] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self._handle, workers=self.workers)
        self.queue.observe_wait = metrics.track_queue(
            "experiments", self.queue.pending, self.queue.running
        )

    def observed(
        self, namespace: str | None, name: str | None, owner: str | None, *, deleted: bool = False
    ) -> None:
        """The watch delivered the Experiment (`owner`: the Rollout that started it, whose
        shard it goes with): queue a pass. A deleted one gets a last pass, which finds it gone."""
        if not (namespace and name):
            return
        key = (namespace, name)
        self._known[key] = owner or name
        self.queue.add(key, urgent=not deleted)

    def wake(self, namespace: str | None, name: str | None) -> None:
        """Something the Experiment depends on changed (its groups, its runs): queue a pass."""
        if namespace and name and (namespace, name) in self._known:
            self.queue.add((namespace, name))

    def wake_shard(self, shard: int) -> None:
        """This replica acquired `shard`: its Experiments get a pass."""
        if self.shards is None:
            return
        for (namespace, name), key in list(self._known.items()):
            if self.shards.shard_of(namespace, key) == shard:
                self.wake(namespace, name)

    def start_acting(self) -> None:
        """This replica acts now (peering): every Experiment it knows gets a pass."""
        self.queue.open()
        for key in list(self._known):
            self.queue.add(key)

    def stop_acting(self) -> None:
        """Another replica acts: no pass here, and the paused watch's view is forgotten."""
        self.queue.close()
        self._known.clear()
        self._failures.clear()

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

    async def _handle(self, key: tuple[str, str]) -> Due:
        """The workqueue's handler: one pass (if this replica may act on the Experiment now),
        and when the next is due. Failures become a per-Experiment back-off."""
        namespace, name = key
        due: float | Gone | None = None
        with turn(self.shards, namespace, self._known.get(key, name)) as mine:
            if mine:
                due = await self._counted(key)
        if not mine:
            return RESYNC_SECONDS  # another replica's shard: no API call at all
        if isinstance(due, Gone):
            self._known.pop(key, None)
            self._failures.pop(key, None)
            return DONE
        return RESYNC_SECONDS if due is None else min(due, RESYNC_SECONDS)

    async def _counted(self, key: tuple[str, str]) -> float | Gone | None:
        due, failures = await self._attempt(*key, self._failures.pop(key, 0))
        if failures:
            self._failures[key] = failures
        return due

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

"""One reconcile pass — observe, decide, apply — and the workqueue that runs it for each Rollout.

The operator keeps nothing between passes but the watch-fed cache and a timer per Rollout: every
pass starts from the cluster's truth as the watches deliver it, so a restarted (or newly
elected) operator carries on exactly where the last one stopped. A pass never raises: API
trouble backs off, a spec that cannot be parsed becomes an `InvalidSpec` condition.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from herdsman import metrics
from herdsman.api.rollout import Rollout
from herdsman.cluster.analysis import Analysis, with_updates
from herdsman.cluster.analysis import problems as analysis_problems
from herdsman.cluster.apply import Applier
from herdsman.cluster.budget import AccessPolicy, Deadline
from herdsman.cluster.cache import Cache
from herdsman.cluster.kube import DEPLOYMENTS, ROLLOUTS, Kube, KubeError
from herdsman.cluster.observe import observe
from herdsman.cluster.workload import label_pods, prune_runs, scale_deployment
from herdsman.engine.decide import decide, settled
from herdsman.engine.workload import resolve
from herdsman.naming import ANNOTATION_IMPORTING, LABEL_ROLLOUT, owner_name
from herdsman.notify import subscriptions
from herdsman.notify.notifier import Notifier
from herdsman.sharding import LABEL_SHARD, Shards
from herdsman.workqueue import DONE, Due, WorkQueue

log = logging.getLogger("herdsman.reconcile")

RESYNC_SECONDS = 300.0
IMPORT_RECHECK_SECONDS = 5.0
MAX_BACKOFF = 60.0


# Until when the pass in progress may make API calls (monotonic; None: only its own budget):
# the end of this replica's trust in the shard's Lease. Per task: each pass runs in its own.
_UNTIL: contextvars.ContextVar[float | None] = contextvars.ContextVar("until", default=None)


def capped(deadline: Deadline) -> Deadline:
    """`deadline`, or earlier if this pass's ownership of its shard ends earlier."""
    until = _UNTIL.get()
    if until is not None and until < deadline.when:
        return Deadline.at(until, clock=deadline.clock, margin=deadline.margin)
    return deadline


class Gone:
    """The Rollout no longer exists; its loop ends."""


GONE = Gone()


@dataclass
class Runtime:
    kube: Kube
    applier: Applier
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    analysis: Analysis | None = None
    # None: notifications are not configured (subscriptions are then ignored).
    notifier: Notifier | None = None
    cache: Cache | None = None
    # Sharded mode: a pass runs only while this replica holds the Rollout's shard.
    shards: Shards | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # How many passes may run at once (each is mostly waiting on the API server).
    workers: int = 64
    queue: WorkQueue[tuple[str, str]] = field(init=False)
    # Every Rollout the watch has shown (its shard's owner may be another replica).
    _known: set[tuple[str, str]] = field(default_factory=set)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    # Rollouts whose last pass ran here (their gauges are this replica's to export).
    _acted: set[tuple[str, str]] = field(default_factory=set)
    # (namespace, Deployment) -> the Rollouts whose workloadRef names it, as last seen by a
    # pass: rebuilt by the first pass of each Rollout after a restart.
    _workload_users: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self._handle, workers=self.workers)
        self.queue.observe_wait = metrics.track_queue(
            "rollouts", self.queue.pending, self.queue.running
        )

    def observed(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """The watch delivered the Rollout (None: its deletion): keep it and queue a pass."""
        key = (namespace, name)
        self._known.add(key)
        if self.cache is not None:
            if body is None:
                self.cache.drop_rollout(namespace, name)
            elif self.cache.put_rollout(namespace, name, body):
                # Our own status write coming back, from a pass that found nothing left for
                # the next one (Cache.settle): that pass would decide exactly what it did.
                metrics.echoes_skipped.inc()
                return
        self.queue.add(key, urgent=body is not None and spec_unseen(body))

    def forget(self, namespace: str, name: str) -> None:
        """This replica is done with the Rollout (deleted, or no watch of ours shows it any
        more): no passes, no cache, no gauges here."""
        key = (namespace, name)
        self._known.discard(key)
        self._failures.pop(key, None)
        if key in self._acted:
            self._acted.discard(key)
            metrics.forget(namespace, name)
        if self.cache is not None:
            self.cache.drop_rollout(namespace, name)
        self.queue.forget(key)

    def wake(self, namespace: str | None, name: str | None) -> None:
        """Something a Rollout depends on changed: queue a pass (coalesced with any queued)."""
        if namespace and name and (namespace, name) in self._known:
            self.queue.add((namespace, name))

    def owned_changed(self, kind: str, event: str, body: Mapping[str, Any]) -> None:
        """A server group or AnalysisRun of a Rollout changed (`event` is the watch's type):
        the cache's overlays learn it, and its Rollout gets a pass."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        rollout = (meta.get("labels") or {}).get(LABEL_ROLLOUT)
        if self.cache is not None:
            if event == "DELETED":
                self.cache.forget(kind, namespace, rollout, name)
            else:
                self.cache.seen(kind, namespace, rollout or "", body)
        # The owner, not the label: a long rollout name is only a label_value() of itself there.
        self.wake(namespace, owner_name(meta, "Rollout") or rollout)

    def wake_shard(self, shard: int) -> None:
        """This replica acquired `shard`: its Rollouts, idle here until now, get a pass."""
        if self.shards is None:
            return
        for namespace, name in list(self._known):
            if self.shards.shard_of(namespace, name) == shard:
                self.wake(namespace, name)

    def start_acting(self) -> None:
        """This replica became the one that acts (peering): every Rollout it knows gets a pass.
        Those the watch has not re-listed yet get theirs when it does."""
        self.queue.open()
        for key in list(self._known):
            self.queue.add(key)

    def stop_acting(self) -> None:
        """Another replica acts now: no pass runs here, and what the (paused) watch showed is
        forgotten, so that acting again starts from the re-list, never from a stale view."""
        self.queue.close()
        for namespace, name in list(self._known):
            metrics.forget(namespace, name)
            if self.cache is not None:
                self.cache.drop_rollout(namespace, name)
        self._known.clear()
        self._failures.clear()
        self._acted.clear()

    def wake_workload(self, namespace: str | None, deployment: str | None) -> None:
        """A Deployment changed: wake every Rollout that takes its template from it."""
        if namespace and deployment:
            for name in list(self._workload_users.get((namespace, deployment), ())):
                self.wake(namespace, name)

    def _note_workload(self, namespace: str, name: str, deployment: str | None) -> None:
        for (ns, dep), users in list(self._workload_users.items()):
            if ns == namespace and dep != deployment:
                users.discard(name)
                if not users:
                    del self._workload_users[(ns, dep)]
        if deployment is not None:
            self._workload_users.setdefault((namespace, deployment), set()).add(name)

    async def reconcile(self, namespace: str, name: str) -> float | Gone | None:
        """One pass. Returns seconds until the next one is due (None: only on change)."""
        started = time.perf_counter()
        result = "error"
        try:
            due = await self._pass(namespace, name)
            result = "conflict" if due == 0.0 else "ok"
            return due
        finally:
            metrics.reconcile_duration.labels(result).observe(time.perf_counter() - started)

    def _deadline(self) -> Deadline:
        # No call of a pass may outlive this replica's ownership of the Rollout's shard.
        return capped(self.policy.reconcile_deadline())

    async def _pass(self, namespace: str, name: str) -> float | Gone | None:
        deadline = self._deadline()
        body = self.cache.rollout(namespace, name) if self.cache is not None else None
        if body is None:
            body = await self.kube.get(ROLLOUTS.url(namespace, name), deadline=deadline)
        if body is None:
            metrics.forget(namespace, name)
            self._note_workload(namespace, name, None)
            return GONE
        if self.shards is not None:
            # The labelled Rollout, so that this pass's status write carries its newer
            # resourceVersion rather than losing a race with our own label write.
            body = await self._record_shard(namespace, name, body, deadline)
        if ANNOTATION_IMPORTING in ((body.get("metadata") or {}).get("annotations") or {}):
            # `kubectl herdsman import` is still handing the ReplicaSets over: hold off, or this
            # pass would find no server group and start one. Removing the mark wakes us.
            return IMPORT_RECHECK_SECONDS
        try:
            rollout = Rollout.from_body(body)
        except ValidationError as err:
            await self._unparseable(namespace, name, body, err)
            return RESYNC_SECONDS
        ref = rollout.spec.workload_ref
        self._note_workload(namespace, name, ref.name if ref else None)
        deployment = None
        if ref is not None:
            deployment = await self.kube.get(
                DEPLOYMENTS.url(namespace, ref.name), deadline=deadline
            )
        rollout, workload_problems = resolve(rollout, deployment)
        observed = await observe(self.kube, rollout, deadline, self.cache)
        observed.body = body
        if workload_problems:
            observed.world = replace(observed.world, workload_problems=tuple(workload_problems))
        now = self.clock()
        next_measurement = None
        if self.analysis is not None:
            found = analysis_problems(rollout, observed, body)
            observed.world = replace(observed.world, analysis_problems=tuple(found))
            if observed.runs:
                updates, next_measurement = await self.analysis.measure_due(observed, now, deadline)
                observed.run_updates = updates
                metrics.record_runs(rollout, updates, observed.runs)
                observed.world = with_updates(observed.world, updates)
        annotations = rollout.metadata.annotations or {}
        if self.notifier is not None and subscriptions.subscriptions(annotations):
            # Checked only where notifications are configured: a manifest ported from Argo with
            # its subscriptions still runs under an operator that sends none.
            names = (await self.notifier.services()).names
            found_subs = subscriptions.problems(annotations, names)
            observed.world = replace(observed.world, notification_problems=tuple(found_subs))
        decision = decide(rollout, observed.world, now)
        raw_status = body.get("status") or {}
        if not await self.applier.apply(rollout, raw_status, decision, observed, deadline):
            if self.cache is not None:
                self.cache.refresh(namespace, name)
            return 0.0  # lost a race with another writer: redo on fresh data
        if (
            self.cache is not None
            and self.cache.echo_pending(namespace, name)
            and settled(rollout, decision, observed.world, now)
        ):
            # Before any other await: the watch may bring the write back at the next one.
            self.cache.settle(namespace, name)
        if not workload_problems:
            if deployment is not None:
                await scale_deployment(self.kube, rollout, deployment, decision.status, deadline)
            await label_pods(self.kube, rollout, decision.status, observed.replica_sets, deadline)
            await prune_runs(self.kube, rollout, decision.status, observed.runs, deadline)
        metrics.record_pass(rollout, decision, now)
        if self.notifier is not None:
            # Queued only: delivery runs on its own thread, retried there, and never fails a pass.
            await self.notifier.after_pass(rollout, decision)
        due = decision.requeue_after
        if next_measurement is not None:
            until = max(0.0, (next_measurement - self.clock()).total_seconds())
            due = until if due is None else min(due, until)
        return due

    async def _record_shard(
        self, namespace: str, name: str, body: dict[str, Any], deadline: Deadline
    ) -> dict[str, Any]:
        """Label the Rollout with its shard once, by its owner: the hash decides who acts, the
        label who sees it (shard_watch.py). Returns the Rollout as it is now."""
        assert self.shards is not None
        shard = str(self.shards.shard_of(namespace, name))
        if ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_SHARD) != shard:
            patch = {"metadata": {"labels": {LABEL_SHARD: shard}}}
            written = await self.kube.patch(ROLLOUTS.url(namespace, name), patch, deadline=deadline)
            if isinstance(written, dict) and written.get("metadata"):
                return written
        return body

    async def _relabel_stale(self, namespace: str, name: str) -> None:
        """A Rollout labelled for a shard this replica holds but hashed to another (the shard
        count changed): only this replica sees it, so this replica moves its label to where
        the hash's owner watches."""
        if self.shards is None or self.cache is None:
            return
        label = self.cache.labels(namespace, name).get(LABEL_SHARD, "")
        right = self.shards.shard_of(namespace, name)
        if not label.isdigit() or int(label) == right:
            return
        with self.shards.acting(int(label)) as until:
            if until is None:
                return
            patch = {"metadata": {"labels": {LABEL_SHARD: str(right)}}}
            try:
                await self.kube.patch(
                    ROLLOUTS.url(namespace, name), patch, deadline=self._deadline()
                )
            except (KubeError, TimeoutError, ConnectionError) as err:
                log.warning(
                    "%s/%s: could not relabel it for shard %d: %s", namespace, name, right, err
                )
                return
            log.info("%s/%s: relabelled from shard %s to %d", namespace, name, label, right)

    async def _handle(self, key: tuple[str, str]) -> Due:
        """The workqueue's handler: one pass (if this replica may act on the Rollout now), and
        when the next is due. Failures become a per-Rollout back-off."""
        namespace, name = key
        due: float | Gone | None = None
        with turn(self.shards, namespace, name) as mine:
            if mine:
                self._acted.add(key)
                failures = self._failures.pop(key, 0)
                due, failures = await self._attempt(namespace, name, failures)
                if failures:
                    self._failures[key] = failures
        if not mine:
            # Another replica's shard (or nobody's yet): no API call at all. Acquiring the
            # shard queues it (wake_shard); until then, only watch events and the resync do.
            if key in self._acted:
                self._acted.discard(key)
                metrics.forget(namespace, name)  # its owner exports them now
            if self.cache is not None and not self.cache.has_rollout(namespace, name):
                # No view of ours shows it (labelled into another replica's shard, or
                # deleted): nothing to wait for here. A view that shows it again queues it.
                self.forget(namespace, name)
                return DONE
            await self._relabel_stale(namespace, name)
            return RESYNC_SECONDS
        if isinstance(due, Gone):
            self.forget(namespace, name)
            return DONE
        return RESYNC_SECONDS if due is None else min(due, RESYNC_SECONDS)

    async def _attempt(
        self, namespace: str, name: str, failures: int
    ) -> tuple[float | Gone | None, int]:
        """One pass, its failures turned into a back-off: (seconds until the next, failures)."""
        try:
            return await self.reconcile(namespace, name), 0
        except (KubeError, TimeoutError, ConnectionError) as err:
            failures += 1
            due = min(MAX_BACKOFF, 0.5 * 2**failures)
            log.warning(
                "%s/%s: reconcile failed (%s); retrying in %.1fs", namespace, name, err, due
            )
            if isinstance(err, KubeError) and err.status in (400, 403, 422):
                await self._report_refusal(namespace, name, err)
        except Exception:
            failures += 1
            due = min(MAX_BACKOFF, 0.5 * 2**failures)
            log.exception("%s/%s: unexpected error; retrying in %.1fs", namespace, name, due)
        return due, failures

    async def _report_refusal(self, namespace: str, name: str, err: KubeError) -> None:
        """A write the API server refuses will be refused again: say so in status, once.

        The next pass that gets through clears it (the Plan starts without the condition).
        """
        deadline = self._deadline()
        try:
            body = await self.kube.get(ROLLOUTS.url(namespace, name), deadline=deadline)
            if body is None:
                return
            status = body.get("status") or {}
            message = f"the API server refused a write ({err.status} {err.reason}): {err.message}"
            message = message[:2048]
            if status.get("message") == message:
                return
            now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            conditions = [
                c for c in status.get("conditions") or [] if c.get("type") != "ReconcileError"
            ]
            conditions.append(
                {
                    "type": "ReconcileError",
                    "status": "True",
                    "reason": err.reason or "Refused",
                    "message": message,
                    "lastTransitionTime": now,
                }
            )
            patch = {"status": {"phase": "Degraded", "message": message, "conditions": conditions}}
            await self.kube.patch(ROLLOUTS.url(namespace, name, "status"), patch, deadline=deadline)
        except (KubeError, TimeoutError, ConnectionError) as nested:
            log.warning("%s/%s: could not report the refusal: %s", namespace, name, nested)

    async def _unparseable(
        self, namespace: str, name: str, body: dict[str, Any], err: ValidationError
    ) -> None:
        """A stored object our models reject (an older CRD, a hand edit): say so, touch nothing."""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors(include_url=False)
        )
        message = f"InvalidSpec: {problems}"
        status = body.get("status") or {}
        if status.get("message") == message:
            return
        log.warning("%s/%s: %s", namespace, name, message)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "InvalidSpec"]
        conditions.append(
            {
                "type": "InvalidSpec",
                "status": "True",
                "reason": "InvalidSpec",
                "message": problems,
                "lastTransitionTime": now,
            }
        )
        patch = {"status": {"phase": "Degraded", "message": message, "conditions": conditions}}
        await self.kube.patch(
            ROLLOUTS.url(namespace, name, "status"),
            patch,
            deadline=self._deadline(),
        )


@contextlib.contextmanager
def turn(shards: Shards | None, namespace: str, key: str) -> Iterator[bool]:
    """Whether this replica may run a pass now on an object whose shard is hashed from
    `namespace/key` (always, unless sharded); while it may, the pass's calls are capped at the
    shard's lease (`capped`)."""
    if shards is None:
        yield True
        return
    with shards.acting(shards.shard_of(namespace, key)) as until:
        token = _UNTIL.set(until)
        try:
            yield until is not None
        finally:
            _UNTIL.reset(token)


def spec_unseen(body: Mapping[str, Any]) -> bool:
    """Whether the Rollout's spec changed since the last pass recorded it (a user's request:
    served ahead of status-driven wake-ups)."""
    generation = (body.get("metadata") or {}).get("generation")
    return (
        generation is not None
        and (body.get("status") or {}).get("observedGeneration") != generation
    )

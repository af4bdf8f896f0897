"""Kopf wiring only: watch events feed the cache and the workqueues (reconcile.py for Rollouts,
experiments.py for Experiments).

Why a workqueue and not a daemon per Rollout (as before): at thousands of rollouts the daemons,
their stoppers and Kopf's live copy of each body were most of the operator's memory, and all of
them could run a pass at once. Rollouts are level-triggered and time-driven (pauses, delays,
measurements): a bounded set of workers with a timer per Rollout serves that, as client-go's
controllers do.

Exactly one replica acts (HA with Kopf peering): Kopf pauses every replica but the leader, and a
paused replica's watches stop — but timers would not. So the queue runs only while this replica
acts, and the one public signal Kopf gives for that is a daemon: Kopf stops every daemon when
peering pauses the operator and starts them again when it resumes. `acting` is such a daemon on
the peering object itself (__main__ registers it when peering is on): it opens the queue while
it runs and closes it when stopped.

Why no finalizer: Kopf puts one on objects with daemons by default, which would make deleting the
peering object hang while the operator is down. Nothing needs cleaning up on deletion — every
object we create carries an owner reference and the garbage collector removes it. So the one
daemon left, `acting`, is registered without it (`drop_daemon_finalizer`, the one reach-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import Any

import kopf

from herdsman import __version__
from herdsman.api.base import GROUP, VERSION
from herdsman.cluster.cache import pack, pack_group
from herdsman.cluster.experiment_paths import LABEL_EXPERIMENT
from herdsman.experiments import ExperimentRuntime
from herdsman.naming import LABEL_MANAGED, LABEL_ROLLOUT, MANAGED_BY, owner_name
from herdsman.reconcile import Runtime
from herdsman.shard_watch import RolloutViews, unlabelled_selector

log = logging.getLogger("herdsman.handlers")


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    peering = getattr(memo, "peering", None) or {}
    # Set here rather than through kopf.run(): either standalone or mandatory peering, never
    # Kopf's auto-detection (__main__ says why).
    settings.peering.name = peering.get("name", "herdsman")
    settings.peering.priority = peering.get("priority", 0)
    settings.peering.standalone = peering.get("standalone", False)
    settings.peering.mandatory = peering.get("mandatory", False)
    settings.peering.lifetime = peering.get("lifetime", 60)
    settings.posting.enabled = False  # our own Events say what happened, once
    settings.execution.max_workers = 32
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Kopf gives every object with a watch event a worker task and keeps it 5 s after its last
    # event. In a burst that is a task, a queue and a stack of frames for nearly every Rollout
    # and ReplicaSet at once; freed afterwards, they leave CPython's arenas half empty and
    # unreturnable. Our handlers only note the body and queue a pass, so a worker may go at
    # once: at N=1,000 this took the settled RSS from 159 to 135 MB at the same CPU and pace.
    settings.queueing.idle_timeout = 0.2
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Only our own ReplicaSets (Rollouts' and Experiments' groups, and those `kubectl herdsman
    # import` adopts, all carry this label): in a cluster of Deployments, their ReplicaSets'
    # every status change would otherwise reach us, to be decoded and dropped.
    settings.watching.label_selectors["apps", "replicasets"] = f"{LABEL_MANAGED}={MANAGED_BY}"
    loop = asyncio.get_running_loop()
    shards = getattr(memo, "shards", None)
    if shards is not None:
        # Kopf shows only the Rollouts no shard's own watch selects (shard_watch.py says why);
        # each shard's watch starts when this replica wins the shard.
        settings.watching.label_selectors[GROUP, "rollouts"] = unlabelled_selector(shards.shards)
        # A Rollout's groups and runs come through the replica's own views too (only its
        # shards' and the unlabelled); Kopf is left the Experiments' (shard_watch.py).
        settings.watching.label_selectors["apps", "replicasets"] = (
            f"{LABEL_MANAGED}={MANAGED_BY},{LABEL_EXPERIMENT}"
        )
        settings.watching.label_selectors[GROUP, "analysisruns"] = LABEL_EXPERIMENT
        views: RolloutViews | None = getattr(memo, "views", None)
        if views is not None:
            views.start_owned()
        memo.shard_task = loop.create_task(shards.run())
    peered = getattr(memo, "acting", None) is not None
    runtime: Runtime | None = getattr(memo, "runtime", None)
    experiments = _experiments(memo)
    for name, queue in (
        ("queue_task", runtime.queue if runtime is not None else None),
        ("experiments_task", experiments.queue if experiments is not None else None),
    ):
        if queue is not None:
            if peered:
                queue.close()  # until the `acting` daemon says this replica leads
            setattr(memo, name, loop.create_task(queue.run()))
    log.info("herdsman operator started (version %s)", __version__)


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    """Stop the workqueue; a clean stop hands this replica's shards over at once instead of
    after the lease time."""
    views: RolloutViews | None = getattr(memo, "views", None)
    for name in ("queue_task", "experiments_task", "shard_task"):
        task = getattr(memo, name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    shards = getattr(memo, "shards", None)
    if shards is not None:
        await shards.stop()
    if views is not None:
        await views.close()
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        if runtime.applier is not None:
            await runtime.applier.events.close()  # the last Events, briefly
        await runtime.kube.close()  # its connections, after the last write above


# The watch-fed cache (cluster/cache.py): Kopf fills every index by a full list before it
# calls any other handler, and runs the indexers of an event before its other handlers, so a
# pass a watch event queues already reads that event's object. The indexers are `async` so Kopf calls
# them on the event loop: a plain `def` would cost a thread-pool hop for every watch event.
# Keyed by the herdsman.dev/rollout label: the label_value() of the rollout's name.
@kopf.index("apps", "v1", "replicasets", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def server_groups(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str | None], str]:
    return {(namespace, labels.get(LABEL_ROLLOUT)): pack_group(body)}


@kopf.index(GROUP, VERSION, "analysisruns", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def analysis_runs(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str | None], str]:
    return {(namespace, labels.get(LABEL_ROLLOUT)): pack(body)}


def _bind(runtime: Runtime, kwargs: Mapping[str, Any]) -> None:
    # Sharded, the cache is bound to the replica's own indexes from the start (__main__).
    if runtime.cache is not None and not runtime.cache.bound("ReplicaSet"):
        runtime.cache.bind("ReplicaSet", kwargs["server_groups"])
        runtime.cache.bind("AnalysisRun", kwargs["analysis_runs"])


@kopf.on.event(GROUP, VERSION, "rollouts")
async def rollout_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    type: str | None,
    memo: Any,
    **kwargs: Any,
) -> None:
    runtime = _runtime(memo)
    _bind(runtime, kwargs)
    views: RolloutViews | None = getattr(memo, "views", None)
    shown = None if type == "DELETED" else body
    if views is not None:
        views.unlabelled(namespace or "default", name, shown)
    else:
        runtime.observed(namespace or "default", name, shown)


@kopf.on.event("apps", "v1", "replicasets", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def group_changed(body: kopf.Body, type: str | None, memo: Any, **kwargs: Any) -> None:
    runtime = _runtime(memo)
    _bind(runtime, kwargs)
    runtime.owned_changed("ReplicaSet", type or "", body)


@kopf.on.event("apps", "v1", "deployments")
async def workload_changed(namespace: str | None, name: str | None, memo: Any, **_: Any) -> None:
    """A Deployment a Rollout takes its template from (spec.workloadRef) changed."""
    _runtime(memo).wake_workload(namespace, name)


@kopf.on.event(GROUP, VERSION, "analysisruns", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def run_changed(body: kopf.Body, type: str | None, memo: Any, **kwargs: Any) -> None:
    runtime = _runtime(memo)
    _bind(runtime, kwargs)
    runtime.owned_changed("AnalysisRun", type or "", body)


# --- Experiments: the same shape, a workqueue of their own --------------------------------------


def _experiments(memo: Any) -> ExperimentRuntime | None:
    runtime: ExperimentRuntime | None = getattr(memo, "experiments", None)
    return runtime


@kopf.on.event(GROUP, VERSION, "experiments")
async def experiment_changed(
    namespace: str | None,
    name: str,
    type: str | None,
    meta: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.observed(namespace, name, owner_name(meta, "Rollout"), deleted=type == "DELETED")
    # A Rollout waiting on its experiment step learns the verdict at once.
    _runtime(memo).wake(namespace, owner_name(meta, "Rollout"))


@kopf.on.event("apps", "v1", "replicasets", labels={LABEL_EXPERIMENT: kopf.PRESENT})
async def experiment_group_changed(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.wake(namespace, owner_name(meta, "Experiment"))


@kopf.on.event(GROUP, VERSION, "analysisruns", labels={LABEL_EXPERIMENT: kopf.PRESENT})
async def experiment_run_changed(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.wake(namespace, owner_name(meta, "Experiment"))


# --- whether this replica acts (peering) --------------------------------------------------------


@dataclasses.dataclass
class Acting:
    """How many `acting` daemons run (one per peering object: one per namespace when namespaced).
    Kopf stops them all together when it pauses, so the queue is open while any runs."""

    running: int = 0


async def acting(stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    """Runs on the peering object while Kopf lets this replica act (see the module docstring)."""
    runtime = _runtime(memo)
    experiments = _experiments(memo)
    gate: Acting = memo.acting
    gate.running += 1
    if gate.running == 1:
        runtime.start_acting()
        if experiments is not None:
            experiments.start_acting()
    try:
        await stopped.wait()
    finally:
        gate.running -= 1
        if gate.running == 0:
            runtime.stop_acting()
            if experiments is not None:
                experiments.stop_acting()


def register_acting(registry: kopf.OperatorRegistry, peering: str, *, clusterwide: bool) -> None:
    """Gate the workqueues on Kopf peering: the `acting` daemon on the peering object `peering`."""
    plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"

    def ours(name: str, **_: Any) -> bool:
        return name == peering

    kopf.daemon(
        "kopf.dev", "v1", plural, id=ACTING, when=ours, registry=registry, cancellation_timeout=1.0
    )(acting)
    drop_daemon_finalizer(registry, (ACTING,))


ACTING = "acting"


def drop_daemon_finalizer(registry: kopf.OperatorRegistry, ids: Collection[str]) -> None:
    """Register the daemons `ids` without the finalizer Kopf would put on their objects.

    The one place that reaches into Kopf's internals, and why it must: Kopf (checked up to
    1.45) creates every `kopf.daemon` and `kopf.timer` handler with `requires_finalizer=True`
    hard-coded — there is no decorator option (`optional=` exists only for `on.delete`) and no
    setting (`settings.persistence.finalizer` only names it). Rollouts and Experiments need
    no daemon (their workqueues run on watch events), but the peering gate does: a daemon is
    the one public signal of Kopf's pausing this replica, which is how "exactly one replica
    acts" holds in HA.

    Fails loudly (at start when peering is on, and in the unit tests) rather than silently
    leaving the finalizer on when a Kopf upgrade changes the internals.
    """
    spawning = getattr(registry, "_spawning", None)
    handlers = getattr(spawning, "_handlers", None)
    if not isinstance(handlers, list):
        raise RuntimeError("Kopf's registry changed: cannot register daemons without a finalizer")
    found = {h.id for h in handlers if h.id in ids}
    if found != set(ids):
        raise RuntimeError(f"daemons not registered: {sorted(set(ids) - found)}")
    handlers[:] = [
        dataclasses.replace(h, requires_finalizer=False) if h.id in ids else h for h in handlers
    ]

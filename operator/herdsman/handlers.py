"""Kopf wiring only: one daemon per Rollout runs its reconcile loop; watch events wake it.

Why a daemon and not on.create/on.update handlers: rollouts are level-triggered and time-driven
(pauses, delays, measurements), so a loop that re-reads the world and sleeps until the next due
time is the natural shape. Kopf stops daemons when peering pauses the operator, which gives
"exactly one acts" for free in HA.

Why no finalizer: Kopf puts one on objects with daemons by default, which would make deleting a
Rollout hang while the operator is down. Nothing needs cleaning up on deletion — every object
we create carries an owner reference and the garbage collector removes it — and the loop itself
ends when its Rollout is gone (404). So the daemon is registered without it.
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
from herdsman.cluster.cache import slim
from herdsman.cluster.experiment_paths import LABEL_EXPERIMENT
from herdsman.experiments import ExperimentRuntime
from herdsman.naming import LABEL_ROLLOUT
from herdsman.reconcile import Runtime

log = logging.getLogger("herdsman.handlers")


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    peering = getattr(memo, "peering", None) or {}
    # Set here rather than through kopf.run(): there a peering name makes peering mandatory,
    # while by default we want Kopf's auto-detection (peer when the CRD exists, else alone).
    settings.peering.name = peering.get("name", "herdsman")
    settings.peering.priority = peering.get("priority", 0)
    settings.peering.standalone = peering.get("standalone", False)
    settings.peering.mandatory = peering.get("mandatory", False)
    settings.peering.lifetime = peering.get("lifetime", 60)
    settings.posting.enabled = False  # our own Events say what happened, once
    settings.execution.max_workers = 32
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    shards = getattr(memo, "shards", None)
    if shards is not None:
        # Every replica watches every Rollout: Kopf's server-side label selectors are fixed for a
        # watch stream's life, while shard ownership moves. The gate in each loop decides.
        memo.shard_task = asyncio.get_running_loop().create_task(shards.run())
    log.info("herdsman operator started (version %s)", __version__)


@kopf.on.cleanup()
async def release_shards(memo: Any, **_: Any) -> None:
    """A clean stop hands this replica's shards over at once instead of after the lease time."""
    shards = getattr(memo, "shards", None)
    task = getattr(memo, "shard_task", None)
    if shards is None:
        return
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await shards.stop()


# The watch-fed cache (cluster/cache.py): Kopf fills every index by a full list before it
# starts any daemon, and runs the indexers of an event before its other handlers, so a pass a
# watch event wakes already reads that event's object. The indexers are `async` so Kopf calls
# them on the event loop: a plain `def` would cost a thread-pool hop for every watch event.
# Keyed by the herdsman.dev/rollout label: the label_value() of the rollout's name.
@kopf.index("apps", "v1", "replicasets", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def server_groups(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    return {(namespace, labels.get(LABEL_ROLLOUT)): slim(body)}


@kopf.index(GROUP, VERSION, "analysisruns", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def analysis_runs(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    return {(namespace, labels.get(LABEL_ROLLOUT)): slim(body)}


def _bind(runtime: Runtime, kwargs: Mapping[str, Any]) -> None:
    if runtime.cache is not None:
        runtime.cache.bind("ReplicaSet", kwargs["server_groups"])
        runtime.cache.bind("AnalysisRun", kwargs["analysis_runs"])


@kopf.daemon(GROUP, VERSION, "rollouts", id="rollout", cancellation_timeout=10.0)
async def rollout_loop(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **kwargs: Any,
) -> None:
    runtime = _runtime(memo)
    _bind(runtime, kwargs)
    # `body` is Kopf's live view: replaced by each watch event before the handlers that wake us.
    await runtime.run(namespace or "default", name, stopped, live=body)


@kopf.on.event(GROUP, VERSION, "rollouts")
async def rollout_changed(
    namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
) -> None:
    runtime = _runtime(memo)
    if runtime.cache is not None:
        runtime.cache.seen("Rollout", namespace or "", None, body)
    runtime.wake(namespace, name)


@kopf.on.event("apps", "v1", "replicasets", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def group_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    type: str | None,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    runtime = _runtime(memo)
    if runtime.cache is not None:
        if type == "DELETED":
            runtime.cache.forget("ReplicaSet", namespace or "", labels.get(LABEL_ROLLOUT), name)
        else:
            runtime.cache.seen("ReplicaSet", namespace or "", labels.get(LABEL_ROLLOUT), body)
    # The owner, not the label: a long rollout name is only a label_value() of itself there.
    runtime.wake(namespace, _owner(meta, "Rollout") or labels.get(LABEL_ROLLOUT))


@kopf.on.event("apps", "v1", "deployments")
async def workload_changed(namespace: str | None, name: str | None, memo: Any, **_: Any) -> None:
    """A Deployment a Rollout takes its template from (spec.workloadRef) changed."""
    _runtime(memo).wake_workload(namespace, name)


@kopf.on.event(GROUP, VERSION, "analysisruns", labels={LABEL_ROLLOUT: kopf.PRESENT})
async def run_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    type: str | None,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    runtime = _runtime(memo)
    if runtime.cache is not None:
        if type == "DELETED":
            runtime.cache.forget("AnalysisRun", namespace or "", labels.get(LABEL_ROLLOUT), name)
        else:
            runtime.cache.seen("AnalysisRun", namespace or "", labels.get(LABEL_ROLLOUT), body)
    # The owner, not the label: a long rollout name is only a label_value() of itself there.
    runtime.wake(namespace, _owner(meta, "Rollout") or labels.get(LABEL_ROLLOUT))


# --- Experiments: the same shape, one daemon per Experiment --------------------------------------


def _experiments(memo: Any) -> ExperimentRuntime | None:
    runtime: ExperimentRuntime | None = getattr(memo, "experiments", None)
    return runtime


def _owner(meta: Mapping[str, Any], kind: str) -> str | None:
    refs = meta.get("ownerReferences") or []
    return next((r.get("name") for r in refs if r.get("kind") == kind), None)


@kopf.daemon(GROUP, VERSION, "experiments", id="experiment", cancellation_timeout=10.0)
async def experiment_loop(
    namespace: str | None,
    name: str,
    meta: Mapping[str, Any],
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        await runtime.run(namespace or "default", name, stopped, owner=_owner(meta, "Rollout"))


@kopf.on.event(GROUP, VERSION, "experiments")
async def experiment_changed(
    namespace: str | None, name: str, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.wake(namespace, name)
    # A Rollout waiting on its experiment step learns the verdict at once.
    _runtime(memo).wake(namespace, _owner(meta, "Rollout"))


@kopf.on.event("apps", "v1", "replicasets", labels={LABEL_EXPERIMENT: kopf.PRESENT})
async def experiment_group_changed(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.wake(namespace, _owner(meta, "Experiment"))


@kopf.on.event(GROUP, VERSION, "analysisruns", labels={LABEL_EXPERIMENT: kopf.PRESENT})
async def experiment_run_changed(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    runtime = _experiments(memo)
    if runtime is not None:
        runtime.wake(namespace, _owner(meta, "Experiment"))


# Handler ids whose objects must never carry Kopf's finalizer (see the module docstring).
NO_FINALIZER = ("rollout", "experiment")


def drop_daemon_finalizer(registry: kopf.OperatorRegistry, ids: Collection[str]) -> None:
    """Register the daemons `ids` without the finalizer Kopf would put on their objects.

    The one place that reaches into Kopf's internals, and why it must: Kopf (checked up to
    1.45) creates every `kopf.daemon` and `kopf.timer` handler with `requires_finalizer=True`
    hard-coded — there is no decorator option (`optional=` exists only for `on.delete`) and no
    setting (`settings.persistence.finalizer` only names it). Dropping daemons altogether for
    `on.event` handlers would lose what daemons give for free: Kopf stops them when peering
    pauses this replica, which is how "exactly one replica acts" holds in HA.

    Fails loudly (at import, so at start and in the unit tests) rather than silently leaving
    the finalizer on when a Kopf upgrade changes the internals.
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


drop_daemon_finalizer(kopf.get_default_registry(), NO_FINALIZER)

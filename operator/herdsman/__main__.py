"""`herdsman run`: the operator process.

herdsman run                       # all namespaces, kubeconfig or in-cluster credentials
herdsman run -n shop -n payments   # only these namespaces
herdsman run --log-format json     # one JSON object per line
herdsman run --dashboard-port 8082 # also serve the web dashboard (herdsman.dashboard)
herdsman simulate --rollout NAME   # a synthetic service whose traffic follows the weights
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import kopf

from herdsman import __version__


def _priority(value: str) -> int:
    if value == "startup":
        # Earlier start, higher priority; two replicas never tie (a tie pauses both in Kopf).
        return -time.time_ns()
    return int(value)


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{value!r}: must be a number >= 0")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be a whole number >= 0")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="herdsman", description="The Herdsman operator.")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator in the foreground")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable)",
    )
    run.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="default: $KUBECONFIG or in-cluster",
    )
    run.add_argument(
        "--log-format",
        choices=["plain", "json"],
        default=os.environ.get("HERDSMAN_LOG_FORMAT", "plain"),
    )
    run.add_argument("--log-level", default=os.environ.get("HERDSMAN_LOG_LEVEL", "INFO"))
    run.add_argument(
        "--standalone", action="store_true", help="no peering: act even if other operators run"
    )
    run.add_argument(
        "--peering",
        default=os.environ.get("HERDSMAN_PEERING", "herdsman"),
        help="peering object name",
    )
    run.add_argument(
        "--require-peering",
        action="store_true",
        default=os.environ.get("HERDSMAN_REQUIRE_PEERING") == "1",
        help="peer with the other replicas through the peering object, only the elected one acting"
        " (HA installs: the chart sets it); without it the operator acts alone",
    )
    run.add_argument(
        "--priority",
        type=_priority,
        default=os.environ.get("HERDSMAN_PRIORITY", "0"),
        help="peering priority: a number, or 'startup' (the oldest replica leads; a restarted one"
        " rejoins as the standby instead of preempting a working leader)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=int(os.environ.get("HERDSMAN_PEERING_LIFETIME", "60")),
        help="seconds a replica's keep-alive counts: the bound on takeover after a crash",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("HERDSMAN_WORKERS", "64")),
        help="reconcile passes that may run at once, over all Rollouts (each Rollout has at most"
        " one in flight; the rest wait in a first-come, first-served queue)",
    )
    run.add_argument(
        "--kube-qps",
        type=_non_negative,
        default=os.environ.get("HERDSMAN_KUBE_QPS", "200"),
        help="Kubernetes API requests per second the reconcilers may send on average (0: no"
        " limit); the watches and the shard Leases are not counted",
    )
    run.add_argument(
        "--kube-burst",
        type=_count,
        default=os.environ.get("HERDSMAN_KUBE_BURST", "400"),
        help="requests the reconcilers may send at once, after a quiet spell, before the"
        " --kube-qps pace applies",
    )
    run.add_argument(
        "--shards",
        type=int,
        default=int(os.environ.get("HERDSMAN_SHARDS", "0")),
        help="split the Rollouts into this many shards, each acted on by the replica holding its"
        " Lease (0 or 1: no sharding; Kopf peering decides which one replica acts)",
    )
    run.add_argument(
        "--shard-lease-seconds",
        type=float,
        default=float(os.environ.get("HERDSMAN_SHARD_LEASE_SECONDS", "15")),
        help="a dead replica's shards move to live ones within about this",
    )
    run.add_argument(
        "--shard-renew-seconds",
        type=float,
        default=float(os.environ.get("HERDSMAN_SHARD_RENEW_SECONDS", "5")),
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("HERDSMAN_LEASE_NAMESPACE")
        or os.environ.get("POD_NAMESPACE", "default"),
        help="where the shard Leases live (the operator's own namespace)",
    )
    run.add_argument(
        "--lease-prefix",
        default=os.environ.get("HERDSMAN_LEASE_PREFIX", "herdsman"),
        help="names the Leases <prefix>-shard-<i> and <prefix>-member-<replica>",
    )
    run.add_argument(
        "--identity",
        default=os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the Leases and the logs (default: $POD_ID)",
    )
    run.add_argument(
        "--liveness",
        default=os.environ.get("HERDSMAN_LIVENESS"),
        help="e.g. http://0.0.0.0:8081/healthz",
    )
    run.add_argument(
        "--metrics-port", type=int, default=int(os.environ.get("HERDSMAN_METRICS_PORT", "0"))
    )
    run.add_argument(
        "--dashboard-port",
        type=int,
        default=int(os.environ.get("HERDSMAN_DASHBOARD_PORT", "0")),
        help="serve the web dashboard on this port (0: not at all)",
    )
    run.add_argument(
        "--dashboard-address", default=os.environ.get("HERDSMAN_DASHBOARD_ADDRESS", "0.0.0.0")
    )
    run.add_argument(
        "--dashboard-actions",
        action="store_true",
        default=os.environ.get("HERDSMAN_DASHBOARD_ACTIONS") == "1",
        help="let dashboard users promote/abort/retry/undo with a bearer token of their own",
    )
    run.add_argument(
        "--notifications-configmap",
        default=os.environ.get("HERDSMAN_NOTIFICATIONS_CONFIGMAP", ""),
        help="NAMESPACE/NAME of the ConfigMap naming notification services (empty: none)",
    )
    run.add_argument(
        "--notifications-secret",
        default=os.environ.get("HERDSMAN_NOTIFICATIONS_SECRET", ""),
        help="NAMESPACE/NAME of the Secret its $keys come from",
    )
    run.add_argument(
        "--price-cpu-hour",
        type=float,
        default=float(os.environ.get("HERDSMAN_PRICE_CPU_HOUR", "0.0316")),
        help="price of one requested CPU core for an hour (release cost)",
    )
    run.add_argument(
        "--price-gib-hour",
        type=float,
        default=float(os.environ.get("HERDSMAN_PRICE_GIB_HOUR", "0.0042")),
        help="price of one requested GiB of memory for an hour (release cost)",
    )
    run.add_argument("--currency", default=os.environ.get("HERDSMAN_CURRENCY", "USD"))
    run.add_argument(
        "--cost-team-label",
        default=os.environ.get("HERDSMAN_COST_TEAM_LABEL", "team"),
        help="the Rollout label that names its team on the cost metric",
    )
    from herdsman.simulate.cli import add_arguments

    add_arguments(sub.add_parser("simulate", help="run the synthetic service (demo, tests)"))
    return p


def _notifier(kube: Any, policy: Any, configmap: str, secret: str) -> Any:
    """The notifier, when a ConfigMap is named; its delivery thread is started here."""
    if not configmap:
        return None
    from herdsman.notify import config
    from herdsman.notify.deliver import Deliverer
    from herdsman.notify.notifier import Notifier

    source = config.ServiceSource(
        load=lambda: config.read(kube, policy, configmap, secret or configmap)
    )
    return Notifier(source=source, deliverer=Deliverer().start())


def _kube(
    args: argparse.Namespace,
    policy: Any,
    *,
    workers: int | None = None,
    on_write: Callable[[Any], None] | None = None,
    limited: bool = True,
) -> Any:
    """A Kubernetes client reporting to the operator's metrics: `workers` calls in flight at
    once, on as many connections (default: the module's WORKERS), under the --kube-qps and
    --kube-burst rate limit when `limited`."""
    from herdsman import metrics
    from herdsman.cluster.kube import WORKERS, Kube, RateLimit, load_config

    size = workers or WORKERS
    return Kube(
        load_config(args.kubeconfig, connections=size),
        policy,
        on_error=metrics.api_error,
        on_request=metrics.api_request,
        hooks=metrics.retry_hooks("kubernetes"),
        on_write=on_write,
        workers=size,
        rate=RateLimit(args.kube_qps, args.kube_burst) if limited else RateLimit(),
        on_throttle=metrics.api_throttle,
    )


def _reads(args: argparse.Namespace, kube: Any) -> Any:
    """Watch-fed answers to the passes' GETs of Services, router objects and templates."""
    from herdsman import metrics
    from herdsman.cluster.observe import READS as paths
    from herdsman.cluster.reads import Reads
    from herdsman.cluster.transport import AsyncTransport

    # One watch per kind in use (per namespace when limited to some), each holding a
    # connection of its own for minutes: never a slot the passes' calls wait for.
    watches = len(paths) * max(1, len(args.namespace or ()))
    return Reads(
        AsyncTransport(kube.transport.configuration, watches + 2),
        {(p.base, p.plural) for p in paths},
        namespaces=tuple(args.namespace or ()),
        on_hit=metrics.read_cached,
    )


def _views(args: argparse.Namespace, kube: Any, runtime: Any, shards: Any) -> Any:
    """Sharded: each shard's Rollouts are watched only while this replica holds the shard."""
    from herdsman.cluster.cache import pack, pack_group
    from herdsman.cluster.kube import ANALYSIS_RUNS, REPLICA_SETS
    from herdsman.cluster.owned_index import OwnedIndex
    from herdsman.cluster.transport import AsyncTransport
    from herdsman.shard_watch import OwnedKind, RolloutViews
    from herdsman.sharding import LABEL_OWNER_SHARD, owner_shard

    # Watches of their own: each holds a connection for minutes, and must never wait behind
    # (or take a slot from) the passes' calls.
    # Per shard: its Rollouts, groups and runs; and the unlabelled groups and runs.
    watches = (3 * args.shards + 2) * max(1, len(args.namespace or ()))
    streams = AsyncTransport(kube.transport.configuration, watches + 4)
    owned = [
        OwnedKind(kind, path, OwnedIndex(pack), runtime.owned_changed)
        for kind, path, pack in (
            ("ReplicaSet", REPLICA_SETS, pack_group),
            ("AnalysisRun", ANALYSIS_RUNS, pack),
        )
    ]
    views = RolloutViews(
        streams,
        runtime.observed,
        runtime.forget,
        namespaces=list(args.namespace or ()),
        shards=args.shards,
        owned=owned,
    )
    shards.listeners.append(views.start)
    shards.released.append(views.stop)
    # The cache reads a Rollout's groups and runs from these views, once they are complete.
    for kind in owned:
        runtime.cache.bind(kind.kind, kind.index)
    runtime.cache.gate = views.ready

    def shard_labels(rollout: Any) -> dict[str, str]:
        shard = shards.shard_of(rollout.metadata.namespace or "default", rollout.metadata.name)
        return {LABEL_OWNER_SHARD: owner_shard(shard, args.shards)}

    runtime.applier.shard_labels = shard_labels
    return views


def _shards(args: argparse.Namespace, policy: Any) -> Any:
    """The shard manager when --shards asks for more than one shard, else None."""
    if args.shards <= 1:
        return None
    from herdsman.cluster.leases import KubeLeases
    from herdsman.sharding import Shards

    if args.shard_renew_seconds >= args.shard_lease_seconds:
        raise SystemExit("--shard-renew-seconds must be shorter than --shard-lease-seconds")
    # The Leases get a client of their own (two connections): sharing the reconcilers'
    # connections, a renewal waited behind every pass's calls under load, and a live
    # replica's shards could lapse or a dead one's be taken late.
    # Nor do they queue behind the reconcilers' rate limit: a renewal is a few calls a tick.
    leases = _kube(args, policy, workers=2, limited=False)
    store = KubeLeases(leases, args.lease_namespace, args.lease_prefix)
    return Shards(
        store=store,
        identity=args.identity,
        shards=args.shards,
        prefix=args.lease_prefix,
        lease_seconds=args.shard_lease_seconds,
        renew_seconds=args.shard_renew_seconds,
    )


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX=2 would) before any thread starts.

    Why: glibc gives each thread that allocates an arena of its own, up to 8 per core, and the
    Kubernetes client's thread pool spread the operator's heap over them; memory freed in one
    arena cannot serve another. Measured at 1,000 rollouts: 211 MB settled RSS by default,
    149 MB with two arenas, for the same CPU. (The API calls have since moved to asyncio; Kopf,
    the metrics server and the dashboard still run threads.) A no-op off glibc, or when the environment
    already sets MALLOC_ARENA_MAX. Returns whether the cap was applied.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False  # not glibc (musl has no arenas to cap)
    m_arena_max = -8  # from glibc's malloc.h
    return bool(libc.mallopt(m_arena_max, arenas))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "simulate":
        from herdsman.simulate.cli import run as simulate

        return simulate(args)
    limit_malloc_arenas()
    from herdsman import (
        handlers,  # registers the Kopf handlers on import
        metrics,
        telemetry,
    )
    from herdsman.cluster import experiment_step
    from herdsman.cluster.analysis import Analysis
    from herdsman.cluster.apply import Applier
    from herdsman.cluster.budget import AccessPolicy
    from herdsman.cluster.cache import Cache
    from herdsman.cluster.events import EventSender
    from herdsman.cluster.kube import load_config
    from herdsman.experiments import ExperimentRuntime
    from herdsman.reconcile import Runtime
    from herdsman.telemetry import announce, configure_logging
    from herdsman.traffic import writer

    configure_logging(args.log_format, args.log_level)
    from herdsman.engine import cost

    cost.configure(cost.Prices(args.price_cpu_hour, args.price_gib_hour, args.currency))
    metrics.TEAM_LABEL = args.cost_team_label
    policy = AccessPolicy.from_env()
    cache = Cache()
    metrics.rollouts_cached.set_function(cache.rollouts)
    metrics.server_groups_cached.set_function(lambda: cache.count("ReplicaSet"))
    kube = _kube(args, policy, on_write=cache.note)
    kube.reads = _reads(args, kube)
    metrics.reads_held.set_function(kube.reads.count)
    analysis = Analysis(kube, policy, hooks=metrics.retry_hooks("analysis"))
    metrics.serve(args.metrics_port)
    if args.dashboard_port:
        from herdsman.dashboard.server import serve_in_thread

        serve_in_thread(
            load_config(args.kubeconfig),
            port=args.dashboard_port,
            address=args.dashboard_address,
            namespaces=args.namespace,
            actions="token" if args.dashboard_actions else "off",
        )
    events = EventSender(kube, on_drop=metrics.event_dropped)
    metrics.events_queued.set_function(lambda: events.queued)
    applier = Applier(
        kube,
        build_run=analysis.build,
        write_traffic=writer(kube),
        announce=announce,
        write_experiments=experiment_step.writer(kube),
        events=events,
    )
    runtime = Runtime(
        kube=kube,
        applier=applier,
        policy=policy,
        analysis=analysis,
        cache=cache,
        workers=max(1, args.workers),
        notifier=_notifier(kube, policy, args.notifications_configmap, args.notifications_secret),
    )
    experiments = ExperimentRuntime(kube=kube, policy=policy, analysis=analysis)
    shards = _shards(args, policy)
    views = None
    if shards is not None:
        runtime.shards = experiments.shards = shards
        shards.listeners += [runtime.wake_shard, experiments.wake_shard]
        views = _views(args, kube, runtime, shards)
        telemetry.REPLICA = args.identity
    # Peering only when asked for: Kopf's auto-detection (peer if the peering CRD exists) would
    # leave the workqueue no way to tell, without a call of its own, whether it may act.
    peered = args.require_peering and not args.standalone and shards is None
    if peered:
        handlers.register_acting(
            kopf.get_default_registry(), args.peering, clusterwide=not args.namespace
        )
    memo = kopf.Memo(
        runtime=runtime,
        experiments=experiments,
        shards=shards,
        views=views,
        acting=handlers.Acting() if peered else None,
        peering={
            "name": args.peering,
            "priority": args.priority,  # argparse applies _priority to the default too
            "lifetime": args.peering_lifetime,
            # Sharded, every replica acts (on its own shards): peering would pause all but one.
            "standalone": not peered,
            "mandatory": peered,
        },
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    kopf.run(
        loop=loop,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        memo=memo,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
